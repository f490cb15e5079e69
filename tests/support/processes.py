"""Real servers for integration tests: a private Redis and a Celery worker, each a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.nanio import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_for_port(port: int, timeout: float = 20, *, up: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not come {'up' if up else 'down'}")


def wait_until(predicate, timeout: float = 20, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


class RedisServer:
    """A private redis-server, so fault tests can stop and restart it without touching the machine's own."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-"))
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        wait_for_port(self.port, up=False)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class CeleryWorker:
    """`celery -A portal worker` in its own process group, on the test database and the given broker. Without
    `queues` it consumes the default queue, as `celery -A portal worker` does in production; `queues=["webhooks"]`
    is the webhook worker."""

    def __init__(self, env: dict, *, beat: bool = False, log_path: Path | None = None, queues=()):
        self.env = env
        self.beat = beat
        self.queues = list(queues)
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="celery-", suffix=".log")[1])
        self.process = None

    def start(self, timeout: float = 30):
        celery = Path(sys.executable).with_name("celery")
        args = [
            str(celery),
            "-A",
            "portal",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        if self.queues:
            args += ["--queues", ",".join(self.queues)]
        if self.beat:
            args += ["--beat", "--schedule", str(self.log_path.with_suffix(".beat"))]
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until(lambda: "ready." in self.log_path.read_text() or self.process.poll() is not None, timeout)
        if self.process.poll() is not None:
            raise RuntimeError("worker exited:\n" + self.log_path.read_text())
        return self

    def kill(self):
        """SIGKILL the whole process group, as a crash or an OOM kill would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text()


class WebServer:
    """`gunicorn portal.wsgi` on a free port in its own process group, with the given environment."""

    def __init__(self, env: dict, *, workers: int = 1, log_path: Path | None = None):
        self.env = env
        self.workers = workers
        self.port = free_port()
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="gunicorn-", suffix=".log")[1])
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30):
        gunicorn = Path(sys.executable).with_name("gunicorn")
        args = [str(gunicorn), "portal.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers)]
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*args, "--log-level", "warning"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(self.port, timeout)
        except RuntimeError:
            self.stop()
            raise RuntimeError("gunicorn did not start:\n" + self.log_path.read_text()) from None
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if getattr(self, "log", None):
            self.log.close()
