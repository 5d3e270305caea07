# t/stack/nginx.sh: nginx with the chat module for t/stack.sh (sourced);
# its configuration from conf/nginx.conf.in, a self-signed certificate.
# Started in phases as Redis is (t/stack/redis.sh); nginx_ready is its
# probe, so the phase that waits for it is nginx_ready_wait.

nginx_conf() {
    local ndir=$DIR/nginx tmpl=$ROOT/conf/nginx.conf.in
    mkdir -p "$ndir/logs" "$ndir/media" "$ndir/media_tmp"
    # written by nginx's worker processes (nobody, when started as root)
    chmod 1777 "$ndir/media" "$ndir/media_tmp"
    if [ ! -s "$ndir/cert.pem" ] || [ ! -s "$ndir/key.pem" ]; then
        local out
        out=$(openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
                  -subj /CN=localhost \
                  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
                  -keyout "$ndir/key.pem" -out "$ndir/cert.pem" 2>&1) \
            || { echo "$out" >&2; die "nginx: openssl req failed"; }
        chmod 600 "$ndir/key.pem"
    fi
    fill_template "$tmpl" "$ndir/nginx.conf" PREFIX="$ndir" \
        CHAT_PORT="$CHAT_PORT" CHAT_TLS_PORT="$CHAT_TLS_PORT" \
        REDIS_PORT="$REDIS_PORT" KAFKA_PORT="$KAFKA_PORT" PG_PORT="$PG_PORT" \
        SERVER_ID="$CHAT_SERVER_ID" TOPIC="$CHAT_TOPIC" \
        JWT_SECRET="$CHAT_JWT_SECRET" KAFKA_LINGER="${CHAT_KAFKA_LINGER:-5ms}"
    rm -rf "$ndir/app"; cp -R "$ROOT/clients" "$ndir/app"   # location /app/
}

nginx_ready() { port_busy "$CHAT_PORT" && port_busy "$CHAT_TLS_PORT"; }

nginx_start() {
    local pid
    if pid=$(pid_of nginx nginx); then
        say "nginx: already running (pid $pid)"
        mark_up nginx
        return 0
    fi
    START_T0=$(now_ms)
    nginx_prepare
    nginx_launch
    nginx_ready_wait
}

nginx_prepare() {
    [ -x "$NGINX_BIN" ] || die "no $NGINX_BIN: run 'make build' (or STACK_SKIP=nginx)"
    nginx_orphans_stop
    need_free_port nginx "$CHAT_PORT" CHAT_PORT
    need_free_port nginx "$CHAT_TLS_PORT" CHAT_TLS_PORT
    nginx_conf
}

nginx_launch() {
    local ndir=$DIR/nginx
    start_bg nginx "$LOG/nginx.log" "$NGINX_BIN" -p "$ndir/" \
        -c "$ndir/nginx.conf" -e "$ndir/logs/error.log" -g 'daemon off;'
    mark_up nginx
}

nginx_ready_wait() {
    local ndir=$DIR/nginx
    wait_ready nginx "$BG_PID" 30 "$LOG/nginx.log $ndir/logs/error.log" nginx_ready
    nginx_note_workers "$BG_PID"
    say "nginx: ready on 127.0.0.1:$CHAT_PORT and :$CHAT_TLS_PORT (tls), pid $BG_PID ($(( $(now_ms) - START_T0 )) ms)"
}

# nginx_note_workers MASTER: its worker processes into DIR/run/nginx.workers
# (they outlive a master that is killed, holding the ports)
nginx_note_workers() {
    local kids=() deadline
    deadline=$(( $(now_ms) + 5000 ))
    while :; do
        mapfile -t kids < <(children_of "$1")
        [ ${#kids[@]} -gt 0 ] && break
        [ "$(now_ms)" -lt $deadline ] && alive "$1" || break
        sleep 0.1
    done
    printf '%s\n' "${kids[@]}" > "$RUN/nginx.workers"
}

# the workers of a master that is gone: SIGKILL, so that the ports are free
nginx_orphans_stop() {
    local f=$RUN/nginx.workers pid pids=() args=()
    [ -s "$f" ] || return 0
    while read -r pid; do
        alive "$pid" || continue
        mapfile -d '' args 2>/dev/null < "/proc/$pid/cmdline" || continue
        [[ ${args[*]} == "nginx: worker process"* ]] && pids+=("$pid")
    done < "$f"
    rm -f "$f"
    [ ${#pids[@]} -gt 0 ] || return 0
    say "nginx: ${#pids[@]} workers of a master that is gone: SIGKILL"
    stop_pids "nginx workers" KILL 5 "${pids[@]}"
}

nginx_stop() {
    local pid kids
    mark_down nginx
    if pid=$(pid_of nginx nginx); then
        mapfile -t kids < <(children_of "$pid")
        # graceful first (QUIT waits for connections), then fast (TERM)
        kill -QUIT "$pid" 2>/dev/null || true
        if ! wait_gone 5 "$pid"; then
            say "nginx: still up 5s after QUIT: TERM"
            stop_pids nginx TERM 10 "$pid"
        fi
        [ ${#kids[@]} -gt 0 ] && stop_pids "nginx workers" KILL 5 "${kids[@]}"
        say "nginx: stopped"
    fi
    nginx_orphans_stop
    rm -f "$RUN/nginx.pid"
}

nginx_reload() {
    local pid old deadline k fresh
    pid=$(pid_of nginx nginx) || die "nginx is not running"
    nginx_conf
    old=" $(children_of "$pid" | tr '\n' ' ') "
    kill -HUP "$pid"
    # reloaded once a worker process appears that was not there before
    deadline=$(( $(now_ms) + 15000 ))
    while :; do
        fresh=0
        for k in $(children_of "$pid"); do
            case "$old" in *" $k "*) ;; *) fresh=1 ;; esac
        done
        [ $fresh = 1 ] && break
        alive "$pid" || { log_tail "$DIR/nginx/logs/error.log"; die "nginx exited on reload"; }
        if [ "$(now_ms)" -ge $deadline ]; then
            log_tail "$DIR/nginx/logs/error.log"
            die "nginx: no new worker 15s after HUP (bad config?)"
        fi
        sleep 0.1
    done
    nginx_note_workers "$pid"
    say "nginx: reloaded"
}
