#!/usr/bin/env bash
#
# t/bench/run.sh: run the chat_bench scenarios against an ngx_chat stack,
# print one table and write bench.json.  `make bench` calls it.
#
# The target, first match wins:
#   BENCH_URL=ws://127.0.0.1:PORT/chat  an already running server (the secret
#                        from BENCH_SECRET or CHAT_JWT_SECRET; CPU is counted
#                        for every nginx/chat_worker/java kafka/redis/postgres
#                        process of the machine, or BENCH_CPU_SCOPE=PID,...)
#   BENCH_STACK_ENV=DIR/stack.env       a stack started by t/stack.sh
#   ./var/stack.env      the stack of `make run`, when its nginx is running
#   otherwise            a stack of our own in a scratch directory on spare
#                        ports, stopped and deleted at the end
#
# Other settings (environment):
#   BENCH_QUICK=1        small sizes for CI, well under a minute of load
#   BENCH_SCENARIOS      default "idle dm group storm"
#   BENCH_JSON           where the combined result goes
#                        (default $CHAT_BUILD_DIR/bench/bench.json)
#   BENCH_ARGS           extra chat_bench options for every scenario
#   BENCH_IDLE_ARGS, BENCH_DM_ARGS, BENCH_GROUP_ARGS, BENCH_STORM_ARGS
#   BENCH_BIN            the chat_bench binary (built here when missing)
#   BENCH_DEFLATE=1      every connection negotiates permessage-deflate: the
#                        target's path /chat becomes /chat-z (chat_deflate on
#                        in conf/nginx.conf.in) and chat_bench gets --deflate
#   BENCH_ALLOW_VIOLATIONS=1  exit 0 even if messages were lost/duplicated
#   CHAT_WORKER_ARGS     options of our own stack's workers, e.g.
#                        "--max-group-members 1024" for BENCH_GROUP_ARGS
#                        "--group-size 1024 --conns 1024 --receipts"
#
# Exit status: 0 when every scenario ran (a skipped scenario or a missed
# performance target is not a failure), 1 when a scenario broke (no
# connection, nothing delivered, a crash) or found lost, duplicated or
# reordered messages.
#
# No sysctl is changed.  The load generator binds every socket to its own
# source address in 127.0.0.0/8 (so net.ipv4.ip_local_port_range is never
# the limit) and raises RLIMIT_NOFILE to the hard limit in each of its
# processes; what the machine has is printed first.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PROG=bench

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

BUILD=${CHAT_BUILD_DIR:-$ROOT/build}
BIN=${BENCH_BIN:-$BUILD/bin/chat_bench}
QUICK=${BENCH_QUICK:-0}
SCENARIOS=${BENCH_SCENARIOS:-idle dm group storm}
OUT=${BENCH_JSON:-$BUILD/bench/bench.json}
# the tool's files (t/bench/bench.h), and the module's token signing
SRCS=("$ROOT/t/bench/chat_bench.c" "$ROOT"/t/bench/bench_*.c
      "$ROOT/ngx_chat_module/ngx_chat_jwt.c"
      "$ROOT/ngx_chat_module/ngx_chat_wire.c")
HDRS=("$ROOT/t/bench/bench.h" "$ROOT/ngx_chat_module/ngx_chat_jwt.h"
      "$ROOT/ngx_chat_module/ngx_chat_wire.h")

case $QUICK in 1|yes|true) QUICK=1 ;; *) QUICK=0 ;; esac

# ------------------------------------------------------------ the tool

stale() {
    local f
    [ -x "$BIN" ] || return 0
    for f in "${SRCS[@]}" "${HDRS[@]}"; do
        [ "$f" -nt "$BIN" ] && return 0
    done
    return 1
}

if stale; then
    mkdir -p "$(dirname "$BIN")"
    say "building $BIN"
    ${CC:-cc} -O2 -g -Wall -Wextra -Werror -std=gnu11 \
        -I"$ROOT/ngx_chat_module" "${SRCS[@]}" -o "$BIN" -ljansson -lcrypto -lz
