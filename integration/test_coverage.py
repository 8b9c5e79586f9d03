"""Settings and promises of the README that no other suite checked, each through the daemon over
real sockets: tcp_max_clients across workers, tcp_max_inflight, max_udp_size, a non-default
padding_block (the bytes the upstream receives), serve_stale = false, negative_max_ttl and
servfail_ttl, SIGTERM stopping new work while in-flight queries finish, an upstream that offers
only TLS 1.1 refused, and cache evictions under a small cache.size."""

from __future__ import annotations

import heapq
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from conftest import (IO_TIMEOUT, frame, free_port, make_query, recv_frame, require_tool,
                      split_hostport, tcp_connect, udp_exchange, wait_closed, wait_for)


# --------------------------------------------------------------------------------------------
# a DoT upstream in Python that records every query's bytes and holds each answer for a while


class HoldingDot:
    """A TLS upstream (the suite's certificate for dotmock.test) that answers every query with an
    A record after `hold` seconds, from one thread per connection (reads and writes of one TLS
    connection never run in two threads at once). It records the wire of every query and the
    largest number of queries it held unanswered at once, over all connections."""

    def __init__(self, cert, key, hold: float = 0.0):
        self.hold = hold
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.queries: list[bytes] = []
        self.outstanding = 0
        self.max_outstanding = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def spec(self) -> str:
        return f"127.0.0.1:{self.port}#dotmock.test"

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, raw):
        raw.settimeout(5)
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        s.settimeout(0.01)
        buf = b""
        due: list[tuple[float, int, bytes]] = []  # (when, seq, answer frame)
        seq = 0
        try:
            while not self._stop.is_set():
                try:
                    chunk = s.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                except (socket.timeout, ssl.SSLWantReadError):
                    pass
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                    n = struct.unpack("!H", buf[:2])[0]
                    wire, buf = buf[2:2 + n], buf[2 + n:]
                    q = dns.message.from_wire(wire)
                    r = dns.message.make_response(q)
                    r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A",
                                                        "192.0.2.88"))
                    with self.lock:
                        self.queries.append(wire)
                        self.outstanding += 1
                        self.max_outstanding = max(self.max_outstanding, self.outstanding)
                    seq += 1
                    heapq.heappush(due, (time.monotonic() + self.hold, seq, frame(r.to_wire())))
                while due and due[0][0] <= time.monotonic():
                    _, _, out = heapq.heappop(due)
                    with self.lock:
                        self.outstanding -= 1
                    s.sendall(out)
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(timeout=5)


@pytest.fixture
def holding(cert_pair):
    servers = []

    def start(hold: float = 0.0) -> HoldingDot:
        s = HoldingDot(*cert_pair, hold=hold)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def via(proxy, cert_pair, server, config: str, **kw):
    return proxy(None, upstreams=[server.spec()], ca_file=str(cert_pair[0]), config=config, **kw)


