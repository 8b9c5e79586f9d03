"""The daemon as a process, and the tools' input checks: signals (SIGHUP logged and ignored, signals
sent while dotproxy starts wait for it), the metrics endpoint held by idle sockets and out of file
descriptors (dotmock's listener too), logging into a stderr nobody reads, and the range checks of
dotload and dotq. Every wait has a deadline; CPU use is read from /proc, never inferred from time."""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest

from conftest import (DOTMOCK_BIN, DOTPROXY_BIN, DOTQ_BIN, IO_TIMEOUT, READY_TIMEOUT, REPO, STOP_TIMEOUT,
                      make_query, split_hostport, wait_for)

DOTLOAD_BIN = os.environ.get("DOTLOAD_BIN") or str(REPO / "build/debug/tools/dotload/dotload")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# helpers


def http_get(addr, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of one GET over a fresh connection; (0, b"") if the server closed first."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    if not out.startswith(b"HTTP/1.1 "):
        return 0, out
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the whole process (all threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def blocked_signals(pid: int) -> int:
    """The signals blocked by some thread of the process (SigBlk; a thread waiting in sigwait shows
    the signals it waits for as unblocked, so every thread is looked at)."""
    mask = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("SigBlk:"):
                    mask |= int(line.split()[1], 16)
        except OSError:  # the thread ended meanwhile
            pass
    return mask


def sig_bit(sig: int) -> int:
    return 1 << (sig - 1)


_SANITIZED: dict[str, bool] = {}


def sanitized(binary: str) -> bool:
    """True for an ASan/UBSan build (its runtime is linked in statically by clang)."""
    if binary not in _SANITIZED:
        _SANITIZED[binary] = b"__ubsan_handle" in Path(binary).read_bytes()
    return _SANITIZED[binary]


def skip_if_sanitized(binary: str):
    # UBSan's vptr check makes a pipe to probe memory; out of descriptors that fails and it reports
    # a false "invalid vptr" and halts. Running out of descriptors is a test for plain builds.
    if sanitized(binary):
        pytest.skip("a sanitized build cannot run out of file descriptors (UBSan's vptr check "
                    "needs a pipe and halts on its false report)")


def metrics_addr(p) -> tuple[str, int]:
    assert "metrics" in p.ready, p.ready
    return split_hostport(p.ready["metrics"])


def spawn_proxy(processes, mock_, *flags, name="early"):
    """dotproxy started without waiting for its ready line (conftest's proxy() waits)."""
    argv = [DOTPROXY_BIN, "--listen", "127.0.0.1:0", "--workers", "1", "--upstream",
            mock_.upstream_spec(), "--ca-file", mock_.ca_file, *flags]
    return processes.start(argv, name)


# --------------------------------------------------------------------------------------------
# B7: signals


def test_sighup_is_logged_once_and_ignored(mock, proxy):
    m = mock()
    p = proxy(m)
    assert p.udp(make_query("before.test.")).rcode() == dns.rcode.NOERROR
    for _ in range(3):
        p.process.signal(signal.SIGHUP)
        # Each SIGHUP is taken (the daemon's stats line after it proves the signal loop went on).
        assert "udp_queries" in p.stats()
    assert p.running()
    assert p.udp(make_query("after.test.")).rcode() == dns.rcode.NOERROR
    wait_for(lambda: "SIGHUP ignored" in p.stderr(), 5.0, what="the SIGHUP log line")
    assert p.stop() == 0
    assert p.stderr().count("SIGHUP ignored") == 1, p.stderr()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_signal_while_starting_is_not_fatal(mock, processes, sig):
    """A signal sent before the ready line, once the process has taken charge of its signals (the
    first thing main does): SIGHUP is ignored and the daemon still comes up; SIGTERM waits until it
    is up, then stops it cleanly (exit 0, not death by the signal)."""
    m = mock()
    p = spawn_proxy(processes, m, name=f"early{int(sig)}")
    wanted = sig_bit(signal.SIGHUP) | sig_bit(signal.SIGTERM)
    wait_for(lambda: blocked_signals(p.pid) & wanted == wanted or not p.running(), READY_TIMEOUT,
             what="dotproxy to block SIGHUP and SIGTERM")
    p.signal(sig)
    ready = p.read_json(READY_TIMEOUT, "ready")
    assert ready["ready"] is True
    if sig == signal.SIGHUP:
        host, port = split_hostport(ready["listen"][0])
        r = dns.query.udp(make_query("up.test."), host, port=port, timeout=IO_TIMEOUT)
        assert r.rcode() == dns.rcode.NOERROR
        assert p.stop() == 0
    else:
        p.popen.wait(timeout=STOP_TIMEOUT)
        assert p.popen.returncode == 0, p.stderr_text()[-2000:]


# --------------------------------------------------------------------------------------------
# B6: the metrics endpoint


@pytest.mark.parametrize("partial_head", [False, True])
def test_healthz_answers_while_many_idle_sockets_are_open(mock, proxy, partial_head):
    m = mock()
    p = proxy(m, "--metrics", "127.0.0.1:0")
    addr = metrics_addr(p)
    idle = []
    try:
        for _ in range(80):
            s = socket.create_connection(addr, timeout=5)
            if partial_head:
                s.sendall(b"GET /metrics HTTP/1.1\r\n")  # slowloris: never the blank line
            idle.append(s)
        for _ in range(5):
            status, body = http_get(addr, "/healthz")
            assert (status, body) == (200, b"ok\n")
    finally:
        for s in idle:
            s.close()
    assert p.stop() == 0


def lower_nofile(pid: int, extra: int) -> tuple[int, int]:
    """Sets the soft RLIMIT_NOFILE of `pid` to what it uses now plus `extra`; returns the old."""
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid) + extra, old[1]))
    return old


