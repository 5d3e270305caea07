# t/stack/run.sh: `t/stack.sh run DIR` (sourced), what `make run` does:
# start the stack, keep it up, stop it on Ctrl-C.
#
# Every second the loop looks at each component (by its pid file, without
# forking) and restarts one that died, saying so in one line that names it
# and how it ended; one that keeps dying is restarted less and less often.
# A component stopped through t/stack.sh (redis-stop, worker-kill, ...)
# is marked down and left alone until started again; when all are, the
# run ends.
#
# SIGINT, SIGTERM and SIGHUP stop everything, whatever stdout is: SIGPIPE
# is ignored for the whole run (`make run | tee log` loses its reader on
# Ctrl-C, and so may any pipe), every message goes to DIR/log/stack.log
# as well, none can fail, and the stop runs without errexit, each step
# whatever the one before did.  Any other way out of the run stops
# everything too.

RUN_STOPPED=0
RUN_STOPPING=0
TRY_PID=""

# per component: the pid last seen alive, the last death told, when to
# try the next restart, the delay before it, when the last one began
declare -A SUP_PID=() SUP_DEAD=() SUP_NEXT=() SUP_DELAY=() SUP_SINCE=()

run_foreground() {
    trap '' PIPE
    trap 'run_signal INT' INT
    trap 'run_signal TERM' TERM
    trap 'run_signal HUP' HUP
    trap 'run_exit' EXIT
    start_all
    run_banner
    supervise
}

run_banner() {
    local secret_hint="CHAT_JWT_SECRET=\$(cat $DIR/jwt_secret)" u
    out "" \
        "  ngx_chat is up." \
        "    WebSocket:   ws://127.0.0.1:$CHAT_PORT/chat" \
        "    over TLS:    wss://127.0.0.1:$CHAT_TLS_PORT/chat   (self-signed: $DIR/nginx/cert.pem)"
    if grep -q 'location *= */echo' "$DIR/nginx/nginx.conf" 2>/dev/null; then
        out "    echo:        ws://127.0.0.1:$CHAT_PORT/echo"
    fi
    for u in alice bob; do
        out "    web, as $u: http://127.0.0.1:$CHAT_PORT/app/web/#token=$(CHAT_JWT_SECRET=$CHAT_JWT_SECRET "$CHATCTL_BIN" token $u --device web 2>/dev/null || true)"
    done
    out "    a token:     $secret_hint \\" \
        "                   $CHATCTL_BIN token alice --device phone" \
        "    then send it as 'Authorization: Bearer <token>' or ?access_token=<token>" \
        "    logs:        $LOG/  (nginx: $DIR/nginx/logs/error.log, this: $LOG/stack.log)" \
        "    state:       $DIR   (kept across runs)" \
        "" \
        "  A component that dies is restarted; Ctrl-C stops everything." \
        ""
}

# the components to watch: those started, and any worker started since
supervised() {
    local name f i
    SUPERVISED=()
    for name in pg redis kafka worker pusher nginx; do
        skipped "$name" && continue
        if [ "$name" = worker ]; then
            for (( i = 1; i <= CHAT_WORKERS; i++ )); do
                SUPERVISED+=("worker$i")
            done
            for f in "$RUN"/worker[0-9]*.pid; do
                [ -e "$f" ] || continue
                f=${f##*/}
                [[ " ${SUPERVISED[*]} " == *" ${f%.pid} "* ]] \
                    || SUPERVISED+=("${f%.pid}")
            done
        else
            SUPERVISED+=("$name")
        fi
    done
}

# the text in a component's command line that tells it from a reused pid
marker_of() {
    case $1 in
        pg)      MARKER=postgres ;;
        redis)   MARKER=redis-server ;;
        kafka)   MARKER=kafka.Kafka ;;
        nginx)   MARKER=nginx ;;
        worker*) MARKER=chat_worker ;;
        pusher)  MARKER=chat_pusher ;;
    esac
}

supervise() {
    local tick
    # a FIFO opened read-write never has data nor EOF: a sleep without a
    # process, and one that a signal ends at once
    tick=$RUN/.tick.$$
    rm -f "$tick"
    mkfifo "$tick"
    exec {TICK_FD}<>"$tick"
    rm -f "$tick"
    while :; do
        read -r -t 1 -u "$TICK_FD" _ || true
        supervise_once
    done
}

