# t/stack/common.sh: helpers of t/stack.sh (sourced): messages, processes
# by pid file, waiting, ports, templates.

# Messages go to stdout and, once DIR is known, to DIR/log/stack.log too.
# One that cannot be written (stdout a pipe whose reader is gone) is lost,
# never fatal: `run` has SIGPIPE ignored, and its stop must run to the end.

stack_log() {
    [ -n "${LOG:-}" ] && [ -d "$LOG" ] || return 0
    printf '%(%Y-%m-%d %H:%M:%S)T %s: %s\n' -1 "$PROG" "$*" \
        >> "$LOG/stack.log" 2>/dev/null || true
}

say() {
    printf '%s: %s\n' "$PROG" "$*" 2>/dev/null || true
    stack_log "$*"
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2 2>/dev/null || true
    stack_log "error: $*"
    exit 1
}

# out LINE...: lines for the terminal (and the log), no prefix
out() {
    local l
    for l in "$@"; do
        printf '%s\n' "$l" 2>/dev/null || true
        stack_log "$l"
    done
}

now_ms() {
    local t=${EPOCHREALTIME:-}
    if [ -n "$t" ]; then
        t=${t/[.,]/}
        echo $(( t / 1000 ))
    else
        t=$(date +%s%N)
        echo $(( t / 1000000 ))
    fi
}

T0=$(now_ms)

elapsed() { local t; t=$(now_ms); printf '%d.%03ds' $(( (t - T0) / 1000 )) $(( (t - T0) % 1000 )); }

