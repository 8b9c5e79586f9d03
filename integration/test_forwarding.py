"""dotproxy relays dotmock's answers unchanged (apart from the ID and the hop-by-hop OPT), over UDP
and TCP, IPv4 and IPv6; identical concurrent queries go upstream once; a long run of queries
rides one padded upstream TLS connection."""

import socket
import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from conftest import assert_same_answer, make_query, require

CASES = [
    ("a.test.", "A", dns.rcode.NOERROR),
    ("a.test.", "AAAA", dns.rcode.NOERROR),
    ("t.test.", "TXT", dns.rcode.NOERROR),
    ("nx.test.", "A", dns.rcode.NXDOMAIN),
    ("nodata.test.", "MX", dns.rcode.NOERROR),  # NODATA: NOERROR, SOA in authority
    ("servfail.test.", "A", dns.rcode.SERVFAIL),
    ("refused.test.", "A", dns.rcode.REFUSED),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("edns", [False, True], ids=["no-edns", "edns"])
def test_answers_equal_dotmock(mock, proxy, transport, edns):
    m = mock()
    p = proxy(m)
    for name, rdtype, rcode in CASES:
        q = make_query(name, rdtype, edns=0 if edns else False)
        want = m.query_udp(q)  # dotmock's own answer, on its plain UDP listener
        assert want.rcode() == rcode, f"dotmock itself: {name} {rdtype}: {want}"
        got = p.udp(q) if transport == "udp" else p.tcp(q)
        assert got.id == q.id
        if rcode == dns.rcode.REFUSED:
            # An upstream's REFUSED is its policy towards dotproxy, not an answer for the client:
            # SERVFAIL (test_upstream_faults.py: the retry on another upstream).
            assert got.rcode() == dns.rcode.SERVFAIL and got.question == q.question
            continue
        assert_same_answer(got, want)
        if name.startswith("a.") and rdtype == "A":
            assert got.answer[0][0].address == "192.0.2.1"
        if name.startswith("nodata"):
            assert not got.answer and got.authority[0].rdtype == dns.rdatatype.SOA
        if name.startswith("nx."):
            assert got.authority[0].rdtype == dns.rdatatype.SOA
    s = p.stats()
    assert s[f"{transport}_queries"] >= len(CASES)
    assert s["upstream_answers"] >= len(CASES) - 1  # all but the REFUSED one
    assert s["upstream_refused"] >= 1


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_reply_echoes_id_and_question_spelling(mock, proxy, transport):
    m = mock()
    p = proxy(m)
    for qid, name in [(0, "MiXeD.TeSt."), (0xFFFF, "a.TEST."), (4660, "wWw.Test.")]:
        q = make_query(name, "A", qid=qid)
        r = p.udp(q) if transport == "udp" else p.tcp(q)
        assert r.id == qid
        # dnspython compares names case-insensitively: compare the presentation text.
        assert r.question[0].name.to_text() == name
        assert r.answer and r.answer[0].name.to_text() == name
        assert r.answer[0][0].address == "192.0.2.1"


def test_ipv6_listener(mock, proxy):
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        no_v6 = None
    except OSError as e:
        no_v6 = e
    require(no_v6 is None, f"no IPv6 loopback here: {no_v6}")
    m = mock()
    p = proxy(m, listen=["[::1]:0", "127.0.0.1:0"])
    assert p.listen[0][0] == "::1", p.ready
    assert p.listen[1][0] == "127.0.0.1", p.ready
    for host, port in p.listen:
        q = make_query("v6.test.", "AAAA")
        for r in (dns.query.udp(q, host, port=port, timeout=5), dns.query.tcp(q, host, port=port, timeout=5)):
            assert r.rcode() == dns.rcode.NOERROR
            assert r.answer[0][0].address == "2001:db8::1"


def test_thousand_sequential_queries_reuse_one_padded_connection(mock, proxy):
    m = mock()
    p = proxy(m)
    before = m.stats()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        for i in range(1000):
            q = make_query(f"seq{i}.test.", "A")  # distinct names: nothing can be shared
            s.sendto(q.to_wire(), p.addr)
            while True:  # skip a late duplicate, if any; the ID must match ours
                r = dns.message.from_wire(s.recvfrom(65535)[0])
                if r.id == q.id:
                    break
            assert r.rcode() == dns.rcode.NOERROR, f"query {i}: {r}"
            assert r.answer[0][0].address == "192.0.2.1"
    after = m.stats()
    ps = p.stats()
    # One TLS connection for all 1000 queries, every query padded to 128-byte blocks (RFC 8467).
    assert after["connections"] == 1, after
    assert after["dot_queries"] - before["dot_queries"] == 1000, after
    # dotmock counts a query as padded from the bytes it received: an EDNS padding option and a
    # length that is a multiple of 128 (dotproxy's own padded_queries only says it meant to pad).
    assert after["padded_queries"] - before["padded_queries"] == 1000, after
    assert ps["upstream_connects"] == 1, ps
    assert ps["upstream_queries"] == 1000, ps


def test_identical_concurrent_queries_are_coalesced(mock, proxy):
    m = mock()
    p = proxy(m)
    # Warm the upstream connection, so that the 20 queries meet an established connection.
    assert p.udp(make_query("warm.test.")).rcode() == dns.rcode.NOERROR
    before = m.stats()
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(20)]
    try:
        # 20 clients (20 source ports), all sent within a few microseconds: all are in flight
        # together, since dotmock holds delay-300 for 300 ms.
        for i, s in enumerate(socks):
            s.sendto(make_query("delay-300.test.", "A", qid=1000 + i).to_wire(), p.addr)
        deadline = time.monotonic() + 5
        for i, s in enumerate(socks):
            s.settimeout(max(0.01, deadline - time.monotonic()))
            r = dns.message.from_wire(s.recvfrom(65535)[0])
            assert r.id == 1000 + i
            assert r.question[0].name.to_text() == "delay-300.test."
            assert r.rcode() == dns.rcode.NOERROR
            assert r.answer[0][0].address == "192.0.2.1"
    finally:
        for s in socks:
            s.close()
    after = m.stats()
    ps = p.stats()
    assert after["dot_queries"] - before["dot_queries"] == 1, (before, after)
    assert ps["coalesced"] >= 19, ps
    assert ps["answers"] >= 21, ps


def test_wildcard_listener_answers_from_the_address_asked(mock, proxy):
    """Bound to 0.0.0.0, a UDP answer must leave from the address the client sent to (here
    127.0.0.2, a second loopback address), or the client discards it as coming from a stranger."""
    m = mock()
    p = proxy(m, listen=["0.0.0.0:0"])
    port = p.listen[0][1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        q = make_query("wild.test.")
        s.sendto(q.to_wire(), ("127.0.0.2", port))
        data, source = s.recvfrom(65535)
    assert source == ("127.0.0.2", port), source
    r = dns.message.from_wire(data)
    assert r.id == q.id and r.answer[0][0].address == "192.0.2.1"
