"""DNS over TCP from clients (RFC 7766): pipelining with out-of-order answers, framing split across
segments or packed into one, half-closed connections, idle and slow clients closed after a timeout."""

import os
import socket
import struct
import time

import dns.message
import dns.rcode
import pytest

from conftest import IO_TIMEOUT, frame, make_query, recv_frame, tcp_connect, wait_closed, wait_for

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


def data_segments_in(s: socket.socket) -> int:
    # struct tcp_info (linux/tcp.h): tcpi_data_segs_in is the u32 at offset 152.
    return struct.unpack_from("I", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232), 152)[0]


def test_answers_to_a_pipelined_burst_leave_together(pair):
    # Cache hits are answered while the burst is being read; they must leave in one write (a few
    # segments), not a write and a segment each: 64 segments for 64 answers made loopback clients
    # stall on delayed ACKs and tail-loss probes (up to a second) and cost a syscall per answer.
    _, p = pair
    queries = [make_query(f"b{i}.test.", "A", qid=i + 1) for i in range(64)]
    burst = b"".join(frame(q.to_wire()) for q in queries)
    with tcp_connect(p.addr) as s:
        s.sendall(burst)  # misses: fills the cache
        assert len(read_answers(s, 64)) == 64
        before = data_segments_in(s)
        s.sendall(burst)  # hits, all answered in the round that reads them
        answers = read_answers(s, 64)
        segments = data_segments_in(s) - before
    assert sorted(r.id for r in answers) == list(range(1, 65))
    assert all(r.rcode() == dns.rcode.NOERROR for r in answers)
    assert p.stats()["cache_hits"] >= 64
    assert segments <= 8, f"64 answers came in {segments} segments"


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
        elapsed = wait_closed(s, 10)
    # Closed by the idle timer, not at once and not much later.
    assert IDLE_MS / 1000 * 0.8 <= elapsed <= 5.0, elapsed
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
            # (A zero timeout would make the socket non-blocking: no wait is left then.)
            left = IDLE_MS / 2000 - (time.monotonic() - t0)
            if left > 0:
                s.settimeout(left)
                try:
                    data = s.recv(1)
                    pytest.fail(f"connection closed or spoke early: {data!r}")
                except socket.timeout:
                    pass
            s.settimeout(5)
        wait_closed(s, 5)


