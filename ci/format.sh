#!/usr/bin/env bash
# The format and lint step: clang-format over every C++ file in the repository and shellcheck over
# every shell script. `--check` fails on any difference or any shellcheck finding; without it,
# clang-format rewrites the files in place (shellcheck findings are fixed by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format-19}
mapfile -t files < <(git ls-files -co --exclude-standard -- '*.cc' '*.h' | grep -v '^build/')
mapfile -t scripts < <(git ls-files -co --exclude-standard -- '*.sh' '.ci/run' | grep -v '^build/')
if [[ "${1:-}" == --check ]]; then
  "$CF" --dry-run --Werror "${files[@]}"
  echo "format: ${#files[@]} files clean"
  shellcheck --severity=style "${scripts[@]}"
  echo "shellcheck: ${#scripts[@]} scripts clean"
else
  "$CF" -i "${files[@]}"
fi
