#!/usr/bin/env bash
# Cache hits, side by side: dotproxy, dnsdist 1.7 with its packet cache, and Unbound as a DoT
# forwarder, each on one worker thread pinned to CPU 0, in front of the same dotmock; dnsperf (on
# CPU 1) asks 1000 names over and over, so after a warm-up pass every query is a hit. Then
# dotproxy's resident memory with one million distinct names cached.
#   bench/cache.sh [SECONDS] [RUNS] [NAMES_FOR_MEMORY]
# Builds the release preset; installs dnsdist, unbound and dnsperf if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
runs=${2:-3}
names=${3:-1000000}
source bench/lib.sh

start_mock
for i in $(seq 1 1000); do echo "h$i.test A"; done >"$work/hot"
warm() { taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -d "$work/hot" -n 1 >/dev/null 2>&1; }

results=()
for _ in $(seq "$runs"); do
  start_dotproxy
  warm "$port"
  results+=("$(run_dnsperf dotproxy "$port" "$dp" "$work/hot" "$secs")")
  kill "$dp"; wait "$dp" || true

  start_dnsdist <<'LUA'
pc = newPacketCache(100000, {maxTTL=86400, minTTL=0})
getPool(""):setCache(pc)
LUA
  wait_dns 25353
  warm 25353
  results+=("$(run_dnsperf dnsdist 25353 "$dd" "$work/hot" "$secs")")
  kill "$dd"; wait "$dd" || true

  start_unbound
  wait_dns 35353
  warm 35353
  results+=("$(run_dnsperf unbound 35353 "$ub" "$work/hot" "$secs")")
  kill "$ub"; wait "$ub" || true
done

echo "cache hits over UDP (dnsperf, 1000 names), one worker each, $secs s x $runs runs, medians"
printf '%s\n' "${results[@]}" | summarise

# Memory: dotproxy's resident size with $names distinct names cached.
for i in $(seq 1 "$names"); do echo "m$i.test A"; done >"$work/many"
start_dotproxy --cache-size $((4 << 30))
wait_dns "$port"
rss0=$(rss_kib "$dp")
taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/many" -n 1 -c 8 -q 2000 >/dev/null 2>&1
kill -USR1 "$dp"
for _ in $(seq 100); do [[ $(grep -c stats "$work/dp.out") -ge 1 ]] && break; sleep 0.05; done
rss1=$(rss_kib "$dp")
entries=$(grep -o '"cache_entries":[0-9]*' "$work/dp.out" | tail -1 | cut -d: -f2)
bytes=$(grep -o '"cache_bytes":[0-9]*' "$work/dp.out" | tail -1 | cut -d: -f2)
awk -v e="$entries" -v b="$bytes" -v r0="$rss0" -v r1="$rss1" 'BEGIN {
  printf "memory: %d entries cached; RSS %.1f MiB -> %.1f MiB: %.0f bytes per entry resident, %.0f accounted by the cache\n",
    e, r0 / 1024, r1 / 1024, (r1 - r0) * 1024 / (e > 0 ? e : 1), b / (e > 0 ? e : 1) }'
