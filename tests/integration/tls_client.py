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
