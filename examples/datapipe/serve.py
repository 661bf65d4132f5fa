"""A tiny HTTP server for the example dataset, with byte ranges and a live SHA256SUMS.

    python examples/datapipe/serve.py DIR [--port 8765]

Serves the files of DIR on 127.0.0.1. ``GET /SHA256SUMS`` is computed on each request over the
files of DIR (so regenerating an item updates it). ``Range: bytes=a-b`` / ``bytes=a-`` requests
get ``206 Partial Content`` (SimpleHTTPRequestHandler alone ignores Range).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import threading
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def sha256sums(root: Path) -> bytes:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}"
             for p in sorted(root.iterdir()) if p.is_file() and p.name != "SHA256SUMS"]
    return ("\n".join(lines) + "\n").encode()


class RangeHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send_bytes(self, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        root = Path(self.directory)
        name = self.path.split("?", 1)[0].lstrip("/")
        if name == "SHA256SUMS":
            return self._send_bytes(sha256sums(root))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return self.send_error(HTTPStatus.NOT_FOUND, "File not found")
        size = path.stat().st_size
        start, end = 0, size - 1
        status = HTTPStatus.OK
        header = self.headers.get("Range")
        if header:
            m = _RANGE.match(header.strip())
            if not m or (not m.group(1) and not m.group(2)):
                return self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(size - int(m.group(2)), 0)
            if start >= size or start > end:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as f:
            f.seek(start)
            remaining = length
            while remaining > 0:
                chunk = f.read(min(1 << 16, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


def make_server(directory: str | os.PathLike[str], port: int = 0) -> ThreadingHTTPServer:
    """A server on 127.0.0.1 (``port=0``: a free port, see ``server.server_port``)."""
    handler = partial(RangeHandler, directory=str(directory))
    return ThreadingHTTPServer(("127.0.0.1", port), handler)


def serve_in_thread(directory: str | os.PathLike[str], port: int = 0) -> ThreadingHTTPServer:
    server = make_server(directory, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory")
    ap.add_argument("--port", type=int, default=8765)
    a = ap.parse_args()
    server = make_server(a.directory, a.port)
    print(f"serving {a.directory} on http://127.0.0.1:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
