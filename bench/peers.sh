#!/usr/bin/env bash
# The side-by-side benchmark: dotproxy, dnsdist 1.7 (packet cache, DoT backend), Unbound 1.17 as a
# DoT forwarder and Knot Resolver 5.6 (policy.TLS_FORWARD), one at a time, each pinned to CPU 0 with
# one worker thread, in front of the same dotmock; dotload (and dnsperf as a cross-check) on CPU 1
# with dotmock. Workloads:
#   W1  UDP cache hits (1000 names, closed loop)
#   W2  UDP cache misses forwarded over DoT (a unique name per query, closed loop)
#   W3  TCP cache hits, pipelined (8 connections x 64 in flight)
#   W4  a Zipf mix over 10,000 names at a fixed rate (open loop), for latency percentiles: its p99
#       swings several-fold from run to run on a shared VM, so it runs in W4_ROUNDS rounds of its
#       own, each starting every proxy afresh in turn (still one at a time), and the table gives the
#       median p99 of the rounds, its spread and how many rounds dotproxy's p99 was the lowest
#   W5  TCP connection churn: a new connection per query
#   W2u W2 against Unbound 1.17 as the DoT upstream instead of dotmock (Unbound's DoT server writes
#       each answer by itself without TCP_NODELAY: the misses must stay bound by CPU, not by its
#       Nagle meeting the proxy's delayed ACKs)
# and, for the ceiling, a trivial recvmmsg/sendmmsg reflector on CPU 0 driven by dotload and dnsperf.
# Each figure is the median of RUNS runs (W4: of W4_ROUNDS rounds of W4_SECONDS); memory is each
# proxy's peak resident size.
#   bench/peers.sh [SECONDS] [RUNS] [W4_RATE] [W4_ROUNDS] [W4_SECONDS]
# Builds the release preset; installs the peers and dnsperf from Debian if they are missing; stops
# only what it started. Every system gets 4 MiB socket buffers (the kernel's defaults are raised for
# the run and restored after; needs root). A closed-loop run that loses queries is run once more; if
# it loses again the report marks it INVALID. The table goes to stdout; keep a run with
# `| tee bench/results/DATE-peers.txt`. BENCH_OUT=PREFIX also keeps the raw lines (PREFIX.raw) and
# draws the figures (PREFIX.png); DOTPROXY_B=BINARY adds a second dotproxy build ("dotproxy-b") to
# W2u, in the same run (an A/B pair).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
runs=${2:-3}
rate=${3:-5000}
w4_rounds=${4:-8}
w4_secs=${5:-5}
bench_targets="dotproxy dotmock dotload reflector"
source bench/lib.sh
same_socket_buffers
dotload=build/release/tools/dotload/dotload
reflector=build/release/bench/reflector/reflector

start_mock
for i in $(seq 1 1000); do echo "h$i.test A"; done >"$work/hot"
# dnsperf's unique names: more than it can send in one run, a fresh zone per run and proxy.
unique_file() { awk -v n=$((secs * 250000)) -v z="$1" 'BEGIN { for (i = 1; i <= n; i++) printf "u%d.%s.test A\n", i, z }' >"$work/unique"; }
results="$work/results"
: >"$results"

# The load generator's own CPU time (user + system seconds), from bash's `time`.
TIMEFORMAT='%U %S'
gen_cpu() { awk '{ print $1 + $2 }' "$work/gen.time"; }

# load WORKLOAD PROXY PORT PID DOTLOAD-ARGS...: one dotload run on CPU 1; appends
# "WORKLOAD dotload PROXY good_qps p50_us p99_us p999_us cpu_us_per_answer lost not_noerror
#  generator_cpu_us_per_answer upstream_cpu_us_per_answer" (the last "-" unless $upstream_pid is
#  set: W2u's Unbound, whose CPU is as much a limit as the proxy's)
# (good_qps: NOERROR answers per second; every name asked exists in dotmock's zone).
load() {
  local w=$1 name=$2 port=$3 pid=$4 attempt lines
  shift 4
  for attempt in 1 2; do
    lines=$(wc -l <"$results")
    load_once "$w" "$name" "$port" "$pid" "$@"
    # Closed loop (-q): a lost query holds its slot for dotload's 2 s timeout, so a run with losses
    # measures the timeout, not the proxy: run it once more, and keep the second run either way.
    [[ " $* " == *" -Q "* ]] && break
    (($(wc -l <"$results") == lines)) && break
    [[ $(awk 'END { print $9 }' "$results") == 0 ]] && break
    if ((attempt == 1)); then
      echo "bench: $name lost queries in $w, running it again" >&2
      sed -i '$d' "$results"
    fi
  done
  return 0
}

