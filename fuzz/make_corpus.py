#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Real answers of many types (made with dnspython, compressed as servers send them and
uncompressed), with and without EDNS and options, the hostile messages of the unit tests
(proxy/tests/dns/*) written out byte by byte, DoT streams, and configuration files. Run it with
Debian's /usr/bin/python3 (python3-dnspython); it replaces the generated files and leaves the
files named crash-* (inputs that once crashed a harness, kept as regressions) alone.
"""

import hashlib
import os
import struct
import sys

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
TARGETS = ["message", "query", "framer", "cache", "response", "config", "dotq_render", "edns"]


def wire(msg, compress=True):
    """The message's wire form; without compression every name is written in full."""
    if compress:
        return msg.to_wire()
    out = bytearray(struct.pack("!HHHHHH", msg.id, msg.flags,
                                len(msg.question), sum(len(r) for r in msg.answer),
                                sum(len(r) for r in msg.authority),
                                sum(len(r) for r in msg.additional) + (1 if msg.edns >= 0 else 0)))
    for q in msg.question:
        out += q.name.to_wire() + struct.pack("!HH", q.rdtype, q.rdclass)
    for section in (msg.answer, msg.authority, msg.additional):
        for rrset in section:
            for rd in rrset:
                data = rd.to_wire()
                out += rrset.name.to_wire() + struct.pack("!HHIH", rrset.rdtype, rrset.rdclass,
                                                          rrset.ttl, len(data)) + data
    if msg.edns >= 0:
        opts = b"".join(struct.pack("!HH", o.otype, len(o.to_wire())) + o.to_wire()
                        for o in msg.options)
        ttl = (msg.ednsflags & 0xFFFF) | (msg.edns << 16) | ((msg.rcode() >> 4) << 24)
        out += b"\x00" + struct.pack("!HHIH", 41, msg.payload, ttl, len(opts)) + opts
    return bytes(out)


def answer(qname, qtype, records, rcode=dns.rcode.NOERROR, edns=-1, options=(), qid=0x1234,
           authority=(), additional=(), flags=dns.flags.QR | dns.flags.RD | dns.flags.RA,
           payload=1232, ednsflags=0):
    q = dns.message.make_query(qname, qtype)
    m = dns.message.make_response(q)
    m.id = qid
    m.flags = flags
    m.set_rcode(rcode)
    for section, rrs in ((m.answer, records), (m.authority, authority), (m.additional, additional)):
        for name, ttl, rtype, *texts in rrs:
            section.append(dns.rrset.from_text(name, ttl, "IN", rtype, *texts))
    if edns >= 0:
        m.use_edns(edns, ednsflags, payload, options=list(options))
    else:
        m.use_edns(False)
    return m


EDE = dns.edns.GenericOption(15, b"\x00\x12stale answer")
COOKIE = dns.edns.GenericOption(10, bytes(range(8)) + bytes(range(16)))
PAD = dns.edns.GenericOption(12, bytes(40))
NSID = dns.edns.GenericOption(3, b"fuzz-nsid")
ECS = dns.edns.ECSOption("192.0.2.0", 24)
KEEPALIVE = dns.edns.GenericOption(11, b"\x00\x64")
SOA = ("example.com.", 300, "SOA", "ns1.example.com. hostmaster.example.com. 2026112701 7200 3600 1209600 60")

ANSWERS = {
    "a": answer("example.com.", "A", [("example.com.", 300, "A", "192.0.2.1", "192.0.2.2")]),
    "aaaa": answer("example.com.", "AAAA", [("example.com.", 60, "AAAA", "2001:db8::1")]),
    "mx": answer("example.com.", "MX", [("example.com.", 3600, "MX", "10 mail.example.com.", "20 mx2.example.net.")],
                 additional=[("mail.example.com.", 3600, "A", "192.0.2.25")]),
    "txt": answer("example.com.", "TXT", [("example.com.", 300, "TXT", '"v=spf1 -all"', '"a" "b" ""')]),
    "txt-long": answer("long.example.com.", "TXT", [("long.example.com.", 300, "TXT", '"' + "x" * 255 + '" "' + "y" * 200 + '"')]),
    "soa": answer("example.com.", "SOA", [SOA]),
    "ns": answer("example.com.", "NS", [("example.com.", 86400, "NS", "ns1.example.com.", "ns2.example.org.")],
                 additional=[("ns1.example.com.", 86400, "A", "192.0.2.53"), ("ns1.example.com.", 86400, "AAAA", "2001:db8::53")]),
    "cname-chain": answer("www.example.com.", "A", [("www.example.com.", 300, "CNAME", "cdn.example.net."),
                                                     ("cdn.example.net.", 60, "CNAME", "edge.cdn.example.net."),
                                                     ("edge.cdn.example.net.", 20, "A", "198.51.100.7")]),
    "cname-nodata": answer("www.example.com.", "AAAA", [("www.example.com.", 300, "CNAME", "v4only.example.com.")],
                           authority=[SOA]),
    "srv": answer("_sip._tcp.example.com.", "SRV", [("_sip._tcp.example.com.", 600, "SRV", "10 60 5060 sip.example.com.")]),
    "ptr": answer("1.2.0.192.in-addr.arpa.", "PTR", [("1.2.0.192.in-addr.arpa.", 300, "PTR", "host.example.com.")]),
    "dnskey-rrsig": answer("example.com.", "DNSKEY", [
        ("example.com.", 3600, "DNSKEY", "257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ=="),
        ("example.com.", 3600, "RRSIG", "DNSKEY 13 2 3600 20261231000000 20261127000000 12345 example.com. "
         "oJB1W6WNGv+ldvQ3WDG0MQkg5IEhjRip8WTrPYGv07h108dUKGMeDPKijVCHX3DDKdfb+v6oB9wfuh3DTJXUAfI/M0zmO/zz8bW0Rznl8O3tGNazPwQKkRN20XPXV6nwwfoXmJQbsLNrLfkGJ5D6fwFm8nN+6pBzeDQfsS3Ap3o=")],
        edns=0, ednsflags=dns.flags.DO, flags=dns.flags.QR | dns.flags.RD | dns.flags.RA | dns.flags.AD),
    "ds": answer("example.com.", "DS", [("example.com.", 86400, "DS", "12345 13 2 " + "ab" * 32)], edns=0, ednsflags=dns.flags.DO),
    "nsec": answer("a.example.com.", "A", [], rcode=dns.rcode.NXDOMAIN,
                   authority=[SOA, ("example.com.", 60, "NSEC", "b.example.com. A NS SOA MX RRSIG NSEC DNSKEY")], edns=0, ednsflags=dns.flags.DO),
    "https": answer("example.com.", "HTTPS", [("example.com.", 300, "HTTPS", '1 . alpn="h2,h3" ipv4hint=192.0.2.1')]),
    "caa": answer("example.com.", "CAA", [("example.com.", 300, "CAA", '0 issue "letsencrypt.org"')]),
    "nxdomain": answer("nx.example.com.", "A", [], rcode=dns.rcode.NXDOMAIN, authority=[SOA]),
    "nxdomain-nosoa": answer("nx.example.com.", "A", [], rcode=dns.rcode.NXDOMAIN),
    "nodata": answer("example.com.", "AAAA", [], authority=[SOA]),
    "servfail": answer("example.com.", "A", [], rcode=dns.rcode.SERVFAIL),
    "refused": answer("example.com.", "A", [], rcode=dns.rcode.REFUSED, flags=dns.flags.QR),
    "edns": answer("example.com.", "A", [("example.com.", 300, "A", "192.0.2.1")], edns=0),
    "edns-options": answer("example.com.", "A", [("example.com.", 300, "A", "192.0.2.1")], edns=0,
                           options=[EDE, COOKIE, PAD, NSID, KEEPALIVE], payload=4096),
    "edns-ecs": answer("example.com.", "A", [("example.com.", 300, "A", "192.0.2.1")], edns=0, options=[ECS]),
    "badvers": answer("example.com.", "A", [], rcode=dns.rcode.BADVERS, edns=0),
    "tc": answer("example.com.", "TXT", [], flags=dns.flags.QR | dns.flags.RD | dns.flags.RA | dns.flags.TC),
    "ttl-edges": answer("example.com.", "A", [("example.com.", 0, "A", "192.0.2.1"), ("a.example.com.", 2147483647, "A", "192.0.2.2")]),
    "many-a": answer("big.example.com.", "A", [("big.example.com.", 300, "A", *[f"10.0.{i // 256}.{i % 256}" for i in range(120)])]),
    "mixed-case": answer("ExAmPlE.CoM.", "A", [("ExAmPlE.CoM.", 300, "A", "192.0.2.1")]),
    "other-id": answer("example.com.", "A", [("example.com.", 300, "A", "192.0.2.1")], qid=0x9999),
    "other-name": answer("example.org.", "A", [("example.org.", 300, "A", "192.0.2.1")]),
}


def u16(v):
    return struct.pack("!H", v)


def header(qid=0x1234, flags=0x8180, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def label(n, c=b"a"):
    return bytes([n]) + c * n


Q = b"\x07example\x03com\x00" + u16(1) + u16(1)


def too_many_hops(hops=130):
    """A TXT record whose rdata is a chain of pointers, each to the one before, then a record owned
    by the last of them: 130 hops, over the reader's limit of 126."""
    start = 12 + len(Q) + 2 + 10  # the first record's rdata
    chain = b"\xc0\x0c" + b"".join(u16(0xC000 | (start + 2 * (i - 1))) for i in range(1, hops))
    first = b"\xc0\x0c" + u16(16) + u16(1) + b"\x00\x00\x00\x3c" + u16(len(chain)) + chain
    second = u16(0xC000 | (start + 2 * (hops - 1))) + u16(1) + u16(1) + b"\x00\x00\x00\x3c" + u16(4) + b"\xc0\x00\x02\x01"
    return header(an=2) + Q + first + second

# The hostile cases of proxy/tests/dns/* (name_test, message_test, query_test), as responses.
HOSTILE = {
    "pointer-loop": header(an=1) + Q + b"\xc0\x1d\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01" + b"\xc0\x1d",
    "pointer-to-itself": header() + b"\xc0\x0c" + u16(1) + u16(1),
    "pointer-into-own-labels": header() + b"\x01a\xc0\x0c" + u16(1) + u16(1),
    "forward-pointer": header() + b"\xc0\x20" + u16(1) + u16(1) + bytes(20),
    "pointer-outside": header() + b"\xc3\xff" + u16(1) + u16(1),
    "pointer-into-header": header() + b"\xc0\x02" + u16(1) + u16(1),
    "too-many-hops": too_many_hops(),
    "label-over-63": header() + label(64) + b"\x00" + u16(1) + u16(1),
    "extended-label-type": header() + b"\x41\x00" + u16(1) + u16(1),
    "name-over-255": header() + label(63) * 4 + b"\x00" + u16(1) + u16(1),
    "name-of-255": header() + label(63) * 3 + label(61) + b"\x00" + u16(1) + u16(1),
    "truncated-label": header() + b"\x07exa",
    "missing-root": header() + b"\x07example",
    "half-pointer": header() + b"\xc0",
    "huge-ancount": header(an=0xFFFF) + Q,
    "huge-qdcount": header(qd=0xFFFF),
    "truncated-rdata": header(an=1) + Q + b"\xc0\x0c" + u16(1) + u16(1) + b"\x00\x00\x00\x3c" + u16(4) + b"\xc0\x00",
    "truncated-record-header": header(an=1) + Q + b"\xc0\x0c" + u16(1) + u16(1) + b"\x00\x00",
    "two-opts": header(ar=2) + Q + (b"\x00" + u16(41) + u16(1232) + b"\x00\x00\x00\x00" + u16(0)) * 2,
    "opt-not-at-root": header(ar=1) + Q + b"\x01a\x00" + u16(41) + u16(1232) + b"\x00\x00\x00\x00" + u16(0),
    "opt-in-answer": header(an=1) + Q + b"\x00" + u16(41) + u16(1232) + b"\x00\x00\x00\x00" + u16(0),
    "opt-in-authority": header(ns=1) + Q + b"\x00" + u16(41) + u16(1232) + b"\x00\x00\x00\x00" + u16(0),
    "opt-option-overrun": header(ar=1) + Q + b"\x00" + u16(41) + u16(1232) + b"\x00\x00\x00\x00" + u16(4) + u16(10) + u16(8),
    "opt-not-last": header(ar=2) + Q + b"\x00" + u16(41) + u16(1232) + b"\x00\x00\x00\x00" + u16(0)
    + b"\xc0\x0c" + u16(1) + u16(1) + b"\x00\x00\x00\x3c" + u16(4) + b"\xc0\x00\x02\x01",
    "opt-owner-pointer-to-root": header(ar=1) + Q + b"\xc0\x18" + u16(41) + u16(1232) + b"\x00\x00\x00\x00" + u16(0),
    "bad-pointer-in-cname": header(an=1) + Q + b"\xc0\x0c" + u16(5) + u16(1) + b"\x00\x00\x00\x3c" + u16(2) + b"\xc0\xff",
    "cname-overrunning-rdlength": header(an=1) + Q + b"\xc0\x0c" + u16(5) + u16(1) + b"\x00\x00\x00\x3c" + u16(3) + b"\x01a\x00\x00",
    "soa-short": header(ns=1) + Q + b"\xc0\x0c" + u16(6) + u16(1) + b"\x00\x00\x00\x3c" + u16(6) + b"\x00\x00" + bytes(4),
    "high-bit-ttl": header(an=1) + Q + b"\xc0\x0c" + u16(1) + u16(1) + b"\x80\x00\x00\x01" + u16(4) + b"\xc0\x00\x02\x01",
    "trailing-bytes": header(an=1) + Q + b"\xc0\x0c" + u16(1) + u16(1) + b"\x00\x00\x00\x3c" + u16(4) + b"\xc0\x00\x02\x01" + b"junk",
    "short": b"\x12\x34\x81",
    "empty": b"",
    "header-only": header(qd=0),
    "qdcount-two": header(qd=2) + Q + Q,
}


def query(qname="example.com.", qtype="A", edns=-1, options=(), do=False, flags=dns.flags.RD, qid=0x4242, payload=1232):
    q = dns.message.make_query(qname, qtype, use_edns=edns, payload=payload, options=list(options),
                               want_dnssec=do)
    q.id = qid
    q.flags = flags
    return q.to_wire()


QUERIES = {
    "plain": query(),
    "aaaa": query(qtype="AAAA"),
    "edns": query(edns=0),
    "edns-do": query(edns=0, do=True),
    "edns-ecs": query(edns=0, options=[ECS]),
    "edns-cookie-pad": query(edns=0, options=[COOKIE, PAD]),
    "edns-small": query(edns=0, payload=100),
    "edns-v1": query(edns=1),
    "cd-ad": query(flags=dns.flags.RD | dns.flags.CD | dns.flags.AD),
    "no-rd": query(flags=0),
    "notify": query(flags=dns.flags.RD | (4 << 11)),
    "response": query(flags=dns.flags.QR | dns.flags.RD),
    "mixed-case": query("WwW.ExAmPlE.oRg.", "MX"),
    "long-name": query(".".join(["a" * 63] * 3 + ["b" * 61]) + "."),
    "root-ns": query(".", "NS"),
    "any": query(qtype="ANY"),
    "ch-txt": b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05stats\x07dotmock\x00\x00\x10\x00\x03",
    "type-opt-question": header(flags=0x0100) + b"\x07example\x03com\x00" + u16(41) + u16(1),
}


def frame(msg):
    return u16(len(msg)) + msg


FRAMER = {
    "one": b"\x00" + frame(QUERIES["plain"]),
    "two-bytewise": b"\x00\x01" + frame(QUERIES["plain"]) + frame(ANSWERS["a"].to_wire()),
    "three-mixed": b"\x03\x01\x02\x05" + b"".join(frame(m.to_wire()) for m in list(ANSWERS.values())[:3]),
    "split-prefix": b"\x01\x01" + frame(QUERIES["edns"]) + b"\x00",
    "zero-length": b"\x01\x03" + frame(b"") + frame(b"abc") + frame(b""),
    "partial": b"\x02\x07\x0b" + frame(QUERIES["plain"]) + u16(500) + b"partial",
    "zero-chunks": b"\x01\x00" + frame(b"xy"),
    "large": b"\x02\xff\x40" + frame(ANSWERS["many-a"].to_wire()) + frame(bytes(3000)),
    "max-length-prefix": b"\x00" + b"\xff\xff" + bytes(100),
}

CONFIGS = {
    "readme": '''[server]
listen = ["127.0.0.1:53", "[::1]:53"]
workers = 0

[upstream]
query_timeout_ms = 1500

[[upstream.servers]]
address = "1.1.1.1"
tls_name = "cloudflare-dns.com"

[[upstream.servers]]
address = "9.9.9.9"
tls_name = "dns.quad9.net"
pins = ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
''',
    "every-key": '''[server]
listen = ["127.0.0.1:0"]
workers = 2
log_level = "debug"
max_udp_size = 1400
tcp_max_clients = 10
tcp_max_inflight = 5
tcp_max_output = 8192
tcp_idle_timeout_ms = 1000
shutdown_grace_ms = 0
forward_ecs = true

[upstream]
ca_file = ""
insecure = true
query_timeout_ms = 2000
attempt_timeout_ms = 500
connect_timeout_ms = 300
idle_timeout_ms = 100
connections_per_upstream = 2
max_inflight_per_connection = 10
padding_block = 0
backoff_initial_ms = 10
backoff_max_ms = 20

[[upstream.servers]]
address = "::1"
port = 8853
tls_name = "dotmock.test"

[cache]
size = 0
shards = 4
min_ttl = 5
max_ttl = 600
negative_max_ttl = 60
servfail_ttl = 1
serve_stale = false
stale_max_age = 0
prefetch_percent = 50
''',
    "empty": "",
    "unknown-key": "[server]\nlisten_on = [\"127.0.0.1\"]\n",
    "unknown-section": "[servre]\nworkers = 1\n",
    "wrong-type": "[server]\nworkers = \"four\"\n",
    "out-of-range": "[server]\nworkers = 1000\nmax_udp_size = 100\n",
    "bad-address": "[[upstream.servers]]\naddress = \"dns.example\"\n",
    "bad-pin": "[[upstream.servers]]\naddress = \"1.1.1.1\"\npins = [\"short\"]\n",
    "attempt-over-query": "[upstream]\nquery_timeout_ms = 100\nattempt_timeout_ms = 200\n",
    "backoff": "[upstream]\nbackoff_initial_ms = 500\nbackoff_max_ms = 100\n",
    "no-servers": "[upstream]\nservers = []\n",
    "no-listen": "[server]\nlisten = []\n",
    "syntax-error": "[server\nworkers = = 1\n",
    "inline-tables": "server = { workers = 1, listen = [\"127.0.0.1:5353\"] }\nupstream.servers = [{ address = \"1.0.0.1\" }]\n",
    "huge-int": "[cache]\nsize = 9223372036854775807\nshards = -1\n",
    "float-bool-date": "[server]\nworkers = 1.5\nforward_ecs = 1979-05-27T07:32:00Z\n",
    "unicode": "[server]\nlog_level = \"d\\u00e9bug\"\n# caf\u00e9\n",
    "nested-arrays": "[server]\nlisten = [[\"127.0.0.1\"], [1, 2]]\n",
    "v6": "[server]\nlisten = [\"[::1]:5353\", \"[fe80::1%lo]:53\"]\n",
}

# edns: the first byte picks the codec (0 ECS, 1 cookie, 2 EDE, 3 ECS text, 4 padding).
EDNS = {
    "ecs-v4-24": b"\x00" + bytes.fromhex("00011800c00002"),
    "ecs-v6-56": b"\x00" + bytes.fromhex("0002380020010db800000000"),
    "ecs-v4-0": b"\x00" + bytes.fromhex("00010000"),
    "ecs-v4-bits-past-prefix": b"\x00" + bytes.fromhex("00011700c00003"),
    "ecs-family-3": b"\x00" + bytes.fromhex("00031800c00002"),
    "cookie-client": b"\x01" + bytes(range(8)),
    "cookie-client-server": b"\x01" + bytes(range(24)),
    "cookie-short-server": b"\x01" + bytes(range(12)),
    "ede-stale": b"\x02" + b"\x00\x03" + b"served stale",
    "ede-bare": b"\x02" + b"\x00\x12",
    "ede-short": b"\x02" + b"\x00",
    "text-v4": b"\x03" + b"192.0.2.0/24",
    "text-v6": b"\x03" + b"2001:db8::/48",
    "text-zero": b"\x03" + b"0/0",
    "text-bad": b"\x03" + b"192.0.2.0/33",
    "padding": b"\x04" + bytes.fromhex("01f4800008"),
}


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for t in TARGETS:
        d = os.path.join(CORPUS, t)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if not f.startswith("crash-"):
                os.remove(os.path.join(d, f))

    messages = {}
    for name, m in ANSWERS.items():
        messages[f"{name}"] = wire(m, compress=True)
        messages[f"{name}-nocomp"] = wire(m, compress=False)
    for name, data in messages.items():
        for t in ("message", "response", "dotq_render"):
            write(t, name, data)
        # cache: the first byte picks the client (EDNS, DO, CD, AD), the age and stale serving.
        for knobs in (0x00, 0x8B, 0x45):
            write("cache", f"{name}-{knobs:02x}", bytes([knobs]) + data)
    for name, data in HOSTILE.items():
        for t in ("message", "response", "dotq_render", "query"):
            write(t, f"hostile-{name}", data)
        write("cache", f"hostile-{name}", b"\x00" + data)
    for name, data in QUERIES.items():
        write("query", name, data)
        write("message", f"query-{name}", data)
    for name, data in FRAMER.items():
        write("framer", name, data)
    for name, text in CONFIGS.items():
        write("config", name, text.encode())
    for name, data in EDNS.items():
        write("edns", name, data)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(CORPUS) for f in fs)
    count = sum(len(fs) for _, _, fs in os.walk(CORPUS))
    print(f"make_corpus: {count} files, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