# alive PID: the process exists and is not a zombie (no fork: `run` asks
# every second)
alive() {
    local pid=$1 stat=""
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    read -r stat 2>/dev/null < "/proc/$pid/stat" || [ -n "$stat" ] || return 1
    stat=${stat##*) }
    [ -n "$stat" ] && [ "${stat%% *}" != Z ]
}

# find_pid NAME [MARKER]: FOUND_PID is the pid in DIR/run/NAME.pid if that
# process still runs and its command line contains the component's marker
# (guards against reuse); no fork
find_pid() {
    local f="$RUN/$1.pid" pid="" args=()
    FOUND_PID=""
    [ -s "$f" ] || return 1
    read -r pid 2>/dev/null < "$f" || [ -n "$pid" ] || return 1
    alive "$pid" || return 1
    if [ -n "${2:-}" ]; then
        mapfile -d '' args 2>/dev/null < "/proc/$pid/cmdline" || return 1
        [[ " ${args[*]} " == *"$2"* ]] || return 1
    fi
    FOUND_PID=$pid
}

# pid_of NAME [MARKER]: the same, printed
pid_of() {
    find_pid "$@" || return 1
    echo "$FOUND_PID"
}

children_of() {
    local parent=$1 f stat rest
    for f in /proc/[0-9]*/stat; do
        stat=""
        read -r stat 2>/dev/null < "$f" || [ -n "$stat" ] || continue
        rest=${stat##*) }          # "S PPID ..."
        rest=${rest#* }
        [ "${rest%% *}" = "$parent" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
    return 0
}

# wait_gone TIMEOUT PID...: 0 when all are gone in time
wait_gone() {
    local timeout=$1 deadline p left; shift
    deadline=$(( $(now_ms) + timeout * 1000 ))
    while :; do
        left=0
        for p in "$@"; do alive "$p" && left=1; done
        [ $left = 0 ] && return 0
        [ "$(now_ms)" -ge $deadline ] && return 1
        sleep 0.1
    done
}

# stop_pids NAME SIG TIMEOUT PID...: send SIG, wait, then SIGKILL
stop_pids() {
    local name=$1 sig=$2 timeout=$3; shift 3
    [ $# -gt 0 ] || return 0
    kill "-$sig" "$@" 2>/dev/null || true
    if ! wait_gone "$timeout" "$@"; then
        say "$name did not exit ${timeout}s after SIG$sig: SIGKILL"
        kill -KILL "$@" 2>/dev/null || true
        wait_gone 10 "$@" || say "$name still there after SIGKILL"
    fi
}

log_tail() {
    local f
    for f in "$@"; do
        [ -s "$f" ] || continue
        printf -- '----- last lines of %s -----\n' "$f" >&2 2>/dev/null || true
        tail -n 40 "$f" >&2 2>/dev/null || true
    done
}

# wait_ready NAME PID TIMEOUT "LOGS" CMD...: poll CMD until it succeeds
wait_ready() {
    local name=$1 pid=$2 timeout=$3 logs=$4 deadline; shift 4
    deadline=$(( $(now_ms) + timeout * 1000 ))
    until "$@" >/dev/null 2>&1; do
        if [ -n "$pid" ] && ! alive "$pid"; then
            # shellcheck disable=SC2086
            log_tail $logs
            die "$name exited during startup (logs: $logs)"
        fi
        if [ "$(now_ms)" -ge $deadline ]; then
            # shellcheck disable=SC2086
            log_tail $logs
            die "$name not ready after ${timeout}s (logs: $logs)"
        fi
        sleep 0.1
    done
}

# port_busy PORT: some socket listens on PORT (any address, IPv4 or IPv6);
# read from /proc so that probing makes no connection
port_busy() {
    local hex
    hex=$(printf '%04X' "$1")
    grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:[0-9A-F]+ 0A " \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# spare_ports N: N distinct ports between 20000 and 59999 that nothing
# listens on now
spare_ports() {
    local n=$1 port picked=" "
    while [ "$n" -gt 0 ]; do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        port_busy "$port" && continue
        case $picked in *" $port "*) continue ;; esac
        picked="$picked$port "
        n=$(( n - 1 ))
    done
    echo $picked
}

need_free_port() {
    local name=$1 port=$2
    if port_busy "$port"; then
        die "$name: port $port on 127.0.0.1 is already in use; stop what uses it or set ${3:-a different port}"
    fi
}

skipped() { case " $STACK_SKIP " in *" $1 "*) return 0 ;; esac; return 1; }

# start_bg NAME LOG CMD...: CMD in its own session (a terminal's Ctrl-C
# reaches only this script, which then stops everything in order), stdin
# from /dev/null, output to LOG, SIGPIPE as usual even when `run` ignores
# it; pid into DIR/run/NAME.pid and BG_PID.  CHILDREN remembers the pids
# this shell started: only their exit status can be known.
declare -A CHILDREN=()

start_bg() {
    local name=$1 logf=$2; shift 2
    ( trap - PIPE; exec setsid "$@" ) >>"$logf" 2>&1 </dev/null &
    BG_PID=$!
    echo "$BG_PID" > "$RUN/$name.pid"
    CHILDREN[$BG_PID]=$name
}

# exit_text PID: EXIT_TEXT says how that process, gone, ended
exit_text() {
    local rc=0
    if [ -z "${CHILDREN[$1]:-}" ]; then
        EXIT_TEXT="pid $1; not started by this shell, its status is unknown"
        return 0
    fi
    unset "CHILDREN[$1]"
    wait "$1" 2>/dev/null || rc=$?
    if [ "$rc" -gt 128 ]; then
        EXIT_TEXT="pid $1 killed by SIG$(kill -l $(( rc - 128 )))"
    else
        EXIT_TEXT="pid $1 exit $rc"
    fi
}

# A component stopped through this script is marked down (DIR/run/NAME.down)
# until it is started again: `run` restarts only what died by itself.
mark_down() { [ ! -d "${RUN:-}" ] || : > "$RUN/$1.down"; }
mark_up() { rm -f "${RUN:-/nonexistent}/$1.down"; }
is_down() { [ -e "$RUN/$1.down" ]; }

# try CMD...: CMD in a subshell with errexit as everywhere else, so that a
# die there ends only the subshell; its status in TRY_RC.  In the
# background and waited for, so that a signal to this shell is handled at
# once.  Call it as a plain command: in a condition errexit would be off
# inside it too.
try() {
    set +e
    ( set -e; "$@" ) &
    TRY_PID=$!
    wait "$TRY_PID"
    TRY_RC=$?
    TRY_PID=""
    set -e
}

# env value printed so that `source` and a KEY=VALUE reader both work
env_line() {
    if [[ $2 =~ ^[A-Za-z0-9_./:@,+=%-]*$ ]]; then
        printf '%s=%s\n' "$1" "$2"
    else
        printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"
    fi
}

# fill_template TEMPLATE OUT [NAME=VALUE...]: TEMPLATE with each @NAME@
# replaced by VALUE (taken literally), written to OUT whole or not at all;
# a placeholder left unfilled is an error
fill_template() {
    local tmpl=$1 out=$2 arg value args=(-e ''); shift 2
    [ -f "$tmpl" ] || die "$tmpl missing"
    for arg in "$@"; do
        value=${arg#*=}
        value=${value//\\/\\\\}
        value=${value//|/\\|}
        value=${value//&/\\&}
        args+=(-e "s|@${arg%%=*}@|$value|g")
    done
    sed "${args[@]}" "$tmpl" > "$out.tmp"
    if grep -q '@[A-Z_]*@' "$out.tmp"; then
        die "unknown placeholder in $tmpl: $(grep -o '@[A-Z_]*@' "$out.tmp" | sort -u | tr '\n' ' ')"
    fi
    mv "$out.tmp" "$out"
}
