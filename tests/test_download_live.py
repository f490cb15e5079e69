"""access/client/download.py as researchers run it: a subprocess against the live portal, with LocalStorage (the
portal serves the bytes) and with S3Storage on nanio (a real S3 server that checks signatures and expiry)."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.http import StreamingHttpResponse

from access import fileserve, services
from access.models import DownloadEvent
from tests.factories import ReleaseFactory, add_file, grant_for, token_secret

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[1] / "access" / "client" / "download.py"
FILES = {
    "config.json": b'{"model_type": "opt", "hidden_size": 12288}\n',
    "dict.txt": b"the 0\nof 1\n",
    "checkpoint_last-model_part-0-shard0.pt": hashlib.shake_256(b"shard0").digest(300_000),
    "checkpoint_last-model_part-1-shard0.pt": hashlib.shake_256(b"shard1").digest(200_003),
}
BIG = "checkpoint_last-model_part-7-shard123.pt"
BIG_SIZE = 40 * 1024 * 1024


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    """Live-server threads close their database connection after each request (see tests/test_hf.py)."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


def gated_release(files, repo_id="facebook/opt-175b"):
    release = ReleaseFactory(repo_id=repo_id, access="gated")
    for path, content in files.items():
        add_file(release, path, content)
    return release


@pytest.fixture
def portal(live_server, settings, local_storage):
    settings.SITE_URL = live_server.url
    return live_server.url


@pytest.fixture
def researcher(alice, reviewer):
    """Alice with an approved grant for a gated release, and her token."""
    release = gated_release(FILES)
    grant = grant_for(alice, release, reviewer)
    return release, grant, token_secret(alice)


def client_command(portal, repo_id, folder, *args):
    return [sys.executable, str(SCRIPT), repo_id, "--dir", str(folder), "--portal", portal, "--backoff", "0.05", *args]


def client_env(token):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_TOKEN"] = token
    return env


