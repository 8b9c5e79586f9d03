"""The `dotproxy` Python module itself: messages built and parsed through the core (round trips,
agreement with dnspython, ParseError on hostile bytes), and the client over UDP, TCP and DoT
against dotmock, pipelined, with the GIL released while it waits."""

import random
import threading
import time

import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from conftest import IO_TIMEOUT, require_module

dotproxy = require_module()  # absent only where conftest allows it (tsan)


def test_build_parse_round_trip():
    wire = dotproxy.build_query("Example.COM", "AAAA", do=True, cd=True, bufsize=4096,
                                options=[(10, b"\x01" * 8), (65001, b"")], id=0x1234)
    m = dotproxy.parse(wire)
    assert m.id == 0x1234 and m.rd and m.cd and not m.qr and m.opcode == 0
    assert [(q.name, q.type_text, q.cls) for q in m.questions] == [("Example.COM.", "AAAA", 1)]
    assert m.edns is not None
    assert (m.edns.version, m.edns.udp_size, m.edns.do) == (0, 4096, True)
    assert m.edns.options == [(10, b"\x01" * 8), (65001, b"")]
    assert m.to_wire() == wire
    # dnspython reads the same query
    d = dns.message.from_wire(wire)
    assert d.id == 0x1234 and d.payload == 4096 and str(d.question[0].name) == "Example.COM."
    assert dotproxy.parse(dotproxy.build_query("a.test", edns=False, rd=False)).edns is None


def test_fields_are_writable_and_serialise():
    m = dotproxy.parse(dotproxy.build_query("a.test", "TXT", cls="CH", id=7))
    m.qr = True
    m.ra = True
    m.answer = [dotproxy.Record("a.test.", "TXT", "CH", 60, b"\x05hello")]
    m.edns.udp_size = 512
    again = dotproxy.parse(m.to_wire())
    assert again.qr and again.ra and again.rcode == 0 and again.rcode_text == "NOERROR"
    assert [(r.name, r.type_text, r.cls, r.ttl, r.text) for r in again.answer] == [
        ("a.test.", "TXT", 3, 60, '"hello"')]
    assert again.edns.udp_size == 512


def test_compressed_answer_parses_like_dnspython():
    q = dns.message.make_query("www.example.org", "MX")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.example.org.", 300, "IN", "MX", "10 mail.example.org."))
    r.answer.append(dns.rrset.from_text("www.example.org.", 300, "IN", "CNAME", "example.org."))
    r.authority.append(dns.rrset.from_text(
        "example.org.", 60, "IN", "SOA", "ns.example.org. host.example.org. 1 2 3 4 5"))
    r.additional.append(dns.rrset.from_text("mail.example.org.", 30, "IN", "AAAA", "2001:db8::1"))
    r.additional.append(dns.rrset.from_text("mail.example.org.", 30, "IN", "A", "192.0.2.7"))
    wire = r.to_wire()  # dnspython compresses names, inside rdata too
    m = dotproxy.parse(wire)
    assert m.size == len(wire) and m.qr
    assert [x.text for x in m.answer] == ["10 mail.example.org.", "example.org."]
    assert [x.text for x in m.authority] == ["ns.example.org. host.example.org. 1 2 3 4 5"]
    assert [x.text for x in m.additional] == ["2001:db8::1", "192.0.2.7"]
    # Serialised uncompressed, the message means the same to dnspython.
    back = dns.message.from_wire(m.to_wire())
    assert back.answer == r.answer and back.authority == r.authority
    assert back.additional == r.additional
    unknown = dotproxy.Record("x.test.", 65280, rdata=b"\x00\xff")
    assert unknown.text == "\\# 2 00ff" and unknown.type_text == "TYPE65280"


HEADER = bytes.fromhex("1234 0100 0001 0000 0000 0000".replace(" ", ""))
QUESTION = b"\x01a\x04test\x00\x00\x01\x00\x01"


