#!/usr/bin/env bash
# Reproduces the load figures of BENCHMARKS.md with the project's own tools: for each run it
# starts a fresh release server on loopback, drives it with natter-load, stops it (by PID) and
# keeps natter-load's machine-readable summary line; then prints the median of each figure.
#
#   benches/load.sh [idle|prompt|broadcast|fanout|churn|all]   (RUNS=3 PORT=7777 by default)
#   benches/load.sh compare                     natter vs ngircd, same load, same run
#
# `compare` runs the fanout scenario (1,000 receivers, 4 senders, M=COMPARE_M messages each,
# default 2000) against natter and against ngircd (NGIRCD=/usr/sbin/ngircd, configured by
# benches/ngircd.conf) alternately, RUNS times each, a fresh server per run, and prints both
# medians and the ratio natter/ngircd of the server CPU per delivery.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
port=${PORT:-7777}
what=${1:-all}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cargo build --release --workspace --quiet
server=target/release/natter
load=target/release/natter-load
ngircd=${NGIRCD:-/usr/sbin/ngircd}
pid=

# Waits until the server accepts connections (bounded: 5 s).
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "load.sh: no server listening on 127.0.0.1:$port after 5 s" >&2
    return 1
}

start_natter() {
    "$server" --listen "127.0.0.1:$port" --rate 0 --max-per-ip 0 2>/dev/null &
    pid=$!
    wait_port
}

start_ngircd() {
    sed "s/^Ports = .*/Ports = $port/" benches/ngircd.conf >"$out/ngircd.conf"
    "$ngircd" -n -f "$out/ngircd.conf" >"$out/ngircd.log" 2>&1 &
    pid=$!
    wait_port
}

stop_server() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

# run_once FILE natter-load arguments: one run against the server started last, its summary
# line appended to FILE.
run_once() {
    local file=$1
    shift
    "$load" "$@" --addr "127.0.0.1:$port" --pid "$pid" --sources 8 |
        grep '^natter-load-result' | tee -a "$file" || true
}

# median FILE KEY: the median of KEY's values in FILE's summary lines.
median() {
    grep -o " $2=[0-9.]*" "$1" | cut -d= -f2 | sort -n |
        awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'
}

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
    for _ in $(seq "$runs"); do
        start_natter
        run_once "$out/$name" "$@"
        stop_server
    done
    echo "== $name: medians of $runs runs"
    for key in "${keys[@]}"; do
        printf "   %-22s %s\n" "$key" "$(median "$out/$name" "$key")"
    done
}

compare() {
    local m=${COMPARE_M:-2000}
    local args=(fanout -r 1000 -s 4 -m "$m")
    for _ in $(seq "$runs"); do
        start_natter
        run_once "$out/natter" "${args[@]}"
        stop_server
        start_ngircd
        run_once "$out/ngircd" "${args[@]}" --proto irc --irc-oper natterload:natterload
        stop_server
    done
    echo "== compare: ${args[*]}, $runs runs each, alternating"
    for key in cpu_ns_per_delivery deliveries_per_s secs p50_us last_delivery_us lost out_of_order; do
        printf "   %-22s natter %-12s ngircd %s\n" "$key" \
            "$(median "$out/natter" "$key")" "$(median "$out/ngircd" "$key")"
    done
    local a b
    a=$(median "$out/natter" cpu_ns_per_delivery)
    b=$(median "$out/ngircd" cpu_ns_per_delivery)
    if [ -n "$a" ] && [ -n "$b" ]; then
        awk -v a="$a" -v b="$b" 'BEGIN {printf "   CPU per delivery, natter/ngircd: %.2f\n", a / b}'
    else
        echo "   CPU per delivery, natter/ngircd: no figure (a run failed, see above)"
    fi
}

if [ "$what" = idle ] || [ "$what" = all ]; then
    run_scenario idle anon_per_conn_b rss_per_conn_b rss_before_kb cpu_ticks cpu_ns logins_per_s -- \
        idle -n 10000 --idle-secs 10
fi
if [ "$what" = prompt ] || [ "$what" = all ]; then
    run_scenario prompt anon_per_conn_b rss_per_conn_b cpu_ticks -- \
        idle -n 10000 --idle-secs 10 --at-prompt
fi
if [ "$what" = broadcast ] || [ "$what" = all ]; then
    run_scenario broadcast last_delivery_us last_delivery_max_us lost -- \
        fanout -r 10000 -s 1 -m 1 --room default
fi
if [ "$what" = fanout ] || [ "$what" = all ]; then
    run_scenario fanout cpu_ns_per_delivery deliveries_per_s p50_us p99_us lost out_of_order -- \
        fanout -r 1000 -s 4 -m 200
fi
if [ "$what" = churn ] || [ "$what" = all ]; then
    run_scenario churn cycles_per_s fds_diff rss_diff_kb -- churn -n 5000
fi
if [ "$what" = compare ]; then
    compare
fi
