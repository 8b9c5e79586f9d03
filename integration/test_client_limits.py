"""Per-client limits and one rule per query, whatever the transport: a TCP client gets no more of
its queries taken than tcp_max_inflight and tcp_max_output allow (the rest wait, unread, and are
resumed as room frees up), a client that does not read is closed and counted; a query with
trailing bytes or larger than any query gets FORMERR over UDP and TCP; a fresh answer carries the
TTLs the cache would serve (max_ttl, RFC 2181 8)."""

import socket
import struct
import threading
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from conftest import frame, make_query, recv_frame, tcp_connect, udp_exchange, wait_for

IO = 10.0


def read_answers(s: socket.socket, n: int, timeout: float = 30.0) -> list[dns.message.Message]:
    deadline = time.monotonic() + timeout
    return [dns.message.from_wire(recv_frame(s, deadline)) for _ in range(n)]


# ---------------------------------------------------------------------------- B1: TCP backpressure


def test_one_write_of_700_slow_queries_keeps_tcp_max_inflight(mock_upstream, daemon):
    """700 distinct queries in one write against a slow upstream: at most tcp_max_inflight (128)
    are ever upstream at once (the rest wait in the framer and are taken as answers come back, with
    no new bytes arriving), and every one is answered."""
    m = mock_upstream(faults="label slow delay 400")
    p = daemon(m, config="[upstream]\nattempt_timeout_ms = 4000\nquery_timeout_ms = 8000\n")
    n = 700
    queries = [make_query(f"slow.q{i}.test.", "A", qid=i + 1) for i in range(n)]
    answers: list = []
    errors: list = []
    with tcp_connect(p.addr) as s:
        s.sendall(b"".join(frame(q.to_wire()) for q in queries))  # one write, ~25 KB

        def reader():
            try:
                answers.extend(read_answers(s, n, timeout=60))
            except Exception as e:  # reported by the main thread
                errors.append(e)

        t = threading.Thread(target=reader)
        t.start()
        peak = 0
        deadline = time.monotonic() + 90
        while t.is_alive() and time.monotonic() < deadline:
            c = m.counters()
            peak = max(peak, c["dot_queries"] - c["answers"])
            time.sleep(0.01)  # sampling rate of an observation, not a synchronisation
        t.join(timeout=5)
    assert not errors, errors
    assert peak <= 128, f"{peak} queries in flight upstream for one TCP client (limit 128)"
    assert peak >= 32, f"the upstream never saw the client's queries in parallel: peak {peak}"
    assert sorted(r.id for r in answers) == list(range(1, n + 1))
    assert all(r.rcode() == dns.rcode.NOERROR for r in answers)
    ps = p.stats()
    assert ps["tcp_queries"] == n and ps.get("tcp_paused", 0) >= 1, ps
    assert m.counters()["dot_queries"] == n


BIG = "txt-60000.test."


