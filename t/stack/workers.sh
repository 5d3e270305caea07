# t/stack/workers.sh: the chat_worker daemons for t/stack.sh (sourced):
# DIR/run/workerN.pid, DIR/log/workerN.log; started in phases as Redis is
# (t/stack/redis.sh), one worker or several.

# CHAT_WORKER_ARGS: more options, for a test that starts a worker of its
# own kind (e.g. --max-poll-interval-ms 10000); CHAT_PUSH_ENDPOINTS: the
# URL prefixes push_register may name (comma separated; empty: any);
# CHAT_MEDIA_KEEP_MS: how long an upload never attached is kept (a day)
worker_args() {
    # shellcheck disable=SC2086
    echo --brokers "127.0.0.1:$KAFKA_PORT" --topic "$CHAT_TOPIC" \
         --group chat-workers --redis "127.0.0.1:$REDIS_PORT" \
         --partitions "$CHAT_PARTITIONS" \
         ${CHAT_PUSH_ENDPOINTS:+--push-endpoints "$CHAT_PUSH_ENDPOINTS"} \
         --media-secret "$CHAT_JWT_SECRET.media" \
         --media-url "http://127.0.0.1:$CHAT_PORT/media/" \
         --media-root "$DIR/nginx/media" \
         --media-keep-ms "${CHAT_MEDIA_KEEP_MS:-86400000}" \
         ${CHAT_WORKER_ARGS:-}
}

topic_ready() {
    kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 -t "$CHAT_TOPIC" 2>/dev/null \
        | grep -q "topic \"$CHAT_TOPIC\" with [1-9]"
}

workers_start() {
    local n=${1:-$CHAT_WORKERS} i pid started=() logs=""
    START_T0=$(now_ms)
    worker_prepare
    for (( i = 1; i <= n; i++ )); do
        if pid=$(pid_of "worker$i" chat_worker); then
            mark_up "worker$i"
            continue
        fi
        worker_launch "$i"
        started+=("$BG_PID")
        logs="$logs $LOG/worker$i.log"
    done
    [ ${#started[@]} -gt 0 ] || { say "workers: $n already running"; return 0; }
    workers_ready "$logs" "${started[@]}"
}

worker_prepare() {
    [ -x "$CHAT_WORKER_BIN" ] \
        || die "no $CHAT_WORKER_BIN: run 'make build' (or STACK_SKIP=worker)"
}

# worker_metrics_arg N: --metrics on worker N's port in stack.env, if any
worker_metrics_arg() {
    local ports
    local p=${CHAT_WORKER_METRICS_PORTS:-}
    read -r -a ports <<< "${p//,/ }"
    [ -n "${ports[$(( $1 - 1 ))]:-}" ] && echo --metrics "127.0.0.1:${ports[$(( $1 - 1 ))]}"
    return 0
}

# worker_launch N: chat_worker number N
worker_launch() {
    # shellcheck disable=SC2046
    start_bg "worker$1" "$LOG/worker$1.log" "$CHAT_WORKER_BIN" \
        $(worker_args) $(worker_metrics_arg "$1") \
        --pg "host=127.0.0.1 port=$PG_PORT dbname=chat user=chat"
    mark_up "worker$1"
}

# workers_ready "LOGS" PID...: the workers just started are up
workers_ready() {
    local logs=$1 pid; shift
    # the first worker creates the topics (the push topic first); nginx
    # needs the requests topic to produce
    wait_ready chat_worker "$1" 60 "$logs" topic_ready
    sleep 0.3
    for pid in "$@"; do
        # shellcheck disable=SC2086
        alive "$pid" || { log_tail $logs; die "a chat_worker exited right after start"; }
    done
    say "workers: $# started (pids $*), topic $CHAT_TOPIC present ($(( $(now_ms) - START_T0 )) ms)"
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
    local sig=$1 pids f i
    shopt -s nullglob
    for f in "$RUN"/worker[0-9]*.pid; do
        f=${f##*/}
        mark_down "${f%.pid}"
    done
    shopt -u nullglob
    for (( i = 1; i <= ${CHAT_WORKERS:-0}; i++ )); do
        mark_down "worker$i"
    done
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
