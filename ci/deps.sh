#!/usr/bin/env bash
# Installs the Debian 12 packages dotproxy needs, only those missing. `ci/deps.sh build` for building
# and running; `ci/deps.sh test` adds the test peers and tools; `ci/deps.sh bench` adds the peers
# the benchmarks compare against. Needs root (or sudo) when installing.
set -euo pipefail

build_pkgs=(cmake ninja-build g++ pkg-config ca-certificates libssl-dev libldns-dev libcli11-dev
            libtomlplusplus-dev libfmt-dev)
test_pkgs=(googletest libgtest-dev clang-19 libclang-rt-19-dev llvm-19 clang-format-19
           python3-pytest python3-dnspython python3-prometheus-client pybind11-dev python3-dev
           openssl bind9-dnsutils knot-dnsutils dnsperf unbound chromium)
bench_pkgs=(dnsdist dnsperf unbound knot-resolver bind9-dnsutils)

pkgs=("${build_pkgs[@]}")
[[ "${1:-build}" == test ]] && pkgs+=("${test_pkgs[@]}")
[[ "${1:-build}" == bench ]] && pkgs+=("${bench_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "ci/deps.sh: installing ${missing[*]}" >&2
SUDO=()
[[ $(id -u) -ne 0 ]] && SUDO=(sudo)
# Packages such as unbound start a resolver on port 53 when installed; we only want the binaries.
# policy-rc.d tells invoke-rc.d not to start services during this install.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod +x "$policy"
  own_policy=1
fi
cleanup() { [[ $own_policy -eq 1 ]] && "${SUDO[@]}" rm -f "$policy"; }
trap cleanup EXIT
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
