"""dotq, the dig-style client, end to end: against dotmock (UDP, TCP and DoT listeners) and
dotproxy (UDP, TCP), the records dotq prints are the records kdig prints against the same server;
+short; the exit codes 0 (also for NXDOMAIN), 9 (no reply) and 10 (usage error); certificate
failures are one line on stderr."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading

import dns.edns
import dns.flags
import dns.message
import pytest

from conftest import DOTMOCK_BIN, DOTQ_BIN, READY_TIMEOUT, Mock, free_port_tcp_udp, require_tool

RUN_TIMEOUT = 30.0  # seconds for one dotq or kdig process

# (name, type): A, AAAA, TXT, MX (NODATA with SOA from dotmock), SOA, NXDOMAIN with SOA.
QUERIES = [
    ("a.test", "A"),
    ("aaaa.test", "AAAA"),
    ("t.test", "TXT"),
    ("mx.test", "MX"),
    ("test", "SOA"),
    ("nx.test", "A"),
]


def run(argv, timeout=RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)


def dotq(*args) -> subprocess.CompletedProcess:
    return run([DOTQ_BIN, *args])


def records(text: str) -> list[tuple]:
    """(owner, ttl, class, type, rdata) of every record line of dig-like output, rdata with its
    white space normalised. Comment lines (';') and empty lines are not records."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        f = line.split()
        assert len(f) >= 4, f"not a record line: {line!r}"
        out.append((f[0].lower(), int(f[1]), f[2].upper(), f[3].upper(), " ".join(f[4:])))
    return out


def short_lines(text: str) -> list[str]:
    return [" ".join(l.split()) for l in text.splitlines() if l.strip()]


def server_args(kind: str, host: str, port: int, mock: Mock | None = None) -> tuple[list, list]:
    """The transport arguments for (dotq, kdig)."""
    common = [f"@{host}", "-p", str(port)]
    if kind == "udp":
        return common, common  # both default to UDP (and retry over TCP on TC=1)
    if kind == "tcp":
        return common + ["+tcp"], common + ["+tcp"]
    tls = ["+tls", f"+tls-ca={mock.ca_file}", "+tls-hostname=dotmock.test"]
    return common + tls, common + tls


def assert_same_records(dotq_out: str, kdig_out: str, ttl_slack: int = 0):
    got, want = records(dotq_out), records(kdig_out)
    assert got, f"dotq printed no records:\n{dotq_out}"
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert (g[0], g[2], g[3], g[4]) == (w[0], w[2], w[3], w[4]), (g, w)
        # Through dotproxy the second asker is answered from the cache, its TTL aged by up to 1 s.
        assert w[1] - ttl_slack <= g[1] <= w[1] + ttl_slack, (g, w)


def kdig() -> str:
    """kdig's path: only the tests that compare with kdig need it (require_tool: a skip locally,
    a failure under CI)."""
    return require_tool("kdig", "knot-dnsutils")


def compare(dq_args, kd_args, name, rtype, ttl_slack=0):
    kd = kdig()
    d = dotq(*dq_args, name, rtype)
    assert d.returncode == 0, d.stderr
    k = run([kd, *kd_args, name, rtype])
    assert k.returncode == 0, k.stderr
    assert_same_records(d.stdout, k.stdout, ttl_slack)
    return d


@pytest.fixture
def dotmock_tls(mock):
    """A dotmock with its DoT listener on a port of its own."""
    return mock(dot="127.0.0.1:0")


@pytest.mark.parametrize("kind", ["udp", "tcp", "tls"])
def test_records_match_kdig_against_dotmock(dotmock_tls, kind):
    m = dotmock_tls
    port = {"udp": m.udp, "tcp": m.tcp, "tls": m.dot}[kind][1]
    dq, kd = server_args(kind, "127.0.0.1", port, m)
    for name, rtype in QUERIES:
        d = compare(dq, kd, name, rtype)
        want = {"udp": "(UDP)", "tcp": "(TCP)", "tls": "(TLS)"}[kind]
        assert f";; SERVER: 127.0.0.1#{port}{want}" in d.stdout, d.stdout
    if kind == "tls":
        assert ";; TLS: TLSv1.3, " in d.stdout, d.stdout


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_records_match_kdig_against_dotproxy(mock, proxy, kind):
    p = proxy(mock())
    dq, kd = server_args(kind, p.host, p.port)
    for name, rtype in QUERIES:
        compare(dq, kd, name, rtype, ttl_slack=1)


def test_truncated_udp_answer_is_retried_over_tcp_like_kdig(processes):
    # dotmock with UDP and TCP on one port, as a real server has them.
    port = free_port_tcp_udp()
    p = processes.start(
        [DOTMOCK_BIN, "--udp", f"127.0.0.1:{port}", "--tcp", f"127.0.0.1:{port}"], "dotmock-tc"
    )
    assert p.read_json(READY_TIMEOUT, "ready")["ready"] is True
    dq, kd = server_args("udp", "127.0.0.1", port)
    d = compare(dq, kd, "txt-2000.test", "TXT")
    assert ";; Truncated, retrying in TCP mode." in d.stdout
    assert f";; SERVER: 127.0.0.1#{port}(TCP)" in d.stdout
    assert sum(len(r[4]) for r in records(d.stdout)) > 2000


