"""The demo institution (demo_idp/, started by scripts/demo-idp) as a real OpenID Provider in a subprocess, for
tests that sign in through it."""

from __future__ import annotations

import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tests.support.nanio import free_port
from tests.support.processes import ROOT

CALLBACK_PATH = "/accounts/oidc/demo-university/login/callback/"


class DemoIdP:
    """`scripts/demo-idp` for the portal at `portal_url`, keeping its database and keys in `var_dir/demo-idp/`
    (as `PORTAL_VAR_DIR` does under `make run`), on a free port, in its own process group."""

    client_id = "portal-demo"

    def __init__(self, portal_url: str, var_dir: Path, *, log_path: Path | None = None):
        self.portal_url = portal_url.rstrip("/")
        self.var_dir = Path(var_dir)
        self.port = free_port()
        self.log_path = log_path or self.var_dir / f"demo-idp-{self.port}.log"
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.url}/o"

    @property
    def data_dir(self) -> Path:
        return self.var_dir / "demo-idp"

    @property
    def redirect_uri(self) -> str:
        return self.portal_url + CALLBACK_PATH

    @property
    def client_secret(self) -> str:
        return (self.data_dir / "client_secret").read_text().strip()

    @property
    def people(self) -> dict[str, str]:
        """The demo people, {email: password}."""
        lines = (self.data_dir / "people.txt").read_text().splitlines()
        return dict(line.split() for line in lines if line.strip() and not line.startswith("#"))

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env.update(
            DEMO_IDP_DEV="1",
            DEMO_IDP_PORT=str(self.port),
            DEMO_IDP_PORTAL_URL=self.portal_url,
            PORTAL_VAR_DIR=str(self.var_dir),
        )
        return env

    def setup(self) -> str:
        """`scripts/demo-idp setup` (what each start runs first): migrate, make the key, the portal's client for
        the current `portal_url` and the demo people. Returns what it printed."""
        result = subprocess.run(
            [str(ROOT / "scripts" / "demo-idp"), "setup"],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"scripts/demo-idp setup failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def start(self, timeout: float = 60):
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(ROOT / "scripts" / "demo-idp")],
            cwd=ROOT,
            env=self.env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the demo institution did not start:\n" + self.log_path.read_text())

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

    def create_person(
        self,
        *,
        email: str,
        name: str,
        password: str,
        affiliations=(),
        principal_name: str | None = None,
        assurance=None,
    ) -> str:
        """Add a person (or update the one with this email) with the `create_person` command; returns their
        `sub`."""
        args = ["create_person", "--email", email, "--name", name, "--password", password]
        for affiliation in affiliations:
            args += ["--affiliation", affiliation]
        if principal_name:
            args += ["--principal-name", principal_name]
        for value in assurance or ():
            args += ["--assurance", value]
        result = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env={**self.env(), "DJANGO_SETTINGS_MODULE": "demo_idp.settings"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"create_person failed:\n{result.stdout}{result.stderr}")
        return re.search(r"sub=(\S+)", result.stdout).group(1)

    def sign_in(self, session, url: str, email: str, password: str):
        """Open `url` (an authorization request to this provider) with `session` (a requests.Session), fill in its
        sign-in form, and return the response that leaves the provider: its `Location` is the client's redirect
        URI with the `code` or the `error`. Nothing outside the provider is requested."""
        response = self._follow(session, session.get(url, allow_redirects=False))
        if "csrfmiddlewaretoken" not in response.text:
            raise AssertionError(f"no sign-in form at {response.url}: {response.status_code} {response.text[:500]}")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text).group(1)
        next_url = re.search(r'name="next" value="([^"]*)"', response.text).group(1)
        answer = session.post(
            response.url,
            data={
                "csrfmiddlewaretoken": token,
                "username": email,
                "password": password,
                "next": html.unescape(next_url),
            },
            allow_redirects=False,
        )
        return self._follow(session, answer)

    def _follow(self, session, response):
        """Follow redirects while they stay on this provider."""
        while response.is_redirect:
            target = urljoin(response.url, response.headers["Location"])
            if urlsplit(target).netloc != urlsplit(self.url).netloc:
                break
            response = session.get(target, allow_redirects=False)
        return response
