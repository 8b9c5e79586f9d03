"""The daemon as an operator meets it: ready line, stats on SIGUSR1 and at exit, graceful stop on
SIGTERM/SIGINT with in-flight queries answered, configuration checks with file:line: key errors,
--version, and a clear message when a privileged port cannot be bound."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import dns.message
import dns.rcode
import pytest

from conftest import DOTPROXY_BIN, free_port_tcp_udp, make_query, recv_frame, require, require_tool, wait_for

RUN_TIMEOUT = 10  # seconds for a one-shot dotproxy run (--version, --check-config, bind failure)


def run_proxy(*args, timeout=RUN_TIMEOUT, **kw):
    return subprocess.run([DOTPROXY_BIN, *args], capture_output=True, text=True, timeout=timeout, **kw)


def test_ready_line_and_stats(mock, proxy):
    m = mock()
    p = proxy(m)
    assert set(p.ready) == {"ready", "listen", "workers"}, p.ready
    assert p.ready["workers"] == 1
    assert re.fullmatch(r"127\.0\.0\.1:\d+", p.ready["listen"][0]) and p.port != 0
    s0 = p.stats()
    expected = {"udp_queries", "tcp_queries", "tcp_connections", "tcp_refused_overload",
                "tcp_closed_idle", "tcp_closed_error", "dropped_short", "dropped_response",
                "formerr", "notimp", "badvers", "servfail", "truncated", "answers", "coalesced",
                "upstream_queries", "upstream_answers", "upstream_retries", "upstream_timeouts",
                "upstream_malformed", "upstream_mismatch", "upstream_connects",
                "upstream_handshakes", "upstream_resumed", "upstream_tls_failures",
                "upstream_verify_failures", "upstream_connect_failures", "upstream_resets",
                "upstream_stalls", "upstream_idle_closes", "upstream_no_upstream", "padded_queries"}
    assert expected <= set(s0), expected - set(s0)
    p.udp(make_query("one.test."))
    p.tcp(make_query("two.test."))
    s1 = p.stats()
    assert s1["udp_queries"] == s0["udp_queries"] + 1
    assert s1["tcp_queries"] == s0["tcp_queries"] + 1
    assert s1["answers"] == s0["answers"] + 2
    assert p.stop() == 0
    final = p.process.final_stats()
    assert final is not None, f"no stats line at exit: {p.process.final_lines}"
    assert final["answers"] == s1["answers"]


@pytest.mark.multiworker
def test_several_workers_share_the_port(mock, proxy):
    m = mock()
    p = proxy(m, workers=2)
    assert p.ready["workers"] == 2
    for i in range(20):
        q = make_query(f"w{i}.test.")
        r = p.udp(q) if i % 2 else p.tcp(q)
        assert r.rcode() == dns.rcode.NOERROR
    s = p.stats()
    assert s["udp_queries"] + s["tcp_queries"] == 20, s


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_signal_drains_in_flight_query(mock, proxy, sig, transport):
    m = mock()
    p = proxy(m)
    assert p.udp(make_query("warm.test.")).rcode() == dns.rcode.NOERROR
    before = m.stats()["dot_queries"]
    q = make_query("delay-500.test.", qid=0x4242)
    if transport == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(q.to_wire(), p.addr)
    else:
        s = socket.create_connection(p.addr, timeout=5)
        s.sendall(len(q.to_wire()).to_bytes(2, "big") + q.to_wire())
    try:
        # The query is in flight once dotmock has it (it holds the answer for 500 ms).
        wait_for(lambda: m.stats()["dot_queries"] > before, 3, what="the query to reach dotmock")
        t0 = time.monotonic()
        p.process.signal(sig)
        s.settimeout(5)
        if transport == "udp":
            data = s.recvfrom(65535)[0]
        else:
            data = recv_frame(s, time.monotonic() + 5)
    finally:
        s.close()
    r = dns.message.from_wire(data)
    assert r.id == 0x4242
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.1"
    assert p.stop() == 0
    # Drained and gone within the default grace (2 s) plus slack.
    assert time.monotonic() - t0 <= 4.0


def test_sigterm_with_stuck_query_exits_within_grace(mock, proxy):
    m = mock()
    p = proxy(m, config="[server]\nshutdown_grace_ms = 1000\n")
    before = m.stats()["dot_queries"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(make_query("delay-60000.test.").to_wire(), p.addr)
        wait_for(lambda: m.stats()["dot_queries"] > before, 3, what="the query to reach dotmock")
        t0 = time.monotonic()
        p.process.signal(signal.SIGTERM)
        try:
            p.process.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("dotproxy did not exit within 10 s of SIGTERM with a stuck query")
        elapsed = time.monotonic() - t0
    assert p.stop() == 0
    # The grace (1 s) plus scheduling slack, far below the 60 s the stuck query would take.
    assert elapsed <= 1.0 + 4.0, f"exit took {elapsed:.2f}s with shutdown_grace_ms = 1000"


def test_version():
    r = run_proxy("--version")
    assert r.returncode == 0, r.stderr
    assert re.search(r"\d+\.\d+\.\d+", r.stdout), r.stdout


GOOD_CONFIG = """\
[server]
listen = ["127.0.0.1:5399"]
workers = 2
tcp_idle_timeout_ms = 5000

