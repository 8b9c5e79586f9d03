# shellcheck shell=bash
# Shared by the bench scripts (sourced from the repository root): installs the peers that are
# missing, builds the release preset, then provides process bookkeeping, readiness waits, CPU
# accounting, dnsperf runs and medians. Every wait is bounded.

ci/deps.sh bench
cmake --preset release >/dev/null
read -r -a targets <<<"${bench_targets:-dotproxy dotmock}"
cmake --build --preset release --target "${targets[@]}" >/dev/null

work=$(mktemp -d)
pids=()
restore=()  # "sysctl-key=value" to put back on exit
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for kv in "${restore[@]}"; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "bench: a command failed near line $LINENO of $0" >&2' ERR

# The same socket buffers for every system: dotproxy asks for 4 MiB on its UDP sockets, the peers
# take the kernel's defaults (and Knot Resolver has no option for it), so the run raises the
# defaults to 4 MiB for everyone (the load generators too) and puts them back on exit. Without
# root it cannot, and says so: the peers then lose queries in bursts that dotproxy absorbs.
same_socket_buffers() {
  local key old
  for key in net.core.rmem_default net.core.wmem_default net.core.rmem_max net.core.wmem_max; do
    old=$(sysctl -n "$key")
    if ((old < 4194304)); then
      if sysctl -q -w "$key=4194304" >/dev/null 2>&1; then
        restore+=("$key=$old")
      else
        echo "bench: cannot set $key to 4 MiB (not root?): the peers keep ${old}-byte buffers" >&2
      fi
    fi
  done
}

# The DoT upstream every proxy forwards to: address, TLS name, CA file (start_mock and
# start_upstream_unbound set them).
up_addr=
up_name=
up_ca=

# Waits (bounded) for a non-empty file (a process's ready line).
wait_line() {
  for _ in $(seq 200); do
    [[ -s "$1" ]] && return 0
    sleep 0.05
  done
  echo "bench: no ready line in $1" >&2
  exit 1
}

# Waits (bounded) until something answers a.test on 127.0.0.1:PORT.
wait_dns() {
  for _ in $(seq 100); do
    dig @127.0.0.1 -p "$1" +time=1 +tries=1 +short a.test >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench: nothing answers on port $1" >&2
  exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
peak_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# Starts dotmock on CPU 1 (beside the load generator) and sets $dot to its DoT address.
start_mock() {
  taskset -c 1 build/release/tools/dotmock/dotmock --dot 127.0.0.1:0 --write-ca "$work/ca.pem" "$@" \
    >"$work/mock.out" 2>"$work/mock.err" &
  pids+=($!)
  wait_line "$work/mock.out"
  dot=$(sed -E 's/.*"dot":"([^"]+)".*/\1/' "$work/mock.out")
  up_addr=$dot up_name=dotmock.test up_ca="$work/ca.pem"
}

# Starts Unbound 1.17 on CPU 1 as a DoT server on port 8853 that answers every name under test.
# itself (a redirect zone: no recursion, offline), and makes it the upstream (sets $ubu).
# Unbound's DoT server writes each answer by itself and does not set TCP_NODELAY: its answers
# wait under Nagle's algorithm for the proxy's ACKs (bench/README.md).
start_upstream_unbound() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$work/ubu.key" -out "$work/ubu.pem" -subj /CN=unbound.test \
    -addext subjectAltName=DNS:unbound.test >/dev/null 2>&1
  cat >"$work/ubu.conf" <<CONF
server:
  interface: 127.0.0.1@8853
  tls-port: 8853
  tls-service-key: "$work/ubu.key"
  tls-service-pem: "$work/ubu.pem"
  num-threads: 1
  do-daemonize: no
  chroot: ""
  username: ""
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  incoming-num-tcp: 1000
  module-config: "iterator"
  local-zone: "test." redirect
  local-data: "test. 3600 IN A 192.0.2.1"
CONF
  taskset -c 1 unbound -d -c "$work/ubu.conf" >"$work/ubu.out" 2>&1 &
  ubu=$!
  pids+=("$ubu")
  for _ in $(seq 100); do
    kdig @127.0.0.1 -p 8853 +tls-ca="$work/ubu.pem" +tls-hostname=unbound.test +time=1 +retry=0 \
      +short a.test >/dev/null 2>&1 && break
    sleep 0.1
  done
  up_addr=127.0.0.1:8853 up_name=unbound.test up_ca="$work/ubu.pem"
}

# Starts dotproxy on CPU 0 with one worker (its default cache: 64 MiB); sets $dp (pid) and $port.
# DOTPROXY_BIN runs another build (e.g. an A/B pair).
start_dotproxy() {
  taskset -c 0 "${DOTPROXY_BIN:-build/release/proxy/dotproxy}" --listen 127.0.0.1:0 --workers 1 \
    --log-level warn --upstream "$up_addr#$up_name" --ca-file "$up_ca" "$@" >"$work/dp.out" \
    2>"$work/dp.err" &
  dp=$!
  pids+=("$dp")
  wait_line "$work/dp.out"
  port=$(sed -E 's/.*"listen":\["[^"]*:([0-9]+)".*/\1/' "$work/dp.out")
}