def test_slow_client_with_half_a_message_is_closed(mock, proxy):
    m = mock()
    p = proxy(m, config=IDLE_CONFIG)
    before = p.stats()
    wire = frame(make_query("slow.test.", "A").to_wire())
    with tcp_connect(p.addr) as s:
        s.sendall(wire[: len(wire) // 2])  # and never the rest
        elapsed = wait_closed(s, 10)
    assert elapsed <= 5.0, elapsed
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
    before = p.stats()
    with tcp_connect(p.addr) as s:
        s.sendall(struct.pack("!H", 0))
        # No message can be empty: the daemon closes this connection without a reply (an EOF,
        # not a reset: nothing of ours was left unread), and counts it as a short drop.
        s.settimeout(IO_TIMEOUT)
        assert s.recv(100) == b"", "a zero-length frame must close the connection with no reply"
    wait_for(lambda: p.stats()["dropped_short"] - before["dropped_short"] == 1, 5,
             what="the zero-length frame counted in dropped_short")
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

    wait_for(lambda: tcp_served(p.addr, "c3.test.", 3), 5, interval=0.05,
             what="a new client to be served after one left")
    second.close()


def tcp_served(addr, name: str, qid: int) -> bool:
    """One query on a new TCP connection: True if its answer came back within a second."""
    try:
        with tcp_connect(addr) as s:
            s.sendall(frame(make_query(name, qid=qid).to_wire()))
            return dns.message.from_wire(recv_frame(s, time.monotonic() + 1)).id == qid
    except Exception:
        return False


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_client_that_never_reads_does_not_stall_others(mock, proxy):
    """A TCP client pipelines thousands of queries for large answers and never reads them: it gets
    no more of its queries read (backpressure), memory stays bounded, and UDP clients of the same
    worker are answered meanwhile."""
    m = mock()
    p = proxy(m)
    hog = tcp_connect(p.addr)
    hog.setblocking(False)
    burst = b"".join(frame(make_query("txt-4000.test.", "TXT", qid=i & 0xFFFF).to_wire())
                     for i in range(3000))
    sent = 0
    deadline = time.monotonic() + 5
    while sent < len(burst) and time.monotonic() < deadline:
        try:
            sent += hog.send(burst[sent:])
        except BlockingIOError:
            break  # the proxy stopped reading us: backpressure
    for i in range(20):
        r = p.udp(make_query(f"other{i}.test."), timeout=1.0)
        assert r.rcode() == dns.rcode.NOERROR
    assert rss_bytes(p.process.pid) < 64 << 20, "unread answers are piling up in memory"
    hog.close()


def test_drained_backlog_leaves_no_busy_loop(mock, proxy):
    """After a client reads a large backlog of answers and goes idle, the worker is idle too (no
    level-triggered EPOLLOUT left armed)."""
    m = mock()
    p = proxy(m)
    s = tcp_connect(p.addr)
    n = 800  # 6.4 MB of answers: more than the loopback socket buffers hold
    s.sendall(b"".join(frame(make_query("txt-8000.test.", "TXT", qid=i).to_wire()) for i in range(n)))
    # Megabytes of answers are queued before the client reads one, so the backlog drains through
    # EPOLLOUT (the first 16 KiB read alone holds some 350 queries).
    wait_for(lambda: p.stats()["answers"] >= 300, 10, interval=0.05, what="answers queued")
    deadline = time.monotonic() + 10
    for _ in range(n):
        assert dns.message.from_wire(recv_frame(s, deadline)).rcode() == dns.rcode.NOERROR
    before = cpu_seconds(p.process.pid)
    t0 = time.monotonic()
    time.sleep(0.5)  # measuring idleness: the interval itself is what is observed, not a sync
    used = cpu_seconds(p.process.pid) - before
    assert used < 0.25 * (time.monotonic() - t0), f"dotproxy used {used:.2f}s of CPU while idle"
    s.close()


def test_out_of_file_descriptors_pauses_accepting(mock, processes):
    """With the descriptor limit reached, pending connections wait in the backlog: dotproxy does not
    spin on accept(), counts the condition sparingly, and serves new clients once fds free up."""
    from conftest import DOTPROXY_BIN, READY_TIMEOUT, Proxy
    m = mock()
    argv = ["prlimit", "--nofile=40:40", "--", DOTPROXY_BIN, "--listen", "127.0.0.1:0",
            "--workers", "1", "--upstream", m.upstream_spec(), "--ca-file", m.ca_file,
            "--log-level", "error"]
    proc = processes.start(argv, "dotproxy-fdlimit")
    p = Proxy(proc, proc.read_json(READY_TIMEOUT, "ready"))
    # Serve one TCP client first. (Under UBSan this also caches the handler types for its vptr
    # check, which would otherwise need a pipe, and so a descriptor, to inspect them.)
    assert p.tcp(make_query("warm.test."), timeout=5).rcode() == dns.rcode.NOERROR
    clients = [tcp_connect(p.addr) for _ in range(60)]
    before = cpu_seconds(proc.pid)
    t0 = time.monotonic()
    time.sleep(0.5)  # measuring idleness, as above
    used = cpu_seconds(proc.pid) - before
    assert used < 0.25 * (time.monotonic() - t0), f"accept() spinning: {used:.2f}s of CPU"
    s = p.stats()
    assert 1 <= s["tcp_refused_overload"] <= 50, s
    for c in clients:
        c.close()

    wait_for(lambda: tcp_served(p.addr, "fd.test.", 7), 5, interval=0.05,
             what="a client to be served once descriptors are free")
