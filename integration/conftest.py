"""Fixtures for the end-to-end suites: real dotmock and dotproxy processes on loopback.

Every process is started with port 0 (or a port the test bound first), announces itself with one
JSON ready line on stdout, and is read with a deadline (select on the pipe, never a fixed sleep).
Teardown sends SIGTERM and requires exit code 0; SIGKILL is the last resort and fails the test.

Skips: a test that needs something this machine may lack (a peer tool such as kdig, chromium, an
IPv6 loopback, root) calls require()/require_tool(); that skips with the reason locally (ctest runs
pytest with -rs, so every reason is printed) and FAILS under CI (CI=true), where ci/deps.sh has
installed every tool and a skip would hide a test that never ran.

Hangs: ctest runs pytest with --timeout (pytest-timeout, method signal), so a hung test fails alone;
its fixtures' teardown still stops its processes, and every child also gets PR_SET_PDEATHSIG
(SIGKILL, through setpriv) and is killed at session end if still alive, so no daemon outlives a killed test run.

Binaries: $DOTPROXY_BIN, $DOTMOCK_BIN and $DOTQ_BIN (set by integration/CMakeLists.txt for
ctest), else the debug build under build/debug of this repository. The `dotproxy` Python module
comes from $PYTHONPATH (ctest sets build/<preset>/python), else build/debug/python.

Under the asan-ubsan preset ctest preloads the ASan runtime into this interpreter (the module is
sanitized) with leak detection off; both are removed from the environment here, before any child
starts, so that the sanitized daemon and mock run with their own runtime and leak checks.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

if os.environ.pop("DOTPROXY_PYTEST_PRELOAD", None):
    os.environ.pop("LD_PRELOAD", None)
    os.environ.pop("ASAN_OPTIONS", None)

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

REPO = Path(__file__).resolve().parent.parent
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(REPO / "build/debug/python"))
try:
    import dotproxy  # noqa: E402  (after the path above)

    if not hasattr(dotproxy, "query"):  # an empty build directory imports as a namespace package
        raise ImportError(f"dotproxy at {list(dotproxy.__path__)} is not built")
except ImportError:
    # The tsan preset builds no Python module (a TSan-instrumented extension cannot load into
    # Debian's uninstrumented interpreter) and runs only the multi-worker tests, which do not use
    # it; everywhere else a missing module is an error.
    if os.environ.get("DOTPROXY_PYTHON_MODULE") != "absent":
        raise
    dotproxy = None
    sys.modules["dotproxy"] = None  # the module's suites then skip through require_module()

DOTPROXY_BIN = os.environ.get("DOTPROXY_BIN") or str(REPO / "build/debug/proxy/dotproxy")
DOTMOCK_BIN = os.environ.get("DOTMOCK_BIN") or str(REPO / "build/debug/tools/dotmock/dotmock")
DOTQ_BIN = os.environ.get("DOTQ_BIN") or str(REPO / "build/debug/tools/dotq/dotq")

READY_TIMEOUT = 10.0  # seconds for a process to print its ready line
STOP_TIMEOUT = 10.0  # seconds for SIGTERM to end a process
IO_TIMEOUT = 5.0  # default deadline of one DNS exchange in a test


def pytest_configure(config):
    # The tsan test preset runs `pytest -m multiworker`: the tests that start dotproxy with more
    # than one worker thread.
    config.addinivalue_line("markers", "multiworker: starts dotproxy with more than one worker")


# --------------------------------------------------------------------------------------------
# requirements: skip locally with the reason, fail under CI


IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition, reason: str) -> None:
    """Skips the calling test with `reason` when `condition` is false, except under CI (CI=true),
    where the machine is set up by ci/deps.sh and a missing requirement is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and a requirement is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def which(tool: str) -> str | None:
    """The path of `tool` on PATH or in /usr/bin, /usr/sbin (not always on root's PATH)."""
    return shutil.which(tool) or next(
        (p for p in (f"/usr/bin/{tool}", f"/usr/sbin/{tool}") if shutil.which(p)), None)


def require_tool(tool: str, package: str | None = None) -> str:
    """The path of `tool`; when it is missing, require() (a skip locally, a failure under CI)."""
    path = which(tool)
    require(path is not None,
            f"{tool}{f' ({package})' if package else ''} is not installed (ci/deps.sh test installs it)")
    return path


