"""Bad clients: malformed queries of every kind over UDP and TCP. Each gets FORMERR (NOTIMP,
BADVERS where those apply) or is dropped, the matching counter moves by exactly one, and the
daemon keeps answering: the same TCP connection answers a good query right after, and another
client is served while a flood of hostile datagrams arrives."""

import random
import socket
import struct
import threading
import time

import pytest

from conftest import IO_TIMEOUT, frame, recv_frame, tcp_connect, udp_exchange, wait_for, require_module

dotproxy = require_module()  # absent only where conftest allows it (tsan)

ID = 0x4242
QUESTION = b"\x01q\x04test\x00\x00\x01\x00\x01"  # q.test. A IN
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # root, OPT, 1232, version 0, no options


def header(flags=0x0100, qd=1, an=0, ns=0, ar=0, qid=ID):
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


# name -> (wire, expected: an rcode name, or the counter of a silent drop)
CASES = {
    "empty": (b"", "dropped_short"),
    "one byte": (b"\x00", "dropped_short"),
    "eleven bytes": (header()[:11], "dropped_short"),
    "response": (header(flags=0x8100) + QUESTION, "dropped_response"),
    "no question": (header(qd=0), "FORMERR"),
    "two questions": (header(qd=2) + QUESTION + QUESTION, "FORMERR"),
    "question cut short": (header() + QUESTION[:7], "FORMERR"),
    "type and class missing": (header() + QUESTION[:-4], "FORMERR"),
    "forward pointer": (header() + b"\x01q\xc0\x20\x00\x01\x00\x01", "FORMERR"),
    "pointer to itself": (header() + b"\xc0\x0c\x00\x01\x00\x01", "FORMERR"),
    "pointer into the header": (header() + b"\xc0\x02\x00\x01\x00\x01", "FORMERR"),
    "extended label type": (header() + b"\x41q\x00\x00\x01\x00\x01", "FORMERR"),
    "label over 63": (header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", "FORMERR"),
    "name over 255": (header() + b"\x3f" + b"a" * 63 + (b"\x3f" + b"b" * 63) * 3 + b"\x00"
                      + b"\x00\x01\x00\x01", "FORMERR"),
    "two OPT records": (header(ar=2) + QUESTION + OPT + OPT, "FORMERR"),
    "OPT not at the root": (header(ar=1) + QUESTION + b"\x01x" + OPT, "FORMERR"),
    "OPT in the answer section": (header(an=1) + QUESTION + OPT, "FORMERR"),
    "OPT option overruns": (header(ar=1) + QUESTION + OPT[:-2] + b"\x00\x04\x00\x0a\x00\x09",
                            "FORMERR"),
    "record count beyond the end": (header(ar=3) + QUESTION + OPT, "FORMERR"),
    "opcode STATUS": (header(flags=0x1100) + QUESTION, "NOTIMP"),
    "opcode NOTIFY": (header(flags=0x2100) + QUESTION, "NOTIMP"),
    "opcode UPDATE": (header(flags=0x2900) + QUESTION, "NOTIMP"),
    "EDNS version 1": (header(ar=1) + QUESTION + OPT[:6] + b"\x01" + OPT[7:], "BADVERS"),
}
COUNTER = {"FORMERR": "formerr", "NOTIMP": "notimp", "BADVERS": "badvers"}


def expected_counters(names):
    want: dict[str, int] = {}
    for n in names:
        outcome = CASES[n][1]
        key = COUNTER.get(outcome, outcome)
        want[key] = want.get(key, 0) + 1
    return want


def check_reply(name, reply):
    wire, outcome = CASES[name]
    if outcome.startswith("dropped"):
        assert reply is None, f"{name}: got a reply to a message that must be dropped"
        return
    assert reply is not None, f"{name}: no reply"
    m = dotproxy.parse(reply)
    assert m.qr and m.id == ID, (name, m)
    assert m.rcode_text == outcome, (name, m.rcode_text)
    assert not m.answer, (name, m)


@pytest.fixture
def pair(mock_upstream, daemon):
    m = mock_upstream()
    return m, daemon(m)


def deltas(before, after, keys):
    return {k: after[k] - before[k] for k in keys}


KEYS = ["formerr", "notimp", "badvers", "dropped_short", "dropped_response"]


def test_every_malformed_query_over_udp(pair):
    m, p = pair
    before = p.stats()
    for name, (wire, outcome) in CASES.items():
        timeout = 0.3 if outcome.startswith("dropped") else IO_TIMEOUT
        check_reply(name, udp_exchange(p.addr, wire, timeout=timeout))
        a = p.query("good.test")  # still answering, right after each one
        assert a.message.rcode_text == "NOERROR"
    want = expected_counters(CASES)
    wait_for(lambda: deltas(before, p.stats(), KEYS) == {k: want.get(k, 0) for k in KEYS}, 5,
             what=f"counters to move by {want}")
    assert m.counters()["queries"] >= 1  # the good ones were forwarded; the bad ones never were


def test_every_malformed_query_over_one_tcp_connection(pair):
    """Each hostile frame, then a good query, on the same connection: the FORMERR (or nothing, for
    a drop) and then the answer, in order; the connection is never closed on the client."""
    m, p = pair
    before = p.stats()
    good = dotproxy.build_query("good.test", id=0x1111)
    # An empty frame ends the connection (test_hostile_tcp_framing_closes_only_that_client).
    cases = {k: v for k, v in CASES.items() if k != "empty"}
    with tcp_connect((p.host, p.tcp_port)) as s:
        for name, (wire, outcome) in cases.items():
            s.sendall(frame(wire) + frame(good))
            deadline = time.monotonic() + IO_TIMEOUT
            first = dotproxy.parse(recv_frame(s, deadline))
            if outcome.startswith("dropped"):
                assert first.id == 0x1111 and first.rcode_text == "NOERROR", (name, first)
                continue
            assert first.id == ID and first.rcode_text == outcome, (name, first)
            second = dotproxy.parse(recv_frame(s, deadline))
            assert second.id == 0x1111 and second.rcode_text == "NOERROR", (name, second)
    want = expected_counters(cases)
    wait_for(lambda: deltas(before, p.stats(), KEYS) == {k: want.get(k, 0) for k in KEYS}, 5,
             what=f"counters to move by {want}")


def test_hostile_tcp_framing_closes_only_that_client(pair):
    """A zero-length frame, a frame that announces more than ever comes, garbage after a
    half-close: each ends that one connection (or times it out) while another client's
    pipelined queries on a second connection are all answered."""
    m, p = pair
    baseline = p.fd_count()
    with dotproxy.Connection(p.host, "tcp", port=p.tcp_port, timeout=IO_TIMEOUT) as other:
        ids = other.send([dotproxy.build_query(f"o{i}.test", id=i) for i in range(1, 21)])
        with tcp_connect((p.host, p.tcp_port)) as s:
            s.sendall(b"\x00\x00")  # zero-length frame
            s.settimeout(IO_TIMEOUT)
            assert s.recv(100) == b""  # closed by the daemon
        with tcp_connect((p.host, p.tcp_port)) as s:
            s.sendall(b"\xff\xff" + b"\x00" * 100)  # 65535 announced, 100 sent
            s.shutdown(socket.SHUT_WR)
            s.settimeout(IO_TIMEOUT + 15)
            try:
                assert s.recv(100) == b""
            except ConnectionResetError:
                pass
        for i in ids:
            a = other.receive(i)
            assert a.message.rcode_text == "NOERROR" and a.message.questions[0].name == f"o{i}.test."
    wait_for(lambda: p.fd_count() <= baseline, 10, what=f"fd count back to {baseline}")
    assert p.stats()["dropped_short"] >= 1


def test_flood_of_random_garbage_while_another_client_is_served(pair):
    """Thousands of mutated queries over UDP while another client asks good ones over TCP: every
    hostile datagram is answered or counted as dropped, every good query is answered."""
    m, p = pair
    before = p.stats()
    rng = random.Random(66)
    base = dotproxy.build_query("x.test", "AAAA", do=True, options=[(10, b"12345678")])
    problems: list[str] = []
    served = []
    stop = threading.Event()

    def good_client():
        i = 0
        while not stop.is_set() and i < 5000:
            i += 1
            try:
                a = p.query(f"g{i}.test", transport="tcp", timeout=IO_TIMEOUT)
                if a.message.rcode_text != "NOERROR":
                    problems.append(a.message.rcode_text)
                served.append(i)
            except (TimeoutError, dotproxy.QueryError) as e:
                problems.append(str(e))

    sent = replies = 0
    total = 3000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)

        def read_replies():
            nonlocal replies
            while True:
                try:
                    s.recv(65535)
                    replies += 1
                except BlockingIOError:
                    return

        t = threading.Thread(target=good_client)
        t.start()
        try:
            while sent < total:
                for _ in range(100):  # a batch, then wait for the daemon to have read it all
                    w = bytearray(base)
                    for _ in range(rng.randint(1, 6)):
                        w[rng.randrange(len(w))] = rng.randrange(256)
                    if rng.random() < 0.2:
                        del w[rng.randrange(len(w)):]
                    if len(w) > 2:
                        w[2] &= 0x7F  # QR=0 mostly: make the daemon work on most of them
                    s.sendto(bytes(w), p.addr)
                    sent += 1
                wait_for(lambda: p.stats()["udp_queries"] - before["udp_queries"] >= sent, 10,
                         interval=0.01, what=f"the daemon to read {sent} datagrams")
                read_replies()
        finally:
            stop.set()
            t.join(timeout=30)

        def accounted():
            read_replies()
            now = p.stats()
            drops = sum(now[k] - before[k] for k in ("dropped_short", "dropped_response"))
            return replies + drops == sent and (replies, drops)

        wait_for(accounted, 10, interval=0.05, what=f"{sent} datagrams answered or dropped")
    assert not problems, problems[:5]
    assert len(served) >= 5
    assert p.stats()["udp_queries"] - before["udp_queries"] == sent
    assert p.running()
    a = p.query("after.test")
    assert a.message.rcode_text == "NOERROR"
