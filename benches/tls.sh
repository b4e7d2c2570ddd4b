#!/usr/bin/env bash
# Reproduces the TLS figures of BENCHMARKS.md: for each run it starts a fresh release server
# with a plain and a TLS listener on loopback, drives it with examples/tls_load.rs (or, for
# the plain side of `fanout`, natter-load), stops that server (by PID) and keeps the loader's
# summary line; then prints the median of each figure and every run's value.
#
#   benches/tls.sh [idle|handshakes|fanout|all]     (RUNS=3 PORT=7797 N=10000 M=200 by default)
#
# `fanout` alternates, RUNS times, a TLS run (1,000 TLS receivers, 4 plain senders, M messages
# each) and a plain run (natter-load fanout, 1,000 plain receivers), each on a fresh server,
# and prints the ratio TLS/plain of the medians of the server's CPU per delivery.
# The certificates are made with openssl as the README shows (P-256, RSA-2048, RSA-4096).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
port=${PORT:-7797}
plain_port=$((port + 1))
n=${N:-10000}
m=${M:-200}
what=${1:-all}
out=$(mktemp -d)
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT

cargo build --release --workspace --bins --examples --quiet
server=target/release/natter
load=target/release/examples/tls_load
natter_load=target/release/natter-load

# cert NAME KEYSPEC...: a self-signed certificate for localhost in $out/NAME.{cert,key}.pem
cert() {
    local name=$1
    shift
    openssl req -x509 "$@" -nodes -days 2 -keyout "$out/$name.key.pem" -out "$out/$name.cert.pem" \
        -subj /CN=localhost -addext basicConstraints=critical,CA:FALSE \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
}
cert p256 -newkey ec -pkeyopt ec_paramgen_curve:P-256
cert rsa2048 -newkey rsa:2048
cert rsa4096 -newkey rsa:4096

# start_server KEY: a fresh server with both listeners; sets $pid.
start_server() {
    "$server" --listen "127.0.0.1:$plain_port" --tls-listen "127.0.0.1:$port" \
        --tls-cert "$out/$1.cert.pem" --tls-key "$out/$1.key.pem" \
        --rate 0 --max-per-ip 0 --log-level warn 2>/dev/null &
    pid=$!
    # Wait until the server accepts connections (bounded).
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
}

stop_server() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}

# run_once NAME COMMAND...: runs a loader and keeps its summary line if it succeeded.
run_once() {
    local name=$1 status=0
    shift
    "$@" >"$out/last" || status=$?
    if [ "$status" = 0 ]; then
        grep -E '^(tls|natter)-load-result' "$out/last" | tee -a "$out/$name" || true
    else
        echo "!! $name: the loader exited with status $status; this run is left out" >&2
        grep -E '^(tls|natter)-load-result' "$out/last" >&2 || true
    fi
}

# values NAME KEY: every run's value of KEY, sorted.
values() {
    { grep -o " $2=[0-9.]*" "$out/$1" 2>/dev/null || true; } | cut -d= -f2 | sort -n
}

# median NAME KEY
median() {
    values "$1" "$2" | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'
}

# medians NAME KEYS...: the median and every run of each figure.
medians() {
    local name=$1 k
    shift
    echo "== $name: medians of $(values "$name" "$1" | wc -l) runs"
    for k in "$@"; do
        printf '   %-30s %-10s runs: %s\n' "$k" "$(median "$name" "$k")" "$(values "$name" "$k" | xargs)"
    done
}

# run_scenario NAME CERT KEYS... -- tls_load arguments
run_scenario() {
    local name=$1 key=$2
    shift 2
    local keys=()
    while [ "$1" != "--" ]; do
        keys+=("$1")
        shift
    done
    shift
    for _ in $(seq "$runs"); do
        start_server "$key"
        run_once "$name" "$load" "$@" --addr "127.0.0.1:$port" --ca "$out/$key.cert.pem" --pid "$pid"
        stop_server
    done
    medians "$name" "${keys[@]}"
}

if [ "$what" = idle ] || [ "$what" = all ]; then
    run_scenario idle p256 anon_per_conn_b rss_per_conn_b kernel_slab_per_conn_b logins_per_s \
        idle_cpu_ticks idle_cpu_ns -- idle -n "$n"
fi
if [ "$what" = handshakes ] || [ "$what" = all ]; then
    for key in p256 rsa2048 rsa4096; do
        run_scenario "handshakes-$key" "$key" handshakes_per_s server_cpu_us_per_handshake -- \
            handshakes --secs 5 --threads 4
    done
fi
if [ "$what" = fanout ] || [ "$what" = all ]; then
    for _ in $(seq "$runs"); do
        start_server p256
        run_once fanout-tls "$load" fanout -r 1000 -s 4 -m "$m" --addr "127.0.0.1:$port" \
            --plain-addr "127.0.0.1:$plain_port" --ca "$out/p256.cert.pem" --pid "$pid"
        stop_server
        start_server p256
        run_once fanout-plain "$natter_load" fanout -r 1000 -s 4 -m "$m" --sources 8 \
            --addr "127.0.0.1:$plain_port" --pid "$pid"
        stop_server
    done
    keys=(cpu_ns_per_delivery deliveries_per_s p50_us p99_us)
    medians fanout-tls "${keys[@]}"
    medians fanout-plain "${keys[@]}"
    tls=$(median fanout-tls cpu_ns_per_delivery)
    plain=$(median fanout-plain cpu_ns_per_delivery)
    if [ -n "$tls" ] && [ -n "$plain" ]; then
        awk -v t="$tls" -v p="$plain" 'BEGIN {printf "== server CPU per delivery, TLS/plain: %.2f\n", t / p}'
    fi
fi