def require_module():
    """The dotproxy Python module, for the suites that drive it. Only the tsan preset builds none
    (DOTPROXY_PYTHON_MODULE=absent, and it selects only -m multiworker tests): there the whole
    suite is skipped with that reason, also under CI; anywhere else a missing module already
    failed the import above."""
    if dotproxy is None:
        pytest.skip("no dotproxy Python module in this preset (DOTPROXY_PYTHON_MODULE=absent)",
                    allow_module_level=True)
    return dotproxy


# --------------------------------------------------------------------------------------------
# bounded waiting


def wait_for(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Polls predicate() until it returns a truthy value or the deadline passes (then fails).

    This waits on observable state with a deadline; the short sleep between polls is not
    synchronisation, only pacing."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what} (last value: {last!r})")
        time.sleep(interval)


def free_port(kind=socket.SOCK_STREAM, host="127.0.0.1") -> int:
    """A port that was free a moment ago (bind port 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_tcp_udp(host="127.0.0.1") -> int:
    """A port free for both TCP and UDP at the time of the call."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((host, 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


def tcp_states(port: int) -> list[str]:
    """States (hex codes from /proc/net/tcp{,6}: 01 ESTABLISHED, 06 TIME_WAIT, 08 CLOSE_WAIT, ...)
    of every loopback TCP socket with `port` at either end: a way to observe a connection between
    two processes the test does not own."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local_port = int(f[1].rsplit(":", 1)[1], 16)
            remote_port = int(f[2].rsplit(":", 1)[1], 16)
            if port in (local_port, remote_port) and f[3] != "0A":  # 0A: LISTEN
                states.append(f[3])
    return states


def split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


# --------------------------------------------------------------------------------------------
# processes


_ALL_PROCESSES: list["Process"] = []  # every child started, for the session-end sweep
# setpriv (util-linux, essential in Debian) execs the child in place (same pid) with
# PR_SET_PDEATHSIG = SIGKILL: it dies with the test process (pytest killed by ctest's timeout, or
# a timeout method that exits at once). Not a preexec_fn: that is unsafe with the tests' threads.
_SETPRIV = shutil.which("setpriv") or (os.path.exists("/usr/bin/setpriv") and "/usr/bin/setpriv")
_DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []


def pytest_sessionfinish(session, exitstatus):
    """Whatever a test left running (its teardown was cut short) is killed here."""
    for p in _ALL_PROCESSES:
        if p.popen.poll() is None:
            p.popen.kill()
            p.popen.wait(timeout=STOP_TIMEOUT)


class Process:
    """A child process with its stdout on a pipe (read line by line with deadlines) and its
    stderr in a temporary file (read by tests, shown on failure)."""

    def __init__(self, argv: list[str], name: str, workdir: Path):
        self.argv = [str(a) for a in argv]
        self.name = name
        self.stderr_path = workdir / f"{name}.{os.getpid()}.{id(self)}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.popen = subprocess.Popen(
            _DIE_WITH_PARENT + self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        _ALL_PROCESSES.append(self)
        os.set_blocking(self.popen.stdout.fileno(), False)
        self._buffer = b""
        self._lines: list[str] = []
        self._eof = False
        self.returncode: int | None = None
        self.final_lines: list[str] = []
        self.skipped_lines: list[str] = []

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stderr_text(self) -> str:
        if not self._stderr.closed:  # still running (after stop() the file is complete)
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def _fill(self, timeout: float) -> None:
        """Reads what is available on stdout, waiting at most `timeout` for something."""
        fd = self.popen.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            if not sel.select(max(0.0, timeout)):
                return
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self._eof = True
            return
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._lines.append(line.decode(errors="replace"))

    def read_line(self, timeout: float, accept=lambda line: True) -> str:
        """The next stdout line that `accept` takes (others are kept in `skipped_lines`)."""
        deadline = time.monotonic() + timeout
        while True:
            while self._lines:
                line = self._lines.pop(0)
                if accept(line):
                    return line
                self.skipped_lines.append(line)
            if self._eof:
                raise AssertionError(
                    f"{self.name} closed stdout (exit {self.popen.poll()}) before the expected "
                    f"line; stderr:\n{self.stderr_text()[-3000:]}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.name}: no expected stdout line within {timeout:.1f}s; "
                    f"stderr:\n{self.stderr_text()[-3000:]}"
                )
            self._fill(remaining)

    def read_json(self, timeout: float, key: str) -> dict:
        line = self.read_line(timeout, lambda l: l.startswith("{") and f'"{key}"' in l)
        return json.loads(line)

    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait with a deadline, collect the rest of stdout. Returns the exit code; a
        process that had to be SIGKILLed returns -9 (and the caller fails)."""
        if self.returncode is not None:
            return self.returncode
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
            self.returncode = self.popen.returncode
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)
            self.returncode = -9
        # Whatever is left on stdout (the final stats line), bounded.
        deadline = time.monotonic() + 2.0
        while not self._eof and time.monotonic() < deadline:
            self._fill(deadline - time.monotonic())
        self.final_lines = self._lines + ([self._buffer.decode(errors="replace")] if self._buffer else [])
        self.popen.stdout.close()
        self._stderr.close()
        return self.returncode

    def final_stats(self) -> dict | None:
        for line in reversed(self.final_lines):
            if line.startswith('{"stats"'):
                return json.loads(line)["stats"]
        return None


