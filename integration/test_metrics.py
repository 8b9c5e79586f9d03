"""The operator endpoint (--metrics): /metrics in the Prometheus text format (checked with the
prometheus_client parser, not by eye) with counters that move as queries, cache hits, upstream
faults and drops happen; /healthz; /readyz following upstream state and draining; and an HTTP
front that refuses bad requests without disturbing anything else."""

import signal
import socket
import time
import urllib.error
import urllib.request

import dns.message
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, make_query, split_hostport, udp_exchange, wait_for


def http_get(addr, path, timeout=5.0):
    """(status, body) of GET http://addr/path."""
    try:
        with urllib.request.urlopen(f"http://{addr[0]}:{addr[1]}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def raw_http(addr, data: bytes, timeout=5.0) -> bytes:
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def scrape(addr) -> dict:
    """{(sample name, frozenset(labels)): value} for every sample, after a full parse."""
    status, body = http_get(addr, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = s.value
    return samples


# dotproxy_responses_total has a sample for a rare RCODE only once a reply carried it; NOERROR,
# SERVFAIL and NXDOMAIN are always there.
SPARSE_RCODES = ("dotproxy_responses_total", {"NOERROR", "SERVFAIL", "NXDOMAIN"})


def value(samples, name, **labels):
    """The sample's value; a sample that is not exported fails (a metric that disappeared must not
    read as 0 and pass every `== 0` check). Only a rare RCODE's sample, which dotproxy omits while
    it is 0, reads as 0 when absent."""
    key = (name, frozenset(labels.items()))
    if key not in samples and name == SPARSE_RCODES[0] and labels.get("rcode") not in SPARSE_RCODES[1]:
        return 0.0
    assert key in samples, f"no sample {name}{labels or ''} in /metrics"
    return samples[key]


def metrics_addr(p):
    assert "metrics" in p.ready, p.ready
    return split_hostport(p.ready["metrics"])


@pytest.mark.multiworker  # the scrape reads every worker's counters while they run (TSan)
def test_metrics_parse_and_counters_move(mock, proxy):
    m = mock()
    p = proxy(m, "--metrics", "127.0.0.1:0", workers=2)
    addr = metrics_addr(p)
    before = scrape(addr)
    assert value(before, "dotproxy_workers") == 2
    assert value(before, "dotproxy_build_info", version=next(
        dict(k[1])["version"] for k in before if k[0] == "dotproxy_build_info")) == 1

    for _ in range(3):
        assert p.udp(make_query("m1.test.")).rcode() == dns.rcode.NOERROR  # 1 miss, 2 hits
    assert p.udp(make_query("nx.m1.test.")).rcode() == dns.rcode.NXDOMAIN
    assert p.tcp(make_query("m2.test.", "AAAA")).rcode() == dns.rcode.NOERROR
    assert p.udp(make_query("m3.test.", "TYPE65280")).rcode() == dns.rcode.NOERROR
    assert udp_exchange(p.addr, b"\x01\x02\x03", timeout=0.5) is None  # shorter than a header
    bad = bytearray(make_query("formerr.test.").to_wire())
    bad[5] = 2  # QDCOUNT 2 with one question: FORMERR
    formerr = udp_exchange(p.addr, bytes(bad))
    assert formerr is not None and dns.message.from_wire(formerr, question_only=True).rcode() == 1

    # Counters are per worker, summed at scrape time: poll until the drop has been counted too.
    def moved():
        after = scrape(addr)
        return after if value(after, "dotproxy_dropped_total", reason="short") >= 1 else None

    after = wait_for(moved, 5, what="the short datagram to be counted")

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("dotproxy_queries_total", transport="udp") == 7
    assert delta("dotproxy_queries_total", transport="tcp") == 1
    assert delta("dotproxy_queries_by_type_total", qtype="A") == 4  # not the FORMERR one
    assert delta("dotproxy_queries_by_type_total", qtype="AAAA") == 1
    assert delta("dotproxy_queries_by_type_total", qtype="other") == 1
    assert delta("dotproxy_cache_lookups_total", result="hit") == 2
    assert delta("dotproxy_cache_lookups_total", result="miss") == 4
    assert delta("dotproxy_answers_total", source="cache") == 2
    assert delta("dotproxy_answers_total", source="upstream") == 4
    assert delta("dotproxy_answers_total", source="local") == 1  # the FORMERR
    assert delta("dotproxy_responses_total", rcode="NXDOMAIN") == 1
    assert delta("dotproxy_responses_total", rcode="FORMERR") == 1
    assert delta("dotproxy_responses_total", rcode="NOERROR") == 5
    assert delta("dotproxy_malformed_total", reply="formerr") == 1
    assert delta("dotproxy_dropped_total", reason="short") == 1
    assert delta("dotproxy_upstream_queries_total") == 4
    assert delta("dotproxy_upstream_answers_total") == 4
    assert delta("dotproxy_upstream_duration_seconds_count") == 4
    assert delta("dotproxy_answer_duration_seconds_count", source="upstream") == 4
    assert value(after, "dotproxy_cache_entries") >= 4
    assert value(after, "dotproxy_cache_bytes") > 0
    assert 0 < value(after, "dotproxy_cache_hit_ratio") < 1
    # Both workers connected to the upstream at start (and before any query).
    assert value(after, "dotproxy_upstream_handshakes_total") >= 2
    assert value(after, "dotproxy_upstream_handshake_duration_seconds_count") >= 2
    assert value(after, "dotproxy_upstream_connections_open") >= 1
    # Histograms: +Inf equals count, buckets never decrease.
    for (name, labels), v in after.items():
        if name.endswith("_count") and name.replace("_count", "_bucket") != name:
            base = name[: -len("_count")]
            inf = after[(base + "_bucket", frozenset(labels | {("le", "+Inf")}))]
            assert inf == v, (name, labels)
    assert p.stop() == 0


def test_upstream_faults_are_counted_by_cause(mock, proxy, tmp_path):
    # An upstream whose certificate is for another name: a verify failure, SERVFAIL to the client.
    m = mock()
    p = proxy(m, "--metrics", "127.0.0.1:0", "--query-timeout", "800",
              upstreams=[m.upstream_spec(tls_name="wrong.test")], log_level="error")
    addr = metrics_addr(p)
    assert p.udp(make_query("v.test.")).rcode() == dns.rcode.SERVFAIL
    s = wait_for(lambda: (x := scrape(addr)) and
                 value(x, "dotproxy_upstream_failures_total", cause="verify") >= 1 and x,
                 5, what="the verify failure to be counted")
    assert value(s, "dotproxy_servfail_total") >= 1
    assert value(s, "dotproxy_responses_total", rcode="SERVFAIL") >= 1
    assert value(s, "dotproxy_answers_total", source="local") >= 1
    status, body = http_get(addr, "/readyz")
    assert status == 503 and "no upstream" in body
    assert p.stop() == 0


def test_readyz_follows_upstream_state(mock, proxy):
    m = mock()
    p = proxy(m, "--metrics", "127.0.0.1:0", "--query-timeout", "800",
              config="[upstream]\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\n")
    addr = metrics_addr(p)
    assert http_get(addr, "/healthz") == (200, "ok\n")
    # Ready once the start-up connection to the upstream has a TLS session, before any query.
    wait_for(lambda: http_get(addr, "/readyz")[0] == 200, 5, what="/readyz to become 200")
    assert value(scrape(addr), "dotproxy_ready") == 1
    # The upstream goes away: the next connection attempt fails and readiness follows.
    assert m.stop() == 0

    def unready():
        p.udp(make_query(f"down{time.monotonic_ns()}.test."), timeout=3)
        return http_get(addr, "/readyz")[0] == 503

    wait_for(unready, 8, interval=0.1, what="/readyz to become 503 with the upstream down")
    assert value(scrape(addr), "dotproxy_ready") == 0
    assert value(scrape(addr), "dotproxy_upstream_failures_total", cause="connect") >= 1
    assert http_get(addr, "/healthz")[0] == 200  # still serving
    assert p.stop() == 0


def test_never_ready_without_a_reachable_upstream(proxy):
    port = free_port()
    p = proxy(None, "--metrics", "127.0.0.1:0", "--insecure", upstreams=[f"127.0.0.1:{port}"],
              ca_file=None)
    addr = metrics_addr(p)
    wait_for(lambda: value(scrape(addr), "dotproxy_upstream_failures_total", cause="connect") >= 1,
             5, what="the failed start-up connection to be counted")
    status, body = http_get(addr, "/readyz")
    assert status == 503 and body == "not ready: no upstream reachable yet\n"
    assert http_get(addr, "/healthz")[0] == 200
    assert p.stop() == 0


def test_readyz_is_503_while_draining(mock, proxy):
    m = mock()
    p = proxy(m, "--metrics", "127.0.0.1:0", config="[server]\nshutdown_grace_ms = 5000\n")
    addr = metrics_addr(p)
    wait_for(lambda: http_get(addr, "/readyz")[0] == 200, 5, what="/readyz to become 200")
    before = m.stats()["dot_queries"]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(make_query("delay-800.test.", qid=0x5151).to_wire(), p.addr)
        wait_for(lambda: m.stats()["dot_queries"] > before, 3, what="the query to reach dotmock")
        p.process.signal(signal.SIGTERM)
        wait_for(lambda: http_get(addr, "/readyz") == (503, "draining\n"), 3,
                 what="/readyz to say draining")
        assert http_get(addr, "/healthz")[0] == 200
        assert value(scrape(addr), "dotproxy_draining") == 1
        s.settimeout(5)
        r = dns.message.from_wire(s.recvfrom(65535)[0])
        assert r.id == 0x5151 and r.rcode() == dns.rcode.NOERROR  # the in-flight query finished
    finally:
        s.close()
    assert p.stop() == 0


def test_http_front_refuses_bad_requests(mock, proxy):
    m = mock()
    p = proxy(m, "--metrics", "127.0.0.1:0")
    addr = metrics_addr(p)
    # A client that connects and says nothing does not hold up a scrape.
    idle = socket.create_connection(addr, timeout=5)
    try:
        assert http_get(addr, "/metrics")[0] == 200
        assert raw_http(addr, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert raw_http(addr, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
        assert raw_http(addr, b"GET /nope HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
        head = raw_http(addr, b"HEAD /healthz HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
        big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n"
        assert raw_http(addr, big).startswith(b"HTTP/1.1 431 ")
    finally:
        idle.close()
    assert p.udp(make_query("still.test.")).rcode() == dns.rcode.NOERROR
    assert p.stop() == 0


def test_metrics_address_errors(mock, proxy, processes, tmp_path):
    from conftest import DOTPROXY_BIN

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        proc = processes.start([DOTPROXY_BIN, "--listen", "127.0.0.1:0", "--metrics",
                                f"127.0.0.1:{port}"], "busy")
        proc.expect_failure = True
        proc.popen.wait(timeout=10)
        err = proc.stderr_text()
        assert proc.stop() == 1
        assert "cannot bind the metrics endpoint" in err and "--metrics" in err, err
    finally:
        taken.close()
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[server]\nmetrics = "not an address"\n')
    proc = processes.start([DOTPROXY_BIN, "--config", str(cfg), "--check-config"], "badcfg")
    proc.expect_failure = True
    proc.popen.wait(timeout=10)
    err = proc.stderr_text()
    assert proc.stop() == 2
    assert f"{cfg}:2: server.metrics" in err, err


def test_per_upstream_metrics(mock, proxy):
    good = mock()
    dead = f"127.0.0.1:{free_port()}#dotmock.test"
    p = proxy(good, "--metrics", "127.0.0.1:0", "--query-timeout", "1000",
              upstreams=[good.upstream_spec(), dead],
              config="[upstream]\nbackoff_initial_ms = 5000\nbackoff_max_ms = 10000\n")
    addr = metrics_addr(p)
    # Both upstreams are tried at start; the dead one fails its connection and backs off.
    s = wait_for(lambda: (x := scrape(addr)) and value(
        x, "dotproxy_upstream_server_failures_total", upstream=dead, cause="connect") >= 1 and
        value(x, "dotproxy_upstream_server_up", upstream=good.upstream_spec()) == 1 and x,
        5, what="one upstream up and the other counted as failing")
    assert value(s, "dotproxy_upstream_server_up", upstream=dead) == 0
    for i in range(5):
        assert p.udp(make_query(f"pu{i}.test.")).rcode() == dns.rcode.NOERROR
    s = scrape(addr)
    assert value(s, "dotproxy_upstream_server_answers_total", upstream=good.upstream_spec()) == 5
    assert value(s, "dotproxy_upstream_server_answers_total", upstream=dead) == 0
    assert value(s, "dotproxy_upstream_server_queries_total", upstream=good.upstream_spec()) == 5
    assert value(s, "dotproxy_upstream_server_handshakes_total", upstream=good.upstream_spec()) >= 1
    assert value(s, "dotproxy_upstream_server_connections_open",
                 upstream=good.upstream_spec()) >= 1
    assert value(s, "dotproxy_upstream_inflight") == 0
    assert http_get(addr, "/readyz")[0] == 200  # one upstream is enough
    assert p.stop() == 0


def test_grafana_dashboard_uses_only_exported_metrics(mock, proxy):
    """deploy/grafana/dotproxy-dashboard.json is valid JSON and every metric and label it queries
    exists on a live /metrics."""
    import json
    import re
    from pathlib import Path

    dash = json.loads((Path(__file__).parent.parent / "deploy/grafana/dotproxy-dashboard.json")
                      .read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 20
    m = mock()
    p = proxy(m, "--metrics", "127.0.0.1:0")
    assert p.udp(make_query("g.test.")).rcode() == dns.rcode.NOERROR
    samples = scrape(metrics_addr(p))
    names = {name for name, _ in samples}
    labels = {k for _, ls in samples for k, _ in ls} | {"instance", "le"}
    for e in exprs:
        for name in re.findall(r"\bdotproxy_[a-z_]+", e):
            assert name in names, f"{name} (in {e}) is not exported"
        for group in re.findall(r"by \(([^)]*)\)", e):
            for label in group.split(","):
                assert label.strip() in labels, f"label {label} (in {e}) is not exported"
    assert p.stop() == 0


def test_tcp_closes_are_counted_once_by_reason(mock, proxy):
    m = mock()
    p = proxy(m, "--metrics", "127.0.0.1:0", config="[server]\ntcp_idle_timeout_ms = 300\n")
    addr = metrics_addr(p)
    before = scrape(addr)
    assert p.tcp(make_query("c.test.")).rcode() == dns.rcode.NOERROR  # dnspython closes after
    idle = socket.create_connection(p.addr, timeout=5)
    try:
        idle.settimeout(5)
        assert idle.recv(1) == b""  # closed by dotproxy after the idle timeout
    finally:
        idle.close()

    def closed(reason):
        return value(scrape(addr), "dotproxy_tcp_closed_total", reason=reason) - value(
            before, "dotproxy_tcp_closed_total", reason=reason)

    wait_for(lambda: closed("client") == 1 and closed("idle") == 1, 5,
             what="one client close and one idle close")
    assert closed("error") == 0  # an idle close is not also an error
    assert value(scrape(addr), "dotproxy_tcp_clients_open") == 0
    assert p.stop() == 0
