# t/stack/all.sh: the whole stack for t/stack.sh (sourced): start, stop and
# status of every component (run is t/stack/run.sh).

start_all() {
    write_env
    local c
    for c in $STACK_SKIP; do
        case $c in pg|redis|kafka|worker|pusher|nginx) ;;
            *) die "STACK_SKIP: unknown component '$c' (pg redis kafka worker pusher nginx)" ;;
        esac
    done
    skipped pg    || pg_start
    skipped redis || redis_start
    skipped kafka || kafka_start
    skipped worker || workers_start
    skipped pusher || pusher_start
    skipped nginx || nginx_start
    say "stack up in $DIR ($(elapsed)); env in $DIR/stack.env"
}

stop_all() {
    nginx_stop
    pusher_stop
    workers_signal_stop TERM
    kafka_stop
    redis_stop
    pg_stop
}

status_all() {
    local pid name
    for name in pg redis kafka nginx; do
        case $name in
            pg) if pg_running; then pid=$(head -n 1 "$PGDATA/postmaster.pid"); else pid=""; fi ;;
            redis) pid=$(pid_of redis redis-server || true) ;;
            kafka) pid=$(pid_of kafka kafka.Kafka || true) ;;
            nginx) pid=$(pid_of nginx nginx || true) ;;
        esac
        if [ -n "$pid" ]; then
            printf '%-8s running, pid %s\n' "$name" "$pid"
        else
            printf '%-8s stopped\n' "$name"
        fi
    done
    pid=$(pid_of pusher chat_pusher || true)
    printf '%-8s %s\n' pusher "${pid:-stopped}"
    printf '%-8s %s\n' workers "$(worker_pids | tr '\n' ' ')"
}

start_failed() {
    if [ "$1" != 0 ] && [ -z "${STACK_KEEP_ON_FAIL:-}" ]; then
        say "start failed: stopping what was started"
        stop_all || true
    fi
}
