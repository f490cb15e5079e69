"""Every download command the portal's pages show, run as a person runs it.

A browser collects each command block (what its copy button copies) from the download guide, the open and the
gated release page, the grant page and the token page; bash runs each one as it stands against the live portal,
with the real tools: curl, wget, aria2c, Debian's python3 with download.py, and `hf` (huggingface_hub). The
PATH is the stock one of Debian (no `python`), plus `hf`. The only thing filled in is what a person fills in:
their token, pasted in place of `<paste your token>` (the token page shows it already in place). The commands for
an open release run with no PORTAL_TOKEN set at all (bash -u stops on any use of it) and with a stale Hugging Face
login in HF_HOME, as on a machine that also downloads from the Hub: an open download sends no token.

Each command must end with every file it fetches on disk with its recorded SHA-256, and say so where its tool
checks (sha256sum -c, download.py, aria2c). The same command is the same text on every page that shows it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from access import services
from tests.factories import ReleaseFactory, UserFactory, add_file, grant_for

pytest_plugins = ["tests.support.browser"]  # browser, new_page, shots
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's password
OPEN, GATED = "facebook/opt-125m", "facebook/opt-175b"
FILES = {
    OPEN: {
        "config.json": b'{"model_type": "opt", "hidden_size": 768}\n',
        "checkpoint_last-model_part-0-shard0.pt": hashlib.shake_256(b"open0").digest(70_000),
    },
    GATED: {
        "config.json": b'{"model_type": "opt", "hidden_size": 12288}\n',
        "checkpoint_last-model_part-0-shard0.pt": hashlib.shake_256(b"gated0").digest(90_000),
        "checkpoint_last-model_part-1-shard0.pt": hashlib.shake_256(b"gated1").digest(30_001),
    },
}
PLACEHOLDER = "<paste your token>"
HF_CLI = Path(sys.executable).with_name("hf")


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    """Live-server threads close their database connection after each request (see tests/test_hf.py)."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.fixture
def portal(live_server, settings, local_storage):
    settings.SITE_URL = live_server.url
    for repo_id, files in FILES.items():
        release = ReleaseFactory(repo_id=repo_id, access="gated" if repo_id == GATED else "open")
        for path, content in files.items():
            add_file(release, path, content)
    return live_server.url


def blocks(page, path=None) -> list[dict]:
    """The command blocks of a page (this one, or `path`): what each copy button copies, and the commands the
    block holds."""
    if path is not None:
        page.goto(path)
    return page.locator(".code:not(.secret)").evaluate_all(
        "els => els.map(e => ({kinds: e.dataset.commands, text: e.querySelector('pre code').textContent}))"
    )


def shell_env(home: Path, *, token: str | None) -> dict:
    """A person's shell on stock Debian with huggingface_hub installed: python3 and no `python`; a stale
    Hugging Face login in HF_HOME. PORTAL_TOKEN is set only where that person ran the token line first."""
    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if not (bin_dir / "hf").exists():
        (bin_dir / "hf").symlink_to(HF_CLI)
    hf_home = home / "hf-home"
    hf_home.mkdir(exist_ok=True)
    (hf_home / "token").write_text("hf_StaleTokenFromTheHubNotThePortal")
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HF_HOME": str(hf_home),
        # Preferences of this machine, not part of any command: nothing leaves it.
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    if token is not None:
        env["PORTAL_TOKEN"] = token
    return env


def run_block(block: dict, *, token_line: str | None, work: Path, env: dict) -> subprocess.CompletedProcess:
    """Paste a block into a fresh shell (after the token line, for a gated release), or into python3 where
    huggingface_hub is installed for a Python block."""
    if block["kinds"] == "hf-python":
        return subprocess.run(
            [sys.executable, "-c", block["text"]], cwd=work, env=env, capture_output=True, text=True, timeout=180
        )
    script = block["text"] if token_line is None else f"{token_line}\n{block['text']}"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=180
    )


def downloaded(work: Path, repo_id: str) -> dict[str, str]:
    """The release's files found under the working directory (the hf cache aside): name → sha256."""
    names = set(FILES[repo_id])
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in work.rglob("*")
        if p.is_file() and p.name in names and ".cache" not in p.parts
    }


