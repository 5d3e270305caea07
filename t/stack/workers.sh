# t/stack/workers.sh: the chat_worker daemons for t/stack.sh (sourced):
# DIR/run/workerN.pid, DIR/log/workerN.log.

worker_args() {
    echo --brokers "127.0.0.1:$KAFKA_PORT" --topic "$CHAT_TOPIC" \
         --group chat-workers --redis "127.0.0.1:$REDIS_PORT" \
         --partitions "$CHAT_PARTITIONS"
}

topic_ready() {
    kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 -t "$CHAT_TOPIC" 2>/dev/null \
        | grep -q "topic \"$CHAT_TOPIC\" with [1-9]"
}

workers_start() {
    local n=${1:-$CHAT_WORKERS} i pid t0 started=() logs=""; t0=$(now_ms)
    [ -x "$CHAT_WORKER_BIN" ] \
        || die "no $CHAT_WORKER_BIN: run 'make build' (or STACK_SKIP=worker)"
    for (( i = 1; i <= n; i++ )); do
        if pid=$(pid_of "worker$i" chat_worker); then
            continue
        fi
        # shellcheck disable=SC2046
        start_bg "worker$i" "$LOG/worker$i.log" "$CHAT_WORKER_BIN" \
            $(worker_args) \
            --pg "host=127.0.0.1 port=$PG_PORT dbname=chat user=chat"
        started+=("$BG_PID")
        logs="$logs $LOG/worker$i.log"
    done
    [ ${#started[@]} -gt 0 ] || { say "workers: $n already running"; return 0; }
    # the first worker creates the topic; nginx needs it to produce
    wait_ready chat_worker "${started[0]}" 60 "$logs" topic_ready
    sleep 0.3
    for pid in "${started[@]}"; do
        alive "$pid" || { log_tail $logs; die "a chat_worker exited right after start"; }
    done
    say "workers: ${#started[@]} started (pids ${started[*]}), topic $CHAT_TOPIC present ($(( $(now_ms) - t0 )) ms)"
}

worker_pids() {
    local f pid
    shopt -s nullglob
    for f in "$RUN"/worker[0-9]*.pid; do
        f=${f##*/}
        pid=$(pid_of "${f%.pid}" chat_worker) && echo "$pid"
    done
    shopt -u nullglob
    return 0
}

workers_signal_stop() {
    local sig=$1 pids
    mapfile -t pids < <(worker_pids)
    if [ ${#pids[@]} -gt 0 ]; then
        if [ "$sig" = KILL ]; then
            kill -KILL "${pids[@]}" 2>/dev/null || true
            wait_gone 10 "${pids[@]}" || true
        else
            stop_pids workers "$sig" 30 "${pids[@]}"
        fi
        say "workers: ${#pids[@]} stopped (SIG$sig)"
    fi
    rm -f "$RUN"/worker[0-9]*.pid
}