def assert_no_spin(pid: int, what: str, window: float = 3.0):
    """Out of descriptors with connections waiting in the backlog, the process must sleep: a spin
    on accept() burns a whole core (window seconds of CPU), a paused listener next to nothing."""
    before = cpu_seconds(pid)
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        time.sleep(0.1)  # pacing only: CPU time is what is measured
    used = cpu_seconds(pid) - before
    assert used < 0.25 * window, f"{what}: {used:.2f} s of CPU in {window} s while out of descriptors"


def test_metrics_endpoint_pauses_accept_when_out_of_descriptors(mock, proxy):
    skip_if_sanitized(DOTPROXY_BIN)
    m = mock()
    p = proxy(m, "--metrics", "127.0.0.1:0")
    addr = metrics_addr(p)
    pid = p.process.pid
    wait_for(lambda: http_get(addr, "/healthz")[0] == 200, 5.0, what="/healthz")
    old = lower_nofile(pid, 2)
    conns = []
    try:
        for _ in range(20):  # more than the descriptors left: the rest wait in the backlog
            conns.append(socket.create_connection(addr, timeout=5))
        wait_for(lambda: open_fds(pid) >= resource.prlimit(pid, resource.RLIMIT_NOFILE)[0], 5.0,
                 what="dotproxy to run out of descriptors")
        assert_no_spin(pid, "dotproxy")
    finally:
        for c in conns:
            c.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    # Descriptors back: the endpoint serves again.
    wait_for(lambda: http_get(addr, "/healthz")[0] == 200, 10.0, what="/healthz after recovery")
    assert p.udp(make_query("still.test.")).rcode() == dns.rcode.NOERROR
    assert p.stop() == 0


def test_dotmock_pauses_accept_when_out_of_descriptors(mock):
    skip_if_sanitized(DOTMOCK_BIN)
    m = mock()
    pid = m.process.pid
    old = lower_nofile(pid, 2)
    conns = []
    try:
        for _ in range(20):
            conns.append(socket.create_connection(m.tcp, timeout=5))
        wait_for(lambda: open_fds(pid) >= resource.prlimit(pid, resource.RLIMIT_NOFILE)[0], 5.0,
                 what="dotmock to run out of descriptors")
        assert_no_spin(pid, "dotmock")
    finally:
        for c in conns:
            c.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    r = wait_for(lambda: tcp_answer(m.tcp), 10.0, what="dotmock TCP after recovery")
    assert r.rcode() == dns.rcode.NOERROR


def tcp_answer(addr):
    try:
        return dns.query.tcp(make_query("a.test."), addr[0], port=addr[1], timeout=2)
    except (OSError, EOFError, dns.exception.Timeout):
        return None


# --------------------------------------------------------------------------------------------
# B9: logging never blocks a worker


class PipeProxy:
    """dotproxy with stderr into a pipe that the test reads only when told to (`reader`)."""

    def __init__(self, mock_, *flags):
        self.err_r, err_w = os.pipe()
        argv = [DOTPROXY_BIN, "--listen", "127.0.0.1:0", "--workers", "1", "--upstream",
                mock_.upstream_spec(), "--ca-file", mock_.ca_file, *flags]
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=err_w)
        os.close(err_w)
        self.out = b""
        self.ready = json.loads(self.line("ready"))
        self.host, self.port = split_hostport(self.ready["listen"][0])

    def line(self, key: str, timeout: float = READY_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        fd = self.popen.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self.out:
                    line, self.out = self.out.split(b"\n", 1)
                    if f'"{key}"'.encode() in line:
                        return line.decode()
                left = deadline - time.monotonic()
                assert left > 0, f"no {key} line from dotproxy"
                if sel.select(left):
                    chunk = os.read(fd, 65536)
                    assert chunk, f"dotproxy closed stdout before a {key} line"
                    self.out += chunk

    def stats(self) -> dict:
        self.popen.send_signal(signal.SIGUSR1)
        return json.loads(self.line("stats"))["stats"]

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=STOP_TIMEOUT)
        self.popen.stdout.close()
        os.close(self.err_r)


