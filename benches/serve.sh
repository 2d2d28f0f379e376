#!/usr/bin/env bash
# Rows per second of one SELECT through `dvsql serve` (psql, psycopg) against the same query in
# dvsql itself, all against one `dvsql simulate` (BENCHMARKS.md: "Serve: rows per second").
#
#   benches/serve.sh [ROWS] [DVSQL]      defaults: 200000 accounts, target/release/dvsql
#
# Prints one line per client: rows, seconds, rows/s (best of RUNS=3 runs each). Needs psql and
# python3 with psycopg (`python3 -m pip install 'psycopg[binary]'`).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${1:-200000}
DVSQL=${2:-target/release/dvsql}
RUNS=${RUNS:-3}
QUERY=${QUERY:-"SELECT accountid, name, revenue, createdon, numberofemployees FROM account"}

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$DVSQL" simulate --rows "$ROWS" --write-config "$work/sim.json" >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [ -s "$work/sim.json" ] && grep -q "Wrote" "$work/sim.log" && break; sleep 0.1; done

"$DVSQL" serve --config "$work/sim.json" --listen 127.0.0.1:0 --state-dir "$work/state" \
    >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do grep -q "listening on" "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/serve.log" | head -1)
[ -n "$port" ] || { echo "dvsql serve did not start:"; cat "$work/serve.log"; exit 1; }

# Best wall time of RUNS runs of "$@" (stdout discarded), in seconds.
best() {
    local best_s=""
    for _ in $(seq "$RUNS"); do
        local start end s
        start=$(date +%s.%N)
        "$@" >/dev/null
        end=$(date +%s.%N)
        s=$(echo "$end - $start" | bc -l)
        if [ -z "$best_s" ] || [ "$(echo "$s < $best_s" | bc -l)" = 1 ]; then best_s=$s; fi
    done
    echo "$best_s"
}

report() {
    local name=$1 seconds=$2
    printf '%-28s %8d rows %8.2f s %10.0f rows/s\n' "$name" "$ROWS" "$seconds" \
        "$(echo "$ROWS / $seconds" | bc -l)"
}

count=$("$DVSQL" --config "$work/sim.json" --state-dir "$work/state" -q -t --format csv \
    -c "SELECT count(*) FROM ($QUERY)")
[ "$count" = "$ROWS" ] || { echo "expected $ROWS rows, the query has $count"; exit 1; }

report "dvsql -c (csv to /dev/null)" "$(best "$DVSQL" --config "$work/sim.json" \
    --state-dir "$work/state" -q -t --format csv -c "$QUERY")"
report "psql (unaligned)" "$(best env PGSSLMODE=disable psql -X -At -h 127.0.0.1 -p "$port" \
    -U dvsql -d dvsql -c "$QUERY")"
report "psql COPY TO STDOUT" "$(best env PGSSLMODE=disable psql -X -At -h 127.0.0.1 -p "$port" \
    -U dvsql -d dvsql -c "COPY ($QUERY) TO STDOUT")"
report "psycopg (fetch all)" "$(best python3 -c "
import psycopg, sys
with psycopg.connect(host='127.0.0.1', port=$port, user='dvsql', dbname='dvsql', sslmode='disable') as c:
    n = sum(1 for _ in c.execute(sys.argv[1]))
assert n == $ROWS, n
" "$QUERY")"
