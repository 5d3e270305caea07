# t/stack/all.sh: the whole stack for t/stack.sh (sourced): start, stop and
# status of every component, and run, in the foreground.

start_all() {
    write_env
    local c
    for c in $STACK_SKIP; do
        case $c in pg|redis|kafka|worker|nginx) ;;
            *) die "STACK_SKIP: unknown component '$c' (pg redis kafka worker nginx)" ;;
        esac
    done
    skipped pg    || pg_start
    skipped redis || redis_start
    skipped kafka || kafka_start
    skipped worker || workers_start
    skipped nginx || nginx_start
    say "stack up in $DIR ($(elapsed)); env in $DIR/stack.env"
}

stop_all() {
    nginx_stop
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
    printf '%-8s %s\n' workers "$(worker_pids | tr '\n' ' ')"
}

run_foreground() {
    local stopping=0
    on_signal() {
        [ $stopping = 1 ] && return
        stopping=1
        echo
        say "stopping..."
        stop_all
        say "stopped"
        exit 0
    }
    trap on_signal INT TERM HUP
    start_all
    trap - EXIT
    local secret_hint="CHAT_JWT_SECRET=\$(cat $DIR/jwt_secret)"
    cat <<EOF

  ngx_chat is up.
    WebSocket:   ws://127.0.0.1:$CHAT_PORT/chat
    over TLS:    wss://127.0.0.1:$CHAT_TLS_PORT/chat   (self-signed: $DIR/nginx/cert.pem)
EOF
    if grep -q 'location *= */echo' "$DIR/nginx/nginx.conf" 2>/dev/null; then
        echo "    echo:        ws://127.0.0.1:$CHAT_PORT/echo"
    fi
    for u in alice bob; do echo "    web, as $u: http://127.0.0.1:$CHAT_PORT/app/web/#token=$(CHAT_JWT_SECRET=$CHAT_JWT_SECRET "$CHATCTL_BIN" token $u --device web 2>/dev/null)"; done
    cat <<EOF
    a token:     $secret_hint \\
                   $CHATCTL_BIN token alice --device phone
    then send it as 'Authorization: Bearer <token>' or ?access_token=<token>
    logs:        $LOG/  (nginx: $DIR/nginx/logs/error.log)
    state:       $DIR   (kept across runs)

  Ctrl-C stops everything.
EOF
    local reported=""
    while :; do
        sleep 2 &
        wait $! || true
        local name pid
        for name in redis kafka nginx; do
            skipped "$name" && continue
            if ! pid_of "$name" >/dev/null && [[ $reported != *" $name "* ]]; then
                say "warning: $name is not running any more (see $LOG/$name.log)"
                reported="$reported $name "
            fi
        done
    done
}

start_failed() {
    if [ "$1" != 0 ] && [ -z "${STACK_KEEP_ON_FAIL:-}" ]; then
        say "start failed: stopping what was started"
        stop_all || true
    fi
}