def test_truncated_udp_answer_through_dotproxy(mock, proxy):
    p = proxy(mock())
    dq, kd = server_args("udp", p.host, p.port)
    d = compare(dq, kd, "txt-2000.test", "TXT", ttl_slack=1)
    assert ";; Truncated, retrying in TCP mode." in d.stdout
    assert f"(TCP)" in d.stdout


def test_short_output_matches_kdig(dotmock_tls):
    kdig_bin = kdig()
    m = dotmock_tls
    for kind, port in (("udp", m.udp[1]), ("tls", m.dot[1])):
        dq, kd = server_args(kind, "127.0.0.1", port, m)
        for name, rtype in (("a.test", "A"), ("aaaa.test", "AAAA"), ("t.test", "TXT")):
            d = dotq(*dq, "+short", rtype, name)  # type before the name, as dig allows
            k = run([kdig_bin, *kd, "+short", name, rtype])
            assert d.returncode == 0 and k.returncode == 0, (d.stderr, k.stderr)
            assert short_lines(d.stdout) == short_lines(k.stdout) != []


def test_dig_style_header_and_arguments_in_any_order(mock):
    m = mock()
    d = dotq("-t", "AAAA", "aaaa.test", "-p", str(m.udp[1]), "@127.0.0.1", "+dnssec", "+nord")
    assert d.returncode == 0, d.stderr
    assert ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: " in d.stdout
    flags = next(l for l in d.stdout.splitlines() if l.startswith(";; flags:"))
    assert " rd" not in flags.split(";")[1], flags
    assert "QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1" in flags
    assert "; EDNS: version: 0, flags: do; udp: " in d.stdout
    assert ";; QUESTION SECTION:\n;aaaa.test.\tIN\tAAAA" in d.stdout
    assert ";; MSG SIZE  rcvd: " in d.stdout
    # +noedns: no OPT record goes out, none comes back.
    d = dotq(f"@127.0.0.1", f"-p{m.udp[1]}", "a.test", "+noedns")
    assert d.returncode == 0 and "OPT PSEUDOSECTION" not in d.stdout, d.stdout


def test_nxdomain_exits_0(mock):
    m = mock()
    d = dotq("@127.0.0.1", "-p", str(m.udp[1]), "nx.test")
    assert d.returncode == 0, d.stderr
    assert "status: NXDOMAIN" in d.stdout
    assert records(d.stdout)[0][3] == "SOA"


def test_no_reply_exits_9():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, so no ICMP refusal: the query is just never answered
        port = silent.getsockname()[1]
        d = dotq("@127.0.0.1", "-p", str(port), "a.test", "+timeout=1", "+retry=0")
    assert d.returncode == 9, (d.returncode, d.stdout, d.stderr)
    assert d.stdout == ""
    lines = d.stderr.strip().splitlines()
    assert len(lines) == 1 and "timed out" in lines[0], d.stderr


def test_connection_refused_is_one_line_and_exit_9():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))  # bound but not listening: the connect is refused
        port = s.getsockname()[1]
        d = dotq("@127.0.0.1", "-p", str(port), "+tcp", "a.test", "+timeout=2")
    assert d.returncode == 9, (d.returncode, d.stderr)
    lines = d.stderr.strip().splitlines()
    assert len(lines) == 1 and "connection refused" in lines[0], d.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["+bogus", "a.test"],
        ["-p", "70000", "a.test"],
        ["-t", "NOSUCHTYPE", "a.test"],
        ["+timeout=x", "a.test"],
        ["+tls-pin=notbase64", "a.test"],
        [],
    ],
)
def test_usage_error_exits_10(args):
    d = dotq(*args)
    assert d.returncode == 10, (d.returncode, d.stderr)
    assert len(d.stderr.strip().splitlines()) == 1, d.stderr
    assert d.stdout == ""


def test_help():
    d = dotq("--help")
    assert d.returncode == 0
    assert d.stdout.startswith("Usage: dotq ")
    assert "+tls-hostname=NAME" in d.stdout


def test_wrong_tls_hostname_is_one_line_certificate_error(dotmock_tls):
    m = dotmock_tls
    d = dotq(
        "@127.0.0.1", "-p", str(m.dot_port), "a.test",
        "+tls", f"+tls-ca={m.ca_file}", "+tls-hostname=wrong.test",
    )
    assert d.returncode != 0 and d.stdout == ""
    lines = d.stderr.strip().splitlines()
    assert len(lines) == 1, d.stderr
    assert "certificate" in lines[0] and "wrong.test" in lines[0], lines[0]


