#!/usr/bin/env bash
# The one run command: installs what is missing, builds the release preset and starts dotproxy with
# its defaults (127.0.0.1:53, Cloudflare over TLS) or the flags given, e.g.
#   ci/run.sh --listen 127.0.0.1:5353 --upstream 127.0.0.1:8853#dotmock.test --ca-file ca.pem
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh build
cmake --preset release >/dev/null
cmake --build --preset release --target dotproxy dotmock
exec build/release/proxy/dotproxy "$@"