fi

# ------------------------------------------------------------ the stack

OWN_DIR=""
STACK_DIR=""
URL=""
SECRET=""
SCOPE=${BENCH_CPU_SCOPE:-}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# N free ports below the ephemeral range, distinct
free_ports() {
    local n=$1 got=() p tries=0
    while [ ${#got[@]} -lt "$n" ]; do
        tries=$((tries + 1))
        [ $tries -lt 500 ] || die "no free ports found"
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
        [[ " ${got[*]} " == *" $p "* ]] && continue
        port_busy "$p" && continue
        got+=("$p")
    done
    echo "${got[@]}"
}

stack_scope() {
    local run=$1 f pid scope=""
    shopt -s nullglob
    for f in "$run"/*.pid; do
        pid=$(head -n 1 "$f" 2>/dev/null || true)
        [[ $pid =~ ^[0-9]+$ ]] && scope="${scope:+$scope,}$pid"
    done
    shopt -u nullglob
    echo "$scope"
}

use_stack_env() {
    local env=$1
    [ -s "$env" ] || die "$env: no such stack.env"
    # shellcheck disable=SC1090
    source "$env"
    URL=$CHAT_URL
    SECRET=$CHAT_JWT_SECRET
    STACK_DIR=$CHAT_DIR
    [ -n "$SCOPE" ] || SCOPE=$(stack_scope "$CHAT_RUN_DIR")
}

stop_own() {
    if [ -n "$OWN_DIR" ] && [ -d "$OWN_DIR" ]; then
        say "stopping the stack in $OWN_DIR"
        "$ROOT/t/stack.sh" destroy "$OWN_DIR" >&2 || "$ROOT/t/stack.sh" stop "$OWN_DIR" >&2 || true
        rm -rf "$OWN_DIR"
        OWN_DIR=""
    fi
}

if [ -n "${BENCH_URL:-}" ]; then
    URL=$BENCH_URL
    SECRET=${BENCH_SECRET:-${CHAT_JWT_SECRET:-}}
    [ -n "$SECRET" ] || die "BENCH_URL given: set BENCH_SECRET or CHAT_JWT_SECRET too"
    say "target: $URL (given)"
elif [ -n "${BENCH_STACK_ENV:-}" ]; then
    use_stack_env "$BENCH_STACK_ENV"
    say "target: $URL (stack in $STACK_DIR)"
elif [ -s "$ROOT/var/stack.env" ] \
     && pid=$(head -n 1 "$ROOT/var/run/nginx.pid" 2>/dev/null) \
     && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    use_stack_env "$ROOT/var/stack.env"
    say "target: $URL (the stack of make run in $ROOT/var)"
else
    [ "$(id -u)" = 0 ] || die "starting a stack needs root (or give BENCH_URL)"
    OWN_DIR=$(mktemp -d /tmp/ngx_chat_bench.XXXXXX)
    chmod 755 "$OWN_DIR"
    trap 'stop_own' EXIT
    trap 'exit 130' INT TERM
    read -r P1 P2 P3 P4 P5 P6 <<<"$(free_ports 6)"
    say "starting a stack in $OWN_DIR (chat $P1, redis $P3, pg $P4, kafka $P5)"
    if ! CHAT_PORT=$P1 CHAT_TLS_PORT=$P2 REDIS_PORT=$P3 PG_PORT=$P4 \
         KAFKA_PORT=$P5 KAFKA_CTRL_PORT=$P6 CHAT_BUILD_DIR=$BUILD \
         "$ROOT/t/stack.sh" start "$OWN_DIR" >"$OWN_DIR/start.log" 2>&1; then
        tail -n 40 "$OWN_DIR/start.log" >&2
        die "the stack did not start (log above)"
    fi
    use_stack_env "$OWN_DIR/stack.env"
    say "target: $URL (own stack)"
fi

# ------------------------------------------------------------ the machine

nofile_hard=$(ulimit -Hn)
say "machine: $(nproc) cpus, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)," \
    "fd hard limit $nofile_hard, ip_local_port_range $(tr '\t' '-' < /proc/sys/net/ipv4/ip_local_port_range)," \
    "somaxconn $(cat /proc/sys/net/core/somaxconn) (no sysctl is changed)"

# ------------------------------------------------------------ scenarios

mkdir -p "$(dirname "$OUT")"
RES_DIR=$(dirname "$OUT")/results
mkdir -p "$RES_DIR"

if [ "${BENCH_DEFLATE:-0}" = 1 ]; then
    case $URL in */chat) URL=${URL}-z ;; esac
    say "permessage-deflate: $URL"
fi

common=(--url "$URL")
[ "${BENCH_DEFLATE:-0}" = 1 ] && common+=(--deflate)
[ "$QUICK" = 1 ] && common+=(--quick)
[ -n "$SCOPE" ] && common+=(--cpu-scope "$SCOPE")
# shellcheck disable=SC2206
extra=(${BENCH_ARGS:-})

files=()
failed=""
violated=""
t_all=$SECONDS
for sc in $SCENARIOS; do
    case $sc in
        idle)  # shellcheck disable=SC2206
               sargs=(${BENCH_IDLE_ARGS:-}) ;;
        dm)    # shellcheck disable=SC2206
               sargs=(${BENCH_DM_ARGS:-}) ;;
        group) # shellcheck disable=SC2206
               sargs=(${BENCH_GROUP_ARGS:-}) ;;
        storm) # shellcheck disable=SC2206
               sargs=(${BENCH_STORM_ARGS:-}) ;;
        *) die "BENCH_SCENARIOS: unknown scenario '$sc' (idle dm group storm)" ;;
    esac
    f=$RES_DIR/$sc.json
    rm -f "$f"
    t0=$SECONDS
    say "== $sc"
    set +e
    if [ "$QUICK" = 1 ]; then
        # a benchmark must not hang CI: the tool has its own deadlines,
        # this is the last resort
        CHAT_JWT_SECRET=$SECRET timeout -k 10 180 "$BIN" --scenario "$sc" \
            "${common[@]}" "${extra[@]}" "${sargs[@]}" --json "$f" >/dev/null
    else
        CHAT_JWT_SECRET=$SECRET "$BIN" --scenario "$sc" \
            "${common[@]}" "${extra[@]}" "${sargs[@]}" --json "$f" >/dev/null
    fi
    rc=$?
    set -e
    say "$sc: exit $rc after $((SECONDS - t0)) s"
    case $rc in
        0) ;;
        3) violated="$violated $sc" ;;
        *) failed="$failed $sc" ;;
    esac
    if [ ! -s "$f" ]; then
        printf '{"scenario":"%s","status":"failed","reason":"chat_bench exited %d without a result"}\n' \
            "$sc" "$rc" > "$f"
    fi
    files+=("$f")
    # let the kernel and nginx finish closing the last scenario's sockets
    [ "$QUICK" = 1 ] || sleep 3
done

echo
echo "ngx_chat benchmark ($( [ "$QUICK" = 1 ] && echo quick || echo full ), $(date -u +%Y-%m-%dT%H:%M:%SZ), $URL)"
"$BIN" --report --json "$OUT" ${BENCH_LABEL:+--label "$BENCH_LABEL"} "${files[@]}" || true
echo
say "wrote $OUT (per scenario: $RES_DIR/) in $((SECONDS - t_all)) s"

stop_own

rc=0
if [ -n "$failed" ]; then
    say "FAILED:$failed (the tool or the stack is broken: see above)"
    rc=1
fi
if [ -n "$violated" ]; then
    say "INTEGRITY VIOLATED:$violated (messages lost, duplicated or out of order)"
    [ "${BENCH_ALLOW_VIOLATIONS:-0}" = 1 ] || rc=1
fi
exit $rc