# Starts dnsdist 1.7 on CPU 0 on port 25353 with one DoT backend (the upstream) and one TCP worker
# thread; extra Lua lines (e.g. a packet cache) come on stdin. Sets $dd (pid). Pipelining as its
# documentation says (dnsdist.org, "Out-of-order"): without maxInFlight on the frontend dnsdist
# reads one query at a time from a TCP client, and without it on the backend it sends one query at
# a time per connection to the upstream. Its health check asks a.test. (the default, a.root-servers.net.,
# gets SERVFAIL from an offline Unbound upstream, and dnsdist would mark it down).
start_dnsdist() {
  {
    cat <<CONF
setSecurityPollSuffix("")
setLocal("127.0.0.1:25353", {maxInFlight=128})
setMaxTCPClientThreads(1)
newServer({address="$up_addr", tls="openssl", subjectName="$up_name", caStore="$up_ca", validateCertificates=true, maxInFlight=100, checkName="a.test."})
CONF
    cat
  } >"$work/dnsdist.conf"
  taskset -c 0 dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" >"$work/dd.out" 2>&1 &
  dd=$!
  pids+=("$dd")
}

# run_dnsperf NAME PORT PID QUERYFILE SECONDS: prints "NAME qps cpu_us_per_query lost".
run_dnsperf() {
  local name=$1 port=$2 pid=$3 file=$4 secs=$5 before after out qps lost done_
  wait_dns "$port"
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$secs" -c 8 -q 1000 2>&1)
  after=$(cpu_ticks "$pid")
  qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
  lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
  done_=$(awk '/Queries completed/ {print $3}' <<<"$out")
  awk -v n="$name" -v q="$qps" -v l="$lost" -v t=$((after - before)) -v hz="$hz" -v c="$done_" \
    'BEGIN { printf "%s %s %.2f %s\n", n, q, t / hz * 1e6 / (c > 0 ? c : 1), l }'
}

# Reads "NAME qps cpu lost" lines on stdin; prints medians per NAME and dotproxy's ratio to each.
summarise() {
  awk '
    { qps[$1] = qps[$1] " " $2; cpu[$1] = cpu[$1] " " $3; lost[$1] += $4 }
    function median(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return a[int((n + 1) / 2)]
    }
    END {
      printf "%-10s %12s %14s %8s %22s\n", "proxy", "queries/s", "CPU us/query", "lost", "dotproxy ratio q/s, CPU"
      for (p in qps) {
        r = ""
        if (p != "dotproxy" && ("dotproxy" in qps))
          r = sprintf("%.2fx, %.2fx", median(qps["dotproxy"]) / median(qps[p]), median(cpu["dotproxy"]) / median(cpu[p]))
        printf "%-10s %12.0f %14.2f %8d %22s\n", p, median(qps[p]), median(cpu[p]), lost[p], r
      }
    }'
}

# Starts Unbound 1.17 on CPU 0 on port 35353 as a DoT forwarder to the upstream, one thread, a
# 64 MiB cache budget split as its documentation advises (rrset cache about twice the message
# cache). Sets $ub.
start_unbound() {
  cat >"$work/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@35353
  port: 35353
  num-threads: 1
  do-daemonize: no
  chroot: ""
  username: ""
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  module-config: "iterator"
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  local-zone: "test." nodefault
  incoming-num-tcp: 1000
  msg-cache-size: 22m
  rrset-cache-size: 42m
  tls-cert-bundle: "$up_ca"
forward-zone:
  name: "."
  forward-addr: ${up_addr/:/@}#$up_name
  forward-tls-upstream: yes
CONF
  taskset -c 0 unbound -d -c "$work/unbound.conf" >"$work/ub.out" 2>&1 &
  ub=$!
  pids+=("$ub")
}

# Starts Knot Resolver 5.6 (one kresd process) on CPU 0 on port 45353, forwarding everything over
# TLS to the upstream (policy.TLS_FORWARD), a 64 MiB cache. Offline, so no root trust anchor and no
# priming. Sets $kr.
start_kresd() {
  mkdir -p "$work/kresd"
  cat >"$work/kresd.conf" <<CONF
net.listen('127.0.0.1', 45353, { kind = 'dns' })
trust_anchors.remove('.')
modules.unload('ta_signal_query')
modules.unload('priming')
modules.unload('detect_time_skew')
cache.size = 64 * MB
policy.add(policy.all(policy.TLS_FORWARD({{'${up_addr/:/@}', hostname = '$up_name', ca_file = '$up_ca'}})))
CONF
  taskset -c 0 kresd -n -q -c "$work/kresd.conf" "$work/kresd" >"$work/kr.out" 2>&1 &
  kr=$!
  pids+=("$kr")
}
