#!/usr/bin/env bash
# dotload against dnsperf, both driving the reflector (the one-core ceiling), back to back, RUNS
# times; prints each run and the medians: queries/s answered, the generator's CPU seconds per
# million answers (user+sys from /proc of the generator), and the reflector's CPU use.
#   bench/reflector/compare.sh [SECONDS] [RUNS] [BUILD_DIR]
# The reflector runs on CPU 0, the generator on CPU 1, all under SCHED_FIFO (chrt -f 1, as root):
# on a shared machine whose kernel defers wake-up preemption (PREEMPT_LAZY), a woken process at
# normal priority waits for the running compiler's tick, and every generator then measures that
# wait (about 45k q/s here for both) instead of its own cost. Nothing here spins: FIFO only makes
# each wake-up prompt. Without root, set PRIO= to run at normal priority.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_RUN=${1:-5}
RUNS=${2:-3}
BUILD=${3:-build/release}
PRIO=${PRIO-chrt -f 1}
DOTLOAD=$BUILD/tools/dotload/dotload
REFLECTOR=$BUILD/bench/reflector/reflector
command -v dnsperf >/dev/null || { echo "compare.sh: dnsperf missing (apt-get install dnsperf)" >&2; exit 2; }
[[ -x $DOTLOAD && -x $REFLECTOR ]] || { echo "compare.sh: build $BUILD first (dotload, reflector)" >&2; exit 2; }

work=$(mktemp -d)
refl_pid=
cleanup() {
  [[ -n $refl_pid ]] && kill "$refl_pid" 2>/dev/null && wait "$refl_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
for i in $(seq 1 1000); do echo "n$i.test A"; done >"$work/queries.txt"

$PRIO taskset -c 0 "$REFLECTOR" --listen 127.0.0.1:0 >"$work/reflector.out" &
refl_pid=$!
for _ in $(seq 1 100); do grep -q ready "$work/reflector.out" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's/.*"udp":\([0-9]*\).*/\1/p' "$work/reflector.out")
[[ -n $port ]] || { echo "compare.sh: reflector did not start" >&2; exit 1; }

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run NAME CMD...: prints "qps cpu_s_per_million reflector_busy_percent"
run() {
  local name=$1; shift
  local r0 g1 r1 qps pid
  r0=$(ticks "$refl_pid")
  $PRIO taskset -c 1 "$@" >"$work/$name.out" 2>&1 &
  pid=$!
  # CPU of the generator, sampled just before it exits (its tail wait for lost queries included).
  g1=0
  while kill -0 "$pid" 2>/dev/null; do g1=$(ticks "$pid" 2>/dev/null || echo "$g1"); sleep 0.1; done
  wait "$pid" || true
  r1=$(ticks "$refl_pid")
  if [[ $name == dotload ]]; then
    qps=$(sed -n 's/.*"qps":\([0-9.]*\).*/\1/p' "$work/$name.out")
    answered=$(sed -n 's/.*"answered":\([0-9]*\).*/\1/p' "$work/$name.out")
  else
    qps=$(sed -n 's/.*Queries per second: *\([0-9.]*\).*/\1/p' "$work/$name.out")
    answered=$(sed -n 's/.*Queries completed: *\([0-9]*\).*/\1/p' "$work/$name.out")
  fi
  awk -v q="$qps" -v a="$answered" -v g="$g1" -v hz="$hz" -v r=$((r1 - r0)) -v s="$SECONDS_RUN" \
    'BEGIN { printf "%.0f %.2f %.0f\n", q, (a > 0 ? g / hz / a * 1e6 : 0), 100 * r / hz / s }'
}

echo "run  dotload_qps  dnsperf_qps  ratio  dotload_cpu_s/M  dnsperf_cpu_s/M  reflector_busy%(dotload,dnsperf)"
: >"$work/results"
for i in $(seq 1 "$RUNS"); do
  read -r dq dc dr < <(run dotload "$DOTLOAD" -p "$port" -d "$work/queries.txt" -l "$SECONDS_RUN" \
    -c 4 -q 100 --json)
  read -r pq pc pr < <(run dnsperf dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" \
    -l "$SECONDS_RUN" -c 1 -T 1 -q 500)
  ratio=$(awk -v a="$dq" -v b="$pq" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  echo "$i    $dq       $pq       $ratio   $dc             $pc             $dr,$pr"
  echo "$dq $pq $dc $pc $ratio" >>"$work/results"
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
mdq=$(cut -d' ' -f1 "$work/results" | median)
mpq=$(cut -d' ' -f2 "$work/results" | median)
mdc=$(cut -d' ' -f3 "$work/results" | median)
mpc=$(cut -d' ' -f4 "$work/results" | median)
mratio=$(cut -d' ' -f5 "$work/results" | median)
awk -v a="$mdq" -v b="$mpq" -v c="$mdc" -v d="$mpc" -v r="$mratio" 'BEGIN {
  printf "median: dotload %.0f q/s, dnsperf %.0f q/s, ratio of the back-to-back pairs %.2f; CPU per million answers: dotload %.2f s, dnsperf %.2f s (dnsperf/dotload %.2f)\n",
    a, b, r, c, d, (c > 0 ? d / c : 0) }'
