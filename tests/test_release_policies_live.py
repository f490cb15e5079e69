"""Release policies against the real clients: a license update stops download.py, the `hf` CLI and aria2c
manifests with `license_update` until the researcher accepts (no new review), and a download started on one
revision finishes on it after a newer one is published."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from access import services
from access.models import AccessRequest
from access.storage import get_storage
from tests.factories import ReleaseFactory, grant_for, token_secret
from tests.test_download_live import (
    assert_verified,
    download,
    interrupted_download,
    transferred,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

HF_CLI = Path(sys.executable).with_name("hf")
FILES = {
    "config.json": b'{"model_type": "opt", "hidden_size": 12288}\n',
    "checkpoint_last-model_part-0-shard0.pt": hashlib.shake_256(b"shard0").digest(300_000),
    "checkpoint_last-model_part-1-shard0.pt": hashlib.shake_256(b"shard1").digest(200_003),
}


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.fixture
def portal(live_server, settings, local_storage):
    settings.SITE_URL = live_server.url
    return live_server.url


def publish(release, files: dict, notes: str):
    """Register these files (changed ones under keys of their own) and publish them as one revision."""
    actor = services.command_actor("tests")
    for path, content in files.items():
        key = services.release_file_key(release=release, path=path)
        size, sha = get_storage().save(key, io.BytesIO(content))
        services.release_upsert_file(release=release, path=path, size=size, sha256=sha, storage_key=key, actor=actor)
    return services.release_publish(release=release, notes=notes, actor=actor)


def hf(args, *, portal, home, token):
    """The `hf` CLI; HF_DEBUG makes it print the portal's message under its own "requires approval"."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "HUGGING_FACE_HUB_TOKEN"}
    env.update(HF_ENDPOINT=portal, HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")
    env["HF_DEBUG"] = "1"
    env["HF_TOKEN"] = token
    return subprocess.run([str(HF_CLI), *args], env=env, capture_output=True, text=True, timeout=120)


def aria2(manifest_text: str, folder: Path):
    listing = folder.parent / f"{folder.name}.aria2"
    listing.write_text(manifest_text)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return subprocess.run(
        [
            shutil.which("aria2c") or "aria2c",
            "-i",
            str(listing),
            "-d",
            str(folder),
            "--console-log-level=warn",
            "--summary-interval=0",
            "--allow-overwrite=true",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_license_update_stops_every_client_until_the_researcher_accepts(portal, alice, reviewer, tmp_path):
    assert HF_CLI.exists() and shutil.which("aria2c"), "run scripts/system-deps"
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    publish(release, FILES, "First release")
    grant = grant_for(alice, release, reviewer)
    token = token_secret(alice)
    headers = {"Authorization": f"Bearer {token}"}
    manifest_url = f"{portal}/api/v1/models/{release.repo_id}/manifest"
    v11 = services.license_publish(
        actor=services.command_actor("tests"),
        slug=release.license.slug,
        version="1.1",
        title=release.license.title,
        text="Version 1.1 of the terms.",
        summary_of_changes="Misuse is reported within 30 days.",
    )
    services.release_set_license(actor=services.command_actor("tests"), release=release, license=v11)
    accept_url = f"{portal}/grants/{grant.public_id}/license"

    client = download(portal, release.repo_id, tmp_path / "client", token)
    assert client.returncode == 2
    assert "HTTP 403, license_update" in client.stderr and accept_url in client.stderr
    assert "Accept the new license version" in client.stderr
    cli = hf(
        ["download", release.repo_id, "--local-dir", str(tmp_path / "hf")], portal=portal, home=tmp_path, token=token
    )
    assert cli.returncode != 0 and "requires approval" in cli.stderr, cli.stderr  # the CLI's GatedRepoError
    assert "license of facebook/opt-175b changed to version 1.1" in cli.stderr and accept_url in cli.stderr
    refused = requests.get(manifest_url, params={"format": "aria2"}, headers=headers, timeout=30)
    assert (refused.status_code, refused.json()["code"]) == (403, "license_update")
    assert not list(tmp_path.glob("client/*.pt")) and not list(tmp_path.glob("hf/*.pt"))

    accepted = requests.post(
        f"{portal}/api/v1/grants/{grant.public_id}/accept-license",
        json={"version": "1.1", "accept_license": True, "noncommercial_attested": True},
        headers=headers,
        timeout=30,
    )
    assert accepted.status_code == 200, accepted.text

    client = download(portal, release.repo_id, tmp_path / "client", token)
    assert client.returncode == 0, client.stdout + client.stderr
    assert_verified(tmp_path / "client", FILES)
    cli = hf(
        ["download", release.repo_id, "--local-dir", str(tmp_path / "hf")], portal=portal, home=tmp_path, token=token
    )
    assert cli.returncode == 0, cli.stderr
    for path, content in FILES.items():
        assert (tmp_path / "hf" / path).read_bytes() == content
    listing = requests.get(manifest_url, params={"format": "aria2"}, headers=headers, timeout=30)
    assert listing.status_code == 200
    fetched = aria2(listing.text, tmp_path / "aria2")
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    for path, content in FILES.items():
        assert (tmp_path / "aria2" / path).read_bytes() == content  # aria2c checked each sha-256 itself
    assert AccessRequest.objects.count() == 1  # re-consent, not a new review


BIG = "checkpoint_last-model_part-7-shard123.pt"
BIG_SIZE = 24 * 1024 * 1024


def test_a_download_started_on_revision_one_finishes_on_it_after_revision_two(
    portal, alice, reviewer, monkeypatch, tmp_path
):
    v1 = {**FILES, BIG: hashlib.shake_256(b"big v1").digest(BIG_SIZE)}
    v2 = {
        "config.json": b'{"model_type": "opt", "hidden_size": 12288, "fixed": true}\n',
        BIG: hashlib.shake_256(b"big v2").digest(BIG_SIZE + 7),
    }
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    one = publish(release, v1, "First release")
    grant_for(alice, release, reviewer)
    token = token_secret(alice)
    folder = tmp_path / "opt"
    kept = interrupted_download(monkeypatch, portal, release.repo_id, folder, token, size=BIG_SIZE)

    two = publish(release, v2, "Fixed the config and the last shard")
    release.refresh_from_db()
    assert (two.number, release.revision) == (2, two.sha)

    resumed = download(portal, release.repo_id, folder, token)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"Resuming revision {one.sha}" in resumed.stdout
    assert transferred(resumed) <= sum(len(c) for c in v1.values()) - kept  # the partial shard was resumed
    assert_verified(folder, v1)  # every file is revision one's, SHA256SUMS too
    assert json.loads((folder / ".portal-download.json").read_text())["revision"] == one.sha

    updated = download(portal, release.repo_id, folder, token)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert f"Updating from revision {one.sha} to {two.sha}" in updated.stdout
    assert_verified(folder, {**v1, **v2})
    assert transferred(updated) == sum(len(c) for c in v2.values())