supervise_once() {
    local name up=0
    supervised
    for name in "${SUPERVISED[@]}"; do
        marker_of "$name"
        if find_pid "$name" "$MARKER"; then
            SUP_PID[$name]=$FOUND_PID
            up=1
            continue
        fi
        if is_down "$name"; then
            unset "SUP_PID[$name]"
            continue
        fi
        up=1
        component_died "$name"
    done
    if [ $up = 0 ]; then
        say "every component was stopped through $PROG: the run ends"
        RUN_STOPPED=1
        exit 0
    fi
}

# component_died NAME: say so the first time, restart it when it is time
component_died() {
    local name=$1 pid=${SUP_PID[$1]:-} now=$EPOCHSECONDS delay
    if [ -z "$pid" ]; then
        # dead before the loop first saw it: its pid file still names it
        read -r pid 2>/dev/null < "$RUN/$name.pid" || true
    fi
    unset "SUP_PID[$name]"
    if [ -n "$pid" ] && [ "$pid" != "${SUP_DEAD[$name]:-}" ]; then
        SUP_DEAD[$name]=$pid
        exit_text "$pid"
        # one that dies soon after its start waits twice as long as before
        delay=0
        if [ $(( now - ${SUP_SINCE[$name]:-0} )) -lt 30 ]; then
            delay=$(( ${SUP_DELAY[$name]:-0} * 2 ))
            [ $delay -gt 0 ] || delay=1
            [ $delay -le 60 ] || delay=60
        fi
        SUP_DELAY[$name]=$delay
        SUP_NEXT[$name]=$(( now + delay ))
        if [ $delay -gt 0 ]; then
            say "$name exited ($EXIT_TEXT): restarting in $delay s"
        else
            say "$name exited ($EXIT_TEXT): restarting"
        fi
    fi
    [ "$now" -ge "${SUP_NEXT[$name]:-0}" ] || return 0
    SUP_SINCE[$name]=$now
    restart_component "$name"
    if [ "$RESTART_RC" != 0 ]; then
        delay=$(( ${SUP_DELAY[$name]:-0} * 2 ))
        [ $delay -gt 0 ] || delay=2
        [ $delay -le 60 ] || delay=60
        SUP_DELAY[$name]=$delay
        SUP_NEXT[$name]=$(( now + delay ))
        say "$name: restart failed (see $LOG/$name.log): next try in $delay s"
    fi
}

# restart_component NAME: RESTART_RC 0 once it runs again.  What may die
# runs in try; the launch itself in this shell, so that the new process is
# its child and its exit status can be told next time.
restart_component() {
    local name=$1
    RESTART_RC=1
    START_T0=$(now_ms)
    case $name in
        pg)
            try pg_start
            RESTART_RC=$TRY_RC
            ;;
        worker*)
            try worker_prepare
            if [ "$TRY_RC" = 0 ]; then
                worker_launch "${name#worker}"
                try workers_ready "$LOG/$name.log" "$BG_PID"
                RESTART_RC=$TRY_RC
            fi
            ;;
        pusher)
            try pusher_prepare
            if [ "$TRY_RC" = 0 ]; then
                pusher_launch
                try pusher_ready_wait
                RESTART_RC=$TRY_RC
            fi
            ;;
        redis|kafka|nginx)
            try "${name}_prepare"
            if [ "$TRY_RC" = 0 ]; then
                "${name}_launch"
                case $name in
                    redis) try redis_ready ;;
                    kafka) try kafka_ready_wait ;;
                    nginx) try nginx_ready_wait ;;
                esac
                RESTART_RC=$TRY_RC
            fi
            ;;
    esac
}

# SIGINT, SIGTERM, SIGHUP: stop everything, whatever fails or cannot be said
run_signal() {
    [ "$RUN_STOPPING" = 1 ] && return 0
    RUN_STOPPING=1
    set +e
    trap '' PIPE INT TERM HUP
    [ -n "$TRY_PID" ] && kill "$TRY_PID" 2>/dev/null
    out ""
    say "SIG$1: stopping..."
    stop_all
    say "stopped"
    RUN_STOPPED=1
    exit 0
}

# leaving any other way (an error, the end of a failed start): stop too,
# unless STACK_KEEP_ON_FAIL=1 asks to keep a failed start for a look
run_exit() {
    local rc=$?
    [ "$RUN_STOPPED" = 1 ] && return 0
    RUN_STOPPED=1
    set +e
    trap '' PIPE INT TERM HUP
    [ -n "$TRY_PID" ] && kill "$TRY_PID" 2>/dev/null
    if [ "$rc" != 0 ] && [ -n "${STACK_KEEP_ON_FAIL:-}" ]; then
        say "exit $rc: STACK_KEEP_ON_FAIL is set, leaving the stack as it is"
        return 0
    fi
    say "exit $rc: stopping everything"
    stop_all
}
