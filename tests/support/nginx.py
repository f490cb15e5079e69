"""A real nginx running the server block docs/operators.md documents, on a free loopback port (tests and
benchmarks)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from tests.support.nanio import free_port
from tests.support.processes import ROOT, wait_for_port

OPERATORS_GUIDE = ROOT / "docs" / "operators.md"


def documented_server_config() -> str:
    """The nginx configuration of docs/operators.md's "Serving local disks with nginx" section, as written there."""
    text = OPERATORS_GUIDE.read_text()
    match = re.search(r"^## Serving local disks with nginx$.*?^```nginx\n(.*?)^```$", text, re.S | re.M)
    if match is None:
        raise AssertionError("docs/operators.md has no nginx block under 'Serving local disks with nginx'")
    return match.group(1)


def local_server_config(
    *, port: int, gunicorn: str, storage_dir: Path, extra_locations: str = "", mirror_dir: Path | None = None
) -> str:
    """The documented block on 127.0.0.1:<port> without TLS, proxying to `gunicorn` (host:port) and serving
    `storage_dir` (and the local mirror's location from `mirror_dir`); `extra_locations` go inside the server
    block (the benchmark's direct location)."""
    config = documented_server_config()
    substitutions = [
        (r"^    listen 443 ssl;\n", f"    listen 127.0.0.1:{port};\n"),
        (r"^    ssl_certificate .*\n", ""),
        (r"^    ssl_certificate_key .*\n", ""),
        (r"server 127\.0\.0\.1:8000;", f"server {gunicorn};"),
        (r"alias /srv/portal/storage/;", f"alias {Path(storage_dir).resolve()}/;"),
    ]
    if mirror_dir is not None:
        substitutions.append((r"alias /srv/lab-disks/;", f"alias {Path(mirror_dir).resolve()}/;"))
    for pattern, replacement in substitutions:
        config, count = re.subn(pattern, lambda _m, r=replacement: r, config, flags=re.M)
        assert count == 1, f"the nginx block of docs/operators.md no longer has {pattern!r}"
    if extra_locations:
        head, tail = config.rstrip().rsplit("}", 1)
        config = f"{head}\n{extra_locations}\n}}{tail}\n"
    return config


class Nginx:
    """nginx in the foreground with its own prefix directory (pid, logs, temp files), in its own process group."""

    def __init__(self, prefix: Path, server_config: str, *, port: int, workers: int = 1):
        self.prefix = Path(prefix)
        self.server_config = server_config
        self.port = port
        self.workers = workers
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> Nginx:
        (self.prefix / "logs").mkdir(parents=True, exist_ok=True)
        # Workers run as root only when the tests do: nginx would otherwise drop to `nobody`, who cannot read
        # pytest's private temporary directories.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            f"""{user}worker_processes {self.workers};
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {self.prefix}/body;
    proxy_temp_path {self.prefix}/proxy;
    fastcgi_temp_path {self.prefix}/fastcgi;
    uwsgi_temp_path {self.prefix}/uwsgi;
    scgi_temp_path {self.prefix}/scgi;
{self.server_config}
}}
"""
        )
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=(self.prefix / "logs" / "stderr").open("wb"),
            start_new_session=True,
        )
        try:
            wait_for_port(self.port, timeout)
        except RuntimeError:
            self.stop()
            raise RuntimeError("nginx did not start:\n" + self.errors()) from None
        return self

    def errors(self) -> str:
        logs = [self.prefix / "logs" / "stderr", self.prefix / "logs" / "error.log"]
        return "\n".join(path.read_text(errors="replace") for path in logs if path.exists())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_local_nginx(
    prefix: Path, *, gunicorn: str, storage_dir: Path, workers: int = 1, extra_locations="", mirror_dir=None
) -> Nginx:
    port = free_port()
    config = local_server_config(
        port=port, gunicorn=gunicorn, storage_dir=storage_dir, extra_locations=extra_locations, mirror_dir=mirror_dir
    )
    return Nginx(prefix, config, port=port, workers=workers).start()
