#!/usr/bin/python3
"""Both ends of a WebSocket for the integration tests (test_websocket.c), on
Debian's python3-websockets (RFC 6455, its own framing and checks).

  ws_peer.py server PORT [CERT KEY]
      A WebSocket server on 127.0.0.1:PORT (wss with CERT and KEY). Prints
      "listening PORT" once it accepts. Paths:
        /echo           every message back as it came (text or binary)
        /headers        one text message: the handshake's request headers, as
                        JSON lower-case name -> value, then echo
        /flood?bytes=N  N bytes of binary messages of 64 KiB as fast as the
                        peer takes them, then the text "done"
        /deny           refuses the handshake with 403 "denied\\n"
      Anything that is not a WebSocket handshake gets websockets' own 426.

  ws_peer.py client URL SCENARIO [--ca FILE] [--seconds S] [--bytes N]
      URL is ws://NAME:PORT or wss://NAME:PORT; the connection goes to 127.0.0.1
      whatever NAME is (it is the SNI name and Host).
      SCENARIO, each printing "ok ..." and exiting 0 when every check holds:
        frames   text and binary messages of 0, 125, 126, 65536 bytes and 4 MiB
                 echoed byte for byte, a ping answered by a pong, close code 1000
        many     20 sockets at once, 50 messages each, every echo checked
        headers  prints "ok " and the JSON /headers sends
        slow     reads /flood?bytes=N (default 16 MiB) slowly (64 KiB, then 5 ms),
                 checking the count and "done"
        idle     one echo, then waits for the proxy to close the connection:
                 prints "ok closed after MS ms"
        hold     an echo every 100 ms for S seconds (default 3), printing "open"
                 first; "ok echoed N" after a clean close, "closed after N" (exit
                 3) when the connection ends first
Exits 1 with a line on stderr when a check fails.
"""
import asyncio
import http
import json
import os
import ssl
import sys
import time
import urllib.parse

import websockets

MiB = 1024 * 1024