def download(portal, repo_id, folder, token, *args, timeout=60):
    return subprocess.run(
        client_command(portal, repo_id, folder, *args),
        env=client_env(token),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def transferred(result) -> int:
    line = next(line for line in result.stdout.splitlines() if line.startswith("transferred_bytes="))
    return int(line.split("=", 1)[1])


def assert_verified(folder, files):
    folder = Path(folder)
    for path, content in files.items():
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == hashlib.sha256(content).hexdigest(), path
    assert not list(folder.rglob("*.part"))
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    assert sorted(sums) == sorted(f"{hashlib.sha256(c).hexdigest()}  {p}" for p, c in files.items())


fileserve_file_response = fileserve.FileResponse


def slow_file_response(only: str, delay: float, chunk: int = 256 * 1024):
    """Stands in for FileResponse in the storage view, sending `only` in small, slow pieces."""

    def respond(f, **kwargs):
        if not f.name.endswith(only):
            return fileserve_file_response(f, **kwargs)

        def pieces():
            with f:
                while data := f.read(chunk):
                    time.sleep(delay)
                    yield data

        return StreamingHttpResponse(pieces(), **kwargs)

    return respond


def interrupted_download(monkeypatch, portal, repo_id, folder, token, *, size: int) -> int:
    """Start the client with BIG (`size` bytes) served slowly (~12 MiB/s), kill it once 4 MiB of BIG are on
    disk, and return how many bytes its .part file kept; the storage view serves at full speed again afterwards."""
    part = folder / f"{BIG}.part"
    monkeypatch.setattr(fileserve, "FileResponse", slow_file_response(BIG, delay=0.02))
    process = subprocess.Popen(
        client_command(portal, repo_id, folder),
        env=client_env(token),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size >= 4 * 1024 * 1024):
            assert process.poll() is None, "the download ended before it could be interrupted"
            assert time.monotonic() < deadline, "the download never got going"
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait()
    kept = part.stat().st_size
    assert 0 < kept < size
    monkeypatch.setattr(fileserve, "FileResponse", fileserve_file_response)
    return kept


def test_it_downloads_and_verifies_a_gated_release(portal, researcher, tmp_path):
    release, grant, token = researcher
    result = download(portal, release.repo_id, tmp_path / "opt", token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All files verified" in result.stdout
    assert transferred(result) == sum(len(c) for c in FILES.values())
    assert_verified(tmp_path / "opt", FILES)
    manifests = DownloadEvent.objects.filter(via="manifest", manifest_format="json")
    assert [(e.user_id, e.grant_id) for e in manifests] == [(grant.user_id, grant.pk)]

    again = download(portal, release.repo_id, tmp_path / "opt", token)
    assert again.returncode == 0
    assert transferred(again) == 0
    assert f"0 downloaded, {len(FILES)} skipped" in again.stdout


def test_a_revoked_grant_stops_it_with_the_portals_message(portal, researcher, reviewer, tmp_path):
    release, grant, token = researcher
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        grant=grant,
        reason="Weights shared on a forum",
    )
    result = download(portal, release.repo_id, tmp_path / "opt", token)
    assert result.returncode == 2
    assert "HTTP 403, revoked" in result.stderr
    assert "Weights shared on a forum" in result.stderr
    assert not (tmp_path / "opt").exists()


def test_a_corrupted_local_file_is_detected_and_fetched_again(portal, researcher, tmp_path):
    release, _grant, token = researcher
    assert download(portal, release.repo_id, tmp_path / "opt", token).returncode == 0
    shard = tmp_path / "opt" / "checkpoint_last-model_part-0-shard0.pt"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF  # same size, different bytes
    shard.write_bytes(bytes(data))

    result = download(portal, release.repo_id, tmp_path / "opt", token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "corrupted local file" in result.stdout
    assert transferred(result) == len(FILES["checkpoint_last-model_part-0-shard0.pt"])
    assert_verified(tmp_path / "opt", FILES)


def test_urls_that_expire_mid_run_are_refreshed(portal, researcher, settings, monkeypatch, tmp_path):
    """Signed URLs live 1-2 s here (expiry is whole seconds). With one job, the first file is sent slowly (3 s), so
    the next file's URL has expired when its turn comes: storage answers 403 and the client gets a new manifest,
    whose URLs live long enough for the small files left."""
    release, _grant, token = researcher
    settings.SIGNED_URL_TTL = 2
    first = "checkpoint_last-model_part-0-shard0.pt"  # manifest order is by path
    assert sorted(FILES)[0] == first and len(FILES[first]) <= 5 * 64 * 1024
    monkeypatch.setattr(fileserve, "FileResponse", slow_file_response(first, delay=0.6, chunk=64 * 1024))
    result = download(portal, release.repo_id, tmp_path / "opt", token, "--jobs", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "storage refused the signed URL (HTTP 403: invalid_signature" in result.stdout
    assert "fetching a fresh manifest" in result.stdout
    assert_verified(tmp_path / "opt", FILES)
    assert transferred(result) == sum(len(c) for c in FILES.values())
    assert DownloadEvent.objects.filter(via="manifest").count() == 2


def test_a_download_killed_mid_file_resumes_where_it_stopped(portal, alice, reviewer, monkeypatch, tmp_path):
    content = hashlib.shake_256(b"big shard").digest(BIG_SIZE)
    release = gated_release({BIG: content})
    grant_for(alice, release, reviewer)
    token = token_secret(alice)
    kept = interrupted_download(monkeypatch, portal, release.repo_id, tmp_path / "opt", token, size=BIG_SIZE)

    result = download(portal, release.repo_id, tmp_path / "opt", token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert transferred(result) == BIG_SIZE - kept
    assert_verified(tmp_path / "opt", {BIG: content})


def test_it_downloads_a_gated_release_from_s3(live_server, settings, s3_storage, alice, reviewer, tmp_path):
    settings.SITE_URL = live_server.url
    release = gated_release(FILES, repo_id="facebook/opt-66b")
    grant_for(alice, release, reviewer)
    result = download(live_server.url, release.repo_id, tmp_path / "opt", token_secret(alice))
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified(tmp_path / "opt", FILES)
    assert transferred(result) == sum(len(c) for c in FILES.values())
