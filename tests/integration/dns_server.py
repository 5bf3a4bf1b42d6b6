#!/usr/bin/env python3
"""An authoritative DNS server for the integration tests (test_dns.c), on
python3-dnslib: UDP and TCP on one port of 127.0.0.1, answers from a zone
that the test rewrites while the server runs.

  dns_server.py ZONE_FILE PORT_FILE

Binds UDP on a free port and TCP on the same one (another port when TCP's is
taken), then writes the port number to PORT_FILE (a temporary file renamed
over it, so a reader never sees half of it). Prints one line per query on
stdout, flushed:

  query NAME TYPE -> RCODE NANSWERS

where RCODE is NOERROR, NXDOMAIN, SERVFAIL, REFUSED, MALFORMED (bytes that
are no DNS answer were sent) or DROP (nothing was sent). Exits 0 on SIGTERM.

The zone is JSON, read again whenever the file's mtime or size changes (a
test writes a temporary file and renames it over ZONE_FILE):

  {"names": {"web.test.": {"ttl": 30, "A": ["127.0.0.1"], "AAAA": ["::1"],
                           "SRV": [[priority, weight, port, "target.test."]]}}}

Names match without regard to case or a trailing dot. A name that is not in
the zone gets NXDOMAIN; one without records of the asked type gets NOERROR
with no answer. Keys of a name that change how it is answered:
  "rcode": "SERVFAIL" or "REFUSED"   that rcode, no answer
  "malformed": true                  a valid header and question, then an
                                     answer record cut short (a resolver
                                     reads it as a bad response)
  "drop": true                       no answer at all (the client times out)
An SRV answer carries the A and AAAA records of its targets, when the zone
has them, in the additional section.
"""
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading

from dnslib import AAAA, QTYPE, RCODE, RR, SRV, A, DNSRecord
from dnslib.server import DNSServer

DEFAULT_TTL = 30


def canonical(name):
    """A name as the zone's keys are compared: lower case, one trailing dot."""
    name = str(name).lower()
    return name if name.endswith(".") else name + "."


class Zone:
    """The zone file's names, read again when the file changes on disk."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.stamp = None
        self.names = {}

    def lookup(self, name):
        """The entry for name (a dict), or None when the zone has no such name."""
        with self.lock:
            self._refresh()
            return self.names.get(canonical(name))

    def _refresh(self):
        try:
            st = os.stat(self.path)
        except OSError as e:
            print("zone %s: %s" % (self.path, e), file=sys.stderr, flush=True)
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self.stamp:
            return
        try:
            with open(self.path) as f:
                names = json.load(f)["names"]
        except (OSError, ValueError, KeyError) as e:
            # The previous zone stays: a test renames whole files over this one.
            print("zone %s: %s" % (self.path, e), file=sys.stderr, flush=True)
            return
        self.names = {canonical(k): v for k, v in names.items()}
        self.stamp = stamp


def address_records(zone, name, qtype):
    """The A or AAAA records (RR) of name in the zone."""
    entry = zone.lookup(name)
    if entry is None:
        return []
    ttl = int(entry.get("ttl", DEFAULT_TTL))
    if qtype == QTYPE.A:
        return [RR(name, QTYPE.A, rdata=A(a), ttl=ttl) for a in entry.get("A", [])]
    return [RR(name, QTYPE.AAAA, rdata=AAAA(a), ttl=ttl) for a in entry.get("AAAA", [])]


def malformed_reply(request):
    """A header and the question as asked, then one record whose data is cut short."""
    q = request.q
    header = struct.pack("!HHHHHH", request.header.id, 0x8180, 1, 1, 0, 0)
    question = DNSRecord(q=q).pack()[12:]
    # A pointer to the question's name, the asked type, class IN, TTL 30, 4 bytes of
    # data announced, 2 sent.
    answer = struct.pack("!HHHIH", 0xC00C, q.qtype, 1, 30, 4) + b"\x7f\x00"
    return header + question + answer


def answer(zone, request):
    """(bytes to send or None, rcode label, number of answers) for one query."""
    q = request.q
    entry = zone.lookup(q.qname)
    reply = request.reply()
    if entry is None:
        reply.header.rcode = RCODE.NXDOMAIN
        return reply.pack(), "NXDOMAIN", 0
    if entry.get("drop"):
        return None, "DROP", 0
    if entry.get("malformed"):
        return malformed_reply(request), "MALFORMED", 0
    if "rcode" in entry:
        label = str(entry["rcode"]).upper()
        reply.header.rcode = getattr(RCODE, label)
        return reply.pack(), label, 0

    ttl = int(entry.get("ttl", DEFAULT_TTL))
    if q.qtype in (QTYPE.A, QTYPE.AAAA):
        for rr in address_records(zone, q.qname, q.qtype):
            reply.add_answer(rr)
    elif q.qtype == QTYPE.SRV:
        for priority, weight, port, target in entry.get("SRV", []):
            reply.add_answer(
                RR(q.qname, QTYPE.SRV, ttl=ttl,
                   rdata=SRV(priority=int(priority), weight=int(weight), port=int(port),
                             target=target)))
            for qtype in (QTYPE.A, QTYPE.AAAA):
                for rr in address_records(zone, target, qtype):
                    reply.add_ar(rr)
    return reply.pack(), "NOERROR", len(reply.rr)


class Handler(socketserver.BaseRequestHandler):
    """One query over UDP or TCP (TCP's messages carry a 2-byte length)."""

    def handle(self):
        tcp = self.server.socket_type == socket.SOCK_STREAM
        if tcp:
            data = self._read_tcp()
            if data is None:
                return
        else:
            data, sock = self.request
        try:
            request = DNSRecord.parse(data)
        except Exception as e:  # dnslib raises several kinds on bad input
            print("bad query: %s" % e, file=sys.stderr, flush=True)
            return
        out, label, count = answer(self.server.zone, request)
        print("query %s %s -> %s %d" % (request.q.qname, QTYPE.get(request.q.qtype),
                                        label, count), flush=True)
        if out is None:
            return
        if tcp:
            self.request.sendall(struct.pack("!H", len(out)) + out)
        else:
            sock.sendto(out, self.client_address)

    def _read_tcp(self):
        data = b""
        self.request.settimeout(5)
        while len(data) < 2 or len(data) - 2 < struct.unpack("!H", data[:2])[0]:
            chunk = self.request.recv(8192)
            if not chunk:
                return None
            data += chunk
        return data[2:]


def listen(zone):
    """UDP and TCP servers on one free port of 127.0.0.1."""
    for _ in range(20):
        udp = DNSServer(None, address="127.0.0.1", port=0, handler=Handler)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(None, address="127.0.0.1", port=port, tcp=True, handler=Handler)
        except OSError:
            udp.server.server_close()
            continue
        for s in (udp, tcp):
            s.server.zone = zone
        return udp, tcp, port
    raise SystemExit("dns_server.py: no port free for both UDP and TCP")


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    zone_path, port_path = argv[1], argv[2]
    zone = Zone(zone_path)
    zone.lookup(".")  # reads it once now, so that a broken file shows at once

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    udp, tcp, port = listen(zone)
    threads = [threading.Thread(target=s.server.serve_forever, kwargs={"poll_interval": 0.1},
                                daemon=True) for s in (udp, tcp)]
    for t in threads:
        t.start()
    tmp = port_path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, port_path)
    print("listening 127.0.0.1:%d" % port, flush=True)

    while not stop.wait(0.2):
        pass
    for s in (udp, tcp):
        s.server.shutdown()
        s.server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
