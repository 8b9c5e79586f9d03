"""The answer cache, end to end against dotmock (whose counters show what reached the upstream):
repeated questions are answered from memory, TTLs count down, negative answers live by the SOA
rule, DO and non-DO answers never mix, the client's spelling is kept, stale answers are served
while the upstream is down (RFC 8767), and popular entries are refreshed before they expire."""

import time

import dns.flags
import dns.rcode
import dns.rdatatype

from conftest import free_port, make_query, wait_for


def mock_queries(m) -> int:
    return m.stats()["queries"]


def test_second_query_is_answered_from_cache(mock, proxy):
    m = mock()
    p = proxy(m)
    first = p.udp(make_query("cached.test."))
    before = mock_queries(m)
    second = p.udp(make_query("cached.test."))
    tcp = p.tcp(make_query("cached.test."))
    assert mock_queries(m) == before, "the repeat went upstream"
    for r in (second, tcp):
        assert r.rcode() == dns.rcode.NOERROR
        assert r.answer[0][0].address == first.answer[0][0].address == "192.0.2.1"
    s = p.stats()
    assert s["cache_hits"] == 2 and s["cache_misses"] == 1, s
    assert s["cache_entries"] >= 1 and s["cache_bytes"] > 0, s


def test_ttl_counts_down_in_the_cache(mock, proxy):
    m = mock("--ttl", "300")
    p = proxy(m)
    assert p.udp(make_query("ttl.test.")).answer[0].ttl == 300
    # The TTL goes down with the entry's age, in whole seconds (bounded wait for the clock).
    deadline = time.monotonic() + 5
    ttl = 300
    while ttl == 300 and time.monotonic() < deadline:
        time.sleep(0.1)
        ttl = p.udp(make_query("ttl.test.")).answer[0].ttl
    assert 295 <= ttl < 300, ttl
    assert mock_queries(m) == 1


def test_nxdomain_is_cached_by_the_soa_rule(mock, proxy):
    # SOA TTL 300 and SOA MINIMUM 2: the negative answer lives min(300, 2) = 2 s (RFC 2308).
    m = mock("--ttl", "300", "--negative-ttl", "2")
    p = proxy(m)
    first = p.udp(make_query("nx.test."))
    assert first.rcode() == dns.rcode.NXDOMAIN
    again = p.udp(make_query("nx.test."))
    assert again.rcode() == dns.rcode.NXDOMAIN and mock_queries(m) == 1
    soa = again.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa.ttl <= 300
    # After about 2 s it expires and goes upstream again.
    def expired():
        p.udp(make_query("nx.test."))
        return mock_queries(m) == 2

    wait_for(expired, 6, interval=0.1, what="the negative entry to expire")


def test_do_and_non_do_answers_are_kept_apart(mock, proxy):
    m = mock()
    p = proxy(m)
    plain = make_query("do.test.", edns=0)
    dnssec = make_query("do.test.", want_dnssec=True)
    p.udp(plain)
    p.udp(dnssec)
    assert mock_queries(m) == 2, "DO and non-DO shared one cache entry"
    r_plain, r_do = p.udp(plain), p.udp(dnssec)
    assert mock_queries(m) == 2
    assert not (r_plain.ednsflags & dns.flags.DO)
    assert r_do.ednsflags & dns.flags.DO


def test_cached_answer_keeps_the_clients_spelling(mock, proxy):
    m = mock()
    p = proxy(m)
    p.udp(make_query("CaSe.test."))
    q = make_query("cAsE.TEST.")
    r = p.udp(q)
    assert mock_queries(m) == 1
    assert r.question[0].name.to_text() == "cAsE.TEST."
    assert r.id == q.id


def test_stale_answer_while_upstream_is_down_then_fresh_again(mock, proxy, cert_pair):
    cert, key = cert_pair
    port = free_port()
    flags = ("--cert", str(cert), "--key", str(key), "--ttl", "1")
    m = mock(*flags, dot=f"127.0.0.1:{port}")
    p = proxy(None, upstreams=[f"127.0.0.1:{port}#dotmock.test"], ca_file=str(cert),
              config="[upstream]\nquery_timeout_ms = 800\nattempt_timeout_ms = 300\n"
                     "backoff_initial_ms = 100\nbackoff_max_ms = 200\n")
    assert p.udp(make_query("stale.test.")).answer[0].ttl == 1
    m.stop()
    # Expired (TTL 1 s) and the upstream is gone: the stale answer, with TTL 30 (RFC 8767).
    r = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = p.udp(make_query("stale.test."), timeout=3)
        if r.answer and r.answer[0].ttl == 30:
            break
        time.sleep(0.1)
    assert r is not None and r.rcode() == dns.rcode.NOERROR and r.answer[0].ttl == 30, r
    assert r.answer[0][0].address == "192.0.2.1"
    assert p.stats()["cache_stale"] >= 1
    # The upstream comes back: fresh answers again.
    m2 = mock(*flags, dot=f"127.0.0.1:{port}")
    wait_for(lambda: p.udp(make_query("stale.test."), timeout=3).answer[0].ttl != 30, 10,
             interval=0.1, what="a fresh answer after the upstream returned")
    assert mock_queries(m2) >= 1


def test_popular_entry_is_prefetched_before_it_expires(mock, proxy):
    m = mock("--ttl", "4")
    # A 2 s prefetch window (the last 50% of a 4 s life): wide enough that hits 50 ms apart on a
    # loaded machine cannot jump over it, as they could over the default 10% (0.4 s).
    p = proxy(m, config="[cache]\nprefetch_percent = 50\n")
    t0 = time.monotonic()
    p.udp(make_query("hot.test."))
    # Popular: hit every 50 ms. In the last half of its life a hit triggers a refresh, which
    # reaches dotmock while the entry still answers (no client ever misses).
    deadline = t0 + 8
    while mock_queries(m) < 2 and time.monotonic() < deadline:
        assert p.udp(make_query("hot.test.")).rcode() == dns.rcode.NOERROR
        time.sleep(0.05)
    assert mock_queries(m) == 2, "no refresh reached the upstream"
    s = p.stats()
    assert s["cache_prefetches"] >= 1, s
    assert s["cache_misses"] == 1, f"a client missed: {s}"


def test_cache_size_zero_turns_the_cache_off(mock, proxy):
    m = mock()
    p = proxy(m, "--cache-size", "0")
    p.udp(make_query("off.test."))
    p.udp(make_query("off.test."))
    assert mock_queries(m) == 2
    assert p.stats()["cache_hits"] == 0


def test_answer_to_rd0_query_is_not_cached_for_everyone(mock, proxy):
    m = mock()
    p = proxy(m)
    p.udp(make_query("rd.test.", rd=False))
    p.udp(make_query("rd.test."))
    assert mock_queries(m) == 2, "an RD=0 answer was served to an RD=1 client"


def test_subnet_specific_answers_are_not_shared(mock, proxy):
    """With forward_ecs the upstream may tailor answers to the client's subnet (RFC 7871): such
    answers are not cached for other clients."""
    import dns.edns
    m = mock()
    p = proxy(m, config="[server]\nforward_ecs = true\n")
    for subnet in ("192.0.2.0", "198.51.100.0"):
        q = make_query("ecs.test.", edns=0)
        q.use_edns(0, 0, 1232, options=[dns.edns.ECSOption(subnet, 24)])
        assert p.udp(q).rcode() == dns.rcode.NOERROR
    assert mock_queries(m) == 2
