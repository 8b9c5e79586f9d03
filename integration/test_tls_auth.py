"""Upstream authentication: the certificate must verify for the configured name against the
configured CA (or match a pin); otherwise no query is sent, the client gets SERVFAIL, the failure
is counted and logged. No plaintext fallback, ever."""

import dns.rcode

from conftest import make_query

QUERY_TIMEOUT = "1000"


def assert_refused(m, p, name="auth.test."):
    before = m.stats()
    r = p.udp(make_query(name))
    assert r.rcode() == dns.rcode.SERVFAIL, dns.rcode.to_text(r.rcode())
    r = p.tcp(make_query("tcp-" + name))
    assert r.rcode() == dns.rcode.SERVFAIL, dns.rcode.to_text(r.rcode())
    after = m.stats()
    # Not one query reached the upstream that failed authentication.
    assert after["dot_queries"] == before["dot_queries"], after
    assert after["queries"] == before["queries"], after
    s = p.stats()
    assert s["upstream_answers"] == 0, s
    assert s["servfail"] >= 2, s
    assert p.running()
    return s


def test_certificate_for_another_name_is_refused(mock, proxy):
    m = mock("--cert-name", "other.test")
    p = proxy(m, "--query-timeout", QUERY_TIMEOUT)  # expects dotmock.test, trusts the mock's CA
    s = assert_refused(m, p)
    assert s["upstream_verify_failures"] >= 1, s
    log = p.stderr().lower()
    assert "verif" in log and "dotmock.test" in log, p.stderr()[-2000:]


def test_wrong_pin_is_refused(mock, proxy):
    m = mock()
    other = mock()  # a different key: its pin is a well-formed pin that does not match m
    assert other.pin != m.pin
    p = proxy(m, "--pin", other.pin, "--query-timeout", QUERY_TIMEOUT)
    s = assert_refused(m, p)
    assert s["upstream_verify_failures"] >= 1, s
    assert "pin" in p.stderr().lower(), p.stderr()[-2000:]


def test_right_pin_is_accepted(mock, proxy):
    m = mock()
    p = proxy(m, "--pin", m.pin)
    r = p.udp(make_query("pinned.test."))
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.1"
    assert p.stats()["upstream_verify_failures"] == 0


def test_pins_still_apply_with_insecure(mock, proxy):
    """README: --insecure turns chain verification off, "pins still apply"."""
    m = mock("--cert-name", "other.test")
    other = mock()
    bad = proxy(m, "--insecure", "--pin", other.pin, "--query-timeout", QUERY_TIMEOUT, ca_file=None)
    s = assert_refused(m, bad)
    assert s["upstream_verify_failures"] >= 1, s
    good = proxy(m, "--insecure", "--pin", m.pin, ca_file=None)
    r = good.udp(make_query("insecure-pinned.test."))
    assert r.rcode() == dns.rcode.NOERROR


def test_expired_certificate_is_refused(mock, proxy):
    m = mock("--expired")
    p = proxy(m, "--query-timeout", QUERY_TIMEOUT)
    s = assert_refused(m, p)
    assert s["upstream_verify_failures"] >= 1, s
    assert "expired" in p.stderr().lower(), p.stderr()[-2000:]


def test_self_signed_without_ca_file_is_refused(mock, proxy):
    m = mock()
    p = proxy(m, "--query-timeout", QUERY_TIMEOUT, ca_file=None)  # system trust store
    s = assert_refused(m, p)
    assert s["upstream_verify_failures"] >= 1, s


def test_pin_mismatch_refused_even_with_valid_chain(mock, proxy):
    """The chain verifies (right CA, right name) but the pin does not match: refused."""
    m = mock()
    p = proxy(m, "--pin", "A" * 43 + "=", "--query-timeout", QUERY_TIMEOUT)
    s = assert_refused(m, p)
    assert s["upstream_verify_failures"] >= 1, s


def test_one_good_pin_among_several_is_accepted(mock, proxy):
    m = mock()
    p = proxy(m, "--pin", "A" * 43 + "=", "--pin", m.pin)
    r = p.udp(make_query("pins.test."))
    assert r.rcode() == dns.rcode.NOERROR


def test_insecure_accepts_and_warns(mock, proxy):
    m = mock("--cert-name", "other.test")
    p = proxy(m, "--insecure", ca_file=None, log_level="warn")
    r = p.udp(make_query("insecure.test."))
    assert r.rcode() == dns.rcode.NOERROR
    assert "insecure" in p.stderr().lower() or "verification is off" in p.stderr().lower(), p.stderr()