def test_tls_pin_and_insecure(dotmock_tls):
    m = dotmock_tls
    base = ["@127.0.0.1", "-p", str(m.dot_port), "a.test", "+short"]
    ok = dotq(*base, f"+tls-pin={m.pin}", "+tls-insecure")
    assert ok.returncode == 0 and short_lines(ok.stdout) == ["192.0.2.1"], ok.stderr
    wrong = dotq(*base, "+tls-pin=" + "A" * 43 + "=", "+tls-insecure")
    assert wrong.returncode == 9 and "pin" in wrong.stderr, wrong.stderr
    # Verification is on unless asked: the mock's self-signed certificate is not in the system store.
    default = dotq(*base, "+tls")
    assert default.returncode == 9 and "certificate" in default.stderr, default.stderr


def json_records(doc: dict, section: str) -> list[tuple]:
    return [
        (r["NAME"].lower(), r["TTL"], r["CLASSname"], r["TYPEname"], " ".join(r["data"].split()))
        for r in doc[section]
    ]


@pytest.mark.parametrize("kind", ["udp", "tls"])
def test_json_carries_the_records_of_plain_output_and_kdig(dotmock_tls, kind):
    m = dotmock_tls
    port = {"udp": m.udp, "tls": m.dot}[kind][1]
    dq, kd = server_args(kind, "127.0.0.1", port, m)
    for name, rtype, rcode in (("a.test", "A", 0), ("t.test", "TXT", 0), ("nx.test", "A", 3)):
        d = dotq(*dq, "+json", name, rtype)
        assert d.returncode == 0, d.stderr
        doc = json.loads(d.stdout)
        assert doc["RCODE"] == rcode and doc["Opcode"] == 0
        assert doc["QR"] is True and doc["RD"] is True and doc["TC"] is False
        assert doc["AA"] is True and doc["CD"] is False
        assert doc["questionRRs"] == [
            {"NAME": name + ".", "TYPE": {"A": 1, "TXT": 16}[rtype], "TYPEname": rtype,
             "CLASS": 1, "CLASSname": "IN"}
        ]
        assert doc["ANCOUNT"] == len(doc["answerRRs"])
        assert doc["NSCOUNT"] == len(doc["authorityRRs"])
        got = json_records(doc, "answerRRs") + json_records(doc, "authorityRRs")
        assert got, d.stdout
        if rcode == 3:
            assert [r[3] for r in got] == ["SOA"]
        plain = compare(dq, kd, name, rtype)  # plain output == kdig, checked above too
        assert got == records(plain.stdout), (got, plain.stdout)
        assert all(isinstance(r["TYPE"], int) and r["RDATAHEX"] for r in doc["answerRRs"])
        assert doc["dotqServer"] == f"127.0.0.1#{port}"
        assert doc["dotqTransport"] == kind.upper()
        assert isinstance(doc["dotqQueryTimeMs"], int)
        if kind == "tls":
            assert doc["dotqTlsVersion"] == "TLSv1.3" and doc["dotqTlsCipher"]
            assert doc["dotqTlsResumed"] is False
        else:
            assert "dotqTlsVersion" not in doc


def test_json_flags_and_escaping(mock):
    m = mock()
    d = dotq("@127.0.0.1", "-p", str(m.udp[1]), "+json", "+nord", "+cd", "t.test", "TXT")
    assert d.returncode == 0, d.stderr
    doc = json.loads(d.stdout)
    assert doc["RD"] is False and doc["CD"] is True
    # TXT presentation carries quotes: they must survive the JSON round trip.
    assert doc["answerRRs"][0]["data"].startswith('"') and doc["answerRRs"][0]["RDATAHEX"][:2] == "20"
    assert d.stdout.count("\n") == 1


def test_several_queries_in_one_call_are_printed_in_turn(mock):
    m = mock()
    base = ["@127.0.0.1", "-p", str(m.udp[1])]
    d = dotq(*base, "a.test", "aaaa.test", "AAAA", "-x", "192.0.2.1", "t.test", "TXT")
    assert d.returncode == 0, d.stderr
    questions = [l for l in d.stdout.splitlines() if l.startswith(";") and "\tIN\t" in l]
    assert questions == [
        ";a.test.\tIN\tA", ";aaaa.test.\tIN\tAAAA", ";1.2.0.192.in-addr.arpa.\tIN\tPTR",
        ";t.test.\tIN\tTXT",
    ], d.stdout
    assert d.stdout.count(";; ->>HEADER<<-") == 4
    got = [(r[0], r[3]) for r in records(d.stdout) if r[3] in ("A", "AAAA", "TXT")]
    assert got == [("a.test.", "A"), ("aaaa.test.", "AAAA"), ("t.test.", "TXT")], d.stdout
    # Each answer matches the one asked alone.
    for name, rtype in (("a.test", "A"), ("aaaa.test", "AAAA"), ("t.test", "TXT")):
        alone = dotq(*base, name, rtype)
        want = records(alone.stdout)
        assert all(r in records(d.stdout) for r in want), (want, d.stdout)
    s = dotq(*base, "+short", "a.test", "aaaa.test", "AAAA")
    assert short_lines(s.stdout) == ["192.0.2.1", "2001:db8::1"], s.stdout


