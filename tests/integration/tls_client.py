#!/usr/bin/env python3
"""A TLS client for the integration tests (test_tls.c), on Python's ssl module
(OpenSSL underneath, as every real client has it).

  tls_client.py fingerprint FILE
      the SHA-256 fingerprint of the first certificate in a PEM file
  tls_client.py get PORT NAME CA [PATH]
      one connection with SNI NAME, verified against CA: GET PATH; prints
      "status=N cert=FINGERPRINT alpn=PROTO version=TLSvX"
  tls_client.py resume PORT NAME CA [GATE]
      two connections one after the other, the second resuming the first's
      session: "first reused=no second reused=yes|no version=TLSvX"; with
      GATE, "first done" comes between them, and the second waits (20 s at
      most) until the file GATE exists
  tls_client.py bulk PORT NAME CA
      against the demo backend, on one keep-alive connection: five pipelined
      GETs in one write, a 1 MiB POST /sum whose length and FNV-1a the backend
      confirms, and GET /bytes?n=3000000 checked byte for byte; prints
      "bulk ok" (or fails with the reason)
  tls_client.py hold PORT NAME CA GATE
      one connection: a request, a line "first status=N cert=F" on stdout, then
      waits (20 s at most) until the file GATE exists, and sends a second
      request on the same connection: "second status=N cert=F"

Exit status 0 when every request got a response, 1 otherwise (with the reason
on stderr).
"""
import hashlib
import os
import socket
import ssl
import sys
import time


def fingerprint_der(der):
    return hashlib.sha256(der).hexdigest()


def fingerprint_file(path):
    with open(path) as f:
        text = f.read()
    start = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    return fingerprint_der(ssl.PEM_cert_to_DER_cert(text[start:end]))


def connect(port, name, ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=name)


def request(conn, name, path):
    """Sends GET path and reads one response; returns its status."""
    conn.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, name)).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed in the body")
        body += chunk
    return status


def read_response(conn, buf):
    """Reads one Content-Length response from conn after what buf holds; returns
    (status, body, the rest of buf)."""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before a response head")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            length = int(value.strip())
    while len(buf) < length:
        chunk = conn.recv(1 << 20)
        if not chunk:
            raise RuntimeError("connection closed in a body")
        buf += chunk
    return int(lines[0].split()[1]), buf[:length], buf[length:]


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def bulk(port, name, ca):
    conn = connect(port, name, ca)
    host = "Host: %s\r\n" % name
    conn.sendall("".join("GET /p%d HTTP/1.1\r\n%s\r\n" % (i, host) for i in range(5)).encode())
    buf = b""
    for i in range(5):
        status, _, buf = read_response(conn, buf)
        if status != 200:
            raise RuntimeError("pipelined GET %d: status %d" % (i, status))
    body = os.urandom(1 << 20)
    conn.sendall(("POST /sum HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (host, len(body))).encode()
                 + body)
    status, answer, buf = read_response(conn, buf)
    want = "len=%d fnv=%016x\n" % (len(body), fnv1a64(body))
    if status != 200 or answer.decode() != want:
        raise RuntimeError("POST /sum: %d %r, expected %r" % (status, answer, want))
    n = 3000000
    conn.sendall(("GET /bytes?n=%d HTTP/1.1\r\n%s\r\n" % (n, host)).encode())
    status, data, buf = read_response(conn, buf)
    pattern = bytes(((j * 131 + 7) & 0xFF) for j in range(256))
    expect = (pattern * (n // 256 + 1))[:n]
    if status != 200 or data != expect:
        raise RuntimeError("GET /bytes: status %d, %d bytes, %s" % (
            status, len(data), "intact" if data == expect else "not the pattern"))
    conn.close()
    print("bulk ok")


def wait_for(gate):
    deadline = time.monotonic() + 20
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise RuntimeError("the gate file never appeared")
        time.sleep(0.02)


def main(argv):
    if len(argv) >= 3 and argv[1] == "fingerprint":
        print(fingerprint_file(argv[2]))
        return 0
    if len(argv) >= 5 and argv[1] == "get":
        conn = connect(argv[2], argv[3], argv[4])
        status = request(conn, argv[3], argv[5] if len(argv) > 5 else "/")
        print("status=%d cert=%s alpn=%s version=%s" % (
            status, fingerprint_der(conn.getpeercert(binary_form=True)),
            conn.selected_alpn_protocol(), conn.version()))
        conn.close()
        return 0
    if len(argv) == 5 and argv[1] == "bulk":
        bulk(argv[2], argv[3], argv[4])
        return 0
    if len(argv) in (5, 6) and argv[1] == "resume":
        port, name, ca = argv[2:5]
        ctx = ssl.create_default_context(cafile=ca)
        first = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=10),
                                server_hostname=name)
        request(first, name, "/")  # a TLS 1.3 ticket comes after the handshake
        session = first.session
        reused_first = first.session_reused
        first.close()
        if len(argv) == 6:
            print("first done", flush=True)
            wait_for(argv[5])
        second = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=10),
                                 server_hostname=name, session=session)
        status = request(second, name, "/")
        print("first reused=%s second reused=%s version=%s status=%d" % (
            "yes" if reused_first else "no", "yes" if second.session_reused else "no",
            second.version(), status))
        second.close()
        return 0
    if len(argv) == 6 and argv[1] == "hold":
        port, name, ca, gate = argv[2:6]
        conn = connect(port, name, ca)
        cert = fingerprint_der(conn.getpeercert(binary_form=True))
        print("first status=%d cert=%s" % (request(conn, name, "/"), cert), flush=True)
        wait_for(gate)
        status = request(conn, name, "/")
        print("second status=%d cert=%s" % (
            status, fingerprint_der(conn.getpeercert(binary_form=True))), flush=True)
        conn.close()
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, RuntimeError, ValueError) as e:
        sys.stderr.write("tls_client.py: %s\n" % e)
        sys.exit(1)