def test_unread_stderr_does_not_stall_queries(mock):
    """stderr is a pipe that nobody reads and every query is logged: the pipe fills after a few
    hundred lines; the worker must go on answering (lines are dropped and counted instead)."""
    m = mock()
    p = PipeProxy(m, "--query-log", "1", "--metrics", "127.0.0.1:0")
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(IO_TIMEOUT)
        with sock:
            # Batches until the logger's queue (a few thousand lines) has overflowed: every query
            # is answered all the same.
            for batch in range(20):
                for i in range(1000):
                    q = make_query(f"n{i % 50}.test.")
                    r = dns.query.udp(q, p.host, port=p.port, timeout=IO_TIMEOUT, sock=sock)
                    assert r.rcode() == dns.rcode.NOERROR, (batch, i)
                s = p.stats()
                if s["log_lines_dropped"] > 0:
                    break
        assert s["log_lines_dropped"] > 0, s
        assert s["answers"] == 1000 * (batch + 1), s
        addr = split_hostport(p.ready["metrics"])
        status, body = http_get(addr, "/metrics")
        assert status == 200
        dropped = [l for l in body.decode().splitlines()
                   if l.startswith("dotproxy_log_lines_dropped_total ")]
        assert dropped and float(dropped[0].split()[1]) > 0, dropped
        # A clean stop does not wait forever on the stalled pipe (the flush at exit is bounded).
        p.popen.send_signal(signal.SIGTERM)
        assert p.popen.wait(timeout=STOP_TIMEOUT) == 0
    finally:
        p.kill()


def test_last_log_lines_are_written_at_exit(mock):
    """A burst of query-log lines just before SIGTERM: with stderr read, every line up to the
    final `stopped` event comes out before the process exits."""
    m = mock()
    p = PipeProxy(m, "--query-log", "1")
    chunks: list[bytes] = []

    def read_all():
        while chunk := os.read(p.err_r, 65536):
            chunks.append(chunk)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    try:
        for i in range(200):
            dns.query.udp(make_query(f"x{i}.test."), p.host, port=p.port, timeout=IO_TIMEOUT)
        p.popen.send_signal(signal.SIGTERM)
        assert p.popen.wait(timeout=STOP_TIMEOUT) == 0
        reader.join(timeout=10)
        assert not reader.is_alive()
        lines = b"".join(chunks).decode().splitlines()
        assert lines and lines[-1].endswith(" stopped"), lines[-3:]
        assert sum(" x" in l and ".test. A " in l for l in lines) == 200
    finally:
        p.kill()


# --------------------------------------------------------------------------------------------
# B14: dotload's ranges, dotq's reply matching


def limited_memory():
    # An unchecked --zipf 100000000 would try to allocate ~26 GB: fail fast instead of hurting
    # the machine (the test then fails on the exit status). ASan reserves terabytes of address
    # space for its shadow, so a sanitized dotload runs without the limit.
    if not sanitized(DOTLOAD_BIN):
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("args", [
    ["--zipf", "100000000"], ["--zipf", "1000001"], ["-l", "1e10"], ["-l", "inf"], ["-l", "nan"],
    ["-Q", "inf"], ["-Q", "1e300"], ["--timeout-ms", "nan"],
])
def test_dotload_out_of_range_numbers_are_usage_errors(args):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        p = subprocess.run([DOTLOAD_BIN, "-p", str(silent.getsockname()[1]), *args],
                           capture_output=True, text=True, timeout=30, preexec_fn=limited_memory)
    assert p.returncode == 2, (args, p.returncode, p.stderr[-500:])
    assert p.stderr.startswith("dotload: "), p.stderr


def test_dotload_largest_zipf_is_accepted():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        p = subprocess.run([DOTLOAD_BIN, "-p", str(silent.getsockname()[1]), "--zipf", "1000000",
                            "-n", "1", "--timeout-ms", "100", "--json"], capture_output=True,
                           text=True, timeout=60, preexec_fn=limited_memory)
    assert p.returncode == 1 and json.loads(p.stdout)["lost"] == 1, (p.returncode, p.stderr)


class ForgingServer:
    """A UDP server that answers each query twice: first a forgery made by `forge` (right ID),
    then the real answer (one A record)."""

    def __init__(self, forge):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.forge = forge
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            q = dns.message.from_wire(wire)
            self.sock.sendto(self.forge(q), peer)
            real = dns.message.make_response(q)
            real.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.1"))
            self.sock.sendto(real.to_wire(), peer)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def forged_without_question(q: dns.message.Message) -> bytes:
    r = dns.message.make_response(q)
    r.question = []
    r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "203.0.113.66"))
    return r.to_wire()


def forged_other_question(q: dns.message.Message) -> bytes:
    other = dns.message.make_query("evil.test.", "A")
    other.id = q.id
    r = dns.message.make_response(other)
    r.answer.append(dns.rrset.from_text("evil.test.", 60, "IN", "A", "203.0.113.66"))
    return r.to_wire()


@pytest.mark.parametrize("forge", [forged_without_question, forged_other_question])
def test_dotq_ignores_a_reply_with_the_right_id_and_a_missing_or_other_question(forge):
    srv = ForgingServer(forge)
    try:
        d = subprocess.run([DOTQ_BIN, "@127.0.0.1", "-p", str(srv.port), "a.test", "+short",
                            "+timeout=3", "+retry=0"], capture_output=True, text=True, timeout=30)
    finally:
        srv.close()
    assert d.returncode == 0, d.stderr
    assert d.stdout.split() == ["192.0.2.1"], d.stdout
