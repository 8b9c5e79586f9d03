"""Wire behaviour at the client side (RFC 1035, 6891, 7830, 7873, 7828; DNS Flag Day 2020): what
dotproxy answers, refuses and drops, byte for byte, over UDP and TCP."""

import socket
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from conftest import assert_same_answer, frame, make_query, recv_frame, tcp_connect, udp_exchange

FORMERR, NOTIMP, BADVERS = dns.rcode.FORMERR, dns.rcode.NOTIMP, dns.rcode.BADVERS


# ---- raw message builders -----------------------------------------------------------------


def header(qid=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def name_wire(*labels: bytes) -> bytes:
    return b"".join(bytes([len(l)]) + l for l in labels) + b"\x00"


A_TEST = name_wire(b"a", b"test")
QUESTION = A_TEST + struct.pack("!HH", 1, 1)  # a.test. A IN


def opt_rr(owner=b"\x00", payload=1232, ext_rcode=0, version=0, flags=0, rdata=b"") -> bytes:
    ttl = (ext_rcode << 24) | (version << 16) | flags
    return owner + struct.pack("!HHIH", 41, payload, ttl, len(rdata)) + rdata


def flags_word(qr=0, opcode=0, rd=1) -> int:
    return (qr << 15) | (opcode << 11) | (rd << 8)


@pytest.fixture
def pair(mock, proxy):
    m = mock()
    return m, proxy(m)


def assert_still_serving(p):
    r = p.udp(make_query("after.test."))
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.1"
    r = p.tcp(make_query("after-tcp.test."))
    assert r.rcode() == dns.rcode.NOERROR
    assert p.running()


def udp_no_reply(p, bad: bytes, quiet_after: float = 0.3) -> None:
    """Sends `bad`, then a valid sentinel query from the same socket. The sentinel's answer must
    be the first datagram back (a reply to `bad` would come sooner: it needs no upstream), and
    nothing more may follow within `quiet_after` seconds."""
    sentinel = make_query("sentinel.test.", qid=0x5E5E)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(bad, p.addr)
        s.sendto(sentinel.to_wire(), p.addr)
        first = dns.message.from_wire(s.recvfrom(65535)[0])
        assert first.id == 0x5E5E, f"got a reply to the bad message: {first}"
        s.settimeout(quiet_after)
        with pytest.raises(socket.timeout):
            extra = s.recvfrom(65535)[0]
            pytest.fail(f"unexpected extra datagram: {extra!r}")


# ---- dropped ------------------------------------------------------------------------------


def test_response_sent_as_query_gets_no_reply(pair):
    m, p = pair
    before = p.stats()
    bad = header(flags=0x8180, an=0) + QUESTION  # QR=1: a response, never answered (no loops)
    udp_no_reply(p, bad)
    after = p.stats()
    assert after["dropped_response"] - before["dropped_response"] == 1, after
    assert_still_serving(p)


def test_short_garbage_is_dropped_and_counted(pair):
    m, p = pair
    before = p.stats()
    udp_no_reply(p, b"\x12\x34\x01\x00\x00")  # 5 bytes: shorter than a header
    after = p.stats()
    assert after["dropped_short"] - before["dropped_short"] == 1, after
    assert_still_serving(p)


# ---- FORMERR ------------------------------------------------------------------------------


def name_over_255() -> bytes:
    return name_wire(*[b"x" * 63] * 4, b"y" * 10)  # 4*64 + 11 + 1 = 268 bytes


MALFORMED = {
    "qdcount-0": header(qid=0x0101, qd=0),
    "qdcount-2": header(qid=0x0102, qd=2) + QUESTION + name_wire(b"b", b"test") + struct.pack("!HH", 1, 1),
    # Length byte 64 is not a label length (0x40 is the obsolete extended-label type).
    "label-64": header(qid=0x0103) + name_wire(b"x" * 64, b"test") + struct.pack("!HH", 1, 1),
    "name-over-255": header(qid=0x0104) + name_over_255() + struct.pack("!HH", 1, 1),
    # Pointer to itself at offset 12: a loop.
    "pointer-loop": header(qid=0x0105) + b"\xc0\x0c" + struct.pack("!HH", 1, 1),
    # Two pointers pointing at each other (offset 12 -> 14 -> 12).
    "pointer-loop-2": header(qid=0x0106) + b"\xc0\x0e\xc0\x0c" + struct.pack("!HH", 1, 1),
    # Forward pointer: the qname points past itself, at a valid name placed after the question.
    "forward-pointer": header(qid=0x0107) + b"\xc0\x10" + struct.pack("!HH", 1, 1) + A_TEST,
    "pointer-out-of-packet": header(qid=0x0108) + b"\xc3\xff" + struct.pack("!HH", 1, 1),
    "truncated-question": header(qid=0x0109) + A_TEST + b"\x00",
    "two-opt": header(qid=0x010A, ar=2) + QUESTION + opt_rr() + opt_rr(),
    "opt-not-at-root": header(qid=0x010B, ar=1) + QUESTION + opt_rr(owner=name_wire(b"a", b"test")),
    "count-beyond-packet": header(qid=0x010C, an=500) + QUESTION,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_query_gets_formerr(pair, case):
    m, p = pair
    wire = MALFORMED[case]
    qid = struct.unpack("!H", wire[:2])[0]
    before = p.stats()
    for transport in ("udp", "tcp"):
        if transport == "udp":
            data = udp_exchange(p.addr, wire, timeout=3)
            assert data is not None, f"{case}: no UDP reply"
        else:
            with tcp_connect(p.addr) as s:
                s.sendall(frame(wire))
                data = recv_frame(s, time.monotonic() + 3)
        assert len(data) >= 12, data
        rid, rflags = struct.unpack("!HH", data[:4])
        assert rid == qid, f"{case}/{transport}: ID not echoed"
        assert rflags & 0x8000, f"{case}/{transport}: QR not set"
        assert rflags & 0x000F == FORMERR, f"{case}/{transport}: rcode {rflags & 0xF}"
    after = p.stats()
    assert after["formerr"] - before["formerr"] == 2, after
    assert after["upstream_queries"] == before["upstream_queries"], "a malformed query went upstream"
    assert_still_serving(p)


def test_formerr_echoes_question_when_readable(pair):
    # qdcount=1 with a duplicated OPT: the question is readable and must be echoed.
    m, p = pair
    wire = MALFORMED["two-opt"]
    data = udp_exchange(p.addr, wire, timeout=3)
    assert data is not None
    r = dns.message.from_wire(data)
    assert r.rcode() == FORMERR
    assert r.id == 0x010A
    assert len(r.question) == 1 and r.question[0].name.to_text() == "a.test."


# ---- NOTIMP, BADVERS ------------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [4, 5, 1, 15], ids=["notify", "update", "iquery", "opcode15"])
def test_unknown_opcode_gets_notimp(pair, opcode):
    m, p = pair
    before = p.stats()
    wire = header(qid=0x0200 + opcode, flags=flags_word(opcode=opcode, rd=0)) + QUESTION
    data = udp_exchange(p.addr, wire, timeout=3)
    assert data is not None, "no reply"
    rid, rflags = struct.unpack("!HH", data[:4])
    assert rid == 0x0200 + opcode
    assert rflags & 0x8000
    assert (rflags >> 11) & 0xF == opcode, "opcode not echoed"
    assert rflags & 0xF == NOTIMP
    after = p.stats()
    assert after["notimp"] - before["notimp"] == 1, after
    assert after["upstream_queries"] == before["upstream_queries"]


def test_edns_version_1_gets_badvers(pair):
    m, p = pair
    before = p.stats()
    wire = header(qid=0x0301, ar=1) + QUESTION + opt_rr(version=1)
    for transport in ("udp", "tcp"):
        if transport == "udp":
            data = udp_exchange(p.addr, wire, timeout=3)
            assert data is not None
        else:
            with tcp_connect(p.addr) as s:
                s.sendall(frame(wire))
                data = recv_frame(s, time.monotonic() + 3)
        r = dns.message.from_wire(data)
        assert r.id == 0x0301
        assert r.edns >= 0, "BADVERS must carry an OPT record (RFC 6891 7)"
        assert r.rcode() == BADVERS, dns.rcode.to_text(r.rcode())  # extended rcode 16
        assert r.edns == 0, "our OPT must say the version we do speak"
    after = p.stats()
    assert after["badvers"] - before["badvers"] == 2, after
    assert after["upstream_queries"] == before["upstream_queries"]


# ---- EDNS in answers ---------------------------------------------------------------------


def option_codes(r: dns.message.Message) -> set[int]:
    return {int(o.otype) for o in r.options}


def test_no_opt_in_answer_to_query_without_edns(pair):
    m, p = pair
    for transport in ("udp", "tcp"):
        q = make_query("plain.test.", "A", edns=False)
        r = p.udp(q) if transport == "udp" else p.tcp(q)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.edns == -1, f"{transport}: OPT in the answer to a query without EDNS"
        assert not any(rr.rdtype == dns.rdatatype.OPT for rr in r.additional)


@pytest.mark.parametrize("do_bit", [False, True], ids=["do0", "do1"])
@pytest.mark.parametrize("payload", [512, 1232, 4096])
def test_edns_answer_options(pair, do_bit, payload):
    m, p = pair
    before = m.stats()
    for transport in ("udp", "tcp"):
        # A name per transport: the second would otherwise be a cache hit, not a forwarded answer.
        q = make_query(f"e{payload}-{transport}.test.", "A", edns=0, payload=payload,
                       want_dnssec=do_bit)
        r = p.udp(q) if transport == "udp" else p.tcp(q)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.edns == 0, f"{transport}: no OPT in the answer to an EDNS query"
        assert 512 <= r.payload <= 1232, f"{transport}: advertised {r.payload}"
        assert bool(r.ednsflags & dns.flags.DO) == do_bit, f"{transport}: DO bit not kept"
        codes = option_codes(r)
        assert 12 not in codes, f"{transport}: upstream padding reached the client"
        assert 10 not in codes, f"{transport}: upstream cookie reached the client"
        assert 11 not in codes, f"{transport}: upstream keepalive reached the client"
    after = m.stats()
    # The upstream side was padded (so dotmock padded its answers): the stripping was exercised.
    assert after["padded_queries"] - before["padded_queries"] == 2, after


def test_client_padding_does_not_bring_back_upstream_padding(pair):
    """A client that pads its own (plain UDP) query gets no padding back: padding belongs to
    encrypted transports (RFC 8467), and dotmock's 468-byte blocks are hop-by-hop."""
    m, p = pair
    q = make_query("opts.test.", "A", edns=0)
    q.use_edns(0, 0, 1232, options=[dns.edns.GenericOption(12, b"\x00" * 20)])
    r = p.udp(q)
    assert r.rcode() == dns.rcode.NOERROR
    assert 12 not in option_codes(r) and 11 not in option_codes(r)
    wire_len = len(r.to_wire())
    assert wire_len < 468, f"answer of {wire_len} bytes: looks like the upstream's padding"


# ---- large answers: truncation over UDP, whole over TCP ----------------------------------


def txt_length(r: dns.message.Message) -> int:
    return sum(len(s) for rrset in r.answer for rd in rrset for s in rd.strings)


def test_large_answer_truncated_over_udp_without_edns(pair):
    m, p = pair
    before = p.stats()
    q = make_query("txt-2000.test.", "TXT", edns=False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(q.to_wire(), p.addr)
        data = s.recvfrom(65535)[0]
    assert len(data) <= 512, len(data)
    r = dns.message.from_wire(data)
    assert r.id == q.id and r.flags & dns.flags.TC, r
    assert r.question[0].name.to_text() == "txt-2000.test."
    assert r.edns == -1
    assert p.stats()["truncated"] - before["truncated"] == 1


@pytest.mark.parametrize("bufsize,limit", [(1232, 1232), (4096, 1232), (1400, 1232)])
def test_large_answer_truncated_over_udp_with_edns(pair, bufsize, limit):
    m, p = pair
    q = make_query("txt-2000.test.", "TXT", edns=0, payload=bufsize)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(q.to_wire(), p.addr)
        data = s.recvfrom(65535)[0]
    assert len(data) <= limit, len(data)
    r = dns.message.from_wire(data)
    assert r.id == q.id and r.flags & dns.flags.TC, r
    assert r.edns == 0 and r.payload <= 1232


def test_answer_that_fits_the_edns_size_is_not_truncated(pair):
    m, p = pair
    q = make_query("txt-1000.test.", "TXT", edns=0, payload=1232)
    r = p.udp(q)
    assert not r.flags & dns.flags.TC
    assert txt_length(r) == 1000


def test_large_answer_whole_over_tcp(pair):
    m, p = pair
    for edns in (False, 0):
        q = make_query("txt-2000.test.", "TXT", edns=edns)
        r = p.tcp(q)
        assert r.rcode() == dns.rcode.NOERROR
        assert not r.flags & dns.flags.TC
        assert txt_length(r) == 2000
        want = dns.query.tcp(q, m.tcp[0], port=m.tcp[1], timeout=5)  # dotmock's own, over TCP
        assert_same_answer(r, want)


def test_daemon_survives_a_burst_of_hostile_messages(pair):
    m, p = pair
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for wire in MALFORMED.values():
            s.sendto(wire, p.addr)
        s.sendto(b"", p.addr)
        s.sendto(b"\xff" * 11, p.addr)
        s.sendto(header(flags=0x8000) + QUESTION, p.addr)
    with tcp_connect(p.addr) as s:
        for wire in MALFORMED.values():
            s.sendall(frame(wire))
        s.sendall(frame(b"\x00" * 3))
    assert_still_serving(p)


def test_oversized_response_datagram_gets_no_reply(mock, proxy):
    """A datagram larger than any query (and with QR=1) is still a response: never answered."""
    m = mock()
    p = proxy(m)
    big = bytearray(make_query("big.test.", qid=0x4242).to_wire())
    big[2] |= 0x80  # QR=1
    big += b"\x00" * 5000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(bytes(big), p.addr)
        follow = make_query("after.test.", qid=0x4343)
        s.sendto(follow.to_wire(), p.addr)
        s.settimeout(5)
        first = dns.message.from_wire(s.recvfrom(65535)[0])
    assert first.id == 0x4343, "the oversized response was answered"
    assert p.stats()["dropped_response"] >= 1
