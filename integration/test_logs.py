"""Logs an operator's log pipeline can take: --log-format json gives one JSON object per line with
ts, level, event, msg and the event's fields; the sampled query log (--query-log N) records one
answered query in N with client, name, type, rcode, source and latency."""

import json

import dns.rcode

from conftest import make_query, wait_for


def json_lines(p):
    out = []
    for line in p.stderr().splitlines():
        if line.strip():
            out.append(json.loads(line))  # every line is one JSON object
    return out


def events(p, name):
    return [e for e in json_lines(p) if e["event"] == name]


def test_json_lines_with_fields(mock, proxy):
    m = mock()
    p = proxy(m, "--log-format", "json", "--query-log", "1")
    assert p.udp(make_query("j1.test.")).rcode() == dns.rcode.NOERROR
    assert p.tcp(make_query("j1.test.", "AAAA")).rcode() == dns.rcode.NOERROR
    assert p.udp(make_query("nx.j2.test.", "MX")).rcode() == dns.rcode.NXDOMAIN
    queries = wait_for(lambda: len(events(p, "query")) >= 3 and events(p, "query"), 5,
                       what="three query log lines")
    for e in json_lines(p):
        assert {"ts", "level", "event", "msg"} <= e.keys(), e
        assert e["ts"].endswith("Z") and e["level"] in ("debug", "info", "warn", "error")
    started = events(p, "started")
    assert len(started) == 1 and started[0]["workers"] == 1
    assert started[0]["upstreams"] == m.upstream_spec()
    first, second, third = queries[:3]
    assert (first["name"], first["type"], first["rcode"], first["source"], first["transport"]) == (
        "j1.test.", "A", "NOERROR", "upstream", "udp")
    assert (second["type"], second["source"], second["transport"]) == ("AAAA", "upstream", "tcp")
    assert (third["name"], third["type"], third["rcode"]) == ("nx.j2.test.", "MX", "NXDOMAIN")
    assert first["client"].startswith("127.0.0.1:") and isinstance(first["latency_us"], int)
    # The repeat is a cache hit.
    assert p.udp(make_query("j1.test.")).rcode() == dns.rcode.NOERROR
    wait_for(lambda: any(e["source"] == "cache" for e in events(p, "query")), 5,
             what="a query line with source cache")
    assert p.stop() == 0
    assert [e["event"] for e in json_lines(p)][-2:] == ["draining", "stopped"]


def test_query_log_samples_one_in_n(mock, proxy):
    m = mock()
    p = proxy(m, "--log-format", "json", "--query-log", "5")
    for i in range(20):
        assert p.udp(make_query(f"s{i}.test.")).rcode() == dns.rcode.NOERROR
    wait_for(lambda: len(events(p, "query")) >= 4, 5, what="four sampled query lines")
    assert p.stop() == 0
    assert len(events(p, "query")) == 4  # 20 answers, one in five


def test_upstream_failure_events_name_the_cause(mock, proxy):
    m = mock()
    p = proxy(m, "--log-format", "json", "--query-log", "0", "--query-timeout", "800",
              upstreams=[m.upstream_spec(tls_name="other.test")])
    assert p.udp(make_query("f.test.")).rcode() == dns.rcode.SERVFAIL
    backoff = wait_for(lambda: events(p, "upstream_backoff"), 5, what="an upstream_backoff event")
    e = backoff[0]
    assert e["level"] == "warn" and e["upstream"] == m.upstream_spec(tls_name="other.test")
    assert e["backoff_ms"] > 0 and e["cause"] and "certificate" in e["error"]
    assert not events(p, "query")
    assert p.stop() == 0


def test_text_format_is_the_default(mock, proxy):
    m = mock()
    p = proxy(m, "--query-log", "1")
    assert p.udp(make_query("t.test.")).rcode() == dns.rcode.NOERROR
    line = wait_for(lambda: [x for x in p.stderr().splitlines() if " query " in x], 5,
                    what="a query log line")[0]
    assert " info query 127.0.0.1:" in line and " udp t.test. A NOERROR upstream " in line
    assert p.stop() == 0
