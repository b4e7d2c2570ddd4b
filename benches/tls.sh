#!/usr/bin/env bash
# Reproduces the TLS figures of BENCHMARKS.md: for each run it starts a fresh release server
# with a plain and a TLS listener on loopback, drives it with examples/tls_load.rs, stops that
# server (by PID) and keeps the loader's summary line; then prints the median of each figure.
#
#   benches/tls.sh [idle|handshakes|all]     (RUNS=3 PORT=7797 N=10000 by default)
#
# The certificates are made with openssl as the README shows (P-256, RSA-2048, RSA-4096).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
port=${PORT:-7797}
n=${N:-10000}
what=${1:-all}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cargo build --release --workspace --bins --examples --quiet
server=target/release/natter
load=target/release/examples/tls_load

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
        "$server" --listen 127.0.0.1:$((port + 1)) --tls-listen "127.0.0.1:$port" \
            --tls-cert "$out/$key.cert.pem" --tls-key "$out/$key.key.pem" \
            --rate 0 --max-per-ip 0 --log-level warn 2>/dev/null &
        local pid=$!
        # Wait until the server accepts connections (bounded).
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.05
        done
        "$load" "$@" --addr "127.0.0.1:$port" --ca "$out/$key.cert.pem" --pid "$pid" \
            | grep '^tls-load-result' | tee -a "$out/$name" || true
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
    echo "== $name: medians of $runs runs"
    for k in "${keys[@]}"; do
        grep -o " $k=[0-9.]*" "$out/$name" | cut -d= -f2 | sort -n |
            awk -v k="$k" '{v[NR]=$1} END {if (NR) printf "   %-30s %s\n", k, v[int((NR+1)/2)]}'
    done
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
