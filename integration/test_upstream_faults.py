"""Every fault an upstream can have (scripted in dotmock, tools/dotmock/faults.h): the client gets
the right answer from another connection or upstream, or SERVFAIL within the configured timeout;
and dotproxy keeps serving another client meanwhile. The bystander client queries continuously in
a thread while the faulty query is in flight; its answers must all be right and in time.

The rules fire `once` where a retry should succeed: the retry of the same question then gets the
normal answer, so a test fails if dotproxy does not retry (or retries on the broken connection)."""

import threading
import time

import pytest

from conftest import wait_for, require_module

dotproxy = require_module()  # absent only where conftest allows it (tsan)

QUERY_TIMEOUT = 1.5  # seconds; SERVFAIL after this
SLACK = 2.5  # scheduling on a loaded 2-core machine (and the sanitizer build)
CONFIG = """
[upstream]
query_timeout_ms = 1500
attempt_timeout_ms = 400
connect_timeout_ms = 400
backoff_initial_ms = 100
backoff_max_ms = 300

[cache]
size = 0
"""
ANSWER = "192.0.2.1"


class Bystander:
    """Another client asking other names over UDP and TCP in turn, from a thread, until stopped."""

    def __init__(self, proxy: dotproxy.Proxy, allow_servfail: bool = False):
        self.proxy = proxy
        self.allow_servfail = allow_servfail
        self.results: list[tuple[float, float, str]] = []  # (start, end, outcome)
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set() and i < 10_000:
            i += 1
            transport = "udp" if i % 2 else "tcp"
            t0 = time.monotonic()
            try:
                a = self.proxy.query(f"by-{i}.test", transport=transport,
                                     timeout=QUERY_TIMEOUT + SLACK + 1)
                outcome = a.message.rcode_text
                ok = (outcome == "NOERROR" and [r.text for r in a.message.answer] == [ANSWER]) or (
                    self.allow_servfail and outcome == "SERVFAIL")
            except (TimeoutError, dotproxy.QueryError) as e:
                outcome, ok = f"{type(e).__name__}: {e}", False
            t1 = time.monotonic()
            self.results.append((t0, t1, outcome))
            if not ok:
                self.problems.append(f"by-{i}.test over {transport}: {outcome}")
            elif t1 - t0 > QUERY_TIMEOUT + SLACK:
                self.problems.append(f"by-{i}.test over {transport}: {outcome} after {t1 - t0:.2f}s")

    def __enter__(self):
        self._thread.start()
        wait_for(lambda: self.results, 10, what="the bystander's first answer")
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()

    def overlapping(self, start: float, end: float) -> int:
        return sum(1 for a, b, _ in self.results if a < end and b > start)


def faulty_query(p: dotproxy.Proxy, name="f.test", transport="udp"):
    """The query the fault is scripted for: (answer message, elapsed seconds)."""
    t0 = time.monotonic()
    a = p.query(name, transport=transport, timeout=QUERY_TIMEOUT + SLACK + 2)
    return a.message, t0, time.monotonic()


def check_answered(msg, t0, t1):
    assert msg.rcode_text == "NOERROR", msg
    assert [r.text for r in msg.answer] == [ANSWER], msg
    assert t1 - t0 <= QUERY_TIMEOUT + SLACK, f"answered after {t1 - t0:.2f}s"


def check_servfail_in_time(msg, t0, t1):
    assert msg.rcode_text == "SERVFAIL", msg
    assert t1 - t0 <= QUERY_TIMEOUT + SLACK, f"SERVFAIL after {t1 - t0:.2f}s"


# fault rule, counters that must move, whether the first attempt waits out the attempt timeout
RETRIED = {
    "delay": ("label f delay 4000 once", ["upstream_timeouts", "upstream_retries"], True),
    "drop": ("label f drop once", ["upstream_timeouts", "upstream_retries"], True),
    "close": ("label f close once", ["upstream_retries"], False),
    "close-mid": ("label f close-mid once", ["upstream_retries"], False),
    "wrong-id": ("label f wrong-id once", ["upstream_mismatch", "upstream_retries"], True),
    "wrong-question": ("label f wrong-question once", ["upstream_mismatch", "upstream_retries"],
                       False),
    "malformed": ("label f malformed once", ["upstream_malformed", "upstream_retries"], False),
    "truncated": ("label f truncated once", ["upstream_malformed", "upstream_retries"], False),
    # The frame waits for bytes that never come (attempt timeout), or swallows the next answers
    # on the connection and is refused as longer than its message.
    "oversized": ("label f oversized once", ["upstream_retries"], False),
}


