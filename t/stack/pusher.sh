# t/stack/pusher.sh: the chat_pusher daemon for t/stack.sh (sourced):
# DIR/run/pusher.pid, DIR/log/pusher.log. It needs Kafka (the push topic,
# which the workers create before they consume: it exists once they are
# up), PostgreSQL (the push outbox) and Redis (the sessions); it starts
# after the workers.

# --metrics on CHAT_PUSHER_METRICS_PORT (stack.env) when there is one;
# CHAT_PUSHER_ARGS: more options (the tests' retries are fast)
pusher_args() {
    # shellcheck disable=SC2086
    echo --brokers "127.0.0.1:$KAFKA_PORT" --group chat-pushers \
         --partitions "$CHAT_PARTITIONS" --redis "127.0.0.1:$REDIS_PORT" \
         ${CHAT_PUSHER_METRICS_PORT:+--metrics "127.0.0.1:$CHAT_PUSHER_METRICS_PORT"} \
         ${CHAT_PUSHER_ARGS:-}
}

pusher_prepare() {
    [ -x "$CHAT_PUSHER_BIN" ] \
        || die "no $CHAT_PUSHER_BIN: run 'make build' (or STACK_SKIP=pusher)"
}

pusher_launch() {
    # the log is kept across starts: readiness is told by the lines after
    PUSHER_LOG_FROM=$(( $(wc -l < "$LOG/pusher.log" 2>/dev/null || echo 0) + 1 ))
    # shellcheck disable=SC2046
    start_bg pusher "$LOG/pusher.log" "$CHAT_PUSHER_BIN" $(pusher_args) \
        --pg "host=127.0.0.1 port=$PG_PORT dbname=chat user=chat"
    mark_up pusher
}

pusher_ready() {
    tail -n "+${PUSHER_LOG_FROM:-1}" "$LOG/pusher.log" 2>/dev/null \
        | grep -q '"msg":"ready"'
}

pusher_ready_wait() {
    wait_ready chat_pusher "$BG_PID" 30 "$LOG/pusher.log" pusher_ready
}

pusher_start() {
    local t0
    t0=$(now_ms)
    if pid_of pusher chat_pusher >/dev/null; then
        mark_up pusher
        return 0
    fi
    pusher_prepare
    pusher_launch
    pusher_ready_wait
    say "pusher: started (pid $BG_PID, $(( $(now_ms) - t0 )) ms)"
}

pusher_stop() {
    local pid
    mark_down pusher
    if pid=$(pid_of pusher chat_pusher); then
        stop_pids pusher TERM 30 "$pid"
        say "pusher: stopped"
    fi
    rm -f "$RUN/pusher.pid"
}