class ProcessRegistry:
    """Stops every process a test started, newest first, and reports the ones that did not exit 0."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes: list[Process] = []

    def start(self, argv, name) -> Process:
        p = Process(argv, name, self.workdir)
        self.processes.append(p)
        return p

    def stop_all(self) -> list[str]:
        problems = []
        for p in reversed(self.processes):
            already = p.returncode is not None
            try:
                rc = p.stop()
            except Exception as e:  # noqa: BLE001  (the others must still be stopped)
                if p.popen.poll() is None:
                    p.popen.kill()
                problems.append(f"{p.name} (pid {p.pid}): stopping it raised {e!r}")
                continue
            if rc != 0 and not getattr(p, "expect_failure", False):
                how = "was SIGKILLed after SIGTERM timed out" if rc == -9 else f"exited {rc}"
                problems.append(
                    f"{p.name} (pid {p.pid}) {how}{' (stopped by the test)' if already else ''}; "
                    f"stderr tail:\n{p.stderr_text()[-2000:]}"
                )
        return problems


# --------------------------------------------------------------------------------------------
# dotmock


class Mock:
    """A running dotmock: DoT plus plain UDP and TCP listeners."""

    def __init__(self, process: Process, ready: dict):
        self.process = process
        self.ready = ready
        self.dot = split_hostport(ready["dot"])
        self.udp = split_hostport(ready["udp"]) if ready.get("udp") else None
        self.tcp = split_hostport(ready["tcp"]) if ready.get("tcp") else None
        self.pin = ready["pin"]
        self.ca_file = ready.get("ca_file") or None

    @property
    def dot_port(self) -> int:
        return self.dot[1]

    def upstream_spec(self, tls_name="dotmock.test") -> str:
        host, port = self.dot
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{port}#{tls_name}" if tls_name else f"{host}:{port}"

    def query_udp(self, q: dns.message.Message, timeout=IO_TIMEOUT) -> dns.message.Message:
        return dns.query.udp(q, self.udp[0], port=self.udp[1], timeout=timeout)

    def stats(self) -> dict[str, int]:
        """dotmock's counters through its `stats.dotmock.` CH TXT query (not itself counted)."""
        q = dns.message.make_query("stats.dotmock.", "TXT", "CH")
        r = self.query_udp(q)
        out = {}
        for rrset in r.answer:
            for rd in rrset:
                for s in rd.strings:
                    k, _, v = s.decode().partition("=")
                    out[k] = int(v)
        assert out, f"dotmock gave no counters: {r}"
        return out

    def stop(self) -> int:
        return self.process.stop()