@pytest.mark.parametrize("fault", sorted(RETRIED))
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_fault_is_retried_and_the_client_gets_the_answer(mock_upstream, daemon, fault, transport):
    rule, counters, waits = RETRIED[fault]
    m = mock_upstream(faults=rule)
    p = daemon(m, config=CONFIG)
    before = p.stats()
    with Bystander(p) as by:
        msg, t0, t1 = faulty_query(p, transport=transport)
    check_answered(msg, t0, t1)
    if waits:
        assert t1 - t0 >= 0.3, f"answered in {t1 - t0:.2f}s: was the fault applied?"
    assert by.overlapping(t0, t1) >= 1, "no bystander query ran while the faulty one waited"
    assert not by.problems, by.problems
    after = p.stats()
    for c in counters:
        assert after[c] > before[c], (c, before[c], after[c])
    assert after["servfail"] == before["servfail"], after
    mc = m.counters()
    assert mc["queries"] >= 2 + len(by.results), mc  # the faulty query was asked twice
    assert p.running()


def test_frame_longer_than_its_message_fails_the_connection_at_once(mock_upstream, daemon):
    """Regression: an answer whose length prefix announces more than the message is completed by
    the next answer's bytes on the same connection. dotproxy used to accept it (bytes after the
    last record are ignored), losing the next answer to a timeout and reading the following
    prefix from the middle of a message. Now the connection is dropped at once and both queries
    are retried: no attempt times out."""
    m = mock_upstream(faults="label f oversized once")
    # One upstream connection, so that both queries share it.
    p = daemon(m, config=CONFIG.replace("[upstream]", "[upstream]\nconnections_per_upstream = 1"))
    assert p.query("warm.test").message.rcode_text == "NOERROR"
    before = p.stats()
    with dotproxy.Connection(p.host, "tcp", port=p.tcp_port, timeout=5) as c:
        # f's oversized frame, then g's answer (padded to 468 bytes) completes it.
        c.send([dotproxy.build_query("f.test", id=1), dotproxy.build_query("g.test", id=2)])
        for i in (1, 2):
            a = c.receive(i, timeout=QUERY_TIMEOUT + SLACK)
            assert a.message.rcode_text == "NOERROR" and a.message.answer[0].text == ANSWER
    after = p.stats()
    assert after["upstream_malformed"] == before["upstream_malformed"] + 1, after
    assert after["upstream_timeouts"] == before["upstream_timeouts"], after
    assert after["upstream_retries"] >= before["upstream_retries"] + 2, after


def test_servfail_from_upstream_reaches_the_client_in_time(mock_upstream, daemon):
    m = mock_upstream(faults="label f servfail")
    p = daemon(m, config=CONFIG)
    with Bystander(p) as by:
        msg, t0, t1 = faulty_query(p)
        msg2, t2, t3 = faulty_query(p, transport="tcp")
    check_servfail_in_time(msg, t0, t1)
    check_servfail_in_time(msg2, t2, t3)
    assert not by.problems, by.problems
    assert len(by.results) >= 1


def two_upstreams(mock_upstream, daemon, bad_faults):
    # Distinct names: two self-signed certificates with one subject in one CA bundle would be
    # taken for each other while building the chain.
    bad = mock_upstream(faults=bad_faults, cert_name="bad.dotmock.test")
    good = mock_upstream(cert_name="good.dotmock.test")
    bundle = bad.workdir / f"bundle-{bad.pid}.pem"
    bundle.write_text(open(bad.ca_file).read() + open(good.ca_file).read())
    p = daemon(upstreams=[bad.upstream_spec(), good.upstream_spec()], ca_file=str(bundle),
               config=CONFIG)
    return bad, good, p


def test_refused_from_upstream_is_not_an_answer(mock_upstream, daemon):
    """An upstream that REFUSES: the client gets the answer from the other upstream, never the
    REFUSED of a server that is not its own (dotproxy used to relay it)."""
    bad, good, p = two_upstreams(mock_upstream, daemon, "label f refused")

    def refused_once():
        # Which upstream a query goes to is the pool's choice: ask until the refusing one was asked.
        msg, t0, t1 = faulty_query(p)
        check_answered(msg, t0, t1)
        return p.stats()["upstream_refused"] >= 1

    with Bystander(p) as by:
        wait_for(refused_once, 15, what="a faulty query to reach the refusing upstream")
    assert not by.problems, by.problems
    assert bad.counters()["queries"] >= 1
    assert p.stats()["upstream_refused"] >= 1


def test_refused_by_the_only_upstream_gives_servfail_in_time(mock_upstream, daemon):
    m = mock_upstream(faults="label f refused")
    p = daemon(m, config=CONFIG)
    with Bystander(p) as by:
        for transport in ("udp", "tcp"):
            msg, t0, t1 = faulty_query(p, transport=transport)
            check_servfail_in_time(msg, t0, t1)
    assert not by.problems, by.problems
    assert p.stats()["upstream_refused"] >= 2


@pytest.mark.parametrize("fault", ["expired-cert", "wrong-name-cert"])
def test_bad_certificate_upstream_is_refused_and_the_other_answers(mock_upstream, daemon, fault):
    bad, good, p = two_upstreams(mock_upstream, daemon, f"any {fault}")
    with Bystander(p) as by:
        for i in range(6):
            msg, t0, t1 = faulty_query(p, name=f"c{i}.test")
            check_answered(msg, t0, t1)
    assert not by.problems, by.problems
    wait_for(lambda: p.stats()["upstream_verify_failures"] >= 1, 5,
             what="a verification failure against the bad upstream")
    s = p.stats()
    assert s["servfail"] == 0, s
    bc = bad.counters()
    assert bc["connections"] >= 1 and bc["queries"] == 0, bc  # never trusted with a query


