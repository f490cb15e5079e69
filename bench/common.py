"""Shared setup for the benchmarks: a throw-away PostgreSQL database, Redis db 10-12, environment, gunicorn and
Celery subprocesses (each in its own process group, killed on exit even on failure), seeding, and table output.

Every benchmark does:

    with Bench("redirect") as bench:       # creates portal_bench_redirect, flushes Redis 10-12, migrates
        ...seed through the ORM (Django is set up in this process with bench.settings)...
        url = bench.gunicorn()              # the portal under gunicorn, same env
    # processes stopped, database dropped, Redis dbs flushed, temp dir removed

Nothing here touches the test database (`portal`) or Redis db 0-9/13-15. Override the servers with
BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432) and BENCH_REDIS_URL (default redis://127.0.0.1:6379).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
REDIS_DBS = {"cache": 10, "throttle": 11, "broker": 12}
OPT_175B = "facebook/opt-175b"
# DRF's throttles keep a list of request times per key for the whole window; a huge hourly limit would make that
# list grow with every request of the run. A per-second window keeps it at one second of traffic and never refuses.
THROTTLE_RATE = "10000000/s"


# ---------------------------------------------------------------------------------------------- processes


class Processes:
    """Children started in their own session, so stopping one kills its whole group (gunicorn/celery workers)."""

    def __init__(self):
        self.running: list[tuple[str, subprocess.Popen, Path | None]] = []
        atexit.register(self.stop_all)

    def start(self, name: str, cmd: Sequence[str], *, env: dict, cwd: Path = REPO, log: Path | None = None):
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 -- closed with the process
        proc = subprocess.Popen(
            [str(c) for c in cmd], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        if log:
            out.close()
        self.running.append((name, proc, log))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 10) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Workers left behind by a master that died first.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.running = [r for r in self.running if r[1] is not proc]

    def stop_all(self) -> None:
        for _, proc, _ in reversed(list(self.running)):
            self.stop(proc)

    def check_alive(self) -> None:
        for name, proc, log in self.running:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}\n{tail(log)}")


def tail(path: Path | None, lines: int = 30) -> str:
    if not path or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, *, timeout: float = 30, procs: Processes | None = None, headers: dict | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if procs:
            procs.check_alive()
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            last = f"HTTP {exc.code}: {exc.read(500)!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout:g}s ({last})")


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# ---------------------------------------------------------------------------------------------- services


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def redis_flush() -> None:
    import redis

    for db in REDIS_DBS.values():
        client = redis.Redis.from_url(f"{REDIS_URL}/{db}")
        client.flushdb()
        client.close()


class Bench:
    """A dedicated database and env for one benchmark; Django is set up in this process on enter."""

    def __init__(self, name: str):
        self.name = name
        self.db = f"portal_bench_{name}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"portal-bench-{name}-"))
        self.procs = Processes()
        self.stack = contextlib.ExitStack()
        self.site_url = "http://127.0.0.1:8000"

    # -- env
    def env(self, **overrides: str) -> dict:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(
            DJANGO_SETTINGS_MODULE="bench.settings",
            PYTHONPATH=str(REPO),
            SECRET_KEY="bench-only-" + "x" * 40,
            DATABASE_URL=f"{PG_URL}/{self.db}",
            CACHE_URL=f"{REDIS_URL}/{REDIS_DBS['cache']}",
            THROTTLE_CACHE_URL=f"{REDIS_URL}/{REDIS_DBS['throttle']}",
            CELERY_BROKER_URL=f"{REDIS_URL}/{REDIS_DBS['broker']}",
            CELERY_TASK_ALWAYS_EAGER="0",
            PORTAL_VAR_DIR=str(self.tmp / "var"),
            LOCAL_STORAGE_DIR=str(self.tmp / "storage"),
            STORAGE_BACKEND="local",
            SITE_URL=self.site_url,
            ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
            EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
            DEBUG="0",
            PORTAL_DEV_MODE="0",
            SECURE_COOKIES="0",
            SECURE_HSTS_SECONDS="0",
            SECURE_SSL_REDIRECT="0",
            THROTTLE_USER_RATE=THROTTLE_RATE,
            THROTTLE_IP_RATE=THROTTLE_RATE,
            LOG_LEVEL="WARNING",
            PYTHONDONTWRITEBYTECODE="1",
        )
        env.update(overrides)
        return env

    # -- lifecycle
    def __enter__(self) -> Bench:
        signal.signal(signal.SIGTERM, _raise_exit)
        signal.signal(signal.SIGHUP, _raise_exit)
        try:
            pg_admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            pg_admin(f'CREATE DATABASE "{self.db}"')
            redis_flush()
            (self.tmp / "var" / "static").mkdir(parents=True)  # STATIC_ROOT: whitenoise warns when missing
            os.environ.update(self.env())
            import django

            django.setup()
            from django.core.management import call_command

            call_command("migrate", verbosity=0, interactive=False)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stack.close()
        finally:
            self.procs.stop_all()
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            with contextlib.suppress(Exception):
                pg_admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            with contextlib.suppress(Exception):
                redis_flush()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- servers
    def gunicorn(
        self,
        *,
        env: dict | None = None,
        workers: int = 2,
        threads: int = 4,
        worker_class: str = "gthread",
        name: str = "gunicorn",
        cwd: Path = REPO,
    ) -> tuple[str, subprocess.Popen]:
        """Start the portal; returns (base URL, process) once /healthz answers."""
        port = free_port()
        cmd = [
            BIN / "gunicorn",
            "portal.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--threads",
            str(threads),
            "--keep-alive",
            "5",
            "--backlog",
            "2048",
            "--timeout",
            "60",
            "--log-level",
            "warning",
            "--no-control-socket",
        ]
        log = self.tmp / f"{name}-{port}.log"
        proc = self.procs.start(name, cmd, env=env or self.env(), cwd=cwd, log=log)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", procs=self.procs)
        return url, proc

    def celery_worker(
        self, *, env: dict | None = None, concurrency: int = 2, include: str = "", queues: str = "", name: str = "bench"
    ) -> subprocess.Popen:
        """`celery -A portal worker`: the default queue, or `queues` (e.g. "webhooks" for the webhook worker)."""
        cmd = [
            BIN / "celery",
            "-A",
            "portal",
            "worker",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"{name}-{os.getpid()}@%h",
        ]
        if include:
            cmd += ["--include", include]
        if queues:
            cmd += ["--queues", queues]
        log = self.tmp / f"celery-{name}.log"
        return self.procs.start(f"celery worker {name}", cmd, env=env or self.env(), log=log)

    def nanio(self):
        """A real S3 server (tests/support/nanio.py); stopped and its data removed when the bench ends."""
        from tests.support.nanio import start_nanio, stop_nanio

        server = start_nanio(bucket="portal-bench")
        self.stack.callback(stop_nanio, server)
        return server

    @staticmethod
    def s3_storage(server):
        """An S3Storage on a nanio server, for seeding files into it from this process."""
        from access.storage import S3Storage

        return S3Storage(
            bucket=server.bucket,
            endpoint_url=server.endpoint_url,
            region=server.region,
            access_key=server.access_key,
            secret_key=server.secret_key,
            addressing_style="path",
        )

    @staticmethod
    def s3_env(server) -> dict:
        return {
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": server.bucket,
            "S3_ENDPOINT_URL": server.endpoint_url,
            "S3_REGION": server.region,
            "S3_ACCESS_KEY_ID": server.access_key,
            "S3_SECRET_ACCESS_KEY": server.secret_key,
            "S3_ADDRESSING_STYLE": "path",
        }

    def nginx_redirect(self, location: str = "http://127.0.0.1:9/storage/fixed") -> str:
        """nginx answering every request with `return 302` (the floor for any HTTP redirect here)."""
        port = free_port()
        prefix = self.tmp / "nginx"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"""
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ add_header Cache-Control no-store; return 302 {location}; }}
    }}
}}
"""
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.procs.start(
            "nginx", [nginx, "-p", prefix, "-c", conf, "-g", "daemon off;"], env=self.env(), log=prefix / "stdout"
        )
        wait_port(port)
        return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------------------------------- seeding


def seed_opt175b(size: int = 64, *, storages: Sequence | None = None, command: bool = False) -> float:
    """OPT-175B with its 992 shards (about `size` bytes each, the same bytes, keys and rows as
    `load_demo_catalog --size <size> --only facebook/opt-175b`) stored in each of `storages` (default: the
    configured one). command=True runs the management command itself (about 13 s here instead of about 1 s: one
    transaction per file). Returns seconds taken."""
    started = time.perf_counter()
    if command:
        from django.core.management import call_command

        call_command("load_demo_catalog", size=size, only=[OPT_175B], stdout=io.StringIO())
        return time.perf_counter() - started
    from access import catalog_data
    from access.models import License, ModelRelease
    from access.storage import get_storage

    row = next(r for r in catalog_data.releases() if r["repo_id"] == OPT_175B)
    license_obj, _ = License.objects.get_or_create(
        slug="opt-175b-noncommercial",
        version="1.0",
        defaults={"title": "OPT-175B Non-Commercial Research License", "text": catalog_data.OPT_LICENSE_TEXT},
    )
    release = ModelRelease.objects.create(**row, license=license_obj)
    paths = catalog_data.release_files(release.name)
    files_store(release, [(p, catalog_data.synthetic_size(p, size)) for p in paths], storages or [get_storage()])
    return time.perf_counter() - started


def seed_open(repo_id: str = "facebook/opt-125m", size: int = 64) -> None:
    """An open release with its real file names (opt-125m by default), as `load_demo_catalog` makes it."""
    from access import catalog_data
    from access.models import ModelRelease
    from access.storage import get_storage

    row = next(r for r in catalog_data.releases() if r["repo_id"] == repo_id)
    release = ModelRelease.objects.create(**row)
    paths = catalog_data.release_files(release.name)
    files_store(release, [(p, catalog_data.synthetic_size(p, size)) for p in paths], [get_storage()])


def files_store(release, files: Sequence[tuple[str, int]], storages: Sequence) -> None:
    """Write synthetic files (path, size) under `<repo_id>/<path>` to every storage, record them in one
    bulk insert, and refresh the release revision as the commands do."""
    from concurrent.futures import ThreadPoolExecutor

    from access import catalog_data, services
    from access.models import ModelFile

    def store(item):
        path, size = item
        key = f"{release.repo_id}/{path}"
        results = {storage.save(key, catalog_data.SyntheticFile(key, size)) for storage in storages}
        assert len(results) == 1, f"storages disagree on {key}"
        stored_size, sha256 = results.pop()
        return ModelFile(release=release, path=path, size=stored_size, sha256=sha256, storage_key=key)

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(store, files))
    ModelFile.objects.bulk_create(rows, batch_size=500)
    services.release_refresh_revision(actor=services.command_actor("register_release"), release=release)


def user_create(email: str, *, verified: bool = True):
    from allauth.account.models import EmailAddress

    from access.models import User

    user = User.objects.create_user(email, secrets.token_urlsafe(12))
    if verified:
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def token_create(user, name: str = "bench", *, review: bool = False) -> str:
    from access import services

    _, secret = services.token_create(
        actor=services.Actor(user=user, credential="session", reauthenticated=True), name=name, review=review
    )
    return secret


def request_create(user, release, *, status: str = "pending"):
    from django.utils import timezone

    from access.models import AccessRequest

    return AccessRequest.objects.create(
        applicant=user,
        release=release,
        status=status,
        full_name="Bench Researcher",
        email=user.email,
        affiliation="University of Benchmarks",
        organization_type="academic",
        country="NL",
        role="Researcher",
        intended_use="Measuring the portal.",
        license=release.license,
        license_version=release.license.version,
        license_accepted_at=timezone.now(),
        license_accepted_ip="127.0.0.1",
        noncommercial_attested=True,
    )


def researcher_with_grant(email: str, repo_id: str = OPT_175B) -> tuple[object, str]:
    """A verified researcher with an approved request, the grant issued by services.grant_issue, and a token."""
    from access import services
    from access.models import ModelRelease

    release = ModelRelease.objects.get(repo_id=repo_id)
    user = user_create(email)
    access_request = request_create(user, release, status="approved")
    grant = services.grant_issue(request_id=access_request.pk)
    assert grant is not None and grant.is_active
    return user, token_create(user)


def reviewer_create(email: str = "reviewer@bench.example") -> tuple[object, str]:
    from access import services

    user = user_create(email)
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=user, verified=True)
    return user, token_create(user, "reviewer", review=True)  # the review API takes tokens with reviewer access


# ---------------------------------------------------------------------------------------------- numbers & output


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return math.nan
    k = (len(data) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def print_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    rows = [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in (tuple(header), *rows)) for i in range(len(header))]
    for row in (tuple(header), tuple("-" * w for w in widths), *rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    sys.stdout.flush()


def goal_line(text: str, passed: bool) -> str:
    line = f"goal: {text}  {'PASS' if passed else 'MISS'}"
    print(line)
    return line


def machine() -> dict:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram": mem,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg": loadavg(),
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def print_machine() -> None:
    m = machine()
    print(
        f"machine: {m['nproc']} cores, {m['cpu']}, {m['ram']} RAM; Python {m['python']}; {m['date']}; "
        f"load average {loadavg()}"
    )


def save_results(name: str, data: dict) -> None:
    """With BENCH_RESULTS_DIR set (scripts/bench-all sets it), also keep the figures there as <name>.json."""
    if not os.environ.get("BENCH_RESULTS_DIR"):
        return
    out = Path(os.environ["BENCH_RESULTS_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"machine": machine(), **data}, indent=2, default=str))
