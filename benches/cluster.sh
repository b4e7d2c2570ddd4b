#!/usr/bin/env bash
# Reproduces the cluster figures of BENCHMARKS.md: for each run it starts a fresh redis-server
# (no persistence) and fresh release nodes on loopback, drives them with natter-load, stops
# everything it started (by PID) and keeps natter-load's summary line; then prints medians.
#
#   benches/cluster.sh [fanout|latency|idle|all]      (RUNS=3 by default)
#
# natter-load must take several --addr and --pid (clients spread over the nodes, figures per
# node); NATTER_LOAD names it (default target/release/natter-load).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
what=${1:-all}
redis_port=${REDIS_PORT:-7380}
base=${PORT:-7780}
out=$(mktemp -d)
pids=()

cargo build --release -p natter --quiet
server=target/release/natter
load=${NATTER_LOAD:-target/release/natter-load}

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap 'cleanup; rm -rf "$out"' EXIT

wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on $1" >&2
    return 1
}

start_redis() {
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        >/dev/null 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    wait_port "$redis_port"
}

# start_nodes K CLUSTER: K nodes on ports base+1.. (their addresses and pids in addr_args)
start_nodes() {
    addr_args=()
    for i in $(seq "$1"); do
        "$server" --listen "127.0.0.1:$((base + i))" --rate 0 --max-per-ip 0 \
            --redis "127.0.0.1:$redis_port" --cluster "$2" 2>/dev/null &
        pids+=("$!")
        addr_args+=(--addr "127.0.0.1:$((base + i))" --pid "$!")
    done
    for i in $(seq "$1"); do wait_port "$((base + i))"; done
}

start_alone() {
    "$server" --listen "127.0.0.1:$base" --rate 0 --max-per-ip 0 2>/dev/null &
    pids+=("$!")
    addr_args=(--addr "127.0.0.1:$base" --pid "$!")
    wait_port "$base"
}

# CPU time of every thread of a process so far, in ns (schedstat).
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%d\n", s}'
}

# run NAME -- natter-load arguments: runs natter-load against addr_args, appends its summary
# line to $out/NAME, with redis_cpu_ns (Redis over the whole run, logins included) when a
# Redis runs.
run() {
    local name=$1
    shift 2
    local before=0
    [ -n "${redis_pid:-}" ] && before=$(cpu_ns "$redis_pid")
    local line
    line=$("$load" "$@" "${addr_args[@]}" --sources 8 | grep '^natter-load-result')
    if [ -n "${redis_pid:-}" ]; then
        line="$line redis_cpu_ns=$(($(cpu_ns "$redis_pid") - before))"
    fi
    echo "$line" | tee -a "$out/$name"
}

median() { # median FILE KEY
    grep -o " $2=[0-9.]*" "$1" | cut -d= -f2 | sort -n |
        awk -v k="$2" '{v[NR]=$1} END {if (NR) printf "   %-26s %s\n", k, v[int((NR+1)/2)]}'
}

fanout_args=(fanout -r 1000 -s 4 -m 1000)
if [ "$what" = fanout ] || [ "$what" = all ]; then
    for _ in $(seq "$runs"); do
        redis_pid=""
        start_alone
        run alone -- "${fanout_args[@]}"
        cleanup
        start_redis
        start_nodes 3 "bench$RANDOM"
        run cluster -- "${fanout_args[@]}"
        cleanup
        redis_pid=""
    done
    echo "== fanout, one server: medians of $runs runs"
    for k in cpu_ns_per_delivery deliveries_per_s p50_us p99_us lost; do median "$out/alone" "$k"; done
    echo "== fanout, 3 nodes + Redis: medians of $runs runs"
    for k in cpu_ns_per_delivery node1_cpu_ns node2_cpu_ns node3_cpu_ns redis_cpu_ns \
        deliveries_per_s p50_us p99_us lost; do median "$out/cluster" "$k"; done
fi

latency_args=(fanout -r 10 -s 10 -m 3000 --rate 1000)
if [ "$what" = latency ] || [ "$what" = all ]; then
    for _ in $(seq "$runs"); do
        redis_pid=""
        start_alone
        run lat_alone -- "${latency_args[@]}"
        cleanup
        start_redis
        start_nodes 3 "bench$RANDOM"
        run lat_cluster -- "${latency_args[@]}"
        cleanup
        redis_pid=""
    done
    echo "== 10,000 lines/s (10 senders x 1000/s, 10 receivers), one server: medians"
    for k in p50_us p99_us max_us lost; do median "$out/lat_alone" "$k"; done
    echo "== the same over 3 nodes + Redis: medians"
    for k in p50_us p99_us max_us lost; do median "$out/lat_cluster" "$k"; done
fi

if [ "$what" = idle ] || [ "$what" = all ]; then
    # Six nodes, each under its own 20,000-descriptor limit (the machine's hard limit).
    for _ in $(seq "$runs"); do
        start_redis
        start_nodes 6 "bench$RANDOM"
        run idle -- idle -n 100000 --idle-secs 10 --concurrency 64 --timeout 600
        cleanup
        redis_pid=""
    done
    echo "== 100,000 logged-in users over 6 nodes: medians of $runs runs"
    keys=$(grep -o ' node[0-9]*_[a-z_]*=' "$out/idle" | tr -d ' =' | sort -u)
    for k in $keys anon_per_conn_b rss_per_conn_b logins_per_s cpu_ticks redis_cpu_ns; do
        median "$out/idle" "$k"
    done
fi