@pytest.mark.parametrize("fault", ["expired-cert", "wrong-name-cert"])
def test_bad_certificate_only_upstream_gives_servfail_in_time(mock_upstream, daemon, fault):
    m = mock_upstream(faults=f"any {fault}")
    p = daemon(m, config=CONFIG)
    for transport in ("udp", "tcp"):
        msg, t0, t1 = faulty_query(p, transport=transport)
        check_servfail_in_time(msg, t0, t1)
    assert p.stats()["upstream_verify_failures"] >= 1
    assert m.counters()["queries"] == 0


def test_stalled_handshake_only_upstream_is_retried_on_a_new_connection(mock_upstream, daemon):
    """The only upstream's first connection stalls in its handshake (one worker, one connection
    per upstream, a connect timeout of 4 s, longer than the query's 1.5 s): the query waits on it
    for one attempt timeout, is retried on a second connection and answered; the stalled one
    later fails its connect timeout. (This test used to accept SERVFAIL or NOERROR: with a
    400 ms connect timeout and two workers the query could miss the stall altogether.)"""
    m = mock_upstream(faults="connection 1 stall-handshake")
    p = daemon(m, workers=1, config=CONFIG.replace("connect_timeout_ms = 400", "connect_timeout_ms = 4000")
               .replace("[upstream]", "[upstream]\nconnections_per_upstream = 1"))
    msg, t0, t1 = faulty_query(p)
    check_answered(msg, t0, t1)
    assert t1 - t0 >= 0.3, f"answered in {t1 - t0:.2f}s: did the query meet the stalled handshake?"
    s = p.stats()
    assert (s["upstream_timeouts"], s["upstream_retries"]) == (1, 1), s
    mc = m.counters()
    assert mc["connections"] == 2 and mc["handshakes"] == 1 and mc["queries"] == 1, mc
    wait_for(lambda: p.stats()["upstream_connect_failures"] >= 1, 10,
             what="the stalled handshake to fail its connect timeout")
    # Answers go on (after the upstream's backoff: test_coverage.py's
    # test_connect_failure_does_not_idle_a_live_connection_to_the_same_upstream is about that).
    wait_for(lambda: p.query("again.test").message.rcode_text == "NOERROR", 10, interval=0.1,
             what="an answer over the second connection")


def test_stalled_handshake_other_upstream_answers(mock_upstream, daemon):
    """Every handshake with one upstream stalls: every client, the faulty one and a bystander
    started first, is answered by the other upstream in time."""
    bad, good, p = two_upstreams(mock_upstream, daemon, "any stall-handshake")
    with Bystander(p) as by:
        for i in range(4):
            msg, t0, t1 = faulty_query(p, name=f"s{i}.test", transport="udp" if i % 2 else "tcp")
            check_answered(msg, t0, t1)
    assert not by.problems, by.problems
    assert bad.counters()["connections"] >= 1 and bad.counters()["handshakes"] == 0
    assert p.stats()["upstream_connect_failures"] >= 1


def test_upstream_goes_down_and_comes_back(mock_upstream, daemon):
    # Down for 4 s, longer than the query timeout (1.5 s): the query that brings it down cannot
    # be answered by a reconnection, only SERVFAIL is right.
    m = mock_upstream(faults="label f down 4000 once")
    p = daemon(m, config=CONFIG)
    warm = p.query("warm.test")
    assert warm.message.rcode_text == "NOERROR"
    connections = m.counters()["connections"]
    with Bystander(p, allow_servfail=True) as by:
        msg, t0, t1 = faulty_query(p)
        check_servfail_in_time(msg, t0, t1)

        def answered_again():
            a = p.query("back.test", timeout=QUERY_TIMEOUT + SLACK + 1)
            return a.message.rcode_text == "NOERROR"

        wait_for(answered_again, 20, interval=0.1, what="answers once dotmock is back")
    assert not by.problems, by.problems
    assert m.counters()["connections"] > connections  # reconnected after the restart
    assert p.running()


def test_bystander_on_tcp_survives_a_connection_closed_under_it(mock_upstream, daemon):
    """Many bystander queries share the upstream connection that the fault closes in the middle
    of an answer: their queries are retried too, none is lost."""
    m = mock_upstream(faults="label f close-mid once")
    p = daemon(m, config=CONFIG)
    with dotproxy.Connection(p.host, "tcp", port=p.tcp_port, timeout=5) as c:
        qs = [dotproxy.build_query(f"many-{i}.test", id=i) for i in range(1, 60)]
        c.send(qs[:30])
        msg, t0, t1 = faulty_query(p)
        c.send(qs[30:])
        for i in range(1, 60):
            a = c.receive(i, timeout=QUERY_TIMEOUT + SLACK + 2)
            assert a.message.rcode_text == "NOERROR", (i, a.message)
            assert a.message.questions[0].name == f"many-{i}.test."
    check_answered(msg, t0, t1)
