#!/usr/bin/python3 -u
"""The upstream server of the proxy conformance tests (Tests/IntegrationTests/ProxyConformanceTests.swift).

Python's standard library only, and HTTP/1.1 spoken by hand: every byte of a request head is seen
as it arrived, and every byte of a response is the one written here, including what a careless
server sends (chunked to an HTTP/1.0 client, Latin-1 in a header value).

safe-watch runs it as a generation's binary: it listens on 127.0.0.1:$PORT and knows its
generation from its staged path (.safe-watch/generations/N/). Run by hand, it is generation 0.

Paths (query parameters in brackets):
  /health                     200 "ok" (safe-watch's health check)
  /gen                        "gen N"
  /echo-path [id, delay_ms]   the id, after delay_ms
  /echo-head                  the request head exactly as received, as the body; the response also
                              carries X-Obs-Text, a header value with bytes 0xE9, 0x80, 0xA0, 0xFF
  /upload                     reads the body (Content-Length or chunked), answers
                              "bytes=N sha256=HEX"; sends 100 Continue first if asked
  /reject-upload              413 at once, without reading the body, then closes
  /download [bytes]           the test pattern (see pattern_block), with Content-Length; HEAD: head only
  /chunked                    a chunked body, even to an HTTP/1.0 client (a non-compliant server)
  /plain                      a Content-Length body
  /close-delimited            a body ended by closing the connection
  /status [code]              204, or 304 with a Content-Length and no body
  /trailers                   a chunked body with a trailer field
  /set-cookies                two Set-Cookie fields
  /post-drop                  reads 64 KiB of the body, then resets the connection without answering
  /count [path]               how many requests for path this process has seen
  /close-listener             answers, then stops listening (new connections are refused)
  /slow-stream [chunks, interval_ms]   chunks of "gen N event I", one every interval_ms
  Upgrade: echo               101, then each line sent comes back as "gen N: line"

Lines on stdout (safe-watch shows them as "[gen N] ..."): "conformance server gen N listening on
127.0.0.1:PORT" once serving, "conformance server gen N got SIGTERM" on SIGTERM, after which it
exits at once (a download or tunnel it still held would break: the tests see a stop too early).
CONFORMANCE_STARTUP_DELAY (seconds) delays listening for generations after the first.
"""

import gzip
import hashlib
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

