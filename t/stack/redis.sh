# t/stack/redis.sh: Redis for t/stack.sh (sourced), without persistence.

redis_start() {
    local pid t0; t0=$(now_ms)
    if pid=$(pid_of redis redis-server); then
        say "redis: already running (pid $pid)"
        return 0
    fi
    command -v redis-server >/dev/null || die "redis-server not installed (make deps)"
    need_free_port Redis "$REDIS_PORT" REDIS_PORT
    mkdir -p "$DIR/redis"
    start_bg redis "$LOG/redis.log" redis-server \
        --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" \
        --save '' --appendonly no --daemonize no --logfile '' \
        --protected-mode yes --maxclients 10000
    wait_ready Redis "$BG_PID" 20 "$LOG/redis.log" redis_ping
    say "redis: ready on 127.0.0.1:$REDIS_PORT, pid $BG_PID ($(( $(now_ms) - t0 )) ms)"
}

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_stop() {
    local pid
    if pid=$(pid_of redis redis-server); then
        stop_pids redis TERM 20 "$pid"
        say "redis: stopped"
    fi
    rm -f "$RUN/redis.pid"
}
