"""Outages of the storage server and the database: clean 503s, no tracebacks, recovery without a restart.
(Worker and broker faults are in test_worker.py.)"""

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.factories import ReleaseFactory, add_file
from tests.support.nanio import free_port
from tests.support.processes import ROOT, wait_for_port, wait_until

pytestmark = pytest.mark.slow

CLIENT = ROOT / "access" / "client" / "download.py"


@pytest.mark.django_db(transaction=True)
def test_storage_down_gives_503_and_downloads_recover_when_it_returns(
    s3_storage, nanio, live_server, settings, tmp_path
):
    settings.SITE_URL = live_server.url
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    content = os.urandom(200_000)
    add_file(release, "pytorch_model.bin", content)
    nanio.stop()
    try:
        health = requests.get(f"{live_server.url}/healthz")
        assert health.status_code == 503 and health.json()["checks"]["storage"]["ok"] is False
        # Starting a download while storage is down: the client retries, then stops with a clear message.
        failed = subprocess.run(
            [
                sys.executable,
                str(CLIENT),
                "facebook/opt-125m",
                "--portal",
                live_server.url,
                "--dir",
                str(tmp_path),
                "--retries",
                "1",
                "--backoff",
                "0.1",
                "--timeout",
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert failed.returncode == 1
        assert "Traceback" not in failed.stderr and "pytorch_model.bin" in failed.stdout + failed.stderr
    finally:
        nanio.start()
    assert requests.get(f"{live_server.url}/healthz").json()["checks"]["storage"]["ok"] is True
    done = subprocess.run(
        [sys.executable, str(CLIENT), "facebook/opt-125m", "--portal", live_server.url, "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert hashlib.sha256((tmp_path / "pytorch_model.bin").read_bytes()).digest() == hashlib.sha256(content).digest()


@pytest.mark.django_db(transaction=True)
def test_a_storage_error_in_a_view_is_a_503_not_a_traceback(client, local_storage, settings, monkeypatch):
    from access import downloads
    from access.storage import StorageError

    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "config.json", b"{}")

    def broken(*args, **kwargs):
        raise StorageError("connection refused")

    monkeypatch.setattr(downloads, "signed_file_url", broken)
    response = client.get("/api/v1/models/facebook/opt-125m/files/config.json")
    assert response.status_code == 503
    assert response.json()["code"] == "storage_unavailable" and response["Retry-After"]


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on its own port, so restarting it disturbs nothing else."""

    def __init__(self):
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="pg-"))
        self.port = free_port()
        shutil.chown(self.dir, "postgres")

    def _as_postgres(self, *args):
        prefix = [] if os.getuid() != 0 else ["runuser", "-u", "postgres", "--"]
        subprocess.run([*prefix, *args], check=True, capture_output=True)

    def init(self):
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        return self

    def start(self):
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.dir / "data"),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            "start",
        )
        wait_for_port(self.port)

    def stop(self):
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    @property
    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def cleanup(self):
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres():
    if not (Path("/usr/lib/postgresql").exists() and shutil.which("runuser")):
        pytest.fail("PostgreSQL server binaries are needed (the machine's PostgreSQL package)")
    pg = PrivatePostgres().init()
    pg.start()
    yield pg
    pg.cleanup()


def test_the_database_restarting_under_load_fails_cleanly_and_recovers(private_postgres, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": private_postgres.url,
        "PORTAL_VAR_DIR": str(tmp_path),
        "DB_CONN_MAX_AGE": "60",
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    subprocess.run(
        [*manage, "load_demo_catalog", "--size", "64", "--only", "facebook/opt-125m"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "portal.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
        stdout=(tmp_path / "gunicorn.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    statuses, listing, bodies, stop = Counter(), Counter(), [], threading.Event()

    # The catalog reads the database on every call; an open file's redirect, once its row is cached, needs only
    # Redis (its count goes there), so it may keep working through the outage.
    paths = ["/api/v1/models/facebook/opt-125m/files/config.json", "/api/v1/models"]

    def load():
        with requests.Session() as http:
            n = 0
            while not stop.is_set():
                path = paths[n % 2]
                n += 1
                try:
                    r = http.get(f"{base}{path}", allow_redirects=False, timeout=5)
                    statuses[r.status_code] += 1
                    if path == paths[1]:
                        listing[r.status_code] += 1
                    if r.status_code >= 500:
                        bodies.append((r.status_code, r.headers.get("Content-Type"), r.text[:200]))
                except requests.RequestException as exc:
                    statuses["connection"] += 1
                    bodies.append((0, "", repr(exc)[:300]))
                time.sleep(0.01)

    try:
        wait_for_port(port)
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: statuses[302] > 20)
        private_postgres.stop()
        time.sleep(1.5)
        down = sum(statuses.values())
        private_postgres.start()
        wait_until(lambda: statuses[302] > down + 50, timeout=30)
        stop.set()
        for t in threads:
            t.join()
        # The same server processes answer normally again: no restart was needed.
        health = requests.get(f"{base}/healthz", timeout=5).json()
    finally:
        stop.set()
        os.killpg(server.pid, 9)
        server.wait(timeout=10)
    assert listing[503] > 0, listing  # the outage was seen ...
    assert set(statuses) <= {200, 302, 503}, statuses  # ... and only as clean 503s
    assert all(ctype == "application/json" and "database_unavailable" in body for _, ctype, body in bodies), bodies[:3]
    assert health["checks"]["database"]["ok"] is True