def http_get(addr, path, timeout=5.0):
    try:
        with urllib.request.urlopen(f"http://{addr[0]}:{addr[1]}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def read_answers(s: socket.socket, n: int, timeout: float) -> list[dns.message.Message]:
    deadline = time.monotonic() + timeout
    return [dns.message.from_wire(recv_frame(s, deadline)) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# [server]


@pytest.mark.multiworker
def test_tcp_max_clients_is_one_limit_for_all_workers(mock, proxy):
    """tcp_max_clients is for the whole process (README): with 3 workers and a cap of 4, four
    clients are served wherever the kernel put them, a fifth is closed at once and counted, and
    a new client is served again once one leaves. (Per-worker caps would let up to 12 in.)"""
    m = mock()
    p = proxy(m, config="[server]\ntcp_max_clients = 4\n", workers=3)
    held = [tcp_connect(p.addr) for _ in range(4)]
    try:
        for i, s in enumerate(held):
            s.sendall(frame(make_query(f"cap{i}.test.", qid=i).to_wire()))
            assert dns.message.from_wire(recv_frame(s, time.monotonic() + IO_TIMEOUT)).id == i
        before = p.stats()["tcp_refused_overload"]
        for i in range(4):  # several tries: a per-worker cap would let some of them in
            extra = tcp_connect(p.addr)
            try:
                extra.sendall(frame(make_query(f"over{i}.test.", qid=100 + i).to_wire()))
                wait_closed(extra, IO_TIMEOUT)
            finally:
                extra.close()
        wait_for(lambda: p.stats()["tcp_refused_overload"] - before == 4, 5,
                 what="4 refused connections counted")
        held.pop().close()

        def served_again():
            with tcp_connect(p.addr) as s:
                s.sendall(frame(make_query("again.test.", qid=7).to_wire()))
                try:
                    return dns.message.from_wire(recv_frame(s, time.monotonic() + 2)).id == 7
                except (ConnectionError, TimeoutError):
                    return False  # the freed slot is not counted free yet

        wait_for(served_again, 10, interval=0.1, what="a new client served after one left")
    finally:
        for s in held:
            s.close()


def test_tcp_max_inflight_bounds_one_clients_queries_upstream(proxy, holding, cert_pair):
    """tcp_max_inflight = 4: a client that pipelines 24 queries never has more than 4 of them in
    flight upstream at once (measured by the upstream, which holds each answer 0.3 s), and still
    gets all 24 answers."""
    up = holding(hold=0.3)
    p = via(proxy, cert_pair, up, "[server]\ntcp_max_inflight = 4\n[cache]\nsize = 0\n")
    qs = [make_query(f"pipe{i}.test.", qid=1000 + i) for i in range(24)]
    with tcp_connect(p.addr) as s:
        s.sendall(b"".join(frame(q.to_wire()) for q in qs))
        got = read_answers(s, len(qs), 30)
    assert sorted(r.id for r in got) == [q.id for q in qs]
    for r in got:
        assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.88", r
    assert len(up.queries) == 24, len(up.queries)
    assert 1 <= up.max_outstanding <= 4, f"{up.max_outstanding} queries of one client upstream at once"


def test_max_udp_size_caps_udp_replies_and_is_our_edns_size(mock, proxy):
    """max_udp_size = 600: a client offering 4096 gets at most 600 bytes over UDP (a larger answer
    is truncated with TC=1, the full one comes over TCP), and our OPT says 600."""
    m = mock()
    p = proxy(m, config="[server]\nmax_udp_size = 600\n")
    # An answer of about 900 bytes: under the default 1232, over 600.
    q = make_query("txt-800.test.", "TXT", edns=0, payload=4096)
    wire = udp_exchange(p.addr, q.to_wire())
    assert wire is not None, "no UDP reply"
    assert len(wire) <= 600, len(wire)
    r = dns.message.from_wire(wire)
    assert r.flags & dns.flags.TC, "an answer over 600 bytes was not truncated"
    assert r.payload == 600, r.payload
    full = p.tcp(make_query("txt-800.test.", "TXT", edns=0, payload=4096))
    assert not full.flags & dns.flags.TC and len(full.to_wire()) > 600
    # A small answer still fits: no truncation below the cap.
    small = p.udp(make_query("small.test.", edns=0, payload=4096))
    assert not small.flags & dns.flags.TC and small.payload == 600


def test_max_udp_size_default_lets_the_same_answer_through(mock, proxy):
    """The control for the test above: with the default (1232) the same answer is not truncated."""
    m = mock()
    p = proxy(m)
    r = p.udp(make_query("txt-800.test.", "TXT", edns=0, payload=4096))
    assert not r.flags & dns.flags.TC and r.payload == 1232


# --------------------------------------------------------------------------------------------
# [upstream]


@pytest.mark.parametrize("block", [0, 64, 256])
def test_padding_block_sets_the_length_the_upstream_receives(proxy, holding, cert_pair, block):
    """padding_block (RFC 8467): every query the upstream receives is a multiple of the block and
    carries the padding option; 0 sends none. Checked on the bytes received, for a short and a long
    name (lengths that 128-byte padding would not make multiples of 256)."""
    up = holding()
    p = via(proxy, cert_pair, up, f"[upstream]\npadding_block = {block}\n")
    for name in ("a.test.", "a-much-longer-name.with.several.labels.test."):
        assert p.udp(make_query(name)).rcode() == dns.rcode.NOERROR
        wire = up.queries[-1]
        codes = [int(o.otype) for o in dns.message.from_wire(wire).options]
        if block == 0:
            assert 12 not in codes, f"padding option sent with padding_block = 0: {len(wire)} bytes"
        else:
            assert 12 in codes, "no padding option"
            assert len(wire) % block == 0, f"{name}: {len(wire)} bytes, not a multiple of {block}"
    if block == 256:
        assert all(len(w) == 256 for w in up.queries), [len(w) for w in up.queries]


def test_connect_failure_does_not_idle_a_live_connection_to_the_same_upstream(mock_upstream,
                                                                              daemon):
    """The first connection stalls in its handshake; the query is retried on a second connection
    and answered. When the stalled one then fails its connect timeout, the second is still up:
    queries must go on being answered over it, not SERVFAIL for the backoff (5 s here)."""
    m = mock_upstream(faults="connection 1 stall-handshake")
    p = daemon(m, workers=1, config=(
        "[upstream]\nconnections_per_upstream = 1\nquery_timeout_ms = 1500\n"
        "attempt_timeout_ms = 400\nconnect_timeout_ms = 2000\nbackoff_initial_ms = 5000\n"
        "backoff_max_ms = 5000\n[cache]\nsize = 0\n"))
    assert p.query("first.test", timeout=5).message.rcode_text == "NOERROR"
    wait_for(lambda: p.stats()["upstream_connect_failures"] >= 1, 10,
             what="the stalled handshake to fail its connect timeout")
    for i in range(3):
        a = p.query(f"after{i}.test", timeout=5)
        assert a.message.rcode_text == "NOERROR", (a.message, {
            k: v for k, v in p.stats().items() if k.startswith("upstream")})


def test_upstream_offering_only_tls_1_1_is_refused(processes, proxy, cert_pair):
    """README: TLS 1.2 minimum. An upstream (openssl s_server) that speaks only TLS 1.1 really
    completes a TLS 1.1 handshake with a client that allows it (openssl s_client, checked first,
    so the test cannot pass for another reason), and dotproxy refuses it: SERVFAIL, a TLS
    failure counted, no handshake, no answer."""
    openssl = require_tool("openssl")
    cert, key = cert_pair
    port = free_port()
    legacy = ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]
    srv = processes.start([openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", cert,
                           "-key", key, *legacy, "-www"], "s_server")  # -www: stdin EOF is no stop
    srv.expect_failure = True  # s_server ends by SIGTERM (exit -15): not a daemon of ours
    srv.read_line(10, lambda line: "ACCEPT" in line)

    proof = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}",
                            "-servername", "dotmock.test", *legacy],
                           input="", capture_output=True, text=True, timeout=30)
    assert proof.returncode == 0, proof.stdout[-2000:] + proof.stderr[-2000:]
    assert "Protocol  : TLSv1.1" in proof.stdout, proof.stdout[-3000:]
    assert "Cipher is (NONE)" not in proof.stdout, proof.stdout[-3000:]
    # ... and it offers nothing newer: a TLS 1.2 client gets no handshake.
    modern = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}",
                             "-servername", "dotmock.test", "-tls1_2"],
                            input="", capture_output=True, text=True, timeout=30)
    assert modern.returncode != 0 and "Cipher is (NONE)" in modern.stdout, modern.stdout[-3000:]

    p = proxy(None, "--query-timeout", "1500", upstreams=[f"127.0.0.1:{port}#dotmock.test"],
              ca_file=str(cert), log_level="error")
    r = p.udp(make_query("old.test."), timeout=10)
    assert r.rcode() == dns.rcode.SERVFAIL, r
    s = wait_for(lambda: (x := p.stats()) and x["upstream_tls_failures"] >= 1 and x, 10,
                 what="a TLS failure counted")
    # (A query may have been queued on the connection before its handshake failed, so
    # upstream_queries is not asserted: no handshake means nothing was sent or answered.)
    assert s["upstream_handshakes"] == 0, s
    assert s["upstream_answers"] == 0, s


