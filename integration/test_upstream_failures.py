"""Upstreams that are down, stall, speak no TLS or restart: the client gets SERVFAIL within the
configured timeout (never silence), dotproxy keeps running, and it uses the upstream again as
soon as it answers, resuming the TLS session where it can."""

import socket
import time

import dns.message
import dns.rcode

from conftest import free_port, make_query, tcp_states, wait_for

QUERY_TIMEOUT_MS = 1000
SLACK = 2.5  # seconds on top of the query timeout: scheduling on a loaded 2-core machine
FAST_BACKOFF = "[upstream]\nbackoff_initial_ms = 100\nbackoff_max_ms = 500\n"


def timed_query(p, name, transport="udp", timeout=5.0):
    q = make_query(name, "A")
    t0 = time.monotonic()
    r = p.udp(q, timeout=timeout) if transport == "udp" else p.tcp(q, timeout=timeout)
    elapsed = time.monotonic() - t0
    assert r.id == q.id and r.question == q.question
    return r, elapsed


def closed_port() -> int:
    """A loopback TCP port with nobody listening: connect() is refused."""
    return free_port()


def assert_servfail_in_time(p, name, transport="udp"):
    r, elapsed = timed_query(p, name, transport)
    assert r.rcode() == dns.rcode.SERVFAIL, f"{name}: {dns.rcode.to_text(r.rcode())}"
    assert elapsed <= QUERY_TIMEOUT_MS / 1000 + SLACK, f"{name}: SERVFAIL after {elapsed:.2f}s"
    return elapsed


def test_closed_port_gives_servfail_in_time(proxy):
    port = closed_port()
    p = proxy(None, "--query-timeout", str(QUERY_TIMEOUT_MS),
              upstreams=[f"127.0.0.1:{port}#dotmock.test"], ca_file=None)
    for i in range(3):  # the first one connects, the next ones meet an upstream in backoff
        assert_servfail_in_time(p, f"c{i}.test.", "udp")
        assert_servfail_in_time(p, f"t{i}.test.", "tcp")
    s = p.stats()
    assert s["servfail"] >= 6, s
    assert s["upstream_connect_failures"] + s["upstream_no_upstream"] >= 1, s
    assert p.running()


def test_silent_tls_port_gives_servfail_in_time(proxy, tcp_server):
    srv = tcp_server()  # accepts, never speaks: the TLS handshake stalls
    p = proxy(None, "--query-timeout", str(QUERY_TIMEOUT_MS),
              upstreams=[f"127.0.0.1:{srv.port}#dotmock.test"], ca_file=None)
    for i in range(2):
        assert_servfail_in_time(p, f"s{i}.test.", "udp")
    assert srv.accepted >= 1, "dotproxy never connected to the upstream"
    s = p.stats()
    assert s["servfail"] >= 2, s
    assert p.running()


def test_all_upstreams_down_gives_servfail_in_time(proxy, tcp_server):
    srv = tcp_server()
    p = proxy(None, "--query-timeout", str(QUERY_TIMEOUT_MS),
              upstreams=[f"127.0.0.1:{closed_port()}#dotmock.test",
                         f"127.0.0.1:{srv.port}#dotmock.test"], ca_file=None)
    for i in range(3):
        assert_servfail_in_time(p, f"all{i}.test.", "udp" if i % 2 == 0 else "tcp")
    assert p.running()


