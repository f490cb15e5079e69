"""A pass-through HTTP proxy that counts what it serves: put one in front of a storage server to see which
requests and how many body bytes each client got from it. nanio's access log names neither Range headers nor
byte counts, so tests that assert the bytes fetched per mirror look here.

Requests are forwarded unchanged, Host header included, so a SigV4 URL presigned for the proxy's address
verifies upstream (the endpoint a storage client is given is the proxy's URL)."""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


@dataclass
class Served:
    method: str
    path: str  # unquoted, without the query string
    range: str | None
    status: int
    sent: int  # body bytes written to the client


class CountingProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1", upstream_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.lock = threading.Lock()
        self.served: list[Served] = []
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> CountingProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.served.clear()

    def gets(self, contains: str) -> list[Served]:
        """The GETs whose path contains `contains`, in order."""
        with self.lock:
            return [s for s in self.served if s.method == "GET" and contains in s.path]

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = None if response.getheader("Content-Length") else response.read()
                    self.send_response_only(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                            self.send_header(name, value)
                    size = len(payload) if payload is not None else int(response.getheader("Content-Length"))
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    sent = 0
                    try:
                        if self.command != "HEAD":
                            while chunk := (payload[sent:] if payload is not None else response.read(64 * 1024)):
                                self.wfile.write(chunk)
                                sent += len(chunk)
                                if payload is not None:
                                    break
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True
                    record = Served(
                        self.command,
                        unquote(urlsplit(self.path).path),
                        self.headers.get("Range"),
                        response.status,
                        sent,
                    )
                    with proxy.lock:
                        proxy.served.append(record)
                finally:
                    upstream.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward

        return Handler
