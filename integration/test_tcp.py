"""DNS over TCP from clients (RFC 7766): pipelining with out-of-order answers, framing split across
segments or packed into one, half-closed connections, idle and slow clients closed after a timeout."""

import socket
import struct
import time

import dns.message
import dns.rcode
import pytest

from conftest import frame, make_query, recv_frame, tcp_connect, wait_closed, wait_for

IDLE_MS = 300
IDLE_CONFIG = f"[server]\ntcp_idle_timeout_ms = {IDLE_MS}\n"


@pytest.fixture
def pair(mock, proxy):
    m = mock()
    return m, proxy(m)


def read_answers(s: socket.socket, n: int, timeout: float = 10.0) -> list[dns.message.Message]:
    deadline = time.monotonic() + timeout
    return [dns.message.from_wire(recv_frame(s, deadline)) for _ in range(n)]


def test_hundred_pipelined_queries_in_one_send(pair):
    m, p = pair
    queries = [make_query(f"p{i}.test.", "A", qid=i + 1) for i in range(100)]
    # An established upstream connection first: then 100 queries fit on it
    # (max_inflight_per_connection = 100; more connections open only when it is full).
    assert p.udp(make_query("warm.test.")).rcode() == dns.rcode.NOERROR
    before = m.stats()
    with tcp_connect(p.addr) as s:
        s.sendall(b"".join(frame(q.to_wire()) for q in queries))  # one send, 100 messages
        answers = read_answers(s, 100)
    by_id = {r.id: r for r in answers}
    assert sorted(by_id) == list(range(1, 101)), "missing or duplicated IDs"
    for q in queries:
        r = by_id[q.id]
        assert r.question == q.question, (q.id, r.question)
        assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.1"
    after = m.stats()
    assert after["dot_queries"] - before["dot_queries"] == 100
    ps = p.stats()
    assert ps["tcp_connections"] == 1 and ps["tcp_queries"] == 100, ps
    assert ps["upstream_connects"] == 1, f"100 queries did not ride one upstream connection: {ps}"


def test_pipelined_answers_come_out_of_order(pair):
    m, p = pair
    # Delayed names first, fast ones after: a server answering in order would return 1, 2, ...
    names = ["delay-400.test.", "delay-200.test."] + [f"f{i}.test." for i in range(8)]
    queries = [make_query(n, "A", qid=100 + i) for i, n in enumerate(names)]
    with tcp_connect(p.addr) as s:
        s.sendall(b"".join(frame(q.to_wire()) for q in queries))
        answers = read_answers(s, len(queries))
    sent_order = [q.id for q in queries]
    got_order = [r.id for r in answers]
    assert sorted(got_order) == sorted(sent_order)
    assert got_order != sent_order, "answers came back in query order: no out-of-order delivery"
    # The fast ones must not wait for the slow ones.
    assert got_order[-2:] == [101, 100], got_order
    for r in answers:
        assert r.rcode() == dns.rcode.NOERROR


def test_length_prefix_and_body_split_across_sends(pair):
    m, p = pair
    q = make_query("split.test.", "A", qid=0x7001)
    wire = frame(q.to_wire())
    with tcp_connect(p.addr) as s:
        # Each piece is its own segment (TCP_NODELAY); the last send completes the message.
        for piece in (wire[:1], wire[1:2], wire[2:7], wire[7:]):
            s.sendall(piece)
        r = dns.message.from_wire(recv_frame(s, time.monotonic() + 5))
        assert r.id == 0x7001 and r.answer[0][0].address == "192.0.2.1"
        # The same connection keeps working after a split message.
        q2 = make_query("split2.test.", "AAAA", qid=0x7002)
        s.sendall(frame(q2.to_wire()))
        r2 = dns.message.from_wire(recv_frame(s, time.monotonic() + 5))
        assert r2.id == 0x7002 and r2.answer[0][0].address == "2001:db8::1"


def test_several_queries_in_one_segment_with_a_partial_tail(pair):
    m, p = pair
    qs = [make_query(f"seg{i}.test.", "A", qid=0x7100 + i) for i in range(3)]
    last = frame(make_query("seg-tail.test.", "A", qid=0x7200).to_wire())
    with tcp_connect(p.addr) as s:
        s.sendall(b"".join(frame(q.to_wire()) for q in qs) + last[:5])
        got = {r.id for r in read_answers(s, 3)}
        assert got == {0x7100, 0x7101, 0x7102}
        s.sendall(last[5:])
        (r,) = read_answers(s, 1)
        assert r.id == 0x7200