@pytest.fixture
def processes(tmp_path):
    reg = ProcessRegistry(tmp_path)
    yield reg
    problems = reg.stop_all()
    if problems:
        pytest.fail("processes did not stop cleanly:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def mock(processes, tmp_path):
    """Factory: mock(*extra_flags, dot=None) starts a dotmock (self-signed for dotmock.test unless
    --cert/--cert-name is given) with plain UDP/TCP listeners and a CA file; returns a Mock."""
    counter = [0]

    def start(*flags, dot: str | None = None, write_ca: bool = True) -> Mock:
        counter[0] += 1
        argv = [DOTMOCK_BIN, "--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0"]
        if dot:
            argv += ["--dot", dot]
        if write_ca:
            argv += ["--write-ca", str(tmp_path / f"mock{counter[0]}-ca.pem")]
        argv += list(flags)
        p = processes.start(argv, f"dotmock{counter[0]}")
        ready = p.read_json(READY_TIMEOUT, "ready")
        assert ready.get("ready") is True, ready
        return Mock(p, ready)

    return start


# --------------------------------------------------------------------------------------------
# dotproxy


class Proxy:
    def __init__(self, process: Process, ready: dict):
        self.process = process
        self.ready = ready
        self.listen = [split_hostport(a) for a in ready["listen"]]
        self.host, self.port = self.listen[0]

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def stats(self, timeout=5.0) -> dict[str, int]:
        """SIGUSR1, then the next {"stats":...} line on stdout (with a deadline)."""
        self.process.signal(signal.SIGUSR1)
        return self.process.read_json(timeout, "stats")["stats"]

    def stderr(self) -> str:
        return self.process.stderr_text()

    def udp(self, q, timeout=IO_TIMEOUT, **kw) -> dns.message.Message:
        return dns.query.udp(q, self.host, port=self.port, timeout=timeout, **kw)

    def tcp(self, q, timeout=IO_TIMEOUT, **kw) -> dns.message.Message:
        return dns.query.tcp(q, self.host, port=self.port, timeout=timeout, **kw)

    def running(self) -> bool:
        return self.process.running()

    def stop(self) -> int:
        return self.process.stop()


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def proxy(processes, tmp_path):
    """Factory: proxy(mock_or_None, *extra_flags, upstreams=None, ca_file=..., config=None,
    listen=None, workers=1) starts dotproxy on 127.0.0.1:0 (one worker) forwarding to the mock
    (verified as dotmock.test against the mock's CA file) and returns a Proxy."""
    counter = [0]

    def start(
        upstream_mock: Mock | None = None,
        *flags,
        upstreams: list[str] | None = None,
        ca_file: str | None = "mock",
        config: str | None = None,
        listen: list[str] | None = None,
        workers: int | None = 1,
        log_level: str = "info",
    ) -> Proxy:
        counter[0] += 1
        argv = [DOTPROXY_BIN]
        for a in listen or ["127.0.0.1:0"]:
            argv += ["--listen", a]
        if workers is not None:
            argv += ["--workers", str(workers)]
        for u in upstreams or ([upstream_mock.upstream_spec()] if upstream_mock else []):
            argv += ["--upstream", u]
        if ca_file == "mock":
            ca_file = upstream_mock.ca_file if upstream_mock else None
        if ca_file:
            argv += ["--ca-file", ca_file]
        if config is not None:
            cfg = write_config(tmp_path / f"proxy{counter[0]}.toml", config)
            argv += ["--config", str(cfg)]
        argv += ["--log-level", log_level]
        argv += list(flags)
        p = processes.start(argv, f"dotproxy{counter[0]}")
        ready = p.read_json(READY_TIMEOUT, "ready")
        assert ready.get("ready") is True and ready.get("listen"), ready
        if workers:
            assert ready.get("workers") == workers, ready
        return Proxy(p, ready)

    return start


# --------------------------------------------------------------------------------------------
# certificates (the openssl CLI, once per session)


@pytest.fixture(scope="session")
def cert_pair(tmp_path_factory):
    """A self-signed P-256 certificate for dotmock.test (also its own CA) and its key."""
    d = tmp_path_factory.mktemp("certs")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=dotmock.test", "-addext", "subjectAltName=DNS:dotmock.test",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


# --------------------------------------------------------------------------------------------
# raw DNS helpers


def make_query(name, rdtype="A", *, qid=None, edns=None, payload=None, want_dnssec=False,
               rd=True) -> dns.message.Message:
    kw = {}
    if edns is not None:
        kw["use_edns"] = edns
    if payload is not None:
        kw["payload"] = payload
    q = dns.message.make_query(name, rdtype, want_dnssec=want_dnssec, **kw)
    if qid is not None:
        q.id = qid
    if not rd:
        q.flags &= ~dns.flags.RD
    return q


def udp_exchange(addr, wire: bytes, timeout: float = IO_TIMEOUT, family=socket.AF_INET) -> bytes | None:
    """Sends raw bytes over UDP and returns the first reply, or None when none came in `timeout`."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(wire, addr)
        try:
            data, _ = s.recvfrom(65535)
            return data
        except socket.timeout:
            return None


def tcp_connect(addr, timeout: float = IO_TIMEOUT) -> socket.socket:
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s: socket.socket, n: int, deadline: float) -> bytes:
    buf = b""
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {len(buf)} of {n} bytes before the deadline")
        s.settimeout(remaining)
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def recv_frame(s: socket.socket, deadline: float) -> bytes:
    (length,) = struct.unpack("!H", recv_exact(s, 2, deadline))
    return recv_exact(s, length, deadline)


def frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def wait_closed(s: socket.socket, timeout: float) -> float:
    """Waits until the peer closes `s` (recv returns b'' or a reset); returns the elapsed time.
    Any data received before the close fails the wait."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"server did not close the connection within {timeout:.1f}s")
        s.settimeout(remaining)
        try:
            data = s.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
        if not data:
            return time.monotonic() - start
        pytest.fail(f"unexpected data while waiting for close: {data!r}")


def assert_same_answer(got: dns.message.Message, want: dns.message.Message) -> None:
    """Equal apart from the ID (and the OPT record, which is hop-by-hop)."""
    assert got.rcode() == want.rcode(), (dns.rcode.to_text(got.rcode()), dns.rcode.to_text(want.rcode()))
    assert dns.flags.to_text(got.flags) == dns.flags.to_text(want.flags)
    assert got.question == want.question
    assert [r.to_text() for r in got.answer] == [r.to_text() for r in want.answer]
    assert [r.to_text() for r in got.authority] == [r.to_text() for r in want.authority]
    non_opt = lambda m: [r.to_text() for r in m.additional if r.rdtype != dns.rdatatype.OPT]
    assert non_opt(got) == non_opt(want)


# --------------------------------------------------------------------------------------------
# small helper servers (threads) for upstreams that misbehave


class SilentTcpServer:
    """Accepts TCP connections and never says anything (a port that speaks no TLS and stalls);
    or, with `reply`, writes that reply and closes each connection."""

    def __init__(self, reply: bytes | None = None):
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.reply is not None:
                try:
                    c.settimeout(1.0)
                    try:
                        c.recv(4096)  # the ClientHello, so that the close is not a reset
                    except OSError:
                        pass
                    c.sendall(self.reply)
                finally:
                    c.close()
            else:
                self.conns.append(c)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def tcp_server():
    servers = []

    def start(reply: bytes | None = None) -> SilentTcpServer:
        s = SilentTcpServer(reply)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


# --------------------------------------------------------------------------------------------
# the Python module's process helpers, stopped at teardown (each must exit 0)


@pytest.fixture
def mock_upstream(tmp_path):
    """Factory: mock_upstream(*flags, faults=None, cert_name=...) -> dotproxy.MockUpstream."""
    started: list = []

    def start(*flags, **kw) -> dotproxy.MockUpstream:
        kw.setdefault("workdir", tmp_path)
        m = dotproxy.MockUpstream(*flags, **kw)
        started.append(m)
        return m

    yield start
    problems = []
    for m in reversed(started):
        rc = m.stop()
        if rc != 0:
            problems.append(f"dotmock (pid {m.pid}) exited {rc}; stderr:\n{m.stderr()[-2000:]}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def daemon(tmp_path):
    """Factory: daemon(mock_or_None, upstreams=None, config=None, **settings) -> dotproxy.Proxy
    (settings become flags: query_timeout=800 -> --query-timeout 800)."""
    started: list = []

    def start(upstream=None, **kw) -> dotproxy.Proxy:
        kw.setdefault("workdir", tmp_path)
        p = dotproxy.Proxy(upstream, **kw)
        started.append(p)
        return p

    yield start
    problems = []
    for p in reversed(started):
        rc = p.stop()
        if rc != 0:
            problems.append(f"dotproxy (pid {p.pid}) exited {rc}; stderr:\n{p.stderr()[-2000:]}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
