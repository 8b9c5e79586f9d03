"""An upstream that writes each answer by itself without TCP_NODELAY (Unbound's DoT server) must
not make dotproxy wait for its delayed-ACK timer: two queries forwarded together are answered
together, not the second 40 ms (Linux's TCP_ATO_MIN on loopback) after the first."""

import socket
import time


from conftest import free_port, make_query, require_tool, wait_for

UNBOUND_CONF = """\
server:
    verbosity: 1
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: "{dir}/unbound.log"
    interface: 127.0.0.1@{port}
    tls-port: {port}
    tls-service-key: "{key}"
    tls-service-pem: "{cert}"
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "nagle.test." redirect
    local-data: "nagle.test. 300 IN A 192.0.2.7"
remote-control:
    control-enable: no
"""

PAIRS = 100
STALL = 0.030  # seconds: a pair slower than this waited for a delayed ACK (40 ms)


def test_pair_of_misses_does_not_wait_for_delayed_ack(processes, proxy, cert_pair, tmp_path):
    unbound = require_tool("unbound", "unbound")
    cert, key = cert_pair
    port = free_port()
    (tmp_path / "unbound.conf").write_text(
        UNBOUND_CONF.format(dir=tmp_path, port=port, key=key, cert=cert))
    u = processes.start([unbound, "-d", "-c", str(tmp_path / "unbound.conf")], "unbound")

    def accepting():
        assert u.running(), f"unbound exited: {u.stderr_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_for(accepting, 10, interval=0.05, what="unbound to accept TCP on its TLS port")
    p = proxy(None, upstreams=[f"127.0.0.1:{port}#dotmock.test"], ca_file=str(cert))

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)

    def ask(names):
        """Sends every name at once (like a stub's A and AAAA); seconds until all are answered."""
        start = time.monotonic()
        for i, name in enumerate(names):
            s.sendto(make_query(name, "A", qid=i + 1).to_wire(), p.addr)
        for _ in names:
            s.recv(2048)
        return time.monotonic() - start

    # One query at a time first: dotproxy sends each query right after reading the last answer,
    # which puts its upstream socket into Linux's delayed-ACK ("pingpong") mode.
    for i in range(30):
        ask([f"w{i}.nagle.test."])
    # Then pairs, every name a cache miss: Unbound writes the first answer at once and holds the
    # second under Nagle's algorithm until the first is acknowledged.
    times = sorted(ask([f"a{i}.nagle.test.", f"b{i}.nagle.test."]) for i in range(PAIRS))
    stalled = sum(1 for t in times if t >= STALL)
    st = p.stats()
    assert st["upstream_answers"] == 30 + 2 * PAIRS and st["servfail"] == 0, st
    # Before the fix every pair took ~44 ms; a loaded machine may add a few scheduling hiccups.
    assert stalled < PAIRS // 4, (
        f"{stalled} of {PAIRS} pairs took >= {STALL * 1000:.0f} ms (median "
        f"{times[PAIRS // 2] * 1000:.1f} ms): the upstream waited for our delayed ACK")
