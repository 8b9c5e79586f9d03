"""Third-party peers: dig and kdig as clients, dnsperf as a load client, Unbound as a real DoT
upstream. Each test is skipped (with the reason) only when the peer's binary is missing."""

import re
import socket
import subprocess

import dns.rcode
import dns.rdatatype
import pytest

from conftest import free_port, make_query, require_tool, wait_for

PEER_TIMEOUT = 30  # seconds for one peer command


def need(binary: str) -> str:
    return require_tool(binary)


def run(argv, timeout=PEER_TIMEOUT):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def pair(mock, proxy):
    m = mock()
    return m, proxy(m)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_dig(pair, tcp):
    dig = need("dig")
    m, p = pair
    argv = [dig, f"@{p.host}", "-p", str(p.port), "a.test", "+short", "+time=3", "+tries=1"]
    r = run(argv + (["+tcp"] if tcp else []))
    assert r.returncode == 0, r.stderr + r.stdout
    assert r.stdout.strip() == "192.0.2.1", r.stdout
    # Full output: NOERROR, and dig's default EDNS query is answered with an OPT of <= 1232.
    r = run([dig, f"@{p.host}", "-p", str(p.port), "txt-700.test", "TXT", "+time=3", "+tries=1"]
            + (["+tcp"] if tcp else []))
    assert "status: NOERROR" in r.stdout, r.stdout
    m_udp = re.search(r"udp: (\d+)", r.stdout)
    assert m_udp and int(m_udp.group(1)) <= 1232, r.stdout
    s = p.stats()
    assert s["tcp_queries" if tcp else "udp_queries"] >= 2, s


def test_dig_retries_truncated_answer_over_tcp(pair):
    dig = need("dig")
    m, p = pair
    r = run([dig, f"@{p.host}", "-p", str(p.port), "txt-3000.test", "TXT", "+noedns",
             "+time=3", "+tries=1"])
    assert "status: NOERROR" in r.stdout and "(TCP)" in r.stdout, r.stdout
    assert "Truncated, retrying in TCP mode" in r.stdout, r.stdout
    s = p.stats()
    assert s["truncated"] >= 1 and s["tcp_queries"] >= 1, s


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_kdig(pair, tcp):
    kdig = need("kdig")
    m, p = pair
    argv = [kdig, f"@{p.host}", "-p", str(p.port), "a.test", "AAAA", "+short", "+time=3",
            "+retry=0"] + (["+tcp"] if tcp else [])
    r = run(argv)
    assert r.returncode == 0, r.stderr + r.stdout
    assert r.stdout.strip() == "2001:db8::1", r.stdout