def test_half_closed_connection_is_still_answered(pair):
    m, p = pair
    qs = [make_query(f"half{i}.test.", "A", qid=0x7300 + i) for i in range(3)]
    qs.append(make_query("delay-200.test.", "A", qid=0x7310))
    with tcp_connect(p.addr) as s:
        s.sendall(b"".join(frame(q.to_wire()) for q in qs))
        s.shutdown(socket.SHUT_WR)  # the client is done sending, still reading
        got = {r.id for r in read_answers(s, len(qs))}
        assert got == {q.id for q in qs}
        # Then the server closes its side too.
        wait_closed(s, 5)


def test_idle_client_is_closed_after_timeout(mock, proxy):
    m = mock()
    p = proxy(m, config=IDLE_CONFIG)
    before = p.stats()
    with tcp_connect(p.addr) as s:
        elapsed = wait_closed(s, 5)
    # Closed by the idle timer, not at once and not much later.
    assert IDLE_MS / 1000 * 0.8 <= elapsed <= 3.0, elapsed
    wait_for(lambda: p.stats()["tcp_closed_idle"] - before["tcp_closed_idle"] >= 1, 3,
             what="tcp_closed_idle to move")


def test_idle_timer_restarts_after_an_answer(mock, proxy):
    m = mock()
    p = proxy(m, config=IDLE_CONFIG)
    with tcp_connect(p.addr) as s:
        for i in range(3):  # three queries ~ IDLE_MS/2 apart: the connection stays open
            t0 = time.monotonic()
            s.sendall(frame(make_query(f"keep{i}.test.", qid=i + 1).to_wire()))
            (r,) = read_answers(s, 1)
            assert r.id == i + 1
            # Wait half the idle period, checking the connection is not closed meanwhile.
            s.settimeout(max(0.0, IDLE_MS / 2000 - (time.monotonic() - t0)))
            try:
                data = s.recv(1)
                pytest.fail(f"connection closed or spoke early: {data!r}")
            except socket.timeout:
                pass
        wait_closed(s, 5)


def test_slow_client_with_half_a_message_is_closed(mock, proxy):
    m = mock()
    p = proxy(m, config=IDLE_CONFIG)
    before = p.stats()
    wire = frame(make_query("slow.test.", "A").to_wire())
    with tcp_connect(p.addr) as s:
        s.sendall(wire[: len(wire) // 2])  # and never the rest
        elapsed = wait_closed(s, 5)
    assert elapsed <= 3.0, elapsed
    after = p.stats()
    closed = (after["tcp_closed_idle"] - before["tcp_closed_idle"]) + (
        after["tcp_closed_error"] - before["tcp_closed_error"])
    assert closed >= 1, after
    assert after["upstream_queries"] == before["upstream_queries"]


def test_client_with_only_a_length_byte_is_closed(mock, proxy):
    m = mock()
    p = proxy(m, config=IDLE_CONFIG)
    with tcp_connect(p.addr) as s:
        s.sendall(b"\x00")
        wait_closed(s, 5)
    assert p.running()


def test_zero_length_frame_does_not_kill_the_daemon(pair):
    m, p = pair
    with tcp_connect(p.addr) as s:
        s.sendall(struct.pack("!H", 0))
        try:
            s.settimeout(3)
            s.recv(100)
        except (socket.timeout, ConnectionResetError):
            pass
    r = p.tcp(make_query("alive.test."))
    assert r.rcode() == dns.rcode.NOERROR


def test_concurrent_tcp_clients_are_capped(mock, proxy):
    """tcp_max_clients = 2: a third concurrent client is closed at once and counted; once one of
    the first two leaves, a new client is served again."""
    m = mock()
    p = proxy(m, config="[server]\ntcp_max_clients = 2\n")
    first, second = tcp_connect(p.addr), tcp_connect(p.addr)
    for i, s in enumerate((first, second)):
        s.sendall(frame(make_query(f"c{i}.test.", qid=i).to_wire()))
        assert dns.message.from_wire(recv_frame(s, time.monotonic() + 5)).id == i
    third = tcp_connect(p.addr)
    third.sendall(frame(make_query("c2.test.", qid=2).to_wire()))
    wait_closed(third, 5)
    third.close()
    assert p.stats()["tcp_refused_overload"] >= 1
    first.close()

    def served():
        with tcp_connect(p.addr) as s:
            s.sendall(frame(make_query("c3.test.", qid=3).to_wire()))
            try:
                return dns.message.from_wire(recv_frame(s, time.monotonic() + 1)).id == 3
            except Exception:
                return False

    wait_for(served, 5, interval=0.05, what="a new client to be served after one left")
    second.close()