# --------------------------------------------------------------------------------------------
# [cache]


def mock_queries(m) -> int:
    return m.stats()["dot_queries"]


def test_serve_stale_false_gives_servfail_not_an_expired_answer(mock, proxy):
    """serve_stale = false: once the entry expired and the upstream is gone, SERVFAIL (never the
    expired answer with TTL 30) and no stale answer counted."""
    m = mock("--ttl", "1")
    p = proxy(m, "--query-timeout", "800", config="[cache]\nserve_stale = false\n")
    r = p.udp(make_query("stale.test."))
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0].ttl == 1
    m.stop()

    def expired_answer():
        r = p.udp(make_query("stale.test."), timeout=5)
        assert not (r.answer and r.answer[0].ttl == 30), f"a stale answer was served: {r}"
        return r.rcode() == dns.rcode.SERVFAIL

    wait_for(expired_answer, 10, interval=0.1, what="SERVFAIL once the entry expired")
    assert p.stats()["cache_stale"] == 0


def test_negative_max_ttl_caps_nxdomain_in_the_cache(mock, proxy):
    """negative_max_ttl = 2 with an upstream SOA minimum of 600 s: the NXDOMAIN is answered from
    the cache (TTL at most 2) and asked again upstream once 2 s have passed, not after 600."""
    m = mock("--negative-ttl", "600")
    p = proxy(m, config="[cache]\nnegative_max_ttl = 2\n")
    r = p.udp(make_query("nx.neg.test."))
    assert r.rcode() == dns.rcode.NXDOMAIN
    asked = mock_queries(m)
    r2 = p.udp(make_query("nx.neg.test."))
    assert r2.rcode() == dns.rcode.NXDOMAIN
    assert mock_queries(m) == asked, "the NXDOMAIN was not cached"
    assert r2.authority and all(rr.ttl <= 2 for rr in r2.authority), r2
    t0 = time.monotonic()
    wait_for(lambda: p.udp(make_query("nx.neg.test.")).rcode() == dns.rcode.NXDOMAIN
             and mock_queries(m) > asked, 15, interval=0.1, what="the NXDOMAIN asked again")
    assert time.monotonic() - t0 >= 0.5  # cached for a while first