[upstream]
query_timeout_ms = 1500

[[upstream.servers]]
address = "127.0.0.1"
port = 8853
tls_name = "dotmock.test"
"""

BAD_CONFIGS = [
    # (text, line, key)
    ('[server]\nworkers = "many"\n', 2, "workers"),
    ("[server]\nlisten = [\"127.0.0.1:53\"]\nwrokers = 2\n", 3, "wrokers"),
    ("[upstream]\nquery_timeout_ms = 1500\nattempt_timeout_ms = -5\n", 3, "attempt_timeout_ms"),
    ('[server]\n\n\nlisten = ["not-an-address"]\n', 4, "listen"),
    ('[[upstream.servers]]\naddress = "127.0.0.1"\nport = 99999\n', 3, "port"),
]


def test_check_config_good(tmp_path):
    cfg = tmp_path / "good.toml"
    cfg.write_text(GOOD_CONFIG)
    r = run_proxy("--config", str(cfg), "--check-config")
    assert r.returncode == 0, r.stderr
    # Nothing was bound: a --check-config run must not start serving.
    assert '"ready"' not in r.stdout


@pytest.mark.parametrize("text,line,key", BAD_CONFIGS, ids=[c[2] for c in BAD_CONFIGS])
def test_check_config_bad(tmp_path, text, line, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = run_proxy("--config", str(cfg), "--check-config")
    assert r.returncode == 2, (r.returncode, r.stderr)
    # FILE:LINE: KEY: ..., the key possibly qualified by its table ("server.workers",
    # "upstream.servers[0].port").
    where = re.compile(re.escape(f"{cfg}:{line}: ") + r"(?:[\w\[\]]+\.)*" + re.escape(key)
                       + r"(?:\[\d+\])?: \S")
    assert where.search(r.stderr), r.stderr
    # The same file without --check-config fails the same way, before binding anything.
    r2 = run_proxy("--config", str(cfg), "--listen", "127.0.0.1:0")
    assert r2.returncode == 2, (r2.returncode, r2.stderr)
    assert where.search(r2.stderr), r2.stderr


def test_bad_flag_exits_2_naming_the_flag():
    r = run_proxy("--listen", "nonsense:xx", "--check-config")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--listen" in r.stderr, r.stderr


def test_port_in_use_exits_1_naming_listen():
    port = free_port_tcp_udp()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", port))  # no SO_REUSEPORT: dotproxy cannot share it
        r = run_proxy("--listen", f"127.0.0.1:{port}", "--workers", "1",
                      "--upstream", "127.0.0.1:853#dotmock.test")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "--listen" in r.stderr, r.stderr
    assert '"ready"' not in r.stdout


def test_privileged_port_as_unprivileged_user():
    require(os.geteuid() == 0, "needs root to drop to an unprivileged user with setpriv")
    setpriv = require_tool("setpriv", "util-linux")
    # A copy of the binary in a directory uid 65534 can enter: the build tree may not be (a clone
    # under /root), and that must neither fail nor skip this test.
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        os.chmod(d, 0o755)
        binary = os.path.join(d, "dotproxy")
        shutil.copy(DOTPROXY_BIN, binary)
        os.chmod(binary, 0o755)
        drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        check = subprocess.run([*drop, binary, "--version"], capture_output=True, text=True,
                               timeout=RUN_TIMEOUT)
        assert check.returncode == 0, f"uid 65534 cannot run {binary}: {check.stderr.strip()}"
        r = subprocess.run([*drop, "--inh-caps=-all", "--bounding-set=-all",
                            binary, "--listen", "127.0.0.1:53", "--workers", "1",
                            "--upstream", "127.0.0.1:853#dotmock.test"],
                           capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert r.returncode != 0, r.stdout
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "--listen" in r.stderr, r.stderr
    assert "setcap" in r.stderr and "cap_net_bind_service" in r.stderr, r.stderr
    assert '"ready"' not in r.stdout
