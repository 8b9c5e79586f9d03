#!/usr/bin/env bash
# clang-format over every C++ file in the repository. `--check` fails on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format-19}
mapfile -t files < <(git ls-files -co --exclude-standard -- '*.cc' '*.h' | grep -v '^build/')
if [[ "${1:-}" == --check ]]; then
  "$CF" --dry-run --Werror "${files[@]}"
  echo "format: ${#files[@]} files clean"
else
  "$CF" -i "${files[@]}"
fi