# --------------------------------------------------------------------------------------------
# +keepopen: several queries pipelined over one connection, answers in the order they arrive


def json_lines(text: str) -> list[dict]:
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def tls_args(m: Mock) -> list:
    return ["@127.0.0.1", "-p", str(m.dot_port), "+tls", f"+tls-ca={m.ca_file}",
            "+tls-hostname=dotmock.test"]


def test_keepopen_dot_answers_out_of_order_on_one_connection(dotmock_tls):
    m = dotmock_tls
    before = m.stats()
    # The first query is held 1.5 s by the mock, the second is answered at once.
    d = dotq(*tls_args(m), "+keepopen", "+json", "delay-1500.test", "a.test", "AAAA")
    assert d.returncode == 0, d.stderr
    docs = json_lines(d.stdout)
    assert [doc["questionRRs"][0]["NAME"] for doc in docs] == ["a.test.", "delay-1500.test."]
    assert [doc["dotqPipeline"] for doc in docs] == [
        {"answer": 1, "of": 2, "query": 2}, {"answer": 2, "of": 2, "query": 1}]
    assert docs[0]["answerRRs"][0]["data"] == "2001:db8::1"
    assert docs[1]["answerRRs"][0]["data"] == "192.0.2.1"
    assert all(doc["dotqTransport"] == "TLS" for doc in docs)
    after = m.stats()
    assert after["connections"] - before["connections"] == 1, (before, after)
    assert after["handshakes"] - before["handshakes"] == 1, (before, after)
    assert after["dot_queries"] - before["dot_queries"] == 2, (before, after)


def test_keepopen_text_shows_the_order_and_implies_tcp(mock):
    m = mock()
    before = m.stats()
    d = dotq("@127.0.0.1", "-p", str(m.tcp[1]), "+keepopen", "delay-1000.test", "a.test",
             "t.test", "TXT")
    assert d.returncode == 0, d.stderr
    lines = [l for l in d.stdout.splitlines() if l.startswith(";; answer ")]
    assert len(lines) == 3, d.stdout
    # The delayed first query comes last; the other two in any order before it.
    assert lines[2] == ";; answer 3 of 3, query #1 (pipelined on one connection)", lines
    assert sorted(l.split("query #")[1][0] for l in lines[:2]) == ["2", "3"], lines
    assert d.stdout.count(f";; SERVER: 127.0.0.1#{m.tcp[1]}(TCP)") == 3
    questions = [l for l in d.stdout.splitlines() if l.startswith(";") and "\tIN\t" in l]
    assert questions[-1] == ";delay-1000.test.\tIN\tA", questions
    after = m.stats()
    assert after["tcp_queries"] - before["tcp_queries"] == 3
    assert after["udp_queries"] == before["udp_queries"]


def test_without_keepopen_each_query_has_its_own_connection_in_turn(dotmock_tls):
    m = dotmock_tls
    before = m.stats()
    d = dotq(*tls_args(m), "delay-300.test", "a.test")
    assert d.returncode == 0, d.stderr
    assert "answer 1 of" not in d.stdout
    questions = [l for l in d.stdout.splitlines() if l.startswith(";") and "\tIN\t" in l]
    assert questions == [";delay-300.test.\tIN\tA", ";a.test.\tIN\tA"], questions
    assert m.stats()["connections"] - before["connections"] == 2


def test_keepopen_timeout_reports_each_unanswered_query(dotmock_tls):
    m = dotmock_tls
    d = dotq(*tls_args(m), "+keepopen", "+timeout=1", "delay-5000.test", "a.test", "+short")
    assert d.returncode == 9, (d.returncode, d.stderr)
    assert short_lines(d.stdout) == ["192.0.2.1"]
    lines = d.stderr.strip().splitlines()
    assert len(lines) == 1 and "timed out" in lines[0], d.stderr


# --------------------------------------------------------------------------------------------
# +stats


STATS_LINE = re.compile(
    r"^;; STATS: connect (\d+\.\d{3}) ms, TLS handshake (\d+\.\d{3}) ms, "
    r"first byte (\d+\.\d{3}) ms, total (\d+\.\d{3}) ms$", re.M)


def check_stats(s: dict, transport: str):
    assert set(s) == {"connect_us", "tls_handshake_us", "first_byte_us", "total_us"}, s
    assert all(isinstance(v, int) and v >= 0 for v in s.values()), s
    assert s["connect_us"] + s["tls_handshake_us"] + s["first_byte_us"] <= s["total_us"], s
    assert s["total_us"] > 0 and s["first_byte_us"] > 0, s
    if transport == "UDP":
        assert s["connect_us"] == 0 and s["tls_handshake_us"] == 0, s
    elif transport == "TCP":
        assert s["tls_handshake_us"] == 0, s
    else:
        assert s["tls_handshake_us"] > 0, s