def test_port_speaking_http_gives_servfail(proxy, tcp_server):
    srv = tcp_server(reply=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    p = proxy(None, "--query-timeout", str(QUERY_TIMEOUT_MS),
              upstreams=[f"127.0.0.1:{srv.port}#dotmock.test"], ca_file=None)
    before = p.stats()
    assert_servfail_in_time(p, "http.test.")
    after = p.stats()
    moved = sum(after[k] - before[k] for k in
                ("upstream_tls_failures", "upstream_connect_failures", "upstream_resets"))
    assert after["upstream_tls_failures"] - before["upstream_tls_failures"] >= 1, after
    assert moved >= 1
    assert srv.accepted >= 1
    assert p.running()


def test_healthy_upstream_takes_traffic_when_another_is_down(mock, proxy):
    m = mock()
    p = proxy(m, "--query-timeout", str(QUERY_TIMEOUT_MS),
              upstreams=[f"127.0.0.1:{closed_port()}#dotmock.test", m.upstream_spec()])
    for i in range(20):
        r, elapsed = timed_query(p, f"h{i}.test.")
        assert r.rcode() == dns.rcode.NOERROR, f"query {i}: {dns.rcode.to_text(r.rcode())}"
        assert elapsed <= QUERY_TIMEOUT_MS / 1000 + SLACK
    s = p.stats()
    assert s["servfail"] == 0, s


def test_slow_upstream_answer_gives_servfail_in_time(mock, proxy):
    m = mock()
    p = proxy(m, "--query-timeout", str(QUERY_TIMEOUT_MS))
    assert p.udp(make_query("warm.test.")).rcode() == dns.rcode.NOERROR
    before = p.stats()
    elapsed = assert_servfail_in_time(p, "delay-3000.test.")
    assert elapsed >= QUERY_TIMEOUT_MS / 1000 * 0.5, f"SERVFAIL too early: {elapsed:.2f}s"
    after = p.stats()
    assert after["upstream_timeouts"] > before["upstream_timeouts"], after
    # The connection still serves other queries (the slow answer arrives later and is dropped).
    r, _ = timed_query(p, "fast.test.")
    assert r.rcode() == dns.rcode.NOERROR
    assert p.running()


def test_upstream_restarted_mid_run(mock, proxy, cert_pair):
    """Asserts: answers before; SERVFAIL (in time) while the upstream is gone; answers again within
    a bounded time once the upstream is back on the same address with the same certificate."""
    cert, key = cert_pair
    port = free_port()
    flags = ("--cert", str(cert), "--key", str(key))
    m1 = mock(*flags, dot=f"127.0.0.1:{port}")
    p = proxy(m1, "--query-timeout", str(QUERY_TIMEOUT_MS), ca_file=str(cert), config=FAST_BACKOFF)
    r, _ = timed_query(p, "before.test.")
    assert r.rcode() == dns.rcode.NOERROR

    assert m1.stop() == 0
    for i in range(3):
        assert_servfail_in_time(p, f"gone{i}.test.")
    assert p.running()

    m2 = mock(*flags, dot=f"127.0.0.1:{port}")
    t0 = time.monotonic()

    def answers():
        r, _ = timed_query(p, "back.test.")
        return r.rcode() == dns.rcode.NOERROR

    wait_for(answers, 10, interval=0.05, what="dotproxy to answer again after the restart")
    recovery = time.monotonic() - t0
    # Back-off is capped at 500 ms here: recovery must not take many times that.
    assert recovery <= 3.0, f"recovered after {recovery:.2f}s"
    assert m2.stats()["handshakes"] >= 1
    s = p.stats()
    assert s["upstream_handshakes"] >= 2, s


def assert_resumed_second_connection(m, p):
    r = p.udp(make_query("second.test."))
    assert r.rcode() == dns.rcode.NOERROR
    ms = m.stats()
    ps = p.stats()
    assert ms["connections"] == 2 and ms["handshakes"] == 2, ms
    assert ps["upstream_connects"] == 2, ps
    # The second handshake to the same dotmock instance resumed the first session.
    assert ms["resumptions"] >= 1, f"dotmock saw no resumed handshake: {ms}"
    assert ps["upstream_resumed"] >= 1, f"dotproxy counted no resumption: {ps} (dotmock: {ms})"


def test_reconnect_after_upstream_idle_close_resumes_tls_session(mock, proxy):
    """Asserts: dotmock (--idle-timeout-ms 300) closes the idle connection with close_notify;
    the next query opens a second connection to the same dotmock instance and its handshake
    resumes the first TLS session (dotmock's `resumptions`, dotproxy's `upstream_resumed`)."""
    m = mock("--idle-timeout-ms", "300")
    p = proxy(m)
    assert p.udp(make_query("first.test.")).rcode() == dns.rcode.NOERROR
    assert "01" in tcp_states(m.dot_port), "no established upstream connection"
    # The connection is gone on both sides (no ESTABLISHED or CLOSE_WAIT socket left on the
    # mock's port): dotproxy has seen the close and dropped the connection.
    wait_for(lambda: not {"01", "08"} & set(tcp_states(m.dot_port)), 5, interval=0.05,
             what="the upstream connection to be closed on both sides")
    assert_resumed_second_connection(m, p)


def test_reconnect_after_own_idle_close_resumes_tls_session(mock, proxy):
    """Asserts: dotproxy ([upstream] idle_timeout_ms = 300) closes its idle connection itself
    (upstream_idle_closes); the next query reconnects to the same dotmock and resumes."""
    m = mock()
    p = proxy(m, config="[upstream]\nidle_timeout_ms = 300\n")
    assert p.udp(make_query("first.test.")).rcode() == dns.rcode.NOERROR
    wait_for(lambda: p.stats()["upstream_idle_closes"] >= 1, 5, interval=0.05,
             what="dotproxy to close its idle upstream connection")
    assert_resumed_second_connection(m, p)


def test_stalled_connection_is_abandoned(mock, proxy, tmp_path):
    """A connection that has gone silent (dotmock drops every query on its first connection, the
    one dotproxy opened at start): the query that times out on it is retried on a new connection
    and answered, the silent one is abandoned and counted as a stall, and the next query goes to
    the new connection. With one connection per upstream, a daemon that kept the silent
    connection would retry on it and SERVFAIL (the old version of this test used one delayed
    answer on a pipelined connection, which never stalls anything else)."""
    faults = tmp_path / "faults"
    faults.write_text("connection 1 drop\n")
    m = mock("--faults", str(faults))
    p = proxy(m, "--query-timeout", "4000",
              config="[upstream]\nattempt_timeout_ms = 500\nconnections_per_upstream = 1\n")
    # The handshake of that connection complete on both sides before the query: the server's
    # post-handshake bytes (TLS 1.3 session tickets) arriving after the query went out would count
    # as "not silent" and delay the stall verdict by a query (pool.cc suspectStall).
    wait_for(lambda: m.stats()["handshakes"] >= 1 and p.stats()["upstream_handshakes"] >= 1, 5,
             what="the connection dotproxy opens at start")
    r, _ = timed_query(p, "silent.test.", timeout=10)
    assert r.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(r.rcode())  # the retry, on connection 2
    # Still silent one more attempt timeout later: stalled, abandoned (pool.cc suspectStall).
    wait_for(lambda: p.stats()["upstream_stalls"] == 1, 5, what="the silent connection counted as a stall")
    for i in range(5):  # none of these goes to the abandoned connection (each would time out there)
        r, _ = timed_query(p, f"next{i}.test.")
        assert r.rcode() == dns.rcode.NOERROR
    s = p.stats()
    assert s["upstream_timeouts"] == 1, str({k: v for k, v in s.items() if k.startswith("upstream")})
    assert s["upstream_stalls"] == 1
    assert m.stats()["connections"] == 2


def test_upstream_that_keeps_stalling_is_avoided(mock, proxy, cert_pair):
    """An upstream that completes the TLS handshake but never answers: after two abandoned
    connections it is put in backoff and the healthy upstream takes every query. Without the
    avoidance, round-robin would send about every other one of the 20 queries to it (10 stalls)."""
    cert, key = cert_pair
    good = mock("--cert", str(cert), "--key", str(key))
    stuck = mock("--cert", str(cert), "--key", str(key), "--delay-ms", "60000")
    config = ("[upstream]\nquery_timeout_ms = 1500\nattempt_timeout_ms = 300\n"
              "backoff_initial_ms = 20000\nbackoff_max_ms = 20000\n")
    p = proxy(None, upstreams=[stuck.upstream_spec(), good.upstream_spec()], ca_file=str(cert),
              config=config)
    for i in range(20):
        r, _ = timed_query(p, f"s{i}.test.")
        assert r.rcode() == dns.rcode.NOERROR, f"query {i}: {dns.rcode.to_text(r.rcode())}"
    s = p.stats()
    assert 1 <= s["upstream_stalls"] <= 2, s
    assert s["servfail"] == 0, s
    assert good.stats()["answers"] >= 20
