#!/usr/bin/env python3
"""An HTTPS backend for the integration tests (test_tls.c), on Python's ssl
module and http.server: HTTP/1.1 with keep-alive over TLS 1.2 or 1.3.

  tls_backend.py PORT CERT KEY

Prints "listening PORT" once it accepts. Every response is 200 with the body
"tls-backend\n" and the headers
  X-SNI:            the name the client sent as SNI ("-" for none)
  X-Connection:     the number of this TCP connection (1, 2, ...)
  X-Session-Reused: "yes" when the TLS session was resumed, else "no"
Runs until it is killed.
"""
import http.server
import itertools
import ssl
import sys

connections = itertools.count(1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.number = next(connections)

    def do_GET(self):
        body = b"tls-backend\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-SNI", getattr(self.connection, "sni", None) or "-")
        self.send_header("X-Connection", str(self.number))
        self.send_header("X-Session-Reused", "yes" if self.connection.session_reused else "no")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def main(argv):
    port, cert, key = int(argv[1]), argv[2], argv[3]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def remember_sni(sock, name, _ctx):
        sock.sni = name

    ctx.sni_callback = remember_sni
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                    do_handshake_on_connect=False)
    print("listening %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