@pytest.mark.parametrize("kind", ["udp", "tcp", "tls"])
def test_stats_json_fields_are_consistent(dotmock_tls, kind):
    m = dotmock_tls
    port = {"udp": m.udp, "tcp": m.tcp, "tls": m.dot}[kind][1]
    dq, _ = server_args(kind, "127.0.0.1", port, m)
    d = dotq(*dq, "+stats", "+json", "a.test", "delay-200.test")
    assert d.returncode == 0, d.stderr
    docs = json_lines(d.stdout)
    assert len(docs) == 2
    for doc in docs:
        check_stats(doc["dotqStats"], kind.upper())
    # The mock holds delay-200 for 200 ms after reading it: its first byte cannot come sooner.
    assert docs[1]["dotqStats"]["first_byte_us"] >= 200_000, docs[1]["dotqStats"]
    # Without +stats there is no such field.
    plain = json_lines(dotq(*dq, "+json", "a.test").stdout)[0]
    assert "dotqStats" not in plain


def test_stats_text_line(dotmock_tls):
    m = dotmock_tls
    d = dotq(*tls_args(m), "+stats", "a.test")
    assert d.returncode == 0, d.stderr
    found = STATS_LINE.findall(d.stdout)
    assert len(found) == 1, d.stdout
    connect, tls, first, total = (float(x) for x in found[0])
    assert float(tls) > 0 and connect + tls + first <= total + 0.003, found  # rounding to 1 us
    assert "STATS" not in dotq(*tls_args(m), "a.test").stdout


def test_stats_with_keepopen_share_the_connection_times(dotmock_tls):
    m = dotmock_tls
    d = dotq(*tls_args(m), "+keepopen", "+stats", "+json", "delay-300.test", "a.test")
    assert d.returncode == 0, d.stderr
    docs = json_lines(d.stdout)
    s = [doc["dotqStats"] for doc in docs]
    for one in s:
        check_stats(one, "TLS")
    assert s[0]["connect_us"] == s[1]["connect_us"] and s[0]["tls_handshake_us"] == s[1]["tls_handshake_us"]
    assert s[0]["total_us"] < s[1]["total_us"] and s[1]["first_byte_us"] >= 300_000, s


# --------------------------------------------------------------------------------------------
# EDNS options, checked on the wire with a small capturing server (dnspython)


class CaptureServer:
    """A UDP DNS server on 127.0.0.1:0 in a thread: records every query's bytes and answers with a
    reply built by `respond(query_message)` (default: an empty NOERROR with our test options)."""

    def __init__(self, respond):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.respond = respond
        self.queries: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            self.queries.append(wire)
            reply = self.respond(dns.message.from_wire(wire))
            if reply is not None:
                self.sock.sendto(reply.to_wire(), peer)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        self.sock.close()

    def parsed(self, i: int = -1) -> dns.message.Message:
        return dns.message.from_wire(self.queries[i])


def option(q: dns.message.Message, code: int):
    found = [o for o in q.options if o.otype == code]
    return found[0] if found else None


SERVER_COOKIE = bytes.fromhex("5e5e5e5e5e5e5e5e0102030405060708")
NSID = b"ns1.dotq-test"


def answer_with_options(q: dns.message.Message) -> dns.message.Message:
    """A reply with every option dotq decodes: NSID, ECS (scope 20), the client cookie with a
    server cookie, EDE 18 with text, padding, and an unknown option."""
    r = dns.message.make_response(q)
    client = option(q, 10)
    opts = [
        dns.edns.GenericOption(3, NSID),
        dns.edns.GenericOption(8, bytes([0, 1, 22, 20, 198, 51, 100])),
        dns.edns.GenericOption(15, b"\x00\x12blocked by test"),
        dns.edns.GenericOption(65001, b"\x0a\x0b"),
        dns.edns.GenericOption(12, bytes(7)),
    ]
    if client is not None:
        opts.insert(2, dns.edns.GenericOption(10, client.to_wire()[:8] + SERVER_COOKIE))
    r.use_edns(0, payload=1232, options=opts)
    return r


@pytest.fixture
def capture():
    servers = []

    def start(respond=answer_with_options) -> CaptureServer:
        s = CaptureServer(respond)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def test_edns_options_on_the_wire(capture):
    srv = capture()
    d = dotq("@127.0.0.1", "-p", str(srv.port), "a.test", "+nsid", "+subnet=198.51.100.77/22",
             "+cookie", "+adflag", "+padding=64")
    assert d.returncode == 0, d.stderr
    q = srv.parsed()
    assert q.flags & dns.flags.AD and q.flags & dns.flags.RD
    assert option(q, 3).to_wire() == b""  # NSID request: empty (RFC 5001 2.3)
    assert option(q, 8).to_wire() == bytes([0, 1, 22, 0, 198, 51, 100])  # host bits cleared
    cookie = option(q, 10).to_wire()
    assert len(cookie) == 8
    assert len(srv.queries[-1]) % 64 == 0 and option(q, 12) is not None
    assert q.options[-1].otype == 12  # padding goes last (RFC 7830 3)
    # The client cookie is random per run.
    dotq("@127.0.0.1", "-p", str(srv.port), "a.test", "+cookie")
    assert option(srv.parsed(), 10).to_wire() != cookie


