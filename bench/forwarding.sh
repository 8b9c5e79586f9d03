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
ci/deps.sh bench
cmake --preset release >/dev/null
cmake --build --preset release --target dotproxy dotmock >/dev/null

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Wait (bounded) for a JSON ready line on a process's stdout file.
wait_line() {
  for _ in $(seq 200); do
    [[ -s "$1" ]] && return 0
    sleep 0.05
  done
  echo "bench: no ready line in $1" >&2
  exit 1
}
wait_dns() {  # port
  for _ in $(seq 100); do
    dig @127.0.0.1 -p "$1" +time=1 +tries=1 +short a.test >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench: nothing answers on port $1" >&2
  exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

taskset -c 1 build/release/tools/dotmock/dotmock --dot 127.0.0.1:0 --write-ca "$work/ca.pem" \
  >"$work/mock.out" 2>"$work/mock.err" &
pids+=($!)
wait_line "$work/mock.out"
dot=$(sed -E 's/.*"dot":"([^"]+)".*/\1/' "$work/mock.out")

for i in $(seq 1 200000); do echo "u$i.test A"; done >"$work/queries"

hz=$(getconf CLK_TCK)
run_target() {  # name port pid
  local name=$1 port=$2 pid=$3 before after out qps lost sent
  wait_dns "$port"
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries" -l "$secs" -c 8 -q 1000 2>&1)
  after=$(cpu_ticks "$pid")
  qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
  lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
  sent=$(awk '/Queries completed/ {print $3}' <<<"$out")
  local us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$sent" 'BEGIN { printf "%.1f", t / hz * 1e6 / (n > 0 ? n : 1) }')
  echo "$name $qps $us $lost"
}

results=()
for r in $(seq "$runs"); do
  # dotproxy, one worker
  taskset -c 0 build/release/proxy/dotproxy --listen 127.0.0.1:0 --workers 1 --log-level warn \
    --upstream "$dot#dotmock.test" --ca-file "$work/ca.pem" >"$work/dp.out" 2>"$work/dp.err" &
  dp=$!
  pids+=($dp)
  wait_line "$work/dp.out"
  port=$(sed -E 's/.*"listen":\["[^"]*:([0-9]+)".*/\1/' "$work/dp.out")
  results+=("$(run_target dotproxy "$port" "$dp")")
  kill "$dp"; wait "$dp" || true

  # dnsdist 1.7: no packet cache, one DoT backend, one TCP worker thread
  cat >"$work/dnsdist.conf" <<CONF
setSecurityPollSuffix("")
setLocal("127.0.0.1:25353")
setMaxTCPClientThreads(1)
newServer({address="$dot", tls="openssl", subjectName="dotmock.test", caStore="$work/ca.pem", validateCertificates=true})
CONF
  taskset -c 0 dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" >"$work/dd.out" 2>&1 &
  dd=$!
  pids+=($dd)
  results+=("$(run_target dnsdist 25353 "$dd")")
  kill "$dd"; wait "$dd" || true
done

printf '%s\n' "${results[@]}" | awk -v secs="$secs" -v runs="$runs" '
  { qps[$1] = qps[$1] " " $2; cpu[$1] = cpu[$1] " " $3; lost[$1] += $4 }
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)]
  }
  END {
    printf "cache-miss forwarding over DoT, UDP clients (dnsperf), %s s x %s runs, medians\n", secs, runs
    printf "%-10s %12s %14s %8s\n", "proxy", "queries/s", "CPU us/query", "lost"
    for (p in qps) printf "%-10s %12.0f %14.1f %8d\n", p, median(qps[p]), median(cpu[p]), lost[p]
    printf "ratio dotproxy/dnsdist: %.2fx queries/s, %.2fx CPU per query\n",
      median(qps["dotproxy"]) / median(qps["dnsdist"]), median(cpu["dotproxy"]) / median(cpu["dnsdist"])
  }'