load_once() {
  local w=$1 name=$2 port=$3 pid=$4 before after up_before=0 up_after=0
  shift 4
  [[ -n ${upstream_pid:-} ]] && up_before=$(cpu_ticks "$upstream_pid")
  before=$(cpu_ticks "$pid")
  { time taskset -c 1 "$dotload" -s 127.0.0.1 -p "$port" -T 1 --json "$@" >"$work/load.json" \
    2>"$work/load.err"; } 2>"$work/gen.time" ||
    { echo "bench: dotload against $name ($w) failed: $(tail -1 "$work/load.err")" >&2; return 0; }
  after=$(cpu_ticks "$pid")
  [[ -n ${upstream_pid:-} ]] && up_after=$(cpu_ticks "$upstream_pid")
  /usr/bin/python3 - "$w" "$name" $((after - before)) "$hz" "$work/load.json" "$(gen_cpu)" \
    "${upstream_pid:+$((up_after - up_before))}" >>"$results" <<'PY'
import json, sys
w, name, ticks, hz, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
gen = float(sys.argv[6])
up = f"{int(sys.argv[7]) / hz * 1e6 / max(json.load(open(path))['answered'], 1):.2f}" if sys.argv[7] else "-"
r = json.load(open(path))
lat = r["latency_us"]
answered = max(r["answered"], 1)
other = sum(n for code, n in r["rcodes"].items() if code != "NOERROR")
good = r["qps"] * (answered - other) / answered  # a fast SERVFAIL is not an answer
print(w, "dotload", name, f'{good:.0f}', f'{lat["p50"]:.0f}', f'{lat["p99"]:.0f}', f'{lat["p999"]:.0f}',
      f"{ticks / hz * 1e6 / answered:.2f}", r["lost"], other, f"{gen * 1e6 / answered:.2f}", up)
PY
}

# perf WORKLOAD PROXY PORT PID FILE DNSPERF-ARGS...: one dnsperf run on CPU 1, same line format
# (dnsperf gives no percentiles: "-"); like load, once more if it lost queries.
perf() {
  local attempt
  for attempt in 1 2; do
    perf_once "$@"
    [[ $(awk 'END { print $9 }' "$results") == 0 ]] && break
    if ((attempt == 1)); then
      echo "bench: $2 lost queries in $1 (dnsperf), running it again" >&2
      sed -i '$d' "$results"
    fi
  done
  return 0
}

perf_once() {
  local w=$1 name=$2 port=$3 pid=$4 file=$5 before after
  shift 5
  before=$(cpu_ticks "$pid")
  { time taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$secs" "$@" >"$work/perf.out" \
    2>&1; } 2>"$work/gen.time" || true
  after=$(cpu_ticks "$pid")
  awk -v w="$w" -v n="$name" -v t=$((after - before)) -v hz="$hz" -v g="$(gen_cpu)" '
    /Queries completed/ { c = $3 } /Queries lost/ { l = $3 } /Queries per second/ { q = $4 }
    END { c = c > 0 ? c : 1
          printf "%s dnsperf %s %.0f - - - %.2f %d - %.2f\n", w, n, q, t / hz * 1e6 / c, l, g * 1e6 / c }' \
    "$work/perf.out" >>"$results"
}

# with_proxy NAME FUNCTION: starts proxy NAME (on CPU 0, one worker; dnsdist with its packet
# cache), runs FUNCTION NAME PORT PID against it, and stops it.
with_proxy() {
  local name=$1 fn=$2 pport ppid
  case $name in
    dotproxy) start_dotproxy; pport=$port; ppid=$dp ;;
    dotproxy-b) DOTPROXY_BIN=$DOTPROXY_B start_dotproxy; pport=$port; ppid=$dp ;;
    dnsdist)
      start_dnsdist <<'LUA'
pc = newPacketCache(100000, {maxTTL=86400, minTTL=0})
getPool(""):setCache(pc)
LUA
      pport=25353; ppid=$dd ;;
    unbound) start_unbound; pport=35353; ppid=$ub ;;
    kresd) start_kresd; pport=45353; ppid=$kr ;;
  esac
  "$fn" "$name" "$pport" "$ppid"
  kill "$ppid"; wait "$ppid" || true
}

