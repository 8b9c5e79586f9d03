#!/usr/bin/env bash
# Cache-miss forwarding, side by side: dotproxy and dnsdist 1.7 (no packet cache, DoT backend), each
# on one worker pinned to CPU 0, forwarding over TLS to the same dotmock; dnsperf drives unique names
# over UDP. dotmock and dnsperf share CPU 1. Prints queries/s, CPU per query and the ratios.
#   bench/forwarding.sh [SECONDS] [RUNS]
# Builds the release preset and installs Debian's dnsdist and dnsperf if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
runs=${2:-3}
source bench/lib.sh

start_mock
for i in $(seq 1 200000); do echo "u$i.test A"; done >"$work/queries"

results=()
for _ in $(seq "$runs"); do
  start_dotproxy --cache-size 0
  results+=("$(run_dnsperf dotproxy "$port" "$dp" "$work/queries" "$secs")")
  kill "$dp"; wait "$dp" || true

  start_dnsdist </dev/null  # no packet cache: every query forwarded
  results+=("$(run_dnsperf dnsdist 25353 "$dd" "$work/queries" "$secs")")
  kill "$dd"; wait "$dd" || true
done

echo "cache-miss forwarding over DoT, UDP clients (dnsperf), $secs s x $runs runs, medians"
printf '%s\n' "${results[@]}" | summarise
