# t/stack/redis.sh: Redis for t/stack.sh (sourced), without persistence.
#
# Like every component started in the background: _prepare (checks,
# directories: may die), _launch (only starts it, never fails), _ready
# (waits for it: may die); `run` restarts it through them (t/stack/run.sh).

redis_start() {
    local pid
    if pid=$(pid_of redis redis-server); then
        say "redis: already running (pid $pid)"
        mark_up redis
        return 0
    fi
    START_T0=$(now_ms)
    redis_prepare
    redis_launch
    redis_ready
}

redis_prepare() {
    command -v redis-server >/dev/null || die "redis-server not installed (make deps)"
    need_free_port Redis "$REDIS_PORT" REDIS_PORT
    mkdir -p "$DIR/redis"
}

redis_launch() {
    start_bg redis "$LOG/redis.log" redis-server \
        --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" \
        --save '' --appendonly no --daemonize no --logfile '' \
        --protected-mode yes --maxclients 10000
    mark_up redis
}

redis_ready() {
    wait_ready Redis "$BG_PID" 20 "$LOG/redis.log" redis_ping
    say "redis: ready on 127.0.0.1:$REDIS_PORT, pid $BG_PID ($(( $(now_ms) - START_T0 )) ms)"
}

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_stop() {
    local pid
    mark_down redis
    if pid=$(pid_of redis redis-server); then
        stop_pids redis TERM 20 "$pid"
        say "redis: stopped"
    fi
    rm -f "$RUN/redis.pid"
}
