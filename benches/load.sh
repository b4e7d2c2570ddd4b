#!/usr/bin/env bash
# Reproduces the load figures of BENCHMARKS.md with the project's own tools: for each run it
# starts a fresh release server on loopback, drives it with natter-load, stops it (by PID) and
# keeps natter-load's machine-readable summary line; then prints the median of each figure.
#
#   benches/load.sh [idle|fanout|churn|all]     (RUNS=3 PORT=7777 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
port=${PORT:-7777}
what=${1:-all}
out=$(mktemp -d)

cargo build --release --workspace --quiet
server=target/release/natter
load=target/release/natter-load

# run_scenario NAME KEYS... -- natter-load arguments
run_scenario() {
    local name=$1
    shift
    local keys=()
    while [ "$1" != "--" ]; do
        keys+=("$1")
        shift
    done
    shift
    for i in $(seq "$runs"); do
        "$server" --listen "127.0.0.1:$port" --rate 0 --max-per-ip 0 2>/dev/null &
        local pid=$!
        # Wait until the server accepts connections (bounded).
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.05
        done
        "$load" "$@" --addr "127.0.0.1:$port" --pid "$pid" --sources 8 \
            | grep '^natter-load-result' | tee -a "$out/$name" || true
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
    echo "== $name: medians of $runs runs"
    for key in "${keys[@]}"; do
        grep -o " $key=[0-9.]*" "$out/$name" | cut -d= -f2 | sort -n |
            awk -v k="$key" '{v[NR]=$1} END {if (NR) printf "   %-22s %s\n", k, v[int((NR+1)/2)]}'
    done
}

if [ "$what" = idle ] || [ "$what" = all ]; then
    run_scenario idle anon_per_conn_b rss_per_conn_b rss_before_kb cpu_ticks cpu_ns logins_per_s -- \
        idle -n 10000 --idle-secs 10
fi
if [ "$what" = fanout ] || [ "$what" = all ]; then
    run_scenario fanout cpu_ns_per_delivery deliveries_per_s p50_us p99_us lost out_of_order -- \
        fanout -r 1000 -s 4 -m 200
fi
if [ "$what" = churn ] || [ "$what" = all ]; then
    run_scenario churn cycles_per_s fds_diff rss_diff_kb -- churn -n 5000
fi
rm -rf "$out"
