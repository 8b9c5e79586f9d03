"""What dotproxy sends upstream and what it accepts back, checked against a scripted DoT server
(Python's ssl module with the suite's certificate): fresh random IDs, padding to 128-byte blocks,
no client ECS; answers with a wrong ID, another question, QR=0, garbage or a cut frame are
discarded and counted, never relayed, and the client gets SERVFAIL in time."""

import socket
import ssl
import struct
import threading
import time

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from conftest import make_query

QUERY_TIMEOUT_MS = 1000
SLACK = 2.5


class ScriptedDot:
    """A DoT server: each query frame is passed to `behaviour(query_wire) -> list of actions`;
    an action is bytes (written as is) or "close". Records every query it received."""

    def __init__(self, cert, key, behaviour, handshake_delay=0.0):
        self.behaviour = behaviour
        self.handshake_delay = handshake_delay
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.queries: list[bytes] = []
        self.connections = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self._threads.append(t)
            t.start()

    def _recv_exact(self, s, n):
        buf = b""
        while len(buf) < n and not self._stop.is_set():
            try:
                chunk = s.recv(n - len(buf))
            except socket.timeout:
                continue
            if not chunk:
                return None
            buf += chunk
        return buf if len(buf) == n else None

    def _serve(self, raw):
        raw.settimeout(5)
        if self.handshake_delay:
            self._stop.wait(self.handshake_delay)  # a slow path: the handshake starts late
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        s.settimeout(0.1)
        try:
            while not self._stop.is_set():
                head = self._recv_exact(s, 2)
                if head is None:
                    return
                wire = self._recv_exact(s, struct.unpack("!H", head)[0])
                if wire is None:
                    return
                self.queries.append(wire)
                for action in self.behaviour(wire):
                    if action == "close":
                        return
                    s.sendall(action)
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


def framed(msg: dns.message.Message | bytes) -> bytes:
    wire = msg if isinstance(msg, bytes) else msg.to_wire()
    return struct.pack("!H", len(wire)) + wire


def good_answer(wire: bytes) -> dns.message.Message:
    q = dns.message.from_wire(wire)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "192.0.2.77"))
    return r


