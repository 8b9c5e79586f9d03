"""Upstream hardening regressions: a connect() that fails at once, connections filled by dropped
answers or gone silent, frames shorter than their message, and certificates that name the server
only in their subject CN. Everything stays on loopback: the unreachable upstream is an IPv6
link-local address without a scope, which connect() refuses (EINVAL) before any packet is built."""

import errno
import socket
import subprocess
import time

import dns.rcode
import pytest

dotproxy = pytest.importorskip("dotproxy")  # absent only where conftest allows it (tsan)

from conftest import make_query, wait_for
from test_metrics import metrics_addr, scrape, value

ANSWER = "192.0.2.1"
# Never routed: link-local without a scope id is refused by connect() itself.
UNREACHABLE = "[fe80::1]:853#bad.test"


def test_unreachable_test_address_fails_synchronously():
    """The premise of the next test: connect() to the scope-less link-local address fails at once
    (no EINPROGRESS), so no SYN is ever sent."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        with pytest.raises(OSError) as e:
            s.connect(("fe80::1", 853))
        assert e.value.errno == errno.EINVAL, e.value
    finally:
        s.close()


def test_synchronous_connect_failure_backs_off_and_queries_move_on(mock, proxy):
    """Regression (hardening B3): a connect() failing synchronously (ENETUNREACH, EMFILE, EINVAL...)
    never reached the failure path: the upstream stayed in rotation, every other query waited
    without an attempt timer and got SERVFAIL at the query timeout, and a warning was logged per
    query. Now it is a failed connection attempt: backoff, the other upstream at once."""
    good = mock()
    p = proxy(good, "--metrics", "127.0.0.1:0", "--query-timeout", "4000",
              upstreams=[UNREACHABLE, good.upstream_spec()],
              config="[upstream]\nbackoff_initial_ms = 400\nbackoff_max_ms = 3000\n"
                     "[cache]\nsize = 0\n")
    addr = metrics_addr(p)
    queries = 40
    t_start = time.monotonic()
    for i in range(queries):
        t0 = time.monotonic()
        r = p.udp(make_query(f"sync{i}.test."), timeout=10)
        elapsed = time.monotonic() - t0
        assert r.rcode() == dns.rcode.NOERROR, (i, dns.rcode.to_text(r.rcode()), elapsed)
        assert r.answer and r.answer[0][0].to_text() == ANSWER, r
        # Expected: milliseconds. Before the fix: SERVFAIL at the 4 s query timeout.
        assert elapsed < 2.5, f"query {i} answered after {elapsed:.2f}s"
    run = time.monotonic() - t_start
    s = scrape(addr)
    connects = value(s, "dotproxy_upstream_server_connects_total", upstream=UNREACHABLE)
    failures = value(s, "dotproxy_upstream_server_failures_total", upstream=UNREACHABLE,
                     cause="connect")
    assert connects >= 1 and failures == connects, (connects, failures)
    # Backed off: one attempt at start, then at most one per backoff period (400 ms doubling);
    # not one per query.
    assert connects <= 2 + run / 0.4, (connects, run)
    assert connects < queries / 4, (connects, queries)
    assert value(s, "dotproxy_upstream_server_up", upstream=UNREACHABLE) == 0
    assert value(s, "dotproxy_upstream_server_answers_total",
                 upstream=good.upstream_spec()) == queries
    st = p.stats()
    assert st["servfail"] == 0, st
    assert st["upstream_no_upstream"] == 0, st
    # Logged once per failed attempt (so rate-limited by the backoff), not once per query.
    lines = [line for line in p.stderr().splitlines() if "fe80::1" in line]
    assert 1 <= len(lines) <= connects + 1, lines[:50]


HARDENING = """
[upstream]
query_timeout_ms = 1500
attempt_timeout_ms = 300
connect_timeout_ms = 1000
backoff_initial_ms = 100
backoff_max_ms = 300
connections_per_upstream = 1
max_inflight_per_connection = 2

