#!/usr/bin/env bash
# The one test command: installs what is missing, builds the debug (GCC) and asan-ubsan (clang 19)
# presets, and runs every test in both: unit tests, dotmock tests, the end-to-end pytest suites and
# the format check. `ci/test.sh debug` runs only the GCC preset (quicker while developing).
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh test
presets=("${@:-debug asan-ubsan}")
read -r -a presets <<<"${presets[*]}"
for p in "${presets[@]}"; do
  echo "=== preset $p ==="
  cmake --preset "$p" >/dev/null
  cmake --build --preset "$p"
  ctest --preset "$p" -j2
done
