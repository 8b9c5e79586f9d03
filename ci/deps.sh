#!/usr/bin/env bash
# Installs the Debian 12 packages dotproxy needs, only those missing. `ci/deps.sh build` for building
# and running; `ci/deps.sh test` adds the test peers and tools; `ci/deps.sh bench` adds the peers
# the benchmarks compare against. Needs root (or sudo) when installing. Every apt step is bounded
# in time (DEPS_TIMEOUT seconds each, default 900): a dead mirror fails the script, never hangs it.
set -euo pipefail

build_pkgs=(cmake ninja-build g++ pkg-config ca-certificates libssl-dev libldns-dev libcli11-dev
            libtomlplusplus-dev libfmt-dev)
test_pkgs=(googletest libgtest-dev clang-19 libclang-rt-19-dev llvm-19 clang-format-19 shellcheck
           python3-pytest python3-pytest-timeout python3-dnspython python3-prometheus-client
           pybind11-dev python3-dev openssl bind9-dnsutils knot-dnsutils dnsperf unbound chromium
           iproute2 procps)
bench_pkgs=(dnsdist dnsperf unbound knot-resolver bind9-dnsutils python3-matplotlib procps)

case "${1:-build}" in
  build) pkgs=("${build_pkgs[@]}") ;;
  test) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) pkgs=("${build_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *)
    echo "usage: ci/deps.sh [build|test|bench]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "ci/deps.sh: installing ${missing[*]}" >&2
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  SUDO=(sudo)
fi
limit=${DEPS_TIMEOUT:-900}
# Packages such as unbound start a resolver on port 53 when installed; we only want the binaries.
# policy-rc.d tells invoke-rc.d not to start services during this install. One that is already
# there (Debian container images ship one) is left alone, and so is its exit status.
policy=${DEPS_POLICY_RC:-/usr/sbin/policy-rc.d}  # overridable for ci/deps.sh's own test
own_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod +x "$policy"
  own_policy=1
fi
cleanup() {
  if [[ $own_policy -eq 1 ]]; then
    "${SUDO[@]}" rm -f "$policy"
  fi
}
trap cleanup EXIT
apt_opts=(-o DPkg::Lock::Timeout=120 -o Acquire::http::Timeout=60 -o Acquire::Retries=2)
if ! "${SUDO[@]}" timeout "$limit" apt-get "${apt_opts[@]}" update -qq; then
  echo "ci/deps.sh: apt-get update failed or took over ${limit}s" >&2
  exit 1
fi
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive timeout "$limit" apt-get "${apt_opts[@]}" \
    install -y -qq --no-install-recommends "${missing[@]}"; then
  echo "ci/deps.sh: apt-get install ${missing[*]} failed or took over ${limit}s" >&2
  exit 1
fi
echo "ci/deps.sh: installed ${#missing[@]} package(s)" >&2
