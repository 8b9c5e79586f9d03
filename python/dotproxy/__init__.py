"""dotproxy for Python: DNS messages, a UDP/TCP/DoT client, and the project's processes.

Messages (bytes in, bytes out, no I/O):
    wire = dotproxy.build_query("example.com", "AAAA", do=True)
    msg = dotproxy.parse(wire)          # Message; ParseError names what is wrong and where
    msg.rd = False; wire = msg.to_wire()

Client (the GIL is released while waiting):
    a = dotproxy.query("127.0.0.1", "example.com", transport="tls", port=853,
                       tls_name="dns.example", ca="ca.pem")
    a.message.answer, a.connect, a.handshake, a.total, a.tls_version
    with dotproxy.Connection("127.0.0.1", "tcp", port=53) as c:   # pipelined
        ids = c.send([dotproxy.build_query(f"n{i}.example") for i in range(10)])
        replies = [c.receive(i) for i in ids]

Processes (context managers, port 0, readiness awaited with a deadline):
    MockUpstream(faults=...)  the dotmock mock upstream, with a fault script
    Proxy(mock)               the dotproxy daemon forwarding to it; exits 0 or raises

The C++ part is `dotproxy._dotproxy`, built over dotproxy::core; see the .pyi stubs.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ._dotproxy import (  # noqa: F401  (re-exported)
    Answer,
    Connection,
    Edns,
    Message,
    ParseError,
    QueryError,
    Question,
    Record,
    build_query,
    parse,
    query,
)

__all__ = [
    "Answer", "Connection", "Edns", "Message", "ParseError", "QueryError", "Question", "Record",
    "build_query", "parse", "query", "MockUpstream", "Proxy", "ProcessError",
]

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class ProcessError(AssertionError):
    """A managed process did not become ready, or did not exit 0 when stopped."""


def _binary(env: str, *relative: str) -> str:
    """$env, else the binary of the build tree this package was laid out in
    (build/<preset>/python/dotproxy -> build/<preset>/<relative>)."""
    if os.environ.get(env):
        return os.environ[env]
    build = Path(__file__).resolve().parent.parent.parent
    return str(build.joinpath(*relative))


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class _Child:
    """A child process: stdout on a pipe read line by line with deadlines, stderr in a file."""

    def __init__(self, argv: list[str], name: str, workdir: Path, env: dict | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.stderr_path = workdir / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.popen = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                      stdin=subprocess.DEVNULL,
                                      env=None if env is None else {**os.environ, **env})
        self.pid = self.popen.pid
        os.set_blocking(self.popen.stdout.fileno(), False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.popen.stdout, selectors.EVENT_READ)
        self._buf = b""
        self._lines: list[str] = []
        self._eof = False
        self.returncode: int | None = None
        self.lines_after_stop: list[str] = []

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def _fill(self, timeout: float) -> None:
        if self._eof or not self._sel.select(max(timeout, 0)):
            return
        try:
            data = os.read(self.popen.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if not data:
            self._eof = True
            return
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        self._lines += [l.decode(errors="replace") for l in lines]

    def read_json(self, key: str, timeout: float) -> dict:
        """The next stdout line that is a JSON object with `key`, within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            while self._lines:
                line = self._lines.pop(0)
                if line.startswith("{") and f'"{key}"' in line:
                    return json.loads(line)
            if self._eof or self.popen.poll() is not None and not self._sel.select(0):
                raise ProcessError(f"{self.name} exited ({self.popen.poll()}) before a {key!r} "
                                   f"line; stderr:\n{self.stderr_text()[-3000:]}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProcessError(f"{self.name}: no {key!r} line within {timeout:.1f}s; "
                                   f"stderr:\n{self.stderr_text()[-3000:]}")
            self._fill(left)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait (SIGKILL at the deadline: returns -9), collect the rest of stdout."""
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
        deadline = time.monotonic() + 2.0
        while not self._eof and time.monotonic() < deadline:
            self._fill(deadline - time.monotonic())
        self.lines_after_stop = self._lines + ([self._buf.decode(errors="replace")] if self._buf else [])
        self._sel.close()
        self.popen.stdout.close()
        self._stderr.close()
        return self.returncode


class _Managed:
    """Shared by MockUpstream and Proxy: a temporary directory, a child, a clean stop."""

    _child: _Child | None = None

    def __init__(self, workdir: str | os.PathLike | None):
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="dotproxy-py-") if workdir is None else workdir)

    @property
    def pid(self) -> int:
        return self._child.pid

    def running(self) -> bool:
        return self._child is not None and self._child.popen.poll() is None

    def stderr(self) -> str:
        return self._child.stderr_text() if self._child else ""

    def stop(self) -> int:
        """Stops the process (SIGTERM) and returns its exit code."""
        rc = self._child.stop() if self._child else 0
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._own_dir = False
        return rc

    def final_stats(self) -> dict | None:
        """The {"stats":...} line printed at exit (after stop())."""
        for line in reversed(self._child.lines_after_stop if self._child else []):
            if line.startswith('{"stats"'):
                return json.loads(line)["stats"]
        return None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        rc = self.stop()
        if rc != 0 and exc_type is None:
            raise ProcessError(f"{self._child.name} exited {rc}; stderr:\n{self.stderr()[-3000:]}")
        return False


class MockUpstream(_Managed):
    """dotmock as a subprocess: DoT plus plain UDP and TCP on 127.0.0.1 port 0, a self-signed
    certificate for `cert_name` written to .ca_file, and an optional fault script.

    faults: the rules of `dotmock --faults` (a string or a list of lines), e.g.
        "query 1 drop", "qname slow.test. delay 800", "connection 1 close-mid",
        "connection 2 expired-cert", "query 5 down 300".
    set_faults() replaces them while it runs (SIGHUP; waits for dotmock's acknowledgement).
    counters() reads its counters through the `stats.dotmock. CH TXT` query."""

    def __init__(self, *flags: str, faults: str | list[str] | None = None,
                 cert_name: str = "dotmock.test", binary: str | None = None,
                 workdir: str | os.PathLike | None = None, ready_timeout: float = READY_TIMEOUT):
        super().__init__(workdir)
        tag = f"{os.getpid()}-{id(self)}"
        self.ca_file = str(self.workdir / f"dotmock-{tag}-ca.pem")
        self.faults_file = self.workdir / f"dotmock-{tag}.faults"
        argv = [binary or _binary("DOTMOCK_BIN", "tools", "dotmock", "dotmock"),
                "--dot", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0",
                "--cert-name", cert_name, "--write-ca", self.ca_file]
        if faults is not None:
            self._write_faults(faults)
            argv += ["--faults", str(self.faults_file)]
        self._has_faults = faults is not None
        self._child = _Child(argv + list(flags), f"dotmock-{tag}", self.workdir)
        try:
            self.ready = self._child.read_json("ready", ready_timeout)
        except BaseException:
            self.stop()
            raise
        self.dot = _hostport(self.ready["dot"])
        self.udp = _hostport(self.ready["udp"])
        self.tcp = _hostport(self.ready["tcp"])
        self.host = self.dot[0]
        self.port = self.dot[1]
        self.pin = self.ready["pin"]
        self.cert_name = cert_name

    def _write_faults(self, faults: str | list[str]) -> None:
        text = faults if isinstance(faults, str) else "\n".join(faults)
        tmp = self.faults_file.with_suffix(".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(self.faults_file)

    def set_faults(self, faults: str | list[str], timeout: float = READY_TIMEOUT) -> int:
        """Replaces the fault script while dotmock runs; returns the number of rules loaded.
        Only for a mock started with faults= (even an empty list)."""
        if not self._has_faults:
            raise ValueError("start MockUpstream with faults= (e.g. []) to change them later")
        self._write_faults(faults)
        self._child.popen.send_signal(signal.SIGHUP)
        line = self._child.read_json("faults", timeout)
        if "error" in line:
            raise ValueError(f"dotmock rejected the fault script: {line['error']}")
        return int(line["faults"])

    def upstream_spec(self, tls_name: str | None = None) -> str:
        """HOST:PORT#NAME as dotproxy's --upstream takes it."""
        return f"{self.host}:{self.port}#{tls_name or self.cert_name}"

    def counters(self, timeout: float = 5.0) -> dict[str, int]:
        """dotmock's counters (the stats query itself is not counted)."""
        a = query(self.udp[0], "stats.dotmock.", "TXT", cls="CH", port=self.udp[1],
                  timeout=timeout)
        out: dict[str, int] = {}
        for r in a.message.answer:
            for part in r.text.split(" "):
                key, _, value = part.strip('"').partition("=")
                if value:
                    out[key] = int(value)
        if not out:
            raise ProcessError(f"dotmock gave no counters: {a.message!r}")
        return out


def _flags_from(settings: dict) -> list[str]:
    """{"query_timeout": 800, "log_level": "warn", "insecure": True} ->
    ["--query-timeout", "800", "--log-level", "warn", "--insecure"]; lists repeat the flag."""
    argv: list[str] = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


class Proxy(_Managed):
    """The dotproxy daemon on 127.0.0.1 port 0 (UDP and TCP), forwarding to `upstream` (a
    MockUpstream, verified against its CA file) or to explicit `upstreams` specs.

    `env` adds variables to the daemon's environment. Settings come as keyword arguments turned
    into flags (query_timeout=800 ->
    --query-timeout 800; True -> a bare flag; lists repeat it) and/or a TOML text (`config`).
    stats() asks for the counters (SIGUSR1); fd_count() and rss() read /proc. Leaving the
    `with` block sends SIGTERM and raises ProcessError unless it exits 0."""

    def __init__(self, upstream: MockUpstream | None = None, *, upstreams: list[str] | None = None,
                 config: str | None = None, workers: int = 1, binary: str | None = None,
                 workdir: str | os.PathLike | None = None, ready_timeout: float = READY_TIMEOUT,
                 env: dict[str, str] | None = None, **settings):
        super().__init__(workdir)
        tag = f"{os.getpid()}-{id(self)}"
        argv = [binary or _binary("DOTPROXY_BIN", "proxy", "dotproxy"),
                "--listen", "127.0.0.1:0", "--workers", str(workers)]
        if upstreams is None and upstream is not None:
            upstreams = [upstream.upstream_spec()]
            settings.setdefault("ca_file", upstream.ca_file)
        for u in upstreams or []:
            argv += ["--upstream", u]
        if config is not None:
            path = self.workdir / f"dotproxy-{tag}.toml"
            path.write_text(config)
            argv += ["--config", str(path)]
        settings.setdefault("log_level", "warn")
        argv += _flags_from(settings)
        self._child = _Child(argv, f"dotproxy-{tag}", self.workdir, env)
        try:
            self.ready = self._child.read_json("ready", ready_timeout)
        except BaseException:
            self.stop()
            raise
        self.host, self.udp_port = _hostport(self.ready["listen"][0])
        self.tcp_port = self.udp_port  # one address, both transports

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.udp_port)

    def stats(self, timeout: float = 5.0) -> dict[str, int]:
        """The daemon's counters: SIGUSR1, then its next {"stats":...} line."""
        self._child.popen.send_signal(signal.SIGUSR1)
        return self._child.read_json("stats", timeout)["stats"]

    def fd_count(self) -> int:
        """Open file descriptors of the daemon (/proc/PID/fd)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss(self) -> int:
        """Resident set size in bytes (/proc/PID/status VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise ProcessError("no VmRSS in /proc status")

    def query(self, name: str, type: str = "A", transport: str = "udp", **kw) -> Answer:
        """dotproxy.query against this daemon."""
        return query(self.host, name, type, transport=transport, port=self.udp_port, **kw)