@pytest.mark.parametrize("wire,what", [
    (b"", "truncated: header"),
    (b"\x12\x34\x01", "truncated: header"),
    (HEADER, "truncated: question 0 at offset 12"),
    (HEADER + b"\x01a\x04te", "truncated: question 0 at offset 12"),
    (HEADER + b"\xc0\x0c\x00\x01\x00\x01", "bad-pointer: question 0 at offset 12"),
    (HEADER + b"\x01a\xc0\x0e\x00\x01\x00\x01", "bad-pointer: question 0 at offset 12"),
    (HEADER + b"\x40a\x00\x00\x01\x00\x01", "bad-label-type: question 0 at offset 12"),
    (HEADER + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", "name-too-long: question 0"),
    (HEADER[:7] + b"\x01" + HEADER[8:] + QUESTION, "truncated: answer record 0 at offset 24"),
    (HEADER[:11] + b"\x01" + QUESTION + b"\x01a\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00\x00",
     "formerr: OPT record 0 at offset 24"),
    (HEADER[:11] + b"\x01" + QUESTION + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x09",
     "formerr: OPT record 0 at offset 24"),
], ids=["empty", "3 bytes", "no question", "cut name", "self pointer", "loop pointer",
        "label type 0x40", "name over 255", "missing answer", "OPT not root", "option overrun"])
def test_hostile_bytes_raise_parse_error_naming_what_and_where(wire, what):
    """The message names the error, the element and the offset of its first byte."""
    with pytest.raises(dotproxy.ParseError) as e:
        dotproxy.parse(wire)
    assert what in str(e.value), str(e.value)
    assert isinstance(e.value, ValueError)


def test_random_mutations_parse_or_raise_parse_error():
    rng = random.Random(6)
    q = dns.message.make_query("www.example.org", "MX", use_edns=0, want_dnssec=True)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.example.org.", 300, "IN", "MX", "10 mail.example.org."))
    base = bytearray(r.to_wire())
    parsed = failed = 0
    for _ in range(3000):
        w = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            w[rng.randrange(len(w))] = rng.randrange(256)
        if rng.random() < 0.3:
            del w[rng.randrange(len(w)):]
        try:
            m = dotproxy.parse(bytes(w))
            m.to_wire()
            parsed += 1
        except dotproxy.ParseError:
            failed += 1
    assert parsed > 0 and failed > 0, (parsed, failed)


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError):
        dotproxy.build_query("a..b")
    with pytest.raises(ValueError):
        dotproxy.build_query("a.test", "NOPE")
    with pytest.raises(ValueError):
        dotproxy.build_query("a.test", do=True, edns=False)
    with pytest.raises(ValueError):
        dotproxy.query("not an address", "a.test")
    with pytest.raises(ValueError):
        dotproxy.query("127.0.0.1", "a.test", transport="quic")


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_query_each_transport_against_dotmock(mock_upstream, transport):
    m = mock_upstream()
    port = {"udp": m.udp[1], "tcp": m.tcp[1], "tls": m.port}[transport]
    a = dotproxy.query("127.0.0.1", "www.test", "A", transport=transport, port=port,
                       tls_name="dotmock.test", ca=m.ca_file, timeout=IO_TIMEOUT)
    assert a.transport == transport
    assert a.message.qr and a.rcode == 0
    assert [(r.name, r.type_text, r.text) for r in a.message.answer] == [
        ("www.test.", "A", "192.0.2.1")]
    assert a.total >= a.connect + a.handshake
    if transport == "tls":
        assert a.tls_version == "TLSv1.3" and a.tls_cipher and a.handshake > 0
    else:
        assert a.tls_version == "" and a.handshake == 0
    counters = m.counters()
    assert counters[f"{'dot' if transport == 'tls' else transport}_queries"] == 1, counters


def test_tls_pin_and_verification_failures(mock_upstream):
    m = mock_upstream()
    a = dotproxy.query("127.0.0.1", "p.test", transport="tls", port=m.port, pin=m.pin,
                       insecure=True, timeout=IO_TIMEOUT)
    assert a.message.answer[0].text == "192.0.2.1"
    wrong_pin = "A" * 43 + "="
    with pytest.raises(dotproxy.QueryError, match="TLS handshake failed"):
        dotproxy.query("127.0.0.1", "p.test", transport="tls", port=m.port, pin=wrong_pin,
                       insecure=True, timeout=IO_TIMEOUT)
    with pytest.raises(dotproxy.QueryError, match="TLS handshake failed"):
        dotproxy.query("127.0.0.1", "p.test", transport="tls", port=m.port,
                       tls_name="other.test", ca=m.ca_file, timeout=IO_TIMEOUT)
    with pytest.raises(dotproxy.QueryError, match="TLS handshake failed"):  # no CA: self-signed
        dotproxy.query("127.0.0.1", "p.test", transport="tls", port=m.port,
                       tls_name="dotmock.test", timeout=IO_TIMEOUT)


def test_timeout_raises_timeout_error_at_the_deadline(mock_upstream):
    m = mock_upstream(faults="label lost drop")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        dotproxy.query("127.0.0.1", "lost.test", port=m.udp[1], timeout=1.0)
    elapsed = time.monotonic() - t0
    # Not before the deadline; after it only by scheduling (a loaded 2-core machine: 3 s slack).
    assert 1.0 <= elapsed < 4.0, elapsed