@pytest.fixture
def scripted(cert_pair):
    servers = []

    def start(behaviour, **kw):
        s = ScriptedDot(*cert_pair, behaviour, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def via(proxy, cert_pair):
    def start(server):
        return proxy(None, "--query-timeout", str(QUERY_TIMEOUT_MS),
                     upstreams=[f"127.0.0.1:{server.port}#dotmock.test"], ca_file=str(cert_pair[0]))
    return start


def test_good_scripted_answer_is_relayed(scripted, via):
    srv = scripted(lambda w: [framed(good_answer(w))])
    p = via(srv)
    r = p.udp(make_query("good.test."))
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.77"


def test_upstream_queries_use_fresh_ids_padding_and_no_ecs(scripted, via):
    srv = scripted(lambda w: [framed(good_answer(w))])
    p = via(srv)
    for i in range(20):
        q = make_query(f"id{i}.test.", qid=0x1234, edns=0)
        q.use_edns(0, 0, 1232, options=[dns.edns.ECSOption("192.0.2.0", 24)])
        r = p.udp(q)
        assert r.id == 0x1234 and r.rcode() == dns.rcode.NOERROR
        # The client's ECS option is not echoed back from anywhere either.
        assert all(int(o.otype) != 8 for o in r.options)
    ids = [struct.unpack("!H", w[:2])[0] for w in srv.queries]
    assert len(ids) == 20
    assert len(set(ids)) >= 18, f"upstream IDs are not fresh: {ids}"
    assert ids.count(0x1234) <= 1, f"client IDs reused upstream: {ids}"
    for w in srv.queries:
        q = dns.message.from_wire(w)
        codes = [int(o.otype) for o in q.options]
        assert 8 not in codes, "client ECS forwarded upstream (forward_ecs is off by default)"
        assert 12 in codes, "query sent over TLS without EDNS padding (RFC 8467)"
        assert len(w) % 128 == 0, f"padded query of {len(w)} bytes, not a 128-byte block"


def attack_cases():
    def wrong_id(w):
        r = good_answer(w)
        r.id ^= 0x5A5A
        return [framed(r)]

    def other_question(w):
        q = dns.message.from_wire(w)
        r = dns.message.make_response(dns.message.make_query("evil.example.", "A"))
        r.id = q.id
        r.answer.append(dns.rrset.from_text("evil.example.", 300, "IN", "A", "203.0.113.66"))
        return [framed(r)]

    def qr0(w):
        return [framed(w)]  # the query echoed back: QR=0

    def no_question(w):
        r = good_answer(w)
        wire = bytearray(r.to_wire())
        return [framed(bytes(wire[:4]) + b"\x00\x00\x00\x00\x00\x00\x00\x00")]

    def garbage(w):
        return [framed(w[:2] + b"\x81\x80" + b"\xff" * 30)]

    def cut_frame(w):
        return [struct.pack("!H", 300) + good_answer(w).to_wire()[:20], "close"]

    def reset(w):
        return ["close"]

    return {
        # case: (behaviour, counters of which at least one must move)
        "wrong-id": (wrong_id, ("upstream_mismatch",)),
        "other-question": (other_question, ("upstream_mismatch", "upstream_malformed")),
        "qr0": (qr0, ("upstream_mismatch", "upstream_malformed")),
        "no-question": (no_question, ("upstream_mismatch", "upstream_malformed")),
        "garbage": (garbage, ("upstream_malformed",)),
        "cut-frame": (cut_frame, ("upstream_resets",)),
        "close": (reset, ("upstream_resets",)),
    }


CASES = attack_cases()


@pytest.mark.parametrize("case", list(CASES))
def test_bad_upstream_answer_is_discarded(scripted, via, case):
    behaviour, counters = CASES[case]
    srv = scripted(behaviour)
    p = via(srv)
    for transport in ("udp", "tcp"):
        q = make_query(f"{case}-{transport}.test.", qid=0x2468)
        t0 = time.monotonic()
        r = p.udp(q, timeout=5) if transport == "udp" else p.tcp(q, timeout=5)
        elapsed = time.monotonic() - t0
        assert r.id == 0x2468 and r.question == q.question
        assert r.rcode() == dns.rcode.SERVFAIL, f"{case}: relayed {r}"
        assert not r.answer, f"{case}: an answer was relayed: {r.answer}"
        assert elapsed <= QUERY_TIMEOUT_MS / 1000 + SLACK, f"{case}: SERVFAIL after {elapsed:.2f}s"
    s = p.stats()
    assert sum(s[k] for k in counters) >= 1, f"{case}: none of {counters} moved: {s}"
    assert s["upstream_answers"] == 0, s
    assert p.running()


def test_client_ecs_forwarded_only_when_configured(scripted, proxy, cert_pair):
    srv = scripted(lambda w: [framed(good_answer(w))])
    p = proxy(None, upstreams=[f"127.0.0.1:{srv.port}#dotmock.test"], ca_file=str(cert_pair[0]),
              config="[server]\nforward_ecs = true\n")
    q = make_query("ecs.test.", edns=0)
    q.use_edns(0, 0, 1232, options=[dns.edns.ECSOption("192.0.2.0", 24)])
    assert p.udp(q).rcode() == dns.rcode.NOERROR
    (w,) = srv.queries
    ecs = [o for o in dns.message.from_wire(w).options if int(o.otype) == 8]
    assert len(ecs) == 1 and ecs[0].address == "192.0.2.0" and ecs[0].srclen == 24, ecs


def test_malformed_answer_is_retried_at_once_on_another_connection(scripted, proxy, cert_pair):
    """Our ID on an answer that does not parse: that attempt failed, and the retry goes out at
    once (not after the attempt timeout) on a fresh connection."""
    srv = scripted(lambda w: [framed(w[:2] + b"\x81\x80" + b"\xff" * 30)])
    # An 8 s attempt timeout: a retry that waited for it is told apart from one sent at once by
    # seconds, not by a bound a loaded machine could miss.
    p = proxy(None, "--query-timeout", "16000", config="[upstream]\nattempt_timeout_ms = 8000\n",
              upstreams=[f"127.0.0.1:{srv.port}#dotmock.test"], ca_file=str(cert_pair[0]))
    t0 = time.monotonic()
    r = p.udp(make_query("bad-body.test."), timeout=20)
    elapsed = time.monotonic() - t0
    assert r.rcode() == dns.rcode.SERVFAIL
    assert len(srv.queries) == 2, f"expected one retry, upstream saw {len(srv.queries)} queries"
    assert srv.connections == 2, "the retry must use another connection"
    assert elapsed < 5.0, f"retry waited for the attempt timeout: SERVFAIL after {elapsed:.2f}s"


def test_unanswered_query_is_retried_once_on_another_connection(scripted, via):
    srv = scripted(lambda w: [])
    p = via(srv)
    r = p.udp(make_query("silent.test."), timeout=5)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert len(srv.queries) == 2, f"expected exactly one retry, upstream saw {len(srv.queries)}"
    assert srv.connections == 2, "the retry must use another connection"


def test_slow_answer_within_the_deadline_is_relayed(scripted, proxy, cert_pair):
    """An answer that takes longer than one attempt (a cold cache upstream) but arrives before the
    client's deadline is relayed: the first attempt is not abandoned when the retry goes out."""
    def slow(w):
        time.sleep(1.0)  # this connection's thread only
        return [framed(good_answer(w))]

    srv = scripted(slow)
    p = proxy(None, upstreams=[f"127.0.0.1:{srv.port}#dotmock.test"], ca_file=str(cert_pair[0]),
              config="[upstream]\nquery_timeout_ms = 1800\nattempt_timeout_ms = 600\n")
    assert p.udp(make_query("warm.test."), timeout=5).rcode() == dns.rcode.NOERROR
    r = p.udp(make_query("slow.test."), timeout=5)
    assert r.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(r.rcode())
    assert p.stats()["upstream_stalls"] == 0


def test_slow_handshake_within_connect_timeout_is_used(scripted, proxy, cert_pair):
    """A TLS handshake slower than one attempt timeout (a long path) but within connect_timeout:
    the connection is used, not torn down by the attempt timer."""
    srv = scripted(lambda w: [framed(good_answer(w))], handshake_delay=0.5)
    p = proxy(None, upstreams=[f"127.0.0.1:{srv.port}#dotmock.test"], ca_file=str(cert_pair[0]),
              config="[upstream]\nquery_timeout_ms = 1500\nattempt_timeout_ms = 300\n"
                     "connect_timeout_ms = 1200\n")
    r = p.udp(make_query("far.test."), timeout=5)
    assert r.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(r.rcode())
    s = p.stats()
    assert s["upstream_handshakes"] >= 1 and s["upstream_stalls"] == 0, s