_staged = re.search(r"/generations/(\d+)/", os.path.abspath(sys.argv[0]))
GEN = int(_staged.group(1)) if _staged else 0
BLOCK = 65536
BASE = bytes(range(256)) * (BLOCK // 256)
OBS_TEXT = b"caf\xe9 \x80\xa0\xff end"

counts = {}
counts_lock = threading.Lock()
listener = None


def pattern_block(index, length=BLOCK):
    """Block `index` of the test pattern: bytes 0..255 repeated, the first 8 the block's index
    (big-endian), so a lost, repeated or reordered block changes the SHA-256."""
    return (struct.pack(">Q", index) + BASE[8:])[:length]


def say(text):
    print(text, flush=True)


class Request:
    def __init__(self, head):
        self.head = bytes(head)
        lines = self.head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise ValueError("bad request line")
        self.method, self.target, self.version = (p.decode("latin-1") for p in parts)
        self.headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(b":")
            self.headers.append((name.strip().lower().decode("latin-1"), value.strip(b" \t")))
        split = urlsplit(self.target)
        self.path = split.path
        self.query = {k: v[0] for k, v in parse_qs(split.query).items()}

    def header(self, name):
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def has_token(self, name, token):
        value = self.header(name)
        return value is not None and token in [t.strip() for t in value.lower().split(b",")]

    @property
    def keep_alive(self):
        if self.version == "HTTP/1.1":
            return not self.has_token("connection", b"close")
        return self.has_token("connection", b"keep-alive")


def read_request(rfile):
    line = rfile.readline(1 << 20)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(1 << 20)
    if not line:
        return None
    head = bytearray(line)
    while True:
        line = rfile.readline(1 << 20)
        if not line:
            raise EOFError("connection closed inside a request head")
        head += line
        if line in (b"\r\n", b"\n"):
            return Request(head)
        if len(head) > (4 << 20):
            raise ValueError("request head over 4 MiB")


def body_pieces(request, rfile):
    """The request body as it arrives, de-chunked."""
    if request.has_token("transfer-encoding", b"chunked"):
        while True:
            size = int(rfile.readline(4096).split(b";")[0].strip(), 16)
            if size == 0:
                while rfile.readline(1 << 16) not in (b"\r\n", b"\n", b""):
                    pass
                return
            left = size
            while left:
                data = rfile.read(min(left, BLOCK))
                if not data:
                    raise EOFError("connection closed inside a chunk")
                yield data
                left -= len(data)
            rfile.readline(4096)
    else:
        left = int(request.header("content-length") or b"0")
        while left:
            data = rfile.read(min(left, BLOCK))
            if not data:
                raise EOFError("connection closed inside a body")
            yield data
            left -= len(data)


def response(status, headers=(), body=b"", length=True):
    head = b"HTTP/1.1 " + status.encode() + b"\r\n"
    for name, value in headers:
        head += name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
    if length:
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    return head + b"\r\n" + body


def chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"


def handle(request, sock, rfile):
    """Answers one request; returns whether the connection stays open."""
    keep = request.keep_alive
    closing = [] if keep else [("Connection", "close")]
    path, query = request.path, request.query

    if request.has_token("connection", b"upgrade") and (request.header("upgrade") or b"").lower() == b"echo":
        sock.sendall(response("101 Switching Protocols", [("Upgrade", "echo"), ("Connection", "Upgrade")], length=False))
        for line in rfile:
            sock.sendall(b"gen %d: " % GEN + line)
        return False

    if request.has_token("expect", b"100-continue") and request.version == "HTTP/1.1" and path != "/reject-upload":
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    if path == "/upload":
        digest, size = hashlib.sha256(), 0
        for piece in body_pieces(request, rfile):
            digest.update(piece)
            size += len(piece)
        sock.sendall(response("200 OK", closing, b"bytes=%d sha256=%s\n" % (size, digest.hexdigest().encode())))
        return keep
    if path == "/reject-upload":
        sock.sendall(response("413 Content Too Large", [("Connection", "close")], b"too large\n"))
        sock.shutdown(socket.SHUT_WR)
        return False
    if path == "/post-drop":
        rfile.read(BLOCK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    # Everything else has no request body worth keeping.
    for _ in body_pieces(request, rfile):
        pass
    if path == "/health":
        sock.sendall(response("200 OK", closing, b"ok\n"))
    elif path == "/gen":
        sock.sendall(response("200 OK", closing, b"gen %d" % GEN))
    elif path == "/echo-path":
        time.sleep(int(query.get("delay_ms", "0")) / 1000)
        sock.sendall(response("200 OK", closing, query.get("id", "").encode()))
    elif path == "/echo-head":
        headers = [("Content-Type", "application/octet-stream"), ("X-Obs-Text", OBS_TEXT)] + closing
        sock.sendall(response("200 OK", headers, request.head))
    elif path == "/download":
        size = int(query.get("bytes", "0"))
        sock.sendall(response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))] + closing, length=False))
        if request.method != "HEAD":
            index = 0
            while index * BLOCK < size:
                sock.sendall(pattern_block(index, min(BLOCK, size - index * BLOCK)))
                index += 1
    elif path == "/chunked":
        sock.sendall(response("200 OK", [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")] + closing, length=False))
        sock.sendall(chunk(b"hello ") + chunk(b"chunked ") + chunk(b"world") + b"0\r\n\r\n")
    elif path == "/plain":
        sock.sendall(response("200 OK", [("Content-Type", "text/plain")] + closing, b"hello plain world"))
    elif path == "/close-delimited":
        sock.sendall(response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")], b"hello close-delimited world", length=False))
        return False
    elif path == "/status":
        if query.get("code") == "304":
            sock.sendall(response("304 Not Modified", [("ETag", '"v1"'), ("Content-Length", "1234")] + closing, length=False))
        else:
            sock.sendall(response("204 No Content", closing, length=False))
    elif path == "/trailers":
        headers = [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked"), ("Trailer", "X-Checksum")] + closing
        sock.sendall(response("200 OK", headers, length=False))
        sock.sendall(chunk(b"with ") + chunk(b"trailers") + b"0\r\nX-Checksum: 7f3a\r\n\r\n")
    elif path == "/set-cookies":
        headers = [("Set-Cookie", "a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT"), ("Set-Cookie", "b=2; Path=/")] + closing
        sock.sendall(response("200 OK", headers, b"two cookies"))
    elif path == "/count":
        with counts_lock:
            seen = counts.get(query.get("path", ""), 0)
        sock.sendall(response("200 OK", closing, str(seen).encode()))
    elif path == "/close-listener":
        sock.sendall(response("200 OK", [("Connection", "close")], b"closing the listener"))
        # shutdown wakes the accept() blocked on it; from here on connections are refused.
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        say("conformance server gen %d stopped listening" % GEN)
        return False
    elif path.startswith("/html"):
        # Pages for the browser side: a full document (to get the live-reload script), a fragment
        # (to be left alone), compressed, with a policy, chunked with `</body>` split across chunks,
        # delimited by the close.
        link = b'<link rel="stylesheet" href="/site.css">' if query.get("stylesheet") else b""
        page = b"<!doctype html><html><head><title>gen %d</title>%s</head><body><p>gen %d page</p></body></html>\n" % (GEN, link, GEN)
        headers = [("Content-Type", "text/html; charset=utf-8"), ("ETag", '"page-%d"' % GEN)]
        if query.get("policy"):
            headers.append(("Content-Security-Policy", query["policy"]))
        if query.get("pad"):
            # A page too big to hold for the script: filler in a comment before `</body>`.
            page = page.replace(b"<p>", b"<!--" + b"x" * int(query["pad"]) + b"--><p>", 1)
        if path == "/html-fragment":
            page = b"<li>gen %d row</li>" % GEN
        if path == "/html-gzip":
            headers.append(("Content-Encoding", "gzip"))
            page = gzip.compress(page)
        if query.get("code") == "304":
            sock.sendall(response("304 Not Modified", [("ETag", '"page-1"'), ("Content-Length", "1234")] + closing, length=False))
        elif path == "/html-chunked":
            sock.sendall(response("200 OK", headers + [("Transfer-Encoding", "chunked")] + closing, length=False))
            if request.method != "HEAD":
                cut = page.index(b"</bo") + 2
                for start in range(0, cut, 1 << 20):
                    sock.sendall(chunk(page[start:min(cut, start + (1 << 20))]))
                sock.sendall(chunk(page[cut:]) + b"0\r\n\r\n")
        elif path == "/html-close":
            sock.sendall(response("200 OK", headers + [("Connection", "close")], page if request.method != "HEAD" else b"", length=False))
            return False
        else:
            head = response("200 OK", headers + closing, page)
            sock.sendall(head[: len(head) - len(page)] if request.method == "HEAD" else head)
    elif path.endswith(".css") and ".." not in path:
        # The project's Public/ directory, as Vapor's FileMiddleware serves it.
        try:
            with open(os.path.join("Public", path.lstrip("/")), "rb") as file:
                sock.sendall(response("200 OK", [("Content-Type", "text/css"), ("Cache-Control", "no-cache")] + closing, file.read()))
        except OSError:
            sock.sendall(response("404 Not Found", closing, b"no such file\n"))
    elif path == "/slow-stream":
        sock.sendall(response("200 OK", [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")] + closing, length=False))
        for index in range(int(query.get("chunks", "10"))):
            sock.sendall(chunk(b"gen %d event %d\n" % (GEN, index)))
            time.sleep(int(query.get("interval_ms", "100")) / 1000)
        sock.sendall(b"0\r\n\r\n")
    else:
        sock.sendall(response("404 Not Found", closing, b"no such path\n"))
    return keep


def serve(sock):
    rfile = sock.makefile("rb", buffering=BLOCK)
    try:
        while True:
            request = read_request(rfile)
            if request is None:
                return
            with counts_lock:
                counts[request.path] = counts.get(request.path, 0) + 1
            if not handle(request, sock, rfile):
                return
    except (OSError, EOFError, ValueError):
        pass
    finally:
        rfile.close()
        sock.close()


def stop(_signal, _frame):
    say("conformance server gen %d got SIGTERM" % GEN)
    os._exit(0)


def main():
    global listener
    signal.signal(signal.SIGTERM, stop)
    port = int(os.environ["PORT"])
    if GEN > 1:
        time.sleep(float(os.environ.get("CONFORMANCE_STARTUP_DELAY", "0")))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(256)
    say("conformance server gen %d listening on 127.0.0.1:%d" % (GEN, port))
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            break  # /close-listener
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(connection,), daemon=True).start()
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
