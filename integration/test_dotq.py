"""dotq, the dig-style client, end to end: against dotmock (UDP, TCP and DoT listeners) and
dotproxy (UDP, TCP), the records dotq prints are the records kdig prints against the same server;
+short; the exit codes 0 (also for NXDOMAIN), 9 (no reply) and 10 (usage error); certificate
failures are one line on stderr."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pytest

from conftest import DOTMOCK_BIN, DOTQ_BIN, READY_TIMEOUT, Mock, free_port_tcp_udp

KDIG = shutil.which("kdig")
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


def compare(dq_args, kd_args, name, rtype, ttl_slack=0):
    d = dotq(*dq_args, name, rtype)
    assert d.returncode == 0, d.stderr
    k = run([KDIG, *kd_args, name, rtype])
    assert k.returncode == 0, k.stderr
    assert_same_records(d.stdout, k.stdout, ttl_slack)
    return d


pytestmark = pytest.mark.skipif(KDIG is None, reason="kdig (knot-dnsutils) is not installed")


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
    m = dotmock_tls
    for kind, port in (("udp", m.udp[1]), ("tls", m.dot[1])):
        dq, kd = server_args(kind, "127.0.0.1", port, m)
        for name, rtype in (("a.test", "A"), ("aaaa.test", "AAAA"), ("t.test", "TXT")):
            d = dotq(*dq, "+short", rtype, name)  # type before the name, as dig allows
            k = run([KDIG, *kd, "+short", name, rtype])
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