def fail(msg):
    print("ws_peer: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


# ---- server -----------------------------------------------------------------

async def handler(ws, path):
    url = urllib.parse.urlsplit(path)
    if url.path == "/headers":
        await ws.send(json.dumps({k.lower(): v for k, v in ws.request_headers.raw_items()}))
    if url.path == "/flood":
        n = int(urllib.parse.parse_qs(url.query).get("bytes", ["0"])[0])
        chunk = bytes(i * 131 + 7 & 0xFF for i in range(64 * 1024))
        while n > 0:
            await ws.send(chunk[: min(n, len(chunk))])
            n -= len(chunk)
        await ws.send("done")
    async for msg in ws:
        await ws.send(msg)


async def process_request(path, headers):
    if path.startswith("/deny"):
        return http.HTTPStatus.FORBIDDEN, [("Content-Type", "text/plain")], b"denied\n"
    return None


async def serve(argv):
    port = int(argv[0])
    ctx = None
    if len(argv) >= 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(argv[1], argv[2])
    async with websockets.serve(handler, "127.0.0.1", port, ssl=ctx, max_size=8 * MiB,
                                process_request=process_request, compression=None):
        print("listening %d" % port, flush=True)
        await asyncio.Future()


# ---- client -----------------------------------------------------------------

def client_ssl(url, opts):
    if not url.startswith("wss:"):
        return None
    ctx = ssl.create_default_context(cafile=opts.get("--ca"))
    return ctx


def connect(url, opts, **kw):
    # Always to 127.0.0.1: the URL's host is the name (SNI, Host) only.
    ctx = client_ssl(url, opts)
    if ctx is not None:
        kw["server_hostname"] = urllib.parse.urlsplit(url).hostname
    return websockets.connect(url, ssl=ctx, host="127.0.0.1",
                              port=urllib.parse.urlsplit(url).port, max_size=8 * MiB,
                              compression=None, open_timeout=10, close_timeout=5, **kw)


async def frames(url, opts):
    async with connect(url + "/echo", opts) as ws:
        for size in (0, 125, 126, 65536, 4 * MiB):
            text = ("x" * size)
            data = os.urandom(size)
            for msg in (text, data):
                await ws.send(msg)
                back = await asyncio.wait_for(ws.recv(), 10)
                if type(back) is not type(msg) or back != msg:
                    fail("a %s message of %d bytes came back as %s of %d"
                         % (type(msg).__name__, size, type(back).__name__, len(back)))
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        await ws.close(code=1000, reason="done")
        if ws.close_code != 1000:
            fail("close code %r, not 1000" % ws.close_code)
    print("ok frames", flush=True)


async def one_of_many(url, opts, k):
    async with connect(url + "/echo", opts) as ws:
        for i in range(50):
            msg = "socket %d message %d " % (k, i) + "y" * (i * 37)
            await ws.send(msg)
            back = await asyncio.wait_for(ws.recv(), 10)
            if back != msg:
                fail("socket %d: message %d came back changed" % (k, i))
        await ws.close(code=1000)
    return 50


async def many(url, opts):
    counts = await asyncio.gather(*(one_of_many(url, opts, k) for k in range(20)))
    print("ok many %d" % sum(counts), flush=True)


async def headers(url, opts):
    async with connect(url + "/headers", opts) as ws:
        print("ok " + await asyncio.wait_for(ws.recv(), 10), flush=True)
        await ws.close(code=1000)


async def slow(url, opts):
    want = int(opts.get("--bytes", 16 * MiB))
    got = 0
    async with connect(url + "/flood?bytes=%d" % want, opts, max_queue=1,
                       read_limit=64 * 1024, write_limit=64 * 1024) as ws:
        while True:
            msg = await asyncio.wait_for(ws.recv(), 20)
            if isinstance(msg, str):
                if msg != "done":
                    fail("unexpected text %r" % msg)
                break
            got += len(msg)
            await asyncio.sleep(0.005)
        await ws.close(code=1000)
    if got != want:
        fail("got %d bytes of %d" % (got, want))
    print("ok slow %d" % got, flush=True)


async def idle(url, opts):
    async with connect(url + "/echo", opts, ping_interval=None) as ws:
        await ws.send("hello")
        if await asyncio.wait_for(ws.recv(), 10) != "hello":
            fail("no echo")
        start = time.monotonic()
        try:
            await asyncio.wait_for(ws.recv(), 30)
            fail("a message on an idle tunnel")
        except websockets.ConnectionClosed:
            pass
        print("ok closed after %d ms" % ((time.monotonic() - start) * 1000), flush=True)


async def hold(url, opts):
    seconds = float(opts.get("--seconds", 3))
    n = 0
    async with connect(url + "/echo", opts, ping_interval=None) as ws:
        print("open", flush=True)
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                await ws.send("tick %d" % n)
                if await asyncio.wait_for(ws.recv(), 10) != "tick %d" % n:
                    fail("echo %d changed" % n)
                n += 1
                await asyncio.sleep(0.1)
        except websockets.ConnectionClosed:
            print("closed after %d" % n, flush=True)
            sys.exit(3)
        await ws.close(code=1000)
    print("ok echoed %d" % n, flush=True)


SCENARIOS = {"frames": frames, "many": many, "headers": headers, "slow": slow, "idle": idle,
             "hold": hold}


def main(argv):
    if len(argv) >= 2 and argv[1] == "server":
        asyncio.run(serve(argv[2:]))
        return
    if len(argv) < 4 or argv[1] != "client" or argv[3] not in SCENARIOS:
        fail(__doc__)
    opts = dict(zip(argv[4::2], argv[5::2]))
    try:
        asyncio.run(SCENARIOS[argv[3]](argv[2], opts))
    except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
        fail("%s: %s: %r" % (argv[3], argv[2], e))


if __name__ == "__main__":
    main(sys.argv)