# workloads PROXY PORT PID: every workload against one running proxy, hits first, misses last.
workloads() {
  local name=$1 port=$2 pid=$3
  wait_dns "$port"
  taskset -c 1 "$dotload" -s 127.0.0.1 -p "$port" -d "$work/hot" -n 2000 -q 10 >/dev/null 2>&1 || true
  load W1 "$name" "$port" "$pid" -m udp -c 8 -q 64 -d "$work/hot" -l "$secs"
  perf W1 "$name" "$port" "$pid" "$work/hot" -c 8 -q 512
  load W3 "$name" "$port" "$pid" -m tcp -c 8 -q 64 -d "$work/hot" -l "$secs"
  perf W3 "$name" "$port" "$pid" "$work/hot" -m tcp -c 8 -q 512
  load W5 "$name" "$port" "$pid" -m tcp -c 16 -q 1 --reconnect-every 1 -d "$work/hot" -l "$secs"
  load W2 "$name" "$port" "$pid" -m udp -c 4 -q 64 --random-names "r$RANDOM.test" -l "$secs"
  unique_file "p$RANDOM"
  perf W2 "$name" "$port" "$pid" "$work/unique" -c 4 -q 256
  echo "MEM peak $name $(peak_kib "$pid")" >>"$results"
}

for run in $(seq "$runs"); do
  echo "bench: run $run of $runs" >&2
  taskset -c 0 "$reflector" --listen 127.0.0.1:0 >"$work/refl.out" 2>"$work/refl.err" &
  rf=$!
  pids+=("$rf")
  wait_line "$work/refl.out"
  rport=$(sed -E 's/.*"udp":([0-9]+).*/\1/' "$work/refl.out")
  load W1 reflector "$rport" "$rf" -m udp -c 8 -q 64 -d "$work/hot" -l "$secs"
  perf W1 reflector "$rport" "$rf" "$work/hot" -c 8 -q 512
  kill "$rf"; wait "$rf" || true

  for name in dotproxy dnsdist unbound kresd; do with_proxy "$name" workloads; done
done

# W2u: the misses again, against Unbound as the DoT upstream (on CPU 1, like dotmock).
w2u() {
  local name=$1 port=$2 pid=$3
  wait_dns "$port"
  load W2u "$name" "$port" "$pid" -m udp -c 4 -q 64 --random-names "r$RANDOM.test" -l "$secs"
  unique_file "p$RANDOM"
  perf W2u "$name" "$port" "$pid" "$work/unique" -c 4 -q 256
}
mock_up=("$up_addr" "$up_name" "$up_ca")
start_upstream_unbound
w2u_proxies=(dotproxy dnsdist unbound kresd)
[[ -n ${DOTPROXY_B:-} ]] && w2u_proxies=(dotproxy dotproxy-b dnsdist unbound kresd)
upstream_pid=$ubu
for run in $(seq "$runs"); do
  echo "bench: W2u run $run of $runs" >&2
  for name in "${w2u_proxies[@]}"; do with_proxy "$name" w2u; done
done
upstream_pid=
kill "$ubu"; wait "$ubu" || true
up_addr=${mock_up[0]} up_name=${mock_up[1]} up_ca=${mock_up[2]}

# W4: each round starts every proxy in turn (fresh cache, a fresh zone: the same hit/miss mix for
# all), the order rotating from round to round, so slow drifts of the machine hit everyone alike.
w4() {
  local name=$1 port=$2 pid=$3
  wait_dns "$port"
  load W4 "$name" "$port" "$pid" -m udp -c 4 -Q "$rate" --zipf 10000 --zone "z$RANDOM.test" -l "$w4_secs"
}
order=(dotproxy dnsdist unbound kresd)
for round in $(seq "$w4_rounds"); do
  echo "bench: W4 round $round of $w4_rounds" >&2
  for k in 0 1 2 3; do with_proxy "${order[$(((round + k) % 4))]}" w4; done
done

echo "# bench/peers.sh $secs $runs $rate $w4_rounds $w4_secs — $(date -u +%F), medians of $runs runs of $secs s (W4: of $w4_rounds rounds of $w4_secs s)"
echo "# each proxy on CPU 0 with one worker thread; dotload/dnsperf and dotmock (W2u: Unbound) on CPU 1"
echo "# socket buffers: rmem/wmem default $(sysctl -n net.core.rmem_default)/$(sysctl -n net.core.wmem_default) bytes for every system; cache budgets 64 MiB (dnsdist: 100,000 entries)"
if [[ -n ${BENCH_OUT:-} ]]; then
  cp "$results" "$BENCH_OUT.raw"
  /usr/bin/python3 bench/report.py "$results" --chart "$BENCH_OUT.png"
else
  /usr/bin/python3 bench/report.py "$results"
fi