def test_clients_that_never_read_are_bounded_then_closed(mock_upstream, daemon):
    """Four clients pipeline 16 KiB of queries for a 60 KB cached answer and never read: the
    daemon keeps at most tcp_max_output (+ one answer) of unsent answers for each (RSS grows by a
    few MiB, not by 28 MiB each), closes each after tcp_idle_timeout without progress (counted as
    slow), and a client that reads still gets every answer."""
    m = mock_upstream()
    p = daemon(m, config="[server]\ntcp_idle_timeout_ms = 1500\n")
    with tcp_connect(p.addr) as s:  # warm the cache over TCP (the answer does not fit UDP)
        s.sendall(frame(make_query(BIG, "TXT", qid=1).to_wire()))
        (r,) = read_answers(s, 1)
        assert r.rcode() == dns.rcode.NOERROR and len(r.to_wire()) > 60000
    wait_for(lambda: p.stats()["cache_inserts"] >= 1, IO, what="the big answer cached")
    before = p.stats()
    rss0 = p.rss()

    per_client = 16384 // len(frame(make_query(BIG, "TXT").to_wire()))  # 16 KiB of queries
    burst = b"".join(frame(make_query(BIG, "TXT", qid=i).to_wire()) for i in range(per_client))
    hogs = []
    for _ in range(4):
        h = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        h.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little for it
        h.settimeout(IO)
        h.connect(p.addr)
        h.sendall(burst)
        hogs.append(h)
    try:
        # Each hog has its answers' room full: it is paused, its other queries left unread.
        def settled():
            st = p.stats()
            return (st.get("tcp_paused", 0) - before.get("tcp_paused", 0) >= 4
                    or st["cache_hits"] - before["cache_hits"] >= 4 * per_client)

        wait_for(settled, IO, what="four paused (or fully answered) clients")
        grown = p.rss() - rss0
        assert grown < 12 << 20, f"RSS grew by {grown >> 20} MiB for 4 clients that do not read"
        hits = p.stats()["cache_hits"] - before["cache_hits"]
        assert hits < 4 * per_client, f"every query of the non-readers was answered ({hits})"

        # A client that reads meanwhile is answered in full.
        with tcp_connect(p.addr) as s:
            s.sendall(b"".join(frame(make_query(BIG, "TXT", qid=i).to_wire()) for i in range(100)))
            got = read_answers(s, 100)
            assert sorted(r.id for r in got) == list(range(100))
            assert all(r.rcode() == dns.rcode.NOERROR and r.answer for r in got)

        # The non-readers make no progress: closed after the idle timeout, counted as slow.
        wait_for(lambda: p.stats().get("tcp_closed_slow", 0) - before.get("tcp_closed_slow", 0) >= 4,
                 IO, what="the four non-readers closed as slow")
        after = p.stats()
        assert after["tcp_closed_idle"] == before["tcp_closed_idle"], after
    finally:
        for h in hogs:
            h.close()


def test_paused_client_resumes_when_it_reads(mock_upstream, daemon):
    """A client paused at tcp_max_output is resumed once it reads: the queries it sent before it
    started reading are all answered, though no new bytes arrive after them."""
    m = mock_upstream()
    p = daemon(m, config="[server]\ntcp_max_output = 4096\n")
    n = 200
    h = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    h.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    h.settimeout(IO)
    h.connect(p.addr)
    with h:
        h.sendall(b"".join(frame(make_query("txt-4000.test.", "TXT", qid=i).to_wire())
                           for i in range(n)))
        wait_for(lambda: p.stats().get("tcp_paused", 0) >= 1, IO, what="the client paused")
        got = read_answers(h, n)
    assert sorted(r.id for r in got) == list(range(n))
    assert all(r.rcode() == dns.rcode.NOERROR for r in got)


# ---------------------------------------------------------------- B2: one message, of a query's size


def padded_query(name: str, size: int, qid: int) -> bytes:
    """A well-formed query of exactly `size` bytes: its OPT carries a padding option."""
    q = make_query(name, "A", qid=qid, edns=0)
    base = len(q.to_wire())
    wire = bytearray(q.to_wire())
    pad = size - base - 4
    assert pad >= 0
    # The OPT is the last record: grow its rdata by one padding option (code 12).
    struct.pack_into("!H", wire, len(wire) - 2, 4 + pad)
    wire += struct.pack("!HH", 12, pad) + bytes(pad)
    assert len(wire) == size
    return bytes(wire)