def test_servfail_ttl_is_how_long_an_upstream_servfail_is_cached(mock, proxy, tmp_path):
    """servfail_ttl = 8 (default 5): an upstream SERVFAIL is answered from the cache for 8 s — at
    6 s it still is (the default would have expired), and then it is asked again."""
    faults = tmp_path / "faults"
    faults.write_text("label sf servfail\n")
    m = mock("--faults", str(faults))
    p = proxy(m, config="[cache]\nservfail_ttl = 8\n")
    t0 = time.monotonic()
    assert p.udp(make_query("sf.test.")).rcode() == dns.rcode.SERVFAIL
    asked = mock_queries(m)
    assert asked >= 1
    while time.monotonic() - t0 < 6:  # polling, not synchronisation: the answer must not change
        assert p.udp(make_query("sf.test.")).rcode() == dns.rcode.SERVFAIL
        assert mock_queries(m) == asked, f"asked upstream again after {time.monotonic() - t0:.1f}s"
        time.sleep(0.25)
    wait_for(lambda: p.udp(make_query("sf.test.")).rcode() == dns.rcode.SERVFAIL
             and mock_queries(m) > asked, 15, interval=0.1, what="the SERVFAIL asked again")
    assert p.stats()["cache_hits"] >= 10


def test_small_cache_evicts_and_counts_evictions(mock, proxy):
    """cache.size = 32 KiB: 600 distinct answers do not fit; entries are evicted to make room, the
    bytes stay within the size, and the evictions are counted in the stats and /metrics."""
    m = mock()
    size = 32768
    p = proxy(m, "--metrics", "127.0.0.1:0", config=f"[cache]\nsize = {size}\nshards = 1\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(IO_TIMEOUT)
        for i in range(600):
            q = make_query(f"ev{i}.test.")
            s.sendto(q.to_wire(), p.addr)
            while True:
                r = dns.message.from_wire(s.recvfrom(65535)[0])
                if r.id == q.id:
                    break
            assert r.rcode() == dns.rcode.NOERROR
    st = p.stats()
    assert st["cache_inserts"] == 600, st
    addr = split_hostport(p.ready["metrics"])
    status, body = http_get(addr, "/metrics")
    assert status == 200
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, v = line.partition(" ")
            samples[name] = float(v)
    assert "dotproxy_cache_evictions_total" in samples, "no evictions metric"
    evictions = samples["dotproxy_cache_evictions_total"]
    entries = samples["dotproxy_cache_entries"]
    assert evictions >= 1, samples
    assert evictions + entries == 600, (evictions, entries)
    assert samples["dotproxy_cache_bytes"] <= size, samples["dotproxy_cache_bytes"]


# --------------------------------------------------------------------------------------------
# SIGTERM


def test_sigterm_stops_new_work_while_in_flight_queries_finish(mock, proxy):
    """After SIGTERM (README: draining while in-flight queries finish): a query already in flight
    over TCP still gets its answer, while a new TCP connection is refused or never served and a
    new UDP query gets no answer; then dotproxy exits 0."""
    m = mock()
    p = proxy(m, "--metrics", "127.0.0.1:0", "--query-timeout", "8000",
              config="[server]\nshutdown_grace_ms = 10000\n"
                     # one attempt, no stall verdict: the 2.5 s answer is slow, not lost
                     "[upstream]\nattempt_timeout_ms = 4000\n")
    maddr = split_hostport(p.ready["metrics"])
    before = m.stats()["dot_queries"]
    inflight = tcp_connect(p.addr)
    try:
        inflight.sendall(frame(make_query("delay-2500.test.", qid=77).to_wire()))
        wait_for(lambda: m.stats()["dot_queries"] > before, 5, what="the query to reach dotmock")
        p.process.signal(signal.SIGTERM)
        wait_for(lambda: "draining" in http_get(maddr, "/readyz")[1], 5,
                 what="/readyz to say draining")  # dotproxy has taken the signal

        # A new TCP client: refused, or accepted by the kernel but never served.
        try:
            fresh = tcp_connect(p.addr, timeout=2)
        except (ConnectionRefusedError, socket.timeout):
            fresh = None
        if fresh is not None:
            with fresh:
                try:
                    fresh.sendall(frame(make_query("new.test.", qid=78).to_wire()))
                    fresh.settimeout(2)
                    data = fresh.recv(4096)
                    assert data == b"", f"a connection made after SIGTERM was served: {data!r}"
                except (socket.timeout, ConnectionResetError, BrokenPipeError):
                    pass
        assert udp_exchange(p.addr, make_query("new-udp.test.").to_wire(), timeout=2) is None, \
            "a UDP query sent after SIGTERM was answered"

        r = dns.message.from_wire(recv_frame(inflight, time.monotonic() + 10))
        assert r.id == 77 and r.rcode() == dns.rcode.NOERROR, r
        assert r.answer[0][0].address == "192.0.2.1"
    finally:
        inflight.close()
    try:
        p.process.popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("dotproxy did not exit after its in-flight query finished")
    assert p.stop() == 0
