#!/usr/bin/env bash
#
# t/bench/insert_cost.sh [DIR]: t/bench/insert_cost.sql against the
# PostgreSQL of a started stack DIR (its stack.env), or of a stack of its
# own with only PostgreSQL, started in a scratch directory and destroyed
# after. Prints microseconds per row of the send path's messages INSERT,
# as deployed, with the search vector and its index in the row (as before
# sql/044), and without the index by Kafka position; then what indexing a
# row for search costs after the commit. Start it under the stack lock
# like any stack.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OWN=""

if [ $# -ge 1 ]; then
    DIR=$1
else
    OWN=$(mktemp -d /tmp/ngx_chat_insert_cost.XXXXXX)
    chmod 755 "$OWN"
    DIR=$OWN
    trap '"$ROOT/t/stack.sh" destroy "$OWN" >/dev/null 2>&1 || true' EXIT
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
    CHAT_PORT=$port CHAT_TLS_PORT=$((port + 1)) REDIS_PORT=$((port + 2)) \
    PG_PORT=$((port + 3)) KAFKA_PORT=$((port + 4)) \
    KAFKA_CTRL_PORT=$((port + 5)) STACK_SKIP="nginx worker pusher kafka redis" \
        "$ROOT/t/stack.sh" start "$DIR" > "$DIR/start.log" 2>&1 \
        || { tail -n 20 "$DIR/start.log" >&2; exit 1; }
fi

# shellcheck disable=SC1091
source "$DIR/stack.env"
psql -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d chat \
    -f "$ROOT/t/bench/insert_cost.sql"
