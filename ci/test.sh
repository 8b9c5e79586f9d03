#!/usr/bin/env bash
# The one test command: installs what is missing, builds the debug (GCC) and asan-ubsan (clang 19)
# presets, and runs every test in both: unit tests, dotmock tests, the end-to-end pytest suites, the
# fuzz corpora replayed (fuzz/corpus) and the format check; then the tsan preset runs the
# multi-worker end-to-end tests and the threaded unit tests under ThreadSanitizer, and ci/fuzz.sh
# fuzzes every harness for FUZZ_SECONDS (default 45) under ASan+UBSan.
# `ci/test.sh debug` runs only the GCC preset (quicker while developing); any list of presets may
# be given, and the fuzz step runs when asan-ubsan is among them.
# Every step that waits on children is bounded in time, so a hang fails the run instead of eating
# CI's budget: ci/deps.sh bounds each apt step; configure, build and the whole ctest run of a
# preset have a bound here (seconds, overridable) on top of ctest's per-test timeouts
# (CMakePresets.json) and pytest's per-test --timeout (integration/CMakeLists.txt); ci/fuzz.sh
# bounds each fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh test
presets=("${@:-debug asan-ubsan tsan}")
read -r -a presets <<<"${presets[*]}"
bounded() { # SECONDS COMMAND...: the command, killed (TERM, then KILL 30 s later) past SECONDS
  local limit=$1
  shift
  local rc=0
  timeout --kill-after=30 "$limit" "$@" || rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "ci/test.sh: '$*' did not finish within ${limit}s" >&2
  fi
  return "$rc"
}
for p in "${presets[@]}"; do
  echo "=== preset $p ==="
  bounded "${CONFIGURE_TIMEOUT:-600}" cmake --preset "$p" >/dev/null
  bounded "${BUILD_TIMEOUT:-2700}" cmake --build --preset "$p"
  bounded "${CTEST_TIMEOUT:-2400}" ctest --preset "$p" -j2
done
if [[ " ${presets[*]} " == *" asan-ubsan "* ]]; then
  echo "=== fuzz ==="
  ci/fuzz.sh "${FUZZ_SECONDS:-45}"
fi