def test_trailing_bytes_get_formerr_over_udp_and_tcp(mock_upstream, daemon):
    m = mock_upstream()
    p = daemon(m)
    before = p.stats()
    wire = make_query("trail.test.", "A", qid=0x5151).to_wire() + b"\xde\xad"
    r = udp_exchange(p.addr, wire)
    assert r is not None
    r = dns.message.from_wire(r, question_only=True)
    assert r.rcode() == dns.rcode.FORMERR and r.id == 0x5151
    with tcp_connect(p.addr) as s:
        s.sendall(frame(wire))
        (r,) = read_answers(s, 1)
        assert r.rcode() == dns.rcode.FORMERR and r.id == 0x5151
        # The same query without the junk is answered on the same connection.
        s.sendall(frame(make_query("trail.test.", "A", qid=0x5152).to_wire()))
        (r,) = read_answers(s, 1)
        assert r.rcode() == dns.rcode.NOERROR
    after = p.stats()
    assert after["formerr"] - before["formerr"] == 2, after
    assert after["upstream_queries"] - before["upstream_queries"] == 1, after


def test_tcp_query_larger_than_any_query_gets_formerr(mock_upstream, daemon):
    """A query is at most 4096 bytes over every transport (the UDP receive size): a 5000-byte TCP
    query, well formed but for its size, gets FORMERR; one of 4096 bytes is answered."""
    m = mock_upstream()
    p = daemon(m)
    before = p.stats()
    with tcp_connect(p.addr) as s:
        s.sendall(frame(padded_query("big.test.", 5000, 0x6161)))
        (r,) = read_answers(s, 1)
        assert r.rcode() == dns.rcode.FORMERR and r.id == 0x6161
        s.sendall(frame(padded_query("big.test.", 4096, 0x6162)))
        (r,) = read_answers(s, 1)
        assert r.rcode() == dns.rcode.NOERROR and r.id == 0x6162
    r = udp_exchange(p.addr, padded_query("big.test.", 5000, 0x6163))
    assert r is not None and dns.message.from_wire(r, question_only=True).rcode() == dns.rcode.FORMERR
    after = p.stats()
    assert after["formerr"] - before["formerr"] == 2, after


# ---------------------------------------------------------------- B13: fresh and cached TTLs agree


def skip_name(wire: bytes, at: int) -> int:
    while True:
        n = wire[at]
        if n & 0xC0 == 0xC0:
            return at + 2
        at += 1 + n
        if n == 0:
            return at


def ttls(wire: bytes) -> list[int]:
    """The answer section's TTL fields as on the wire (dnspython reads a top-bit TTL as 0)."""
    qd, an = struct.unpack_from("!HH", wire, 4)
    assert qd == 1 and an >= 1
    at = skip_name(wire, 12) + 4
    out = []
    for _ in range(an):
        at = skip_name(wire, at)
        _, _, ttl, rdlength = struct.unpack_from("!HHIH", wire, at)
        out.append(ttl)
        at += 10 + rdlength
    return out


def test_fresh_and_cached_answers_carry_the_same_capped_ttl(mock_upstream, daemon):
    m = mock_upstream("--ttl", "200000")
    p = daemon(m, config="[cache]\nmax_ttl = 3600\n")
    fresh = p_udp(p, "cap.test.")
    cached = p_udp(p, "cap.test.")
    assert p.stats()["cache_hits"] == 1
    assert ttls(fresh) == [3600], fresh
    assert ttls(cached) == ttls(fresh)


def test_ttl_with_the_top_bit_set_is_zero_fresh_and_cached(mock_upstream, daemon):
    # RFC 2181 8: a TTL with the top bit set means 0. min_ttl keeps the entry in the cache, so
    # the second answer is a cache hit.
    m = mock_upstream("--ttl", str(0x8000000A))
    p = daemon(m, config="[cache]\nmin_ttl = 60\n")
    fresh = p_udp(p, "top.test.")
    cached = p_udp(p, "top.test.")
    assert p.stats()["cache_hits"] == 1
    assert ttls(fresh) == [0], fresh
    assert ttls(cached) == ttls(fresh)


def p_udp(p, name: str) -> bytes:
    wire = udp_exchange(p.addr, make_query(name, "A").to_wire())
    assert wire is not None
    r = dns.message.from_wire(wire)
    assert r.rcode() == dns.rcode.NOERROR and r.answer, r
    return wire