def test_dnsperf(pair, tmp_path):
    dnsperf = need("dnsperf")
    m, p = pair
    qfile = tmp_path / "queries.txt"
    names = [f"perf{i}.test A" for i in range(40)] + [f"perf{i}.test AAAA" for i in range(20)] \
        + ["nx.test A", "t.test TXT"]
    qfile.write_text("\n".join(names) + "\n")
    r = run([dnsperf, "-s", p.host, "-p", str(p.port), "-d", str(qfile), "-n", "2", "-c", "4",
             "-t", "3"], timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    sent = int(re.search(r"Queries sent:\s+(\d+)", r.stdout).group(1))
    completed = int(re.search(r"Queries completed:\s+(\d+)", r.stdout).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", r.stdout).group(1))
    assert sent == 2 * len(names), r.stdout
    assert completed == sent and lost == 0, r.stdout
    assert re.search(r"NOERROR \d+", r.stdout) and re.search(r"NXDOMAIN 2\b", r.stdout), r.stdout
    s = p.stats()
    assert s["udp_queries"] == sent and s["servfail"] == 0, s


UNBOUND_CONF = """\
server:
    verbosity: 1
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: "{dir}/unbound.log"
    interface: 127.0.0.1@{port}
    tls-port: {port}
    tls-service-key: "{key}"
    tls-service-pem: "{cert}"
    do-ip6: no
    do-not-query-localhost: yes
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "unbound.test." static
    local-data: "a.unbound.test. 300 IN A 192.0.2.53"
    local-data: "mx.unbound.test. 300 IN MX 10 mail.unbound.test."
    local-data: "mx.unbound.test. 300 IN MX 20 mail2.mx.unbound.test."
    local-data: "_sip._udp.unbound.test. 300 IN SRV 0 5 5060 sip.unbound.test."
    local-data: "_sip._udp.unbound.test. 300 IN SRV 1 5 5060 sip2._sip._udp.unbound.test."
    local-data: "ns.unbound.test. 300 IN NS ns1.ns.unbound.test."
    local-data: "ns.unbound.test. 300 IN NS ns2.unbound.test."
    local-data: "p.unbound.test. 300 IN PTR a.unbound.test."
    local-data: 't.unbound.test. 300 IN TXT "hello world" "second string"'
    local-data: "c.unbound.test. 300 IN CNAME a.unbound.test."
remote-control:
    control-enable: no
"""


def test_unbound_as_dot_upstream(processes, proxy, cert_pair, tmp_path):
    unbound = need("unbound")
    cert, key = cert_pair
    port = free_port()
    conf = tmp_path / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(dir=tmp_path, port=port, key=key, cert=cert))
    r = run([need("unbound-checkconf"), str(conf)])
    assert r.returncode == 0, r.stdout + r.stderr
    u = processes.start([unbound, "-d", "-c", str(conf)], "unbound")

    def accepting():
        assert u.running(), f"unbound exited: {u.stderr_text()}\n{(tmp_path / 'unbound.log').read_text() if (tmp_path / 'unbound.log').exists() else ''}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_for(accepting, 10, interval=0.05, what="unbound to accept TCP on its TLS port")
    p = proxy(None, upstreams=[f"127.0.0.1:{port}#dotmock.test"], ca_file=str(cert))
    for transport in ("udp", "tcp"):
        q = make_query("a.unbound.test.", "A")
        r = p.udp(q) if transport == "udp" else p.tcp(q)
        assert r.rcode() == dns.rcode.NOERROR, r
        assert r.answer[0][0].address == "192.0.2.53"
        assert r.answer[0].ttl <= 300
    r = p.udp(make_query("nx.unbound.test.", "A"))
    assert r.rcode() == dns.rcode.NXDOMAIN
    s = p.stats()
    # The TCP repeat of a.unbound.test is answered from the cache.
    assert s["upstream_connects"] == 1 and s["upstream_answers"] == 2, s
    assert s["cache_hits"] == 1, s
    assert s["upstream_verify_failures"] == 0 and s["upstream_mismatch"] == 0, s

    # Unbound compresses names inside rdata (MX, NS, PTR, CNAME) against the names before them and
    # writes SRV targets in full: dotproxy's answer checks must take a real compressor's output, and
    # what the client reads must be the same records, over UDP and from the cache over TCP.
    expected = {
        ("mx.unbound.test.", "MX"): {"10 mail.unbound.test.", "20 mail2.mx.unbound.test."},
        ("_sip._udp.unbound.test.", "SRV"): {"0 5 5060 sip.unbound.test.",
                                             "1 5 5060 sip2._sip._udp.unbound.test."},
        ("ns.unbound.test.", "NS"): {"ns1.ns.unbound.test.", "ns2.unbound.test."},
        ("p.unbound.test.", "PTR"): {"a.unbound.test."},
        ("t.unbound.test.", "TXT"): {'"hello world" "second string"'},
    }
    for (name, rdtype), want in expected.items():
        for transport in ("udp", "tcp"):
            q = make_query(name, rdtype)
            r = p.udp(q) if transport == "udp" else p.tcp(q)
            assert r.rcode() == dns.rcode.NOERROR, (name, rdtype, transport, r)
            got = {rd.to_text() for rrset in r.answer for rd in rrset
                   if rrset.rdtype == dns.rdatatype.from_text(rdtype)}
            assert got == want, (name, rdtype, transport, r)
    r = p.udp(make_query("c.unbound.test.", "A"))
    assert r.rcode() == dns.rcode.NOERROR, r
    assert any(rrset.rdtype == dns.rdatatype.CNAME and rrset[0].target.to_text() == "a.unbound.test."
               for rrset in r.answer), r
    s = p.stats()
    assert s["upstream_malformed"] == 0 and s["servfail"] == 0, s
    assert s["cache_hits"] >= 1 + len(expected), s
