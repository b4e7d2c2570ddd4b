#!/usr/bin/env bash
# Upgrade figures for BENCHMARKS.md: for each run, a fresh release server holds N idle logged-in
# connections (natter-load idle), gets SIGUSR2, and the old process's log line gives how long
# it was frozen (from sending the state to the new process's commit) and its peak RSS; the new
# process's peak RSS comes from /proc. natter-load's probe at the end checks the chat still
# works. Prints the medians.
#
#   benches/upgrade.sh [N ...]          (default: 10000 19000; RUNS=3 PORT=7778)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
port=${PORT:-7778}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 19000)

cargo build --release --workspace --quiet
server=target/release/natter
load=target/release/natter-load
out=$(mktemp -d)

median() { sort -n | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }

for n in "${sizes[@]}"; do
    for i in $(seq "$runs"); do
        log="$out/log.$n.$i"
        "$server" --listen "127.0.0.1:$port" --rate 0 --max-per-ip 0 2>"$log" &
        pid=$!
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.05
        done
        : >"$out/load.$n.$i"
        "$load" idle -n "$n" --idle-secs 6 --addr "127.0.0.1:$port" --sources 8 \
            >"$out/load.$n.$i" 2>&1 &
        loader=$!
        # Upgrade once every client is logged in (natter-load says so before its idle window).
        for _ in $(seq 600); do
            grep -q "idle window" "$out/load.$n.$i" && break
            sleep 0.1
        done
        kill -USR2 "$pid"
        for _ in $(seq 300); do
            grep -q "upgrade: took over" "$log" && break
            sleep 0.05
        done
        new=$(grep -o 'as pid [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
        new_hwm=$(grep VmHWM "/proc/$new/status" | grep -o '[0-9]*')
        wait "$loader" || echo "natter-load failed: $(tail -3 "$out/load.$n.$i")"
        grep -q "probe=ok" "$out/load.$n.$i" || echo "run $i: the probe after the upgrade failed"
        frozen=$(grep -o 'after [0-9.]* ms frozen' "$log" | grep -o '[0-9.]*')
        old_hwm=$(grep -o 'peak RSS [0-9]*' "$log" | grep -o '[0-9]*')
        echo "n=$n run=$i frozen_ms=$frozen old_peak_kib=$old_hwm new_peak_kib=$new_hwm" | tee -a "$out/result.$n"
        kill "$new" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$new" 2>/dev/null || break; sleep 0.05; done
    done
    echo "== $n idle connections: medians of $runs runs"
    for key in frozen_ms old_peak_kib new_peak_kib; do
        printf '   %-14s %s\n' "$key" "$(grep -o " $key=[0-9.]*" "$out/result.$n" | cut -d= -f2 | median)"
    done
done
rm -rf "$out"