def test_given_cookie_zero_subnet_and_defaults(capture):
    srv = capture()
    d = dotq("@127.0.0.1", "-p", str(srv.port), "a.test", "+cookie=0011223344556677",
             "+subnet=0/0")
    assert d.returncode == 0, d.stderr
    q = srv.parsed()
    assert option(q, 10).to_wire() == bytes.fromhex("0011223344556677")
    assert option(q, 8).to_wire() == bytes([0, 1, 0, 0])  # RFC 7871 7.1.2
    assert not q.flags & dns.flags.AD
    assert option(q, 3) is None and option(q, 12) is None  # no NSID, no padding over UDP
    # +noedns sends none of the options.
    dotq("@127.0.0.1", "-p", str(srv.port), "a.test", "+noedns", "+nsid", "+cookie")
    assert srv.parsed().edns < 0


def test_reply_options_are_shown_like_dig(capture):
    srv = capture()
    d = dotq("@127.0.0.1", "-p", str(srv.port), "a.test", "+nsid", "+cookie=0011223344556677")
    assert d.returncode == 0, d.stderr
    opt = d.stdout.split(";; OPT PSEUDOSECTION:\n")[1].split("\n\n")[0].splitlines()
    assert opt == [
        "; EDNS: version: 0, flags:; udp: 1232",
        '; NSID: 6e 73 31 2e 64 6f 74 71 2d 74 65 73 74 ("ns1.dotq-test")',
        "; CLIENT-SUBNET: 198.51.100.0/22/20",
        "; COOKIE: 0011223344556677" + SERVER_COOKIE.hex() + " (good)",
        "; EDE: 18 (Prohibited): (blocked by test)",
        '; OPT=65001: 0a 0b ("..")',
        "; PAD: (7 bytes)",
    ], d.stdout


def test_reply_options_in_json(capture):
    srv = capture()
    d = dotq("@127.0.0.1", "-p", str(srv.port), "a.test", "+json", "+dnssec",
             "+cookie=0011223344556677")
    assert d.returncode == 0, d.stderr
    e = json.loads(d.stdout)["EDNS"]
    assert (e["version"], e["udp_size"], e["ext_rcode"]) == (0, 1232, 0)
    assert e["flags"] == {"do": False}  # the capture server does not echo DO
    by_code = {o["code"]: o for o in e["options"]}
    assert [o["code"] for o in e["options"]] == [3, 8, 10, 15, 65001, 12]
    assert by_code[3] == {"code": 3, "name": "NSID", "hex": NSID.hex(), "text": "ns1.dotq-test"}
    assert by_code[8] == {"code": 8, "name": "CLIENT-SUBNET", "hex": "00011614c63364",
                          "family": 1, "address": "198.51.100.0", "source_prefix": 22,
                          "scope_prefix": 20}
    assert by_code[10]["client"] == "0011223344556677"
    assert by_code[10]["server"] == SERVER_COOKIE.hex() and by_code[10]["status"] == "good"
    assert by_code[15] == {"code": 15, "name": "EDE", "hex": "0012" + b"blocked by test".hex(),
                           "info_code": 18, "purpose": "Prohibited",
                           "extra_text": "blocked by test"}
    assert by_code[65001] == {"code": 65001, "name": None, "hex": "0a0b"}
    assert by_code[12] == {"code": 12, "name": "PADDING", "hex": "00" * 7, "length": 7}


def test_malformed_reply_options_are_shown_not_fatal(capture):
    def bad(q):
        r = dns.message.make_response(q)
        r.use_edns(0, options=[dns.edns.GenericOption(8, b"\x00\x09"),
                               dns.edns.GenericOption(10, b"\x01\x02\x03"),
                               dns.edns.GenericOption(15, b"\x01")])
        return r

    srv = capture(bad)
    d = dotq("@127.0.0.1", "-p", str(srv.port), "a.test")
    assert d.returncode == 0, d.stderr
    assert "; CLIENT-SUBNET: 00 09 (malformed)" in d.stdout
    assert "; COOKIE: 01 02 03 (malformed)" in d.stdout
    assert "; EDE: 01 (malformed)" in d.stdout
    j = json.loads(dotq("@127.0.0.1", "-p", str(srv.port), "a.test", "+json").stdout)
    assert all(o["malformed"] is True for o in j["EDNS"]["options"])


