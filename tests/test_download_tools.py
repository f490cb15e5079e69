"""The manifests as the download tools read them: the real aria2c and wget against the live portal, with
LocalStorage and with S3Storage on nanio. scripts/system-deps installs both; a missing tool fails the test."""

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from django.core.management import call_command

from access import services
from access.models import DownloadEvent, ModelRelease
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory, add_file

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Flat names, like the real OPT releases: wget names each file after the last segment of its URL.
FILES = {
    "config.json": b'{"model_type": "opt", "hidden_size": 12288}\n',
    "dict.txt": b"the 0\nof 1\n",
    "checkpoint_last-model_part-0-shard0.pt": hashlib.shake_256(b"shard0").digest(300_000),
    "checkpoint_last-model_part-1-shard0.pt": hashlib.shake_256(b"shard1").digest(200_003),
    "checkpoint_last-model_part-1-shard1.pt": b"",
}
PIECE = 64 * 1024


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    """Live-server threads close their database connection after each request (see tests/test_hf.py)."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed; run scripts/system-deps"
    return path


@pytest.fixture(params=["local", "s3"])
def portal(request, live_server, settings):
    request.getfixturevalue("local_storage" if request.param == "local" else "s3_storage")
    settings.SITE_URL = live_server.url
    return live_server.url


@pytest.fixture
def granted(portal, alice):
    """A gated release, Alice's grant for it, and her token."""
    reviewer = UserFactory(email="rita@portal.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    for path, content in FILES.items():
        add_file(release, path, content, piece_size=PIECE)
    access_request = AccessRequestFactory(applicant=alice, release=release)
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=access_request
    )
    services.grant_issue(request_id=access_request.pk)
    return release, services.token_create(
        actor=services.Actor(user=alice, credential="session", reauthenticated=True), name="tools"
    )[1]


def manifest(portal, release, token, fmt) -> str:
    response = requests.get(
        f"{portal}/api/v1/models/{release.repo_id}/manifest",
        params={"format": fmt},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.text


def run(command, *, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def assert_files(folder: Path, files=FILES):
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    for path, content in files.items():
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == hashlib.sha256(content).hexdigest(), path


def test_aria2c_downloads_and_checks_every_file(portal, granted, tmp_path):
    release, token = granted
    (tmp_path / "manifest.aria2").write_text(manifest(portal, release, token, "aria2"))
    result = run(
        [
            tool("aria2c"),
            "-i",
            str(tmp_path / "manifest.aria2"),
            "-j",
            "8",
            "-d",
            str(tmp_path / "opt"),
            "--console-log-level=warn",
            "--summary-interval=0",
            "--allow-overwrite=true",
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_files(tmp_path / "opt")


def test_aria2c_refuses_a_file_whose_checksum_does_not_match(portal, granted, tmp_path):
    release, token = granted
    good = hashlib.sha256(FILES["dict.txt"]).hexdigest()
    listing = manifest(portal, release, token, "aria2")
    assert f"checksum=sha-256={good}" in listing
    (tmp_path / "manifest.aria2").write_text(listing.replace(good, "0" * 64))
    result = run([tool("aria2c"), "-i", str(tmp_path / "manifest.aria2"), "-d", str(tmp_path / "opt")])
    assert result.returncode != 0
    assert "dict.txt" in result.stdout  # reported as failed (checksum error)


def test_aria2c_downloads_a_metalink_and_checks_every_piece(portal, granted, tmp_path):
    release, token = granted
    (tmp_path / "opt.meta4").write_text(manifest(portal, release, token, "metalink"))
    log = tmp_path / "aria2.log"
    command = [tool("aria2c"), "-M", str(tmp_path / "opt.meta4"), "-d", str(tmp_path / "opt"), "-j", "8"]
    result = run([*command, "-l", str(log), "--log-level=info", "--summary-interval=0"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert_files(tmp_path / "opt")
    pieces = sum(-(-len(content) // PIECE) for content in FILES.values())
    assert pieces == 11
    assert log.read_text().count("Good chunk checksum") == pieces  # each piece checked as it arrived


def test_aria2c_downloads_the_demo_opt_125m_from_its_metalink(portal, tmp_path):
    call_command("load_demo_catalog", "--only", "facebook/opt-125m", stdout=io.StringIO())
    release = ModelRelease.objects.get(repo_id="facebook/opt-125m")
    response = requests.get(f"{portal}/api/v1/models/facebook/opt-125m/manifest?format=metalink", timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/metalink4+xml"
    (tmp_path / "opt-125m.meta4").write_text(response.text)
    log = tmp_path / "aria2.log"
    command = [tool("aria2c"), "-M", str(tmp_path / "opt-125m.meta4"), "-d", str(tmp_path / "opt"), "-j", "8"]
    result = run([*command, "-l", str(log), "--log-level=info", "--summary-interval=0"])
    assert result.returncode == 0, result.stdout + result.stderr
    files = list(release.files.all())
    for file in files:
        assert hashlib.sha256((tmp_path / "opt" / file.path).read_bytes()).hexdigest() == file.sha256
    pieces = sum(len(file.piece_hashes) for file in files)
    assert pieces > len(files)  # the weights have several pieces each
    assert log.read_text().count("Good chunk checksum") == pieces


def test_aria2c_refuses_a_piece_whose_hash_does_not_match(portal, granted, tmp_path):
    release, token = granted
    shard = FILES["checkpoint_last-model_part-0-shard0.pt"]
    good = hashlib.sha256(shard[2 * PIECE : 3 * PIECE]).hexdigest()
    metalink = manifest(portal, release, token, "metalink")
    assert f"<hash>{good}</hash>" in metalink
    (tmp_path / "opt.meta4").write_text(metalink.replace(f"<hash>{good}</hash>", f"<hash>{'0' * 64}</hash>"))
    result = run([tool("aria2c"), "-M", str(tmp_path / "opt.meta4"), "-d", str(tmp_path / "opt"), "--max-tries=1"])
    assert result.returncode != 0
    assert "Invalid checksum index=2" in result.stdout


def test_wget_saves_each_file_under_its_name(portal, granted, settings, tmp_path):
    release, token = granted
    listing = manifest(portal, release, token, "wget")
    urls = listing.split()
    assert len(urls) == len(FILES)
    if settings.STORAGE_BACKEND == "s3":
        # presigned URLs end in a query string, so wget gets portal relay URLs that end in the file name
        assert all(url.startswith(f"{portal}/dl/") and "?" not in url for url in urls)
    (tmp_path / "opt").mkdir()
    (tmp_path / "manifest.wget").write_text(listing)
    result = run([tool("wget"), "--no-config", "-nv", "-i", str(tmp_path / "manifest.wget")], cwd=tmp_path / "opt")
    assert result.returncode == 0, result.stderr
    assert_files(tmp_path / "opt")

    (tmp_path / "opt" / "SHA256SUMS").write_text(manifest(portal, release, token, "sha256sum"))
    check = run([tool("sha256sum"), "-c", "SHA256SUMS"], cwd=tmp_path / "opt")
    assert check.returncode == 0, check.stdout + check.stderr
    if settings.STORAGE_BACKEND == "s3":
        relayed = DownloadEvent.objects.filter(via="relay", file__isnull=False)
        assert relayed.count() == len(FILES)
