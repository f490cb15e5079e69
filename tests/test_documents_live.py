"""Documents to acknowledge before downloading, on every download channel as researchers use it against the live
portal: the portal's download.py, `hf download` and the API refuse the weights with acknowledge_documents until
the holder acknowledges the current version, and again after a new version."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from access import services
from tests.factories import ReleaseFactory, UserFactory, add_file, grant_for, token_secret

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[1] / "access" / "client" / "download.py"
HF_CLI = Path(sys.executable).with_name("hf")
FILES = {
    "config.json": b'{"model_type": "opt"}\n',
    "checkpoint_last-model_part-0-shard0.pt": hashlib.shake_256(b"ack0").digest(20_000),
}


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    """Live-server threads close their database connection after each request (see tests/test_hf.py)."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


def portal_download(portal, folder, token):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_TOKEN"] = token
    command = [sys.executable, str(SCRIPT), "facebook/opt-175b", "--dir", str(folder), "--portal", portal]
    return subprocess.run([*command, "--backoff", "0.05"], env=env, capture_output=True, text=True, timeout=60)


def hf_download(portal, folder, token, home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "HUGGING_FACE_HUB_TOKEN"}
    env.update(HF_ENDPOINT=portal, HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")
    env["HF_TOKEN"] = token
    command = [str(HF_CLI), "download", "facebook/opt-175b", "--local-dir", str(folder)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_every_channel_refuses_until_the_current_version_is_acknowledged(
    live_server, settings, local_storage, tmp_path
):
    settings.SITE_URL = portal = live_server.url
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    for path, content in FILES.items():
        add_file(release, path, content)
    release.refresh_from_db()
    manager = services.release_manager_add(
        actor=services.command_actor("add_release_manager"), user=UserFactory(email="mia@portal.example")
    )
    reviewer = services.reviewer_add(actor=services.command_actor("add_reviewer"), user=UserFactory())
    as_manager = services.Actor(user=manager, credential="session", reauthenticated=True)
    document = services.document_create(
        actor=as_manager,
        release=release,
        kind="downstream",
        title="Information for downstream providers",
        body="Read me before you build on it.",
        visibility="holders",
        acknowledge_required=True,
    )
    ada = UserFactory(email="ada@uni.example")
    grant_for(ada, release, reviewer)
    token = token_secret(ada)
    headers = {"Authorization": f"Bearer {token}"}
    file_url = f"{portal}/api/v1/models/facebook/opt-175b/files/config.json"
    acknowledge_url = f"{portal}/api/v1/models/facebook/opt-175b/documents/{document.public_id}/acknowledge"

    def refused_everywhere(step):
        api = requests.get(file_url, headers=headers, allow_redirects=False, timeout=10)
        assert api.status_code == 403 and api.json()["code"] == "acknowledge_documents", step
        assert document.public_id in api.json()["detail"]
        script = portal_download(portal, tmp_path / f"script-{step}", token)
        assert script.returncode == 2, script.stderr
        assert "acknowledge_documents" in script.stderr and "Information for downstream providers" in script.stderr
        hub = hf_download(portal, tmp_path / f"hf-{step}", token, tmp_path / "hf-home")
        assert hub.returncode != 0
        assert not (tmp_path / f"hf-{step}" / "config.json").exists()

    def allowed_everywhere(step):
        api = requests.get(file_url, headers=headers, allow_redirects=False, timeout=10)
        assert api.status_code == 302, step
        script = portal_download(portal, tmp_path / f"script-{step}", token)
        assert script.returncode == 0, script.stderr
        hub = hf_download(portal, tmp_path / f"hf-{step}", token, tmp_path / "hf-home")
        assert hub.returncode == 0, hub.stderr
        for path, content in FILES.items():
            assert (tmp_path / f"script-{step}" / path).read_bytes() == content
            assert (tmp_path / f"hf-{step}" / path).read_bytes() == content

    refused_everywhere("before")
    assert requests.post(acknowledge_url, headers=headers, json={"version": 1}, timeout=10).status_code == 200
    allowed_everywhere("acknowledged")
    services.document_version_add(actor=as_manager, document=document, body="Read me again: new limits.")
    refused_everywhere("new-version")
    assert requests.post(acknowledge_url, headers=headers, json={"version": 2}, timeout=10).status_code == 200
    allowed_everywhere("again")
