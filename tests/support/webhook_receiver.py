"""A webhook receiver in its own process: verifies every request with the standardwebhooks library, answers
500 to the first --fail requests (or --status to every one), and appends what it saw to --log as JSON lines.
With --hold FILE it logs each request as it arrives but answers nothing until FILE exists (an endpoint that
never answers, until the test lets it).

    python -m tests.support.webhook_receiver --port 8123 --secret whsec_… --log /tmp/hooks.jsonl --fail 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks import Webhook, WebhookVerificationError


def serve(port: int, secret: str, log: Path, fail: int, status: int | None, hold: Path | None = None) -> None:
    lock = threading.Lock()
    seen = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                payload = Webhook(secret).verify(body, dict(self.headers))
                verified, error = True, ""
            except WebhookVerificationError as exc:
                payload, verified, error = None, False, str(exc)
            with lock:
                seen["n"] += 1
                answer = status or (500 if seen["n"] <= fail else 200)
                entry = {
                    "n": seen["n"],
                    "id": self.headers.get("webhook-id"),
                    "timestamp": self.headers.get("webhook-timestamp"),
                    "verified": verified,
                    "error": error,
                    "answered": answer,
                    "type": (payload or {}).get("type"),
                    "payload": payload,
                    "raw": body.decode(errors="replace"),
                }
                with log.open("a") as f:
                    f.write(json.dumps(entry) + "\n")
            while hold is not None and not hold.exists():
                time.sleep(0.05)
            self.send_response(answer)
            if 300 <= answer < 400:
                self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class Receiver:
    """The receiver as a subprocess on a free port."""

    def __init__(self, *, fail: int = 0, status: int | None = None, hold: bool = False):
        from tests.support.nanio import free_port

        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="hooks-", suffix=".jsonl")[1])
        self.args = [sys.executable, "-m", "tests.support.webhook_receiver", "--port", str(self.port)]
        self.args += ["--log", str(self.log), "--fail", str(fail)] + (["--status", str(status)] if status else [])
        self.hold = self.log.with_suffix(".release") if hold else None
        if self.hold:
            self.args += ["--hold", str(self.hold)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self, secret: str):
        """Start verifying with the endpoint's secret (known once the endpoint exists, which needs the URL)."""
        from tests.support.processes import ROOT, wait_for_port

        self.process = subprocess.Popen([*self.args, "--secret", secret], cwd=ROOT)
        wait_for_port(self.port)
        return self

    def release(self):
        """Answer the requests held so far, and every later one at once."""
        self.hold.touch()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--fail", type=int, default=0)
    parser.add_argument("--status", type=int, default=None)
    parser.add_argument("--hold", type=Path, default=None)
    options = parser.parse_args()
    serve(options.port, options.secret, options.log, options.fail, options.status, options.hold)
