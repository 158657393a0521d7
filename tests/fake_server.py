"""A tiny HTTP file server on 127.0.0.1 for download tests, with switches for the failures downloads meet.

    with FakeServer(folder) as server:
        url = server.url("data.zip")
        server.cut_after = 100     # send the full Content-Length, then close after 100 bytes of body
        server.send_length = False # no Content-Length: the body ends when the connection closes, so a cut
                                   # body looks complete to the client (a truncated download nobody notices)
        server.ignore_range = True # answer Range requests with 200 and the whole file
        server.delay = 2.0         # wait this long before answering (timeouts)
        server.requests            # [(path, Range header or None), ...] of every request received
"""

from __future__ import annotations

import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FakeServer:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.cut_after: int | None = None
        self.send_length = True
        self.ignore_range = False
        self.delay = 0.0
        self.requests: list[tuple[str, str | None]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def closed_port_url(name: str = "data.zip") -> str:
    """A loopback URL nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def _handler_for(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            """Silenced: keeps pytest's output clean."""

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            server.requests.append((self.path, range_header))
            time.sleep(server.delay)
            path = server.folder / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404, "Not Found")
                return
            body = path.read_bytes()
            start, status = 0, 200
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            if match and not server.ignore_range:
                start = int(match.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            payload = body[start:]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            if server.send_length:
                self.send_header("Content-Length", str(len(payload)))
            else:
                self.close_connection = True
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            if server.cut_after is not None:
                payload = payload[:server.cut_after]
                self.close_connection = True
            self.wfile.write(payload)
            self.wfile.flush()

    return Handler