def test_refused_tcp_connect_is_a_query_error():
    from conftest import free_port
    with pytest.raises(dotproxy.QueryError):
        dotproxy.query("127.0.0.1", "a.test", transport="tcp", port=free_port(), timeout=2)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_pipelined_connection_matches_replies_by_id(mock_upstream, transport):
    m = mock_upstream(faults="label slow delay 300")
    port = m.tcp[1] if transport == "tcp" else m.port
    with dotproxy.Connection("127.0.0.1", transport, port=port, tls_name="dotmock.test",
                             ca=m.ca_file, timeout=IO_TIMEOUT) as c:
        slow = dotproxy.build_query("slow.test", id=1)
        fast = [dotproxy.build_query(f"n{i}.test", "AAAA", id=100 + i) for i in range(50)]
        ids = c.send([slow] + fast)
        assert ids == [1] + [100 + i for i in range(50)]
        first = c.receive()  # the delayed one was asked first but comes last
        assert first.message.id != 1
        got = {first.message.id: first.message}
        for i in reversed(ids):  # asked for in another order than they arrive
            if i not in got:
                got[i] = c.receive(i).message
        assert sorted(got) == sorted(ids)
        for i in range(50):
            msg = got[100 + i]
            assert msg.questions[0].name == f"n{i}.test." and msg.answer[0].text == "2001:db8::1"
        assert got[1].questions[0].name == "slow.test."
        if transport == "tls":
            assert c.tls_version == "TLSv1.3"
    assert c.closed
    assert m.counters()["queries"] == 51


def test_gil_is_released_while_waiting(mock_upstream):
    m = mock_upstream(faults="label slow delay 1500")
    done = threading.Event()

    def slow():
        dotproxy.query("127.0.0.1", "slow.test", port=m.udp[1], timeout=IO_TIMEOUT)
        done.set()

    t = threading.Thread(target=slow)
    t.start()
    try:
        # Wait until dotmock has the slow query (the thread is then blocked in C++).
        deadline = time.monotonic() + IO_TIMEOUT
        while m.counters()["queries"] < 1:
            assert time.monotonic() < deadline, "the slow query never reached dotmock"
            time.sleep(0.01)
        a = dotproxy.query("127.0.0.1", "fast.test", port=m.udp[1], timeout=IO_TIMEOUT)
        assert a.message.answer[0].text == "192.0.2.1"
        # This thread ran a whole query while the other one waited: the GIL was not held.
        assert not done.is_set()
    finally:
        t.join(timeout=IO_TIMEOUT)
    assert done.is_set()


def test_help_documents_the_api():
    doc = dotproxy.__doc__
    for word in ("build_query", "parse", "query", "Connection", "MockUpstream", "Proxy"):
        assert word in doc
    assert "ParseError" in dotproxy.parse.__doc__
    assert dotproxy.Connection.receive.__doc__


def test_mock_fault_script_changes_while_running(mock_upstream):
    m = mock_upstream(faults=[])
    ask = lambda: dotproxy.query("127.0.0.1", "f.test", port=m.udp[1], timeout=IO_TIMEOUT)
    assert ask().message.rcode_text == "NOERROR"
    assert m.set_faults(["# now failing", "label f servfail"]) == 1
    assert ask().message.rcode_text == "SERVFAIL"
    with pytest.raises(ValueError, match="line 1: unknown action 'explode'"):
        m.set_faults("label f explode")
    assert ask().message.rcode_text == "SERVFAIL"  # a bad script keeps the old one
    assert m.set_faults("") == 0
    assert ask().message.rcode_text == "NOERROR"
    with pytest.raises(ValueError):
        mock_upstream().set_faults("any drop")  # started without a script


def test_proxy_helper_settings_stats_and_clean_exit(mock_upstream, tmp_path):
    m = mock_upstream()
    with dotproxy.Proxy(m, workdir=tmp_path, query_timeout=900,
                        config="[cache]\nsize = 0\n") as p:
        assert p.udp_port == p.tcp_port and p.udp_port > 0
        for transport in ("udp", "tcp"):
            assert p.query("h.test", transport=transport).message.answer[0].text == "192.0.2.1"
        s = p.stats()
        assert s["udp_queries"] == 1 and s["tcp_queries"] == 1 and s["cache_hits"] == 0, s
        assert p.fd_count() > 3 and p.rss() > 1 << 20
    assert not p.running() and p.stop() == 0  # __exit__ sent SIGTERM and saw exit code 0
    assert p.final_stats()["tcp_queries"] == 1
