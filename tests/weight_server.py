"""A real HTTP server on 127.0.0.1 for download tests: serves files by name, with Range.

Per-file behaviours imitate what goes wrong on real networks: a transfer cut in the middle,
a stall, a 404, corrupted bytes, a server that ignores Range, a 503 before success, and
Google Drive's two-step "can't scan this file for viruses" page. Every request is logged.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Served:
    """How one file name is served. ``mode`` is one of: ok, cut, stall, 404, corrupt,
    norange, flaky (503 ``times`` times), slow, page (an HTML page), drive-form, drive-cookie."""

    data: bytes
    mode: str = "ok"
    cut_at: int = 0          # cut: bytes sent before the connection drops (first request only)
    times: int = 1           # flaky: how many 503 answers first
    delay: float = 0.0       # slow: seconds between 64 kB chunks
    hits: int = 0            # requests that received (part of) the file body
    state: dict = field(default_factory=dict)


class WeightServer:
    """``with WeightServer() as srv: srv.add("a.pth", data); srv.url("a.pth")``."""

    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        self.log: list[dict] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> WeightServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        return f"{self.base}/files/{name}"

    def add(self, name: str, data: bytes, mode: str = "ok", **kw: object) -> Served:
        served = Served(data, mode, **kw)  # type: ignore[arg-type]
        self.files[name] = served
        return served

    def requests_for(self, name: str) -> list[dict]:
        return [r for r in self.log if r["name"] == name]


def _handler(server: WeightServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query))
            name = query.get("id") or parts.path.rsplit("/", 1)[-1]
            entry = {"path": self.path, "name": name, "range": self.headers.get("Range"),
                     "cookie": self.headers.get("Cookie"), "query": query,
                     "host": self.headers.get("Host")}
            server.log.append(entry)
            served = server.files.get(name)
            if served is None or served.mode == "404":
                return self._plain(404, b"not found")
            if served.mode == "flaky" and served.state.get("failed", 0) < served.times:
                served.state["failed"] = served.state.get("failed", 0) + 1
                return self._plain(503, b"busy")
            if served.mode == "page":  # e.g. a quota or sign-in page instead of the file
                return self._plain(200, served.data, {"X-Kind": "page"}, kind="text/html")
            if served.mode in ("drive-form", "drive-cookie") and not self._confirmed(served, query):
                return self._drive_warning(served, name)
            self._send_file(served)

        def _plain(self, code: int, body: bytes, headers: dict | None = None,
                   kind: str = "text/plain") -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _confirmed(self, served: Served, query: dict) -> bool:
            if served.mode == "drive-form":
                return query.get("confirm") == "t" and query.get("uuid") == "u-123"
            return query.get("confirm") == "TOKEN42" and "download_warning_1=TOKEN42" in (
                self.headers.get("Cookie") or "")

        def _drive_warning(self, served: Served, name: str) -> None:
            headers = {}
            if served.mode == "drive-form":
                page = (
                    "<html><body><p>Google Drive can't scan this file for viruses.</p>"
                    f'<form id="download-form" action="{server.base}/download" method="get">'
                    '<input type="submit" value="Download anyway"/>'
                    f'<input type="hidden" name="id" value="{name}">'
                    '<input type="hidden" name="export" value="download">'
                    '<input type="hidden" name="confirm" value="t">'
                    '<input type="hidden" name="uuid" value="u-123"></form></body></html>'
                )
            else:
                headers["Set-Cookie"] = "download_warning_1=TOKEN42; Path=/"
                page = "<html><body>Virus scan warning</body></html>"
            body = page.encode()
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_file(self, served: Served) -> None:
            data = served.data
            if served.mode == "corrupt":
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            start = 0
            m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
            if m and served.mode != "norange":
                start = int(m.group(1))
                if start >= len(data):
                    return self._plain(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            with server._lock:
                served.hits += 1
                first = served.hits == 1
            body = memoryview(data)[start:]
            if served.mode == "cut" and first:
                self.wfile.write(body[: served.cut_at])
                self.wfile.flush()
                self.close_connection = True
                return
            if served.mode == "stall":
                self.wfile.write(body[:1000])
                self.wfile.flush()
                server.stop.wait(30)
                self.close_connection = True
                return
            step = 1 << 16
            for i in range(0, len(body), step):
                try:
                    self.wfile.write(body[i:i + step])
                except (BrokenPipeError, ConnectionResetError):
                    return
                if served.mode == "slow":
                    time.sleep(served.delay)

    return Handler
