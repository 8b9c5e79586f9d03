"""The status page at / of the --metrics endpoint, loaded in headless Chromium from Debian: it
draws itself from /status.json (every asset inline, nothing fetched from elsewhere) and shows live
queries per second, the cache hit ratio, latency percentiles and each upstream's state."""

import html.parser
import json
import shutil
import subprocess
import threading
import time
import urllib.request

import dns.rcode
import pytest

from conftest import free_port, make_query, split_hostport

CHROMIUM = shutil.which("chromium")


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


def load_page(url: str) -> str:
    """The DOM after the page's scripts ran for 8 s of (virtual) time: several polls."""
    out = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--virtual-time-budget=8000", "--dump-dom", url],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.multiworker
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by ci/deps.sh test")
def test_status_page_shows_live_state(mock, proxy):
    m = mock()
    dead = f"127.0.0.1:{free_port()}#dead.test"
    p = proxy(m, "--metrics", "127.0.0.1:0", upstreams=[m.upstream_spec(), dead], workers=2,
              log_level="error")
    host, port = split_hostport(p.ready["metrics"])
    status = json.load(urllib.request.urlopen(f"http://{host}:{port}/status.json", timeout=5))
    assert [u["name"] for u in status["upstreams"]] == [m.upstream_spec(), dead]

    # Traffic while the page polls: a few names over and over (mostly cache hits), bounded.
    stop = threading.Event()
    sent = [0]

    def traffic():
        deadline = time.monotonic() + 50
        while not stop.is_set() and time.monotonic() < deadline:
            assert p.udp(make_query(f"page{sent[0] % 20}.test.")).rcode() == dns.rcode.NOERROR
            sent[0] += 1

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        while sent[0] < 50:  # the cache is warm and traffic flows before the page loads
            time.sleep(0.01)
        dom = load_page(f"http://{host}:{port}/")
    finally:
        stop.set()
        t.join(timeout=10)
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
