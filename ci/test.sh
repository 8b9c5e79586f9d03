#!/usr/bin/env bash
# The one test command: installs what is missing, builds the debug (GCC) and asan-ubsan (clang 19)
# presets, and runs every test in both: unit tests, dotmock tests, the end-to-end pytest suites, the
# fuzz corpora replayed (fuzz/corpus) and the format check; then the tsan preset runs the
# multi-worker end-to-end tests and the threaded unit tests under ThreadSanitizer, and ci/fuzz.sh
# fuzzes every harness for FUZZ_SECONDS (default 45) under ASan+UBSan.
# `ci/test.sh debug` runs only the GCC preset (quicker while developing); any list of presets may
# be given, and the fuzz step runs when asan-ubsan is among them.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh test
presets=("${@:-debug asan-ubsan tsan}")
read -r -a presets <<<"${presets[*]}"
for p in "${presets[@]}"; do
  echo "=== preset $p ==="
  cmake --preset "$p" >/dev/null
  cmake --build --preset "$p"
  ctest --preset "$p" -j2
done
if [[ " ${presets[*]} " == *" asan-ubsan "* ]]; then
  echo "=== fuzz ==="
  ci/fuzz.sh "${FUZZ_SECONDS:-45}"
fi
