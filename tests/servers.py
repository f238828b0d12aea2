"""A local HTTP server on 127.0.0.1 for download tests: it serves files, honours Range, and misbehaves per file
on request (the tests never reach the network)."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server:
    """An HTTP server on 127.0.0.1 that serves ``files`` and misbehaves per file as ``behaviour`` says. Every
    handler ends by itself (a stop event, a size or time cap, the client leaving). ``sent`` counts the body bytes
    written per file, so a test can tell a client that hung up by itself from one that read to the server's end."""

    ENDLESS_CAP = 64 << 20  # what "endless" sends at most: far beyond any limit a test sets

    def __init__(self, files: dict[str, bytes], behaviour: dict[str, str] | None = None):
        self.files, self.behaviour, self.requests = dict(files), dict(behaviour or {}), []
        self.sent: dict[str, int] = {}
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                data = server.files.get(name)
                how = server.behaviour.get(name, "normal")
                if data is None and how == "normal":
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    getattr(server, f"_{how}")(self, data or b"", start, rng)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/dogs/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def _normal(h, data, start, rng):
        Server._range_headers(h, data, start, rng)
        h.wfile.write(data[start:])

    @staticmethod
    def _range_headers(h, data, start, rng):
        h.send_response(206 if rng else 200)
        if rng:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()

    def _endless(self, h, data, start, rng):  # no Content-Length, never ends on its own (a 64 MB cap)
        h.send_response(200)
        h.end_headers()
        chunk, name = b"\0" * (1 << 16), h.path.rsplit("/", 1)[-1]
        self.sent[name] = 0
        while not self.stop.is_set() and self.sent[name] < self.ENDLESS_CAP:
            h.wfile.write(chunk)
            self.sent[name] += len(chunk)

    @staticmethod
    def _liar(h, data, start, rng):  # announces a terabyte
        h.send_response(200)
        h.send_header("Content-Length", str(10**12))
        h.end_headers()
        h.wfile.write(b"\0" * 1024)

    def _drip(self, h, data, start, rng):  # one byte every 0.2 s
        self._trickle(h, data, every=0.2)

    def _silent(self, h, data, start, rng):  # headers, then one byte every 20 s
        self._trickle(h, data, every=20)

    def _trickle(self, h, data, every: float):
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        for i in range(len(data)):
            if self.stop.wait(every):
                return
            h.wfile.write(data[i : i + 1])

    def _header_drip(self, h, data, start, rng):  # the headers never end (a 60 s cap)
        h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        until = time.monotonic() + 60
        while not self.stop.wait(0.2) and time.monotonic() < until:
            h.wfile.write(b"x")

    def _half_then_hold(self, h, data, start, rng):  # the first half at once, then nothing until the server stops
        self._range_headers(h, data, start, rng)
        h.wfile.write(data[start : start + (len(data) - start) // 2])
        h.wfile.flush()
        self.stop.wait()

    @staticmethod
    def _wrong_offset(h, data, start, rng):  # 206 whatever was asked, always from byte 0
        h.send_response(206 if rng else 200)
        if rng:
            h.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _no_content_range(h, data, start, rng):  # 206 without saying which bytes
        h.send_response(206 if rng else 200)
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        h.wfile.write(data[start:] if rng else data)

    @staticmethod
    def _ignores_range(h, data, start, rng):  # a plain 200 whatever was asked
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _cut_once(self, h, data, start, rng):  # the first response drops half way; later ones are normal
        self.behaviour[h.path.rsplit("/", 1)[-1]] = "normal"
        self._range_headers(h, data, start, rng)
        h.wfile.write(data[start : start + (len(data) - start) // 2])

    @staticmethod
    def _to_file(h, data, start, rng):  # redirects to a local file
        h.send_response(302)
        h.send_header("Location", "file:///etc/passwd")
        h.send_header("Content-Length", "0")
        h.end_headers()