def check_run(block: dict, result, work: Path, repo_id: str):
    where = (
        f"{block['kinds']} for {repo_id}:\n{block['text']}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    assert result.returncode == 0, where
    files = FILES[repo_id]
    one = re.search(r"/files/([^\"\s]+)", block["text"])
    expected = {one.group(1)} if one else set(files)
    assert downloaded(work, repo_id) == {p: hashlib.sha256(files[p]).hexdigest() for p in expected}, where
    if "sha256sum -c" in block["text"]:
        for path in expected:
            assert f"{path}: OK" in result.stdout, where
    if "download.py" in block["text"]:
        assert "All files verified." in result.stdout, where
    if "aria2c" in block["text"]:
        assert result.stdout.count("|OK  |") == len(expected), where


def test_every_download_command_on_every_page_runs_as_shown(browser, live_server, portal, shots, tmp_path):
    for tool in ("curl", "wget", "aria2c", "sha256sum"):
        assert shutil.which(tool), f"{tool} is not installed; run scripts/system-deps"
    rita = services.reviewer_add(
        actor=services.command_actor("add_reviewer"), user=UserFactory(email="rita@portal.example")
    )
    ada = UserFactory(email="ada@uni.example")
    from access.models import ModelRelease

    grant = grant_for(ada, ModelRelease.objects.get(repo_id=GATED), rita)

    # A visitor: the guide (from the header, and from the open release's "All download methods") and the open
    # release page.
    visitor = browser.new_context(base_url=live_server.url)
    page = visitor.new_page()
    pages = {OPEN: {}, GATED: {}}
    page.goto(f"/models/{OPEN}")
    page.get_by_role("link", name="All download methods").click()
    pages[OPEN]["guide"] = blocks(page)
    shots(page, "guide-open")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Downloading").click()
    pages[OPEN]["guide-from-header"] = blocks(page)
    pages[OPEN]["release"] = blocks(page, f"/models/{OPEN}")
    visitor.close()

    # Ada, signed in with a grant: the guide for the gated release, its page, the grant page, a new token.
    researcher = browser.new_context(base_url=live_server.url)
    page = researcher.new_page()
    page.goto("/accounts/login/")
    page.locator("input[name=login]").fill(ada.email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page.locator("header .who")).to_have_text(ada.email)
    pages[GATED]["guide"] = blocks(page, f"/downloading?repo={GATED}")
    shots(page, "guide-gated")
    pages[GATED]["release"] = blocks(page, f"/models/{GATED}")
    pages[GATED]["grant"] = blocks(page, f"/grants/{grant.public_id}/")
    page.goto("/tokens/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token").inner_text().strip()
    pages[GATED]["tokens"] = blocks(page)  # shown once: no reload
    shots(page, "token-commands")
    researcher.close()

    # Each distinct command, pasted into a fresh shell in an empty folder.
    runs = 0
    for repo_id, shown in pages.items():
        gated = repo_id == GATED
        token_lines = {b["text"] for found in shown.values() for b in found if b["kinds"] == "token"}
        token_line = token_lines.pop().replace(PLACEHOLDER, secret) if gated and token_lines else None
        distinct = {b["text"]: b for found in shown.values() for b in found if b["kinds"] != "token"}
        for block in distinct.values():
            runs += 1
            work = tmp_path / f"run-{runs}"
            work.mkdir()
            env = shell_env(tmp_path / "home", token=secret if gated and block["kinds"] == "hf-python" else None)
            own_line = "export PORTAL_TOKEN=" in block["text"]
            result = run_block(block, token_line=None if own_line else token_line, work=work, env=env)
            check_run(block, result, work, repo_id)

    # What the pages show: an open release's commands never name a token; a gated release's pages have the one
    # line that sets it, and each command is the same text on every page that shows it.
    assert pages[OPEN]["guide-from-header"] == pages[OPEN]["guide"]
    for repo_id, shown in pages.items():
        same = {}
        for where, found in shown.items():
            for block in found:
                assert "<" not in block["text"].replace(PLACEHOLDER, ""), (where, block)
                if repo_id == OPEN:
                    sent = ("PORTAL_TOKEN", "HF_TOKEN", "Authorization", "Bearer")
                    assert not [w for w in sent if w in block["text"]], (where, block)
                text = block["text"].replace(secret, PLACEHOLDER)
                assert same.setdefault(block["kinds"], text) == text, (repo_id, where, block["kinds"])
    kinds = {b["kinds"] for b in pages[OPEN]["guide"]}
    assert kinds == {"script", "aria2", "metalink", "wget", "curl", "hf", "hf-python"}
    assert {b["kinds"] for b in pages[OPEN]["release"]} <= kinds
    assert {b["kinds"] for b in pages[GATED]["guide"]} == kinds | {"token"}
    assert {b["kinds"] for b in pages[GATED]["grant"]} >= {"token", "script"}
    assert pages[GATED]["tokens"] and all(b["kinds"] == "token script" for b in pages[GATED]["tokens"])
    assert runs == len(kinds) * 2 + 1  # every command once per release, and the token page's
