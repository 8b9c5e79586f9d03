#!/usr/bin/python3
"""Reads bench/peers.sh's raw lines and prints the table: medians per workload, tool and proxy,
dotproxy's ratio to each peer, peak memory, and the issue's targets marked met or not met.

Raw lines: "WORKLOAD TOOL PROXY qps p50_us p99_us p999_us cpu_us_per_answer lost not_noerror
generator_cpu_us_per_answer [upstream_cpu_us_per_answer]" ("-" where the tool gives no figure) and
"MEM peak PROXY KiB".

    bench/report.py RAW [--chart PNG]   (--chart also draws the figures with matplotlib)"""

import statistics
import sys
from collections import defaultdict

WORKLOADS = {
    "W1": "UDP cache hits",
    "W2": "UDP misses over DoT",
    "W3": "TCP hits, pipelined",
    "W4": "Zipf at a fixed rate",
    "W5": "TCP churn",
    "W2u": "misses, Unbound upstr.",
}
OPEN_LOOP = {"W4"}  # every other workload is closed loop: a lost query makes the run invalid
PEERS = ["dnsdist", "unbound", "kresd"]
PROXIES = ["reflector", "dotproxy", "dotproxy-b"] + PEERS
FIELDS = ["qps", "p50", "p99", "p999", "cpu", "lost", "other", "gen", "up"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def number(text):
    return None if text == "-" else float(text)


def main(path, chart=None):
    rows = defaultdict(lambda: defaultdict(list))  # (workload, tool, proxy) -> field -> values
    memory = defaultdict(list)
    for line in open(path):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == "MEM":
            memory[parts[2]].append(int(parts[3]))
            continue
        key = tuple(parts[:3])
        for field, text in zip(FIELDS, parts[3:]):
            rows[key][field].append(number(text))
    med = {key: {f: median(v) for f, v in fields.items()} for key, fields in rows.items()}

    def fmt(value, spec="{:.0f}"):
        return "-" if value is None else spec.format(value)

    invalid = []
    print(f"{'work':4} {'':22} {'tool':8} {'proxy':10} {'queries/s':>10} {'p50 us':>8} {'p99 us':>8} "
          f"{'p99.9 us':>9} {'CPU us/q':>9} {'lost':>8} {'!NOERROR':>9} {'gen us/q':>9}  "
          "dotproxy vs peer: q/s, CPU per answer, p99")
    for w, title in WORKLOADS.items():
        for tool in ("dotload", "dnsperf"):
            for proxy in PROXIES:
                m = med.get((w, tool, proxy))
                if m is None:
                    continue
                ratio = ""
                d = med.get((w, tool, "dotproxy"))
                if proxy != "dotproxy" and d is not None:
                    qps = f"{d['qps'] / m['qps']:.2f}x" if m["qps"] else "inf"
                    cpu = f"{d['cpu'] / m['cpu']:.2f}x" if d["cpu"] and m["cpu"] else "-"
                    p99 = (f"{d['p99'] / m['p99']:.2f}x" if d["p99"] is not None and m["p99"] else "-")
                    ratio = f"{qps}, {cpu}, {p99}"
                # A closed-loop run with losses (after its one rerun) measured the loss timeout.
                lost_runs = sum(1 for v in rows[(w, tool, proxy)]["lost"] if v)
                if w not in OPEN_LOOP and lost_runs:
                    ratio += f"  INVALID: losses in {lost_runs} of {len(rows[(w, tool, proxy)]['lost'])} runs"
                    invalid.append(f"{w} {tool} {proxy}")
                print(f"{w:4} {title:22} {tool:8} {proxy:10} {fmt(m['qps']):>10} {fmt(m['p50']):>8} "
                      f"{fmt(m['p99']):>8} {fmt(m['p999']):>9} {fmt(m['cpu'], '{:.2f}'):>9} "
                      f"{fmt(m['lost']):>8} {fmt(m['other']):>9} {fmt(m.get('gen'), '{:.2f}'):>9}  {ratio}")
    print()
    print("CPU per answer is the proxy's own user+system time; 1 / it = answers per CPU-second (the chart).")
    if invalid:
        print(f"INVALID closed-loop rows (queries lost even on the rerun): {', '.join(invalid)}")
    w4 = {p: rows[("W4", "dotload", p)]["p99"] for p in ["dotproxy"] + PEERS if ("W4", "dotload", p) in rows}
    if len(w4.get("dotproxy", [])) > 1:
        # Round k of every proxy is the k-th W4 line of each (the rounds interleave the proxies).
        rounds = min(len(v) for v in w4.values())
        lowest = sum(1 for k in range(rounds) if w4["dotproxy"][k] <= min(v[k] for v in w4.values()))
        print()
        print(f"W4 p99 per round (us), {rounds} rounds: median [quartiles] min-max")
        for p, v in w4.items():
            qs = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
            print(f"  {p:10} {statistics.median(v):8.0f} [{qs[0]:.0f}, {qs[2]:.0f}] {min(v):.0f}-{max(v):.0f}")
        print(f"  dotproxy's p99 was the lowest of all in {lowest} of {rounds} rounds")
    print()
    print("peak resident memory (MiB, median of runs):",
          ", ".join(f"{p} {median(v) / 1024:.1f}" for p, v in memory.items()))
    print()

    def q(w, proxy, tool="dotload", field="qps"):
        m = med.get((w, tool, proxy))
        return None if m is None else m[field]

    def target(text, ok):
        print(f"[{'met' if ok else 'NOT met'}] {text}")

    def best(w, field, pick):
        values = [(q(w, p, field=field), p) for p in PEERS if q(w, p, field=field) is not None]
        return pick(values) if values else (None, None)

    b1, p1 = best("W1", "qps", max)
    d1, r1 = q("W1", "dotproxy"), q("W1", "reflector")
    if d1 and b1:
        target(f"W1: dotproxy {d1:.0f} q/s = {d1 / b1:.2f}x the best peer ({p1}, {b1:.0f}); need 1.5x", d1 >= 1.5 * b1)
    if d1 and r1:
        target(f"W1: dotproxy = {d1 / r1:.0%} of the reflector's {r1:.0f} q/s; need 70%", d1 >= 0.7 * r1)
    b2, p2 = best("W2", "qps", max)
    d2 = q("W2", "dotproxy")
    if d2 and b2:
        d99, b99 = q("W2", "dotproxy", field="p99"), q("W2", p2, field="p99")
        target(f"W2: dotproxy {d2:.0f} q/s = {d2 / b2:.2f}x the best peer ({p2}, {b2:.0f}), p99 {d99:.0f} us "
               f"vs {b99:.0f} us; need 1.5x and a lower p99", d2 >= 1.5 * b2 and d99 < b99)
    w99 = best("W4", "p99", min)
    d4 = q("W4", "dotproxy", field="p99")
    if d4 is not None and w99[0] is not None:
        target(f"W4: dotproxy median p99 {d4:.0f} us; lowest peer median p99 {w99[0]:.0f} us ({w99[1]}); "
               "need no higher", d4 <= w99[0])
    du, dc = q("W2u", "dotproxy"), q("W2u", "dotproxy", field="cpu")
    if du and dc:
        # Bound by CPU: either the proxy's core or the other one (Unbound and dotload) is busy nearly
        # the whole run; if neither is, the answers waited on something else (TCP timers).
        busy = du * dc / 1e6
        other = du * ((q("W2u", "dotproxy", field="up") or 0) + (q("W2u", "dotproxy", field="gen") or 0)) / 1e6
        target(f"W2u: dotproxy {du:.0f} q/s against Unbound: its core {busy:.0%} busy, the other core "
               f"(Unbound {q('W2u', 'dotproxy', field='up') or 0:.2f} us/answer + dotload) {other:.0%}; "
               "need one of them at 90% (CPU-bound)", max(busy, other) >= 0.9)
        db, dbc = q("W2u", "dotproxy-b"), q("W2u", "dotproxy-b", field="cpu")
        if db and dbc:
            print(f"      A/B: dotproxy {du:.0f} q/s at {dc:.2f} us/answer, dotproxy-b {db:.0f} q/s at {dbc:.2f} us/answer "
                  f"({db * dbc / 1e6:.0%} of its core)")
    lr, pr = q("W1", "reflector"), q("W1", "reflector", tool="dnsperf")
    if lr and pr:
        target(f"dotload {lr:.0f} q/s vs dnsperf {pr:.0f} q/s against the reflector = {lr / pr:.2f}x; need 2x",
               lr >= 2 * pr)
        # When the reflector's core is the limit, the generators' own CPU per answer says what each
        # could drive: a core's worth of answers at that cost.
        lg, pg = q("W1", "reflector", field="gen"), q("W1", "reflector", tool="dnsperf", field="gen")
        rc = q("W1", "reflector", field="cpu")
        if lg and pg:
            print(f"      generator CPU per answer against the reflector: dotload {lg:.2f} us, dnsperf {pg:.2f} us "
                  f"= {pg / lg:.2f}x (a core drives {1e6 / lg:.0f} vs {1e6 / pg:.0f} q/s); the reflector used "
                  f"{rc * lr / 1e4:.0f}% of its core under dotload")


    if chart:
        draw(chart, med, rows)


def draw(path, med, rows):
    """Two panels: answers per CPU-second of each proxy per workload (dotload), and W4's latency
    percentiles at the fixed rate (medians over the rounds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    proxies = [p for p in ["dotproxy", "dotproxy-b"] + PEERS if any(k[2] == p for k in med)]
    colours = {"dotproxy": "#1f77b4", "dotproxy-b": "#9ecae1", "dnsdist": "#ff7f0e", "unbound": "#2ca02c",
               "kresd": "#d62728"}
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    works = [w for w in WORKLOADS if w != "W4" and any((w, "dotload", p) in med for p in proxies)]
    width = 0.8 / max(len(proxies), 1)
    for i, p in enumerate(proxies):
        xs, ys = [], []
        for j, w in enumerate(works):
            m = med.get((w, "dotload", p))
            here = [x for x in proxies if med.get((w, "dotload", x))]  # no gap for an absent bar
            if m and m["cpu"]:
                xs.append(j + (here.index(p) - (len(here) - 1) / 2) * 0.8 / len(here))
                ys.append(1e6 / m["cpu"])
        a.bar(xs, ys, width, label=p, color=colours.get(p))
    a.set_xticks(range(len(works)), [f"{w}\n{WORKLOADS[w]}" for w in works], fontsize=8)
    a.set_yscale("log")
    a.set_ylabel("answers per CPU-second of the proxy (log)")
    a.set_title("Throughput per core (dotload; median of runs)")
    a.legend(fontsize=8)
    a.grid(axis="y", which="both", alpha=0.3)
    pcts = [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")]
    w4 = [p for p in proxies if ("W4", "dotload", p) in med]
    width = 0.8 / max(len(w4), 1)
    for i, p in enumerate(w4):
        m = med[("W4", "dotload", p)]
        b.bar([j + (i - (len(w4) - 1) / 2) * width for j in range(len(pcts))], [m[f] for f, _ in pcts],
              width, label=p, color=colours.get(p))
    b.set_xticks(range(len(pcts)), [label for _, label in pcts])
    b.set_yscale("log")
    b.set_ylabel("latency, us (log)")
    b.set_title("W4: Zipf mix at a fixed rate (median of rounds)")
    b.legend(fontsize=8)
    b.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"figures: {path}")


if __name__ == "__main__":
    args = sys.argv[1:]
    out = None
    if "--chart" in args:
        k = args.index("--chart")
        out = args[k + 1]
        del args[k:k + 2]
    main(args[0], out)
