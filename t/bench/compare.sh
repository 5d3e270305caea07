#!/usr/bin/env bash
#
# t/bench/compare.sh [dm|fanout|idle|all]: ngx_chat and Centrifugo (its
# memory engine, built from the Go module proxy by the shared setup) on the
# same load driver, with the same settings, one after the other in one
# run, and the side-by-side table with ratios for each scenario.
#
# Both sides use ../shared/bench (its README); their settings come from the
# environment it reads (DM_RATES, FAN_RATES, DURATION, PAIRS, ...), so one
# run measures both alike. The tables go to build/bench/compare-<sc>.txt.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${CHAT_SHARED:-$ROOT/../shared}
BENCH=$SHARED/bench
RUN=${ANCHORS_RUN:-/tmp/anchors-run}
OUT=$ROOT/build/bench
SCENARIOS=${1:-all}
[ "$SCENARIOS" = all ] && SCENARIOS="dm fanout idle"

[ -d "$BENCH/driver" ] || { echo "compare: no $BENCH/driver" >&2; exit 1; }
mkdir -p "$OUT"

# the newest result file of one side and scenario
newest() {
    ls -t "$RUN"/results/"$1"-"$2"-*.json 2>/dev/null | head -n 1
}

for sc in $SCENARIOS; do
    case $sc in dm|fanout|idle) ;; *) echo "compare: unknown $sc" >&2; exit 2 ;; esac

    # ngx_chat counts a group's creator among its members: 255 + 1 is
    # Centrifugo's 256 subscribers
    FAN_MEMBERS=${FAN_MEMBERS_NGX:-255} PROJECT_DIR=$ROOT \
        "$BENCH/ngx_chat/bench.sh" "$sc"
    ours=$(newest ngx_chat "$sc")

    "$BENCH/centrifugo/bench.sh" memory "$sc"
    theirs=$(newest centrifugo-memory "$sc")

    if [ -z "$ours" ] || [ -z "$theirs" ]; then
        echo "compare: a $sc result is missing (ngx_chat: ${ours:-none}," \
             "centrifugo: ${theirs:-none})" >&2
        exit 1
    fi

    node "$BENCH/driver/compare.js" "$theirs" "$ours" --p99-ms "${P99_MS:-100}" \
        | tee "$OUT/compare-$sc.txt"
done