def test_padding_counted_by_dotmock(dotmock_tls):
    m = dotmock_tls
    before = m.stats()["padded_queries"]
    # Over TLS queries are padded to 128 by default (RFC 8467), as kdig does.
    assert dotq(*tls_args(m), "a.test").returncode == 0
    assert m.stats()["padded_queries"] == before + 1
    assert dotq(*tls_args(m), "a.test", "+nopadding").returncode == 0
    assert m.stats()["padded_queries"] == before + 1
    # Over UDP only when asked; the mock then pads its answer to 468 (RFC 8467 4.1).
    d = dotq("@127.0.0.1", "-p", str(m.udp[1]), "a.test", "+padding")
    assert d.returncode == 0, d.stderr
    assert m.stats()["padded_queries"] == before + 2
    assert ";; MSG SIZE  rcvd: 468" in d.stdout and "; PAD: (" in d.stdout


@pytest.mark.parametrize("block", [16, 128, 200])
def test_padding_block_sizes_on_the_wire(capture, block):
    srv = capture(lambda q: dns.message.make_response(q))
    for name in ("a.test", "a-much-longer-name.with.several.labels.test"):
        assert dotq("@127.0.0.1", "-p", str(srv.port), name, f"+padding={block}").returncode == 0
        assert len(srv.queries[-1]) % block == 0, (name, len(srv.queries[-1]))


def test_subnet_and_nsid_queries_match_kdig_on_the_wire(capture):
    kdig_bin = kdig()
    srv = capture(lambda q: dns.message.make_response(q))
    for subnet in ("192.0.2.0/24", "2001:db8::/48", "198.51.100.1/21"):
        assert dotq("@127.0.0.1", "-p", str(srv.port), "a.test", f"+subnet={subnet}",
                    "+nsid").returncode == 0
        mine = srv.parsed()
        k = run([kdig_bin, "@127.0.0.1", "-p", str(srv.port), "a.test", f"+subnet={subnet}", "+nsid"])
        assert k.returncode == 0, k.stderr
        theirs = srv.parsed()
        for code in (3, 8):
            assert option(mine, code).to_wire() == option(theirs, code).to_wire(), (subnet, code)


def opt_lines(text: str) -> list[str]:
    """The OPT pseudo-section of dig-like output, up to the next section or blank line."""
    after = text.split(";; OPT PSEUDOSECTION:\n", 1)[1]
    out = []
    for line in after.splitlines():
        if not line.strip() or line.startswith(";; "):
            break
        out.append(line)
    return out


def test_reply_options_shown_as_dig_shows_them(capture):
    dig = require_tool("dig", "bind9-dnsutils")

    def every_option(q):
        r = answer_with_options(q)
        r.use_edns(0, payload=1232, options=list(r.options) + [dns.edns.GenericOption(11, b"\x01\x2c")])
        return r

    srv = capture(every_option)
    args = ["@127.0.0.1", "-p", str(srv.port), "a.test", "+nsid", "+cookie=0011223344556677"]
    d = dotq(*args)
    g = run([dig, *args, "+timeout=5", "+tries=1"])
    assert d.returncode == 0 and g.returncode == 0, (d.stderr, g.stderr)
    mine, theirs = opt_lines(d.stdout), opt_lines(g.stdout)
    assert len(mine) == 8 and "; TCP KEEPALIVE: 30.0 secs" in mine, mine
    assert mine == theirs, (mine, theirs)
    # dig's +padding is a block size too: the same query length.
    assert dotq(*args, "+padding=64").returncode == 0
    assert run([dig, *args, "+padding=64", "+timeout=5", "+tries=1"]).returncode == 0
    assert len(srv.queries[-1]) == len(srv.queries[-2]) and len(srv.queries[-1]) % 64 == 0


def test_default_padding_and_cookie_like_kdig(capture):
    kdig_bin = kdig()
    srv = capture(lambda q: dns.message.make_response(q))
    for extra in (["+padding"], ["+cookie"]):
        assert dotq("@127.0.0.1", "-p", str(srv.port), "a.test", *extra).returncode == 0
        mine = srv.parsed()
        k = run([kdig_bin, "@127.0.0.1", "-p", str(srv.port), "a.test", *extra])
        assert k.returncode == 0, k.stderr
        theirs = srv.parsed()
        assert len(srv.queries[-1]) == len(srv.queries[-2]), extra
        assert [(o.otype, len(o.to_wire())) for o in mine.options] == \
            [(o.otype, len(o.to_wire())) for o in theirs.options], extra


def test_nsid_against_kdig_display(capture):
    kdig_bin = kdig()
    srv = capture()
    d = dotq("@127.0.0.1", "-p", str(srv.port), "a.test", "+nsid")
    k = run([kdig_bin, "@127.0.0.1", "-p", str(srv.port), "a.test", "+nsid"])
    assert d.returncode == 0 and k.returncode == 0, (d.stderr, k.stderr)
    # kdig shows the NSID as hex and text too ("; NSID: 6E73...\"ns1.dotq-test\"").
    assert "ns1.dotq-test" in k.stdout and '("ns1.dotq-test")' in d.stdout