[cache]
size = 0
"""


def ask_round(p, k) -> list[str]:
    """Two queries the mock drops (d.*) and two it answers (b.*), pipelined on one client
    connection: with two slots per upstream connection they share connections with answered
    queries, so those connections keep answering (never look stalled) while the dropped queries'
    slots are abandoned when their clients get SERVFAIL."""
    names = [f"d.a{k}.test", f"b.a{k}.test", f"d.b{k}.test", f"b.b{k}.test"]
    with dotproxy.Connection(p.host, "tcp", port=p.tcp_port, timeout=5) as c:
        c.send([dotproxy.build_query(n, id=i + 1) for i, n in enumerate(names)])
        return [c.receive(i + 1, timeout=5).message.rcode_text for i in range(len(names))]


def test_abandoned_slots_do_not_fill_a_connection_for_good(mock_upstream, daemon):
    """Regression (hardening B4): slots of abandoned queries (the client already got SERVFAIL)
    were freed only inside send(), which a full connection never reaches, and a connection that
    kept answering other queries never looked stalled; after a few dropped answers with a small
    max_inflight_per_connection every later query waited for a slot and got SERVFAIL, for good,
    and no new connection was opened. Now abandoned queries hold no slot, and the pool recovers
    within a backoff period."""
    m = mock_upstream(faults="label d drop")
    p = daemon(m, config=HARDENING)
    assert p.query("warm.test", timeout=5).message.rcode_text == "NOERROR"
    for k in range(4):
        rcodes = ask_round(p, k)
        assert rcodes[0] == rcodes[2] == "SERVFAIL", rcodes  # dropped on every attempt

    def answered():
        return p.query("probe.test", timeout=5).message.rcode_text == "NOERROR"

    # The connections that held only dropped queries were abandoned as stalled, which may back the
    # upstream off for up to backoff_max_ms (300 ms); before the fix no query was ever answered
    # again.
    wait_for(answered, 10, interval=0.1, what="a query answered after the dropped ones")
    for i in range(10):
        a = p.query(f"after{i}.test", transport="udp" if i % 2 else "tcp", timeout=5)
        assert a.message.rcode_text == "NOERROR", (i, a.message)
        assert [r.text for r in a.message.answer] == [ANSWER]


def test_connection_that_stops_answering_is_replaced(mock_upstream, daemon):
    """A connection whose upstream stops answering entirely is abandoned as stalled and replaced;
    queries keep getting answers (the retry, then the new connection), and the stall is counted."""
    m = mock_upstream(faults=[])
    p = daemon(m, config=HARDENING)
    for i in range(3):
        assert p.query(f"w{i}.test", timeout=5).message.rcode_text == "NOERROR"
    assert m.counters()["connections"] == 1
    m.set_faults("connection 1 drop")  # the open connection goes silent
    t0 = time.monotonic()
    for i in range(8):
        a = p.query(f"s{i}.test", timeout=5)
        assert a.message.rcode_text == "NOERROR", (i, a.message)
        assert [r.text for r in a.message.answer] == [ANSWER]
    wait_for(lambda: p.stats()["upstream_stalls"] >= 1, 5, what="the silent connection's stall")
    assert m.counters()["connections"] >= 2
    # Once replaced, queries go straight to the new connection: no more attempt timeouts.
    before = p.stats()
    for i in range(5):
        assert p.query(f"n{i}.test", timeout=5).message.rcode_text == "NOERROR"
    after = p.stats()
    assert after["upstream_timeouts"] == before["upstream_timeouts"], (before, after)
    assert time.monotonic() - t0 < 30


def test_frame_shorter_than_its_message_fails_the_connection(mock_upstream, daemon):
    """Regression (hardening B5): an answer whose length prefix announces half its message was
    retried as malformed, but the connection stayed up and the message's tail was read as the
    next length prefix, so the next answer on the connection was lost (an attempt timeout). Now
    the connection is dropped at once and every query on it is retried without waiting."""
    m = mock_upstream(faults="label f undersized once")
    p = daemon(m, config=HARDENING.replace("max_inflight_per_connection = 2",
                                           "max_inflight_per_connection = 10")
               .replace("attempt_timeout_ms = 300", "attempt_timeout_ms = 1000"))
    assert p.query("warm.test", timeout=5).message.rcode_text == "NOERROR"
    before = p.stats()
    with dotproxy.Connection(p.host, "tcp", port=p.tcp_port, timeout=5) as c:
        c.send([dotproxy.build_query("f.test", id=1), dotproxy.build_query("g.test", id=2),
                dotproxy.build_query("h.test", id=3)])
        for i in (1, 2, 3):
            a = c.receive(i, timeout=5)
            assert a.message.rcode_text == "NOERROR" and a.message.answer[0].text == ANSWER, a
    after = p.stats()
    assert after["upstream_malformed"] >= before["upstream_malformed"] + 1, after
    assert after["upstream_timeouts"] == before["upstream_timeouts"], (before, after)
    assert after["upstream_retries"] >= before["upstream_retries"] + 1, after
    assert m.counters()["connections"] >= 2


def make_cert(directory, name, san: bool):
    cert, key = directory / f"{name}-{'san' if san else 'cn'}.pem", directory / f"{name}-key.pem"
    argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE"]
    if san:
        argv += ["-addext", f"subjectAltName=DNS:{name}"]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"], check=True,
                          capture_output=True, text=True, timeout=30).stdout
    assert ("Subject Alternative Name" in text) == san, text
    return cert, key


def test_certificate_naming_the_server_only_in_its_cn_is_refused(mock, proxy, tmp_path):
    """Regression (hardening B11): OpenSSL falls back to the subject CN when a certificate has no
    DNS subjectAltName; RFC 6125 6.4.4 and RFC 8310 8.1 want the SAN. A CN-only certificate for
    the right name, trusted as its own CA, is now refused; the same with a SAN is accepted."""
    cert, key = make_cert(tmp_path, "dotmock.test", san=False)
    m = mock("--cert", str(cert), "--key", str(key), write_ca=False)
    p = proxy(m, "--query-timeout", "1000", ca_file=str(cert))
    before = m.stats()
    assert p.udp(make_query("cn.test.")).rcode() == dns.rcode.SERVFAIL
    assert p.tcp(make_query("cn-tcp.test.")).rcode() == dns.rcode.SERVFAIL
    after = m.stats()
    assert after["queries"] == before["queries"], after  # nothing sent to it
    s = p.stats()
    assert s["upstream_verify_failures"] >= 1 and s["upstream_answers"] == 0, s

    cert2, key2 = make_cert(tmp_path, "dotmock.test", san=True)
    m2 = mock("--cert", str(cert2), "--key", str(key2), write_ca=False)
    p2 = proxy(m2, "--query-timeout", "1000", ca_file=str(cert2))
    assert p2.udp(make_query("san.test.")).rcode() == dns.rcode.NOERROR
