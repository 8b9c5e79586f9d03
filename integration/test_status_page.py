"""The status page at / of the --metrics endpoint, loaded in headless Chromium from Debian: it
draws itself from /status.json (every asset inline, nothing fetched from elsewhere) and shows live
queries per second, the cache hit ratio, latency percentiles and each upstream's state."""

import html.parser
import json
import subprocess
import threading
import time
import urllib.request

import dns.rcode
import pytest

from conftest import free_port, make_query, require_tool, split_hostport, wait_for


class Texts(html.parser.HTMLParser):
    """Text content of elements by id, and the data-up attribute of the upstream rows."""

    def __init__(self):
        super().__init__()
        self.by_id, self.rows, self.stack, self.external = {}, [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "link", "img") and (a.get("src") or a.get("href", "")).startswith("http"):
            self.external.append(a)
        if tag == "tr" and "data-up" in a:
            self.rows.append({"up": a["data-up"], "text": ""})
        self.stack.append((tag, a.get("id")))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        for _, ident in self.stack:
            if ident:
                self.by_id[ident] = self.by_id.get(ident, "") + data
        if self.rows and any(t == "tr" for t, _ in self.stack):
            self.rows[-1]["text"] += data


def load_page(chromium: str, url: str) -> str:
    """The DOM after the page's scripts ran for 8 s of (virtual) time: several polls."""
    out = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--virtual-time-budget=8000", "--dump-dom", url],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.multiworker
def test_status_page_shows_live_state(mock, proxy):
    chromium = require_tool("chromium")
    m = mock()
    dead = f"127.0.0.1:{free_port()}#dead.test"
    p = proxy(m, "--metrics", "127.0.0.1:0", upstreams=[m.upstream_spec(), dead], workers=2,
              log_level="error")
    host, port = split_hostport(p.ready["metrics"])
    status = json.load(urllib.request.urlopen(f"http://{host}:{port}/status.json", timeout=5))
    assert [u["name"] for u in status["upstreams"]] == [m.upstream_spec(), dead]

    # Traffic while the page polls: a few names over and over (mostly cache hits), bounded. A
    # failure in the thread is kept and raised here (an assert in a thread would only be printed).
    stop = threading.Event()
    sent = [0]
    errors: list[BaseException] = []

    def traffic():
        deadline = time.monotonic() + 50
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                r = p.udp(make_query(f"page{sent[0] % 20}.test."))
                assert r.rcode() == dns.rcode.NOERROR, r
                sent[0] += 1
        except BaseException as e:  # noqa: BLE001 (re-raised by the test below)
            errors.append(e)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        # The cache is warm and traffic flows before the page loads.
        wait_for(lambda: errors or sent[0] >= 50, 30, what="50 answered queries")
        if errors:
            raise errors[0]
        dom = load_page(chromium, f"http://{host}:{port}/")
    finally:
        stop.set()
        t.join(timeout=10)
    assert not t.is_alive(), "the traffic thread did not stop"
    if errors:
        raise errors[0]
    page = Texts()
    page.feed(dom)
    assert not page.external, page.external  # every asset is embedded
    assert page.by_id["state"] == "ready"
    assert page.by_id["version"].startswith("v") and "2 workers" in page.by_id["version"]
    assert float(page.by_id["qps"].rstrip("k")) > 0, page.by_id["qps"]
    assert page.by_id["hit-ratio"].endswith("%") and float(page.by_id["hit-ratio"][:-1]) > 50
    for tile in ("p50", "p99"):
        assert page.by_id[tile].split()[-1] in ("µs", "ms", "s"), page.by_id[tile]
    assert [(r["up"], r["text"].split("up")[0].split("down")[0]) for r in page.rows] == [
        ("true", m.upstream_spec()), ("false", dead)]
    assert p.stop() == 0