@pytest.mark.parametrize(
    "arg",
    ["+subnet=garbage", "+subnet=192.0.2.0/33", "+subnet", "+padding=0", "+padding=x",
     "+cookie=abc", "+cookie=0011", "+cookie=zz11223344556677", "+https", "+https=/dns-query"],
)
def test_bad_edns_values_are_usage_errors(arg):
    d = dotq("@127.0.0.1", "a.test", arg)
    assert d.returncode == 10, (d.returncode, d.stderr)
    lines = d.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dotq: "), d.stderr
    assert arg.split("=")[0] in lines[0]
    assert d.stdout == ""
    if arg.startswith("+https"):
        assert "DoH" in lines[0]


def test_help_lists_the_new_options():
    d = dotq("--help")
    for opt in ("+keepopen", "+stats", "+nsid", "+subnet=ADDR/PREFIX", "+padding[=BLOCK]",
                "+cookie[=HEX]", "+adflag", "+https"):
        assert opt in d.stdout, opt


def test_keepopen_connection_refused_is_one_line():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))  # bound but not listening: the connect is refused
        port = s.getsockname()[1]
        d = dotq("@127.0.0.1", "-p", str(port), "+keepopen", "a.test", "b.test", "+timeout=2")
    assert d.returncode == 9, (d.returncode, d.stderr)
    lines = d.stderr.strip().splitlines()
    assert len(lines) == 1 and "connection refused" in lines[0], d.stderr


class PipelineServer:
    """A TCP DNS server on 127.0.0.1:0 for one connection: reads `expect` framed queries before it
    answers any (so a client that waits for a reply before sending its next query gets nothing),
    then answers them in reverse order, or with the wrong ID when `wrong_id` is set."""

    def __init__(self, expect: int, wrong_id: bool = False):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.expect, self.wrong_id = expect, wrong_id
        self.queries: list[dns.message.Message] = []
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_exact(self, conn, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.connections += 1
        with conn:
            conn.settimeout(10)
            try:
                for _ in range(self.expect):
                    size = int.from_bytes(self._read_exact(conn, 2), "big")
                    self.queries.append(dns.message.from_wire(self._read_exact(conn, size)))
                for q in reversed(self.queries):
                    r = dns.message.make_response(q)
                    if self.wrong_id:
                        r.id = (q.id + 1) & 0xFFFF
                    wire = r.to_wire()
                    conn.sendall(len(wire).to_bytes(2, "big") + wire)
                conn.recv(1)  # until the client closes
            except (OSError, ConnectionError):
                pass

    def close(self):
        self.listener.close()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


def test_keepopen_writes_every_query_before_reading_and_follows_the_server_order():
    srv = PipelineServer(expect=3)
    try:
        d = dotq("@127.0.0.1", "-p", str(srv.port), "+keepopen", "+json", "+timeout=5",
                 "a.test", "b.test", "AAAA", "c.test", "TXT")
    finally:
        srv.close()
    assert d.returncode == 0, d.stderr
    assert srv.connections == 1 and len(srv.queries) == 3
    assert len({q.id for q in srv.queries}) == 3  # distinct IDs on one connection
    docs = json_lines(d.stdout)
    assert [doc["questionRRs"][0]["NAME"] for doc in docs] == ["c.test.", "b.test.", "a.test."]
    assert [doc["dotqPipeline"]["query"] for doc in docs] == [3, 2, 1]
    assert [doc["dotqPipeline"]["answer"] for doc in docs] == [1, 2, 3]


def test_keepopen_reply_matching_no_query_is_one_line_and_exit_9():
    srv = PipelineServer(expect=2, wrong_id=True)
    try:
        d = dotq("@127.0.0.1", "-p", str(srv.port), "+keepopen", "+timeout=5", "a.test", "b.test")
    finally:
        srv.close()
    assert d.returncode == 9, (d.returncode, d.stdout, d.stderr)
    assert d.stdout == ""
    lines = d.stderr.strip().splitlines()
    assert len(lines) == 1 and "matches no query" in lines[0], d.stderr


def test_keepopen_through_dotproxy_out_of_order_on_one_tcp_connection(mock, proxy):
    p = proxy(mock())
    before = p.stats()
    d = dotq(f"@{p.host}", "-p", str(p.port), "+keepopen", "+stats", "+json",
             "delay-1000.test", "a.test", "AAAA")
    assert d.returncode == 0, d.stderr
    docs = json_lines(d.stdout)
    assert [doc["questionRRs"][0]["NAME"] for doc in docs] == ["a.test.", "delay-1000.test."]
    assert [doc["dotqPipeline"]["query"] for doc in docs] == [2, 1]
    for doc in docs:
        check_stats(doc["dotqStats"], "TCP")
        assert doc["dotqTransport"] == "TCP"
    after = p.stats()
    assert after["tcp_connections"] - before["tcp_connections"] == 1, (before, after)
    assert after["tcp_queries"] - before["tcp_queries"] == 2, (before, after)
