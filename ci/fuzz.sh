#!/usr/bin/env bash
# Builds the libFuzzer binaries (asan-ubsan preset, which sets DOTPROXY_FUZZ) and fuzzes each target
# for SECONDS (default 60) on a scratch copy of its corpus, under ASan+UBSan. Fails on the first
# crash, leak, sanitizer report, timeout or failed check; the input that did it is left in
# build/fuzz-artifacts/<target>/ (add it to fuzz/corpus/<target>/ with the fix).
#   ci/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(message query framer cache response config dotq_render edns)

timeout --kill-after=30 "${CONFIGURE_TIMEOUT:-600}" cmake --preset asan-ubsan >/dev/null
timeout --kill-after=30 "${BUILD_TIMEOUT:-2700}" cmake --build --preset asan-ubsan \
  --target "${targets[@]/#/fuzz_}"

work=build/fuzz-work
artifacts=build/fuzz-artifacts
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Stack traces with file and line (llvm-19, from ci/deps.sh test).
[[ -x /usr/lib/llvm-19/bin/llvm-symbolizer ]] &&
  export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-/usr/lib/llvm-19/bin/llvm-symbolizer}
for t in "${targets[@]}"; do
  rm -rf "${work:?}/$t" "${artifacts:?}/$t"
  mkdir -p "$work/$t" "$artifacts/$t"
  cp fuzz/corpus/"$t"/* "$work/$t/"
  echo "=== fuzz $t for ${seconds}s ==="
  # One process, one thread (no -jobs/-workers: the machine is shared). -timeout: an input that
  # takes 10 s is a hang.
  # timeout(1): -max_total_time is checked between inputs, so a stuck process (or a slow final
  # report) is ended from outside too, 120 s past its time.
  if ! timeout --kill-after=30 $((seconds + 120)) \
      build/asan-ubsan/fuzz/fuzz_"$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=4096 -print_final_stats=1 \
      -artifact_prefix="$artifacts/$t/" "$work/$t" >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log"
    echo "ci/fuzz.sh: $t failed; inputs in $artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec' "$work/$t.log" || true
done
echo "ci/fuzz.sh: ${#targets[@]} targets, ${seconds}s each, no crash"
