"""dotload, the load generator, end to end against dotmock (UDP, TCP and DoT) and small Python
servers: every query answered and counted by RCODE, --json carries the documented fields, -n sends
exactly N, the open loop holds its rate, --reconnect-every gives the expected handshakes and TLS
resumptions (checked against dotmock's own counters), and bad targets (refused, wrong TLS name, a
server that never answers, one that answers garbage) end in bounded time with the documented exit
status. No assertion here depends on how fast the machine is."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import READY_TIMEOUT, REPO

DOTLOAD_BIN = os.environ.get("DOTLOAD_BIN") or str(REPO / "build/debug/tools/dotload/dotload")
REFLECTOR_BIN = os.environ.get("REFLECTOR_BIN") or str(
    REPO / "build/debug/bench/reflector/reflector")
RUN_TIMEOUT = 60.0  # seconds for one dotload process; every run here asks for far less

JSON_FIELDS = {"transport", "duration_s", "sent", "answered", "lost", "qps", "rcodes",
               "latency_us", "connections", "handshakes", "resumptions", "segmented", "errors"}


def dotload(*args, timeout=RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([DOTLOAD_BIN, *[str(a) for a in args]], capture_output=True, text=True,
                          timeout=timeout)


def run_json(*args) -> tuple[dict, subprocess.CompletedProcess]:
    p = dotload(*args, "--json")
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one JSON line, got {p.stdout!r}; stderr: {p.stderr}"
    return json.loads(lines[0]), p


def query_file(tmp_path, lines: list[str]):
    path = tmp_path / "queries.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def tls_args(mock):
    return ["-m", "tls", "-p", mock.dot_port, "--tls-name", "dotmock.test", "--ca-file",
            mock.ca_file]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_exact_count_all_answered_and_rcodes_counted(mock, tmp_path, transport):
    m = mock()
    qf = query_file(tmp_path, ["a.test A", "nx.test A", "b.test AAAA", "nx.test AAAA"])
    if transport == "udp":
        where = ["-p", m.udp[1]]
    elif transport == "tcp":
        where = ["-m", "tcp", "-p", m.tcp[1]]
    else:
        where = tls_args(m)
    before = m.stats()
    r, p = run_json(*where, "-d", qf, "-n", 1000, "-c", 2, "-q", 20)
    assert p.returncode == 0, p.stderr
    assert JSON_FIELDS <= r.keys(), r
    assert r["transport"] == transport
    assert r["sent"] == 1000 and r["answered"] == 1000 and r["lost"] == 0, r
    # The file is asked in turn: half the names are nx.*.
    assert r["rcodes"]["NOERROR"] == 500 and r["rcodes"]["NXDOMAIN"] == 500, r
    lat = r["latency_us"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert r["qps"] > 0 and r["duration_s"] > 0
    assert all(v == 0 for v in r["errors"].values()), r["errors"]
    after = m.stats()
    key = {"udp": "udp_queries", "tcp": "tcp_queries", "tls": "dot_queries"}[transport]
    assert after[key] - before[key] == 1000  # the server saw exactly what dotload reports
    if transport != "udp":
        assert r["connections"] == 2 and r["handshakes"] == 2, r


@pytest.mark.parametrize("gso", [True, False])
def test_segmented_sends_reach_the_server_as_separate_datagrams(mock, gso):
    # Unique names under one zone are all the same size: with segmentation offload they leave up
    # to 64 to a message, and the server must still see (and answer) each one as a datagram.
    m = mock()
    before = m.stats()
    r, p = run_json("-p", m.udp[1], "--random-names", "seg.test", "-n", 5000, "-c", 2, "-q", 64,
                    *([] if gso else ["--no-gso"]))
    assert p.returncode == 0, p.stderr
    assert r["sent"] == 5000 and r["answered"] == 5000 and r["lost"] == 0, r
    assert r["errors"]["mismatch"] == 0 and r["errors"]["send"] == 0, r
    assert m.stats()["udp_queries"] - before["udp_queries"] == 5000
    if gso:
        assert r["segmented"] > 2500, r  # most of them, on any kernel since 4.18
    else:
        assert r["segmented"] == 0, r


def test_duration_closed_loop_udp_with_threads_and_zipf(mock):
    m = mock()
    r, p = run_json("-p", m.udp[1], "-l", 1, "-T", 2, "-c", 2, "-q", 10, "--zipf", "100,1.1")
    assert p.returncode == 0, p.stderr
    assert r["sent"] > 0 and r["answered"] == r["sent"] and r["lost"] == 0, r
    assert 0.9 < r["duration_s"] < 10
    assert r["connections"] == 4


def test_random_names_are_all_different(mock):
    m = mock()
    # dotmock answers any name under test.: every unique name gets NOERROR.
    r, p = run_json("-p", m.udp[1], "-n", 500, "--random-names", "test.")
    assert p.returncode == 0, p.stderr
    assert r["answered"] == 500 and r["rcodes"]["NOERROR"] == 500, r


def test_open_loop_holds_a_low_rate(mock):
    m = mock()
    r, p = run_json("-p", m.udp[1], "-Q", 2000, "-l", 2)
    assert p.returncode == 0, p.stderr
    # 2000 q/s for 2 s: 4000 queries (+1 at t=0), within 10%.
    assert 3600 <= r["sent"] <= 4400, r
    assert r["answered"] == r["sent"], r


def test_open_loop_over_tcp_holds_the_rate_and_n(mock):
    m = mock()
    r, p = run_json("-m", "tcp", "-p", m.tcp[1], "-Q", 1000, "-n", 500)
    assert p.returncode == 0, p.stderr
    assert r["sent"] == 500 and r["answered"] == 500, r
    # 500 queries at 1000 q/s take half a second; bounded loosely above (a loaded machine).
    assert 0.45 <= r["duration_s"] < 20, r


@pytest.mark.parametrize("conns,full", [(1, 1), (2, 2)])
def test_reconnect_every_counts_handshakes_and_resumptions(mock, conns, full):
    m = mock()
    before = m.stats()
    r, p = run_json(*tls_args(m), "-n", 100, "--reconnect-every", 10, "-c", conns, "-q", 5)
    assert p.returncode == 0, p.stderr
    assert r["answered"] == 100, r
    # 100 queries, 10 per connection: 10 connections, never one more; each connection's first
    # handshake is full, every later one resumes that connection's last session.
    assert r["connections"] == 10 and r["handshakes"] == 10, r
    assert r["resumptions"] == 10 - full, r
    after = m.stats()
    assert after["connections"] - before["connections"] == 10
    assert after["resumptions"] - before["resumptions"] == 10 - full
    assert after["dot_queries"] - before["dot_queries"] == 100


def test_reconnect_every_over_tcp(mock):
    m = mock()
    r, p = run_json("-m", "tcp", "-p", m.tcp[1], "-n", 1000, "--reconnect-every", 7, "-c", 3)
    assert p.returncode == 0, p.stderr
    # ceil(1000 / 7) connections, spread over three at a time.
    assert r["answered"] == 1000 and r["connections"] == 143 and r["handshakes"] == 143, r
    assert r["resumptions"] == 0


def test_refused_port_exits_1_quickly_with_one_line():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        for mode in ("tcp", "tls", "udp"):
            start = time.monotonic()
            extra = ["--insecure"] if mode == "tls" else []
            p = dotload("-m", mode, "-p", port, "-l", 30, *extra, timeout=20)
            took = time.monotonic() - start
            assert p.returncode == 1, (mode, p.stderr)
            assert took < 10, (mode, took)
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and "refused" in lines[0], (mode, p.stderr)


def test_tls_name_mismatch_exits_1(mock):
    m = mock()
    p = dotload("-m", "tls", "-p", m.dot_port, "--ca-file", m.ca_file, "--tls-name", "other.test",
                "-l", 30, timeout=20)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "TLS handshake failed" in lines[0], p.stderr
    # Without a name the address is verified, and the certificate does not carry it.
    p = dotload("-m", "tls", "-p", m.dot_port, "--ca-file", m.ca_file, "-n", 10, timeout=20)
    assert p.returncode == 1 and "TLS handshake failed" in p.stderr, p.stderr


def test_pin_mismatch_exits_1_and_good_pin_works(mock):
    m = mock()
    p = dotload("-m", "tls", "-p", m.dot_port, "--insecure", "--pin",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "-n", 10, timeout=20)
    assert p.returncode == 1 and "TLS handshake failed" in p.stderr, p.stderr
    r, p = run_json("-m", "tls", "-p", m.dot_port, "--insecure", "--pin", m.pin, "-n", 10)
    assert p.returncode == 0 and r["answered"] == 10, p.stderr


def test_dead_server_counts_lost_and_ends_in_bounded_time():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # receives and never answers
        start = time.monotonic()
        r, p = run_json("-p", s.getsockname()[1], "-n", 50, "-q", 10, "--timeout-ms", 300)
        took = time.monotonic() - start
    assert p.returncode == 1, p.stderr
    assert "none answered" in p.stderr
    assert r["sent"] == 50 and r["lost"] == 50 and r["answered"] == 0, r
    assert took < 15, took


def test_dead_server_over_duration_ends_too():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        r, p = run_json("-p", s.getsockname()[1], "-l", 1, "-q", 5, "--timeout-ms", 200)
    assert p.returncode == 1
    assert r["lost"] == r["sent"] > 0, r


class GarbageServer:
    """A UDP server that answers every query with `reply(query_bytes)`."""

    def __init__(self, reply):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            for out in self.reply(data):
                self.sock.sendto(out, peer)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def flip_qr(q: bytes) -> bytes:
    return q[:2] + bytes([q[2] | 0x80]) + q[3:]


def test_malformed_and_mismatched_answers_are_counted():
    # Each query gets: a short datagram, the query itself (QR=0), an answer with the wrong ID,
    # then the right answer.
    def reply(q):
        wrong_id = bytes([q[0] ^ 0xFF, q[1]]) + flip_qr(q)[2:]
        return [b"\x01\x02\x03", q, wrong_id, flip_qr(q)]

    srv = GarbageServer(reply)
    try:
        r, p = run_json("-p", srv.port, "-n", 20, "-c", 1, "-q", 1)
    finally:
        srv.close()
    assert p.returncode == 0, p.stderr
    assert r["answered"] == 20, r
    assert r["errors"]["malformed"] == 40, r
    assert r["errors"]["mismatch"] == 20, r


def test_only_garbage_exits_1():
    srv = GarbageServer(lambda q: [b"\x00" * 5])
    try:
        r, p = run_json("-p", srv.port, "-n", 5, "--timeout-ms", 300)
    finally:
        srv.close()
    assert p.returncode == 1 and "malformed" in p.stderr, p.stderr
    assert r["errors"]["malformed"] == 5 and r["lost"] == 5, r


def test_usage_errors_exit_2():
    for args in (["-m", "quic"], ["--zipf", "x"], ["-d", "/nonexistent"], ["--no-edns", "--do"],
                 ["--reconnect-every", "5"], ["--pin", "abc", "-m", "tls"], ["-p", "0"]):
        p = dotload(*args, timeout=20)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.startswith("dotload: "), (args, p.stderr)


def test_bad_query_file_names_the_line(tmp_path):
    qf = query_file(tmp_path, ["a.test A", "b.test NOPE"])
    p = dotload("-d", qf, "-n", 1, timeout=20)
    assert p.returncode == 2
    assert f"{qf}:2: unknown type 'NOPE'" in p.stderr


def test_progress_line_on_request(mock):
    m = mock()
    p = dotload("-p", m.udp[1], "-l", 1.5, "-q", 5, "--progress")
    assert p.returncode == 0, p.stderr
    assert "answered" in p.stderr and "q/s" in p.stderr
    assert "queries/s" in p.stdout  # the text summary


def test_reflector_answers_dotload(processes):
    proc = processes.start([REFLECTOR_BIN, "--listen", "127.0.0.1:0"], "reflector")
    ready = proc.read_json(READY_TIMEOUT, "ready")
    assert ready["ready"] is True and ready["udp"] > 0
    r, p = run_json("-p", ready["udp"], "-n", 2000, "-T", 2, "-c", 2, "--do")
    assert p.returncode == 0, p.stderr
    assert r["answered"] == 2000 and r["rcodes"]["NOERROR"] == 2000, r


def test_sigint_stops_the_run_and_still_reports(mock, tmp_path):
    m = mock()
    err_path = tmp_path / "dotload.stderr"
    with open(err_path, "wb") as err:
        p = subprocess.Popen([DOTLOAD_BIN, "-m", "tcp", "-p", str(m.tcp[1]), "-l", "60", "-q", "5",
                              "--progress", "--json"], stdout=subprocess.PIPE, stderr=err)
        try:
            # Running: the first progress line (a second in) says so.
            deadline = time.monotonic() + 20
            while "answered" not in err_path.read_text():
                assert time.monotonic() < deadline, "no progress line"
                assert p.poll() is None, err_path.read_text()
                time.sleep(0.05)
            p.send_signal(signal.SIGINT)
            out, _ = p.communicate(timeout=15)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert p.returncode == 0, err_path.read_text()
    r = json.loads(out)
    assert r["answered"] > 0 and r["duration_s"] < 30, r
