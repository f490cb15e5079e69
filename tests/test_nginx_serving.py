"""LocalStorage in production: the portal checks every signed URL and answers `X-Accel-Redirect`; nginx sends the
bytes. The nginx server block of docs/operators.md runs here as written, with a real nginx in front of gunicorn on
the test database, and the real Hugging Face client downloads through it."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests
from django.utils.http import http_date

from access import downloads, services
from access.storage import LocalStorage
from tests.factories import ReleaseFactory, UserFactory, add_file, grant_for, token_secret
from tests.support.nginx import start_local_nginx
from tests.support.processes import WebServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ACCEL = "/_protected/"
LAB_ACCEL = "/_lab/"
SHARD = hashlib.shake_256(b"nginx-shard").digest(3 * 1024 * 1024 + 17)
CONFIG = b'{"model_type": "opt", "hidden_size": 768}\n'


@pytest.fixture(scope="module")
def storage_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lab-disks")


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, storage_dir, lab_dir, tmp_path_factory):
    """The portal as production runs it: gunicorn, LocalStorage handing bytes to nginx, behind one proxy."""
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DB_CONN_MAX_AGE": "0",
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(storage_dir),
        "LOCAL_STORAGE_ACCEL_REDIRECT": ACCEL,
        "STORAGE_MIRRORS": "lab",
        "MIRROR_LAB_BACKEND": "local",
        "MIRROR_LAB_LOCAL_DIR": str(lab_dir),
        "MIRROR_LAB_LOCAL_ACCEL_REDIRECT": LAB_ACCEL,
        "BEHIND_PROXY": "1",
        "PORTAL_VAR_DIR": str(tmp_path_factory.mktemp("gunicorn-var")),
    }
    server = WebServer(env, workers=2, log_path=tmp_path_factory.mktemp("gunicorn-log") / "gunicorn.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nginx(gunicorn, storage_dir, lab_dir, tmp_path_factory):
    server = start_local_nginx(
        tmp_path_factory.mktemp("nginx"),
        gunicorn=f"127.0.0.1:{gunicorn.port}",
        storage_dir=storage_dir,
        mirror_dir=lab_dir,
    )
    yield server
    server.stop()


@pytest.fixture
def storage(settings, storage_dir, lab_dir, nginx):
    """This process signs the URLs the servers check; its storage is theirs."""
    from access.storage import get_storage

    settings.STORAGE_BACKEND = "local"
    settings.LOCAL_STORAGE_DIR = storage_dir
    settings.LOCAL_STORAGE_ACCEL_REDIRECT = ACCEL
    settings.STORAGE_MIRRORS = {
        "lab": {"backend": "local", "dir": str(lab_dir), "accel_redirect": LAB_ACCEL, "location": "", "priority": 2}
    }
    settings.SITE_URL = nginx.url
    get_storage.cache_clear()
    return get_storage()


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.fixture
def shard(storage):
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "config.json", CONFIG)
    file = add_file(release, "checkpoint_last-model_part-0-shard0.pt", SHARD)
    release.refresh_from_db()
    return file


def url_for(storage, file, base: str, ttl: int = 60) -> str:
    return storage.signed_url(file.storage_key, filename=file.path, ttl=ttl, base_url=base)


def test_a_signed_url_is_served_by_nginx_with_the_exact_bytes(storage, nginx, shard):
    response = requests.get(url_for(storage, shard, nginx.url), timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert response.content == SHARD
    headers = response.headers
    assert headers["Server"].startswith("nginx")
    assert int(headers["Content-Length"]) == len(SHARD)
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == (
        'attachment; filename="checkpoint_last-model_part-0-shard0.pt"; '
        "filename*=UTF-8''checkpoint_last-model_part-0-shard0.pt"
    )
    assert headers["Cache-Control"] == "private, max-age=0"
    assert headers["Accept-Ranges"] == "bytes"
    # nginx's own validators, from the file on disk (the portal's ETag would be a 32-digit hash)
    stat = (Path(storage.root) / shard.storage_key).stat()
    assert headers["ETag"] == f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'
    assert headers["Last-Modified"] == http_date(int(stat.st_mtime))
    assert headers["X-Linked-Size"] == str(len(SHARD))
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(SHARD).hexdigest()}"'
    assert headers["X-Repo-Commit"] == shard.release.revision
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Accel-Redirect" not in headers


def test_a_local_mirror_is_served_by_nginx_from_its_own_directory(storage, nginx, shard, lab_dir):
    from django.core.management import call_command

    from access.storage import get_storage

    lab_copy = lab_dir / shard.storage_key
    lab_copy.parent.mkdir(parents=True, exist_ok=True)
    lab_copy.write_bytes(SHARD)
    config = shard.release.files.get(path="config.json")
    (lab_dir / config.storage_key).write_bytes(CONFIG)
    call_command("verify_mirror", shard.release.repo_id, "lab", stdout=io.StringIO())
    api = f"{nginx.url}/api/v1/models/{shard.release.repo_id}/files/{shard.path}"
    response = requests.get(api, params={"mirror": "lab"}, timeout=30)
    assert response.status_code == 200 and response.content == SHARD
    assert response.history[0].headers["X-Mirror"] == "lab"
    assert response.url.startswith(f"{nginx.url}/storage/lab/")
    assert response.headers["Server"].startswith("nginx") and "X-Accel-Redirect" not in response.headers
    assert response.headers["X-Linked-Size"] == str(len(SHARD))
    ranged = requests.get(response.url, headers={"Range": "bytes=100-199"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == SHARD[100:200]
    # nginx reads the mirror's directory, not the primary's: a different copy there is what is sent.
    lab_copy.write_bytes(SHARD[::-1])
    assert requests.get(response.url, timeout=30).content == SHARD[::-1]
    signed = get_storage("lab").signed_url(shard.storage_key, filename=shard.path, base_url=nginx.url)
    assert requests.get(signed.replace("/storage/lab/", "/storage/", 1), timeout=30).status_code == 403
    assert requests.get(f"{nginx.url}{LAB_ACCEL}{shard.storage_key}", timeout=30).status_code == 404
    lab_copy.unlink()
    assert requests.get(response.url, timeout=30).status_code == 404


def test_nginx_answers_ranges_with_206(storage, nginx, shard):
    url = url_for(storage, shard, nginx.url)
    size = len(SHARD)
    for header, start, end in [
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=-10", size - 10, size - 1),
        (f"bytes={size - 5}-", size - 5, size - 1),
        (f"bytes=2000000-{size * 2}", 2000000, size - 1),
    ]:
        response = requests.get(url, headers={"Range": header}, timeout=30)
        assert response.status_code == 206, header
        assert response.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert response.content == SHARD[start : end + 1]
    assert requests.get(url, headers={"Range": f"bytes={size}-"}, timeout=30).status_code == 416


def test_if_range_resumes_only_the_same_file(storage, nginx, shard):
    url = url_for(storage, shard, nginx.url)
    etag = requests.head(url, timeout=30).headers["ETag"]
    resumed = requests.get(url, headers={"Range": "bytes=100-", "If-Range": etag}, timeout=30)
    assert resumed.status_code == 206 and resumed.content == SHARD[100:]
    changed = requests.get(url, headers={"Range": "bytes=100-", "If-Range": '"another"'}, timeout=30)
    assert changed.status_code == 200 and changed.content == SHARD


def test_head_answers_the_headers_without_a_body(storage, nginx, shard):
    response = requests.head(url_for(storage, shard, nginx.url), timeout=30)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(SHARD)
    assert response.headers["X-Linked-Size"] == str(len(SHARD))
    assert response.content == b""


def test_a_tampered_url_is_refused_by_the_portal(storage, nginx, shard):
    url = urlsplit(url_for(storage, shard, nginx.url))
    segments = url.path.split("/")  # /storage/<expires>/<signature>/<key...>
    segments[3] = ("0" if segments[3][0] != "0" else "1") + segments[3][1:]
    for tampered in (
        url._replace(path="/".join(segments)).geturl(),
        url.geturl().replace(shard.storage_key, shard.storage_key.replace("shard0", "shard1")),
        url.geturl().replace(f"/{segments[2]}/", f"/{int(segments[2]) + 3600}/"),
    ):
        response = requests.get(tampered, timeout=30)
        assert response.status_code == 403, tampered
        assert response.json()["code"] == "invalid_signature"
        assert response.headers["Content-Type"] == "application/json"


def test_an_expired_url_is_refused_by_the_portal(storage, nginx, shard):
    expires = int(time.time()) - 1
    signature = LocalStorage.signature(shard.storage_key, expires)
    url = f"{nginx.url}/storage/{expires}/{signature}/{quote(shard.storage_key)}"
    response = requests.get(url, timeout=30)
    assert response.status_code == 403 and response.json()["code"] == "invalid_signature"
    assert requests.head(url, timeout=30).status_code == 403


def test_the_internal_location_cannot_be_reached_from_outside(storage, nginx, shard):
    assert (Path(storage.root) / shard.storage_key).is_file()
    for path in (
        f"/_protected/{shard.storage_key}",
        f"/%5Fprotected/{shard.storage_key}",
        f"//_protected/{shard.storage_key}",
        f"/_protected/{quote(shard.storage_key, safe='')}",
    ):
        response = requests.get(nginx.url + path, timeout=30)
        assert response.status_code == 404, path
        assert SHARD[:64] not in response.content


def test_the_portal_answers_headers_only_and_nginx_sends_the_bytes(storage, gunicorn, shard):
    url = url_for(storage, shard, gunicorn.url)
    for headers in ({}, {"Range": "bytes=0-99"}):
        response = requests.get(url, headers=headers, timeout=30)
        assert response.status_code == 200
        assert response.headers["X-Accel-Redirect"] == f"{ACCEL}{shard.storage_key}"
        assert response.headers["Server"].startswith("gunicorn")
        assert response.content == b""
        assert response.headers.get("Content-Length", "0") == "0"
        assert "Content-Range" not in response.headers


def test_a_key_with_spaces_percent_signs_and_unicode_names_its_file(storage, nginx):
    release = ReleaseFactory(repo_id="lab/odd-names", access="open")
    file = add_file(release, "weights/shard 1+2 %41 #3 ? ü.pt", SHARD[:5000])
    url = url_for(storage, file, nginx.url)
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert response.content == SHARD[:5000]
    assert "filename*=UTF-8''shard%201%2B2%20%2541%20%233%20%3F%20%C3%BC.pt" in response.headers["Content-Disposition"]


def test_a_file_missing_from_disk_is_the_portals_404(storage, nginx, shard):
    (Path(storage.root) / shard.storage_key).unlink()
    response = requests.get(url_for(storage, shard, nginx.url), timeout=30)
    assert response.status_code == 404 and response.json()["code"] == "not_found"


@pytest.fixture
def gated(storage, alice, reviewer):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, "config.json", CONFIG)
    add_file(release, "checkpoint_last-model_part-0-shard0.pt", SHARD)
    release.refresh_from_db()
    grant = grant_for(alice, release, reviewer)
    return release, grant, token_secret(alice)


def test_revoking_a_grant_stops_relay_and_api_urls_through_nginx_at_once(nginx, gated, alice, reviewer):
    release, grant, token = gated
    file = release.files.get(path="checkpoint_last-model_part-0-shard0.pt")
    auth = {"Authorization": f"Bearer {token}"}
    relay = downloads.relay_url(file.pk, file.path, user_id=alice.pk, base_url=nginx.url)
    api = f"{nginx.url}/api/v1/models/{release.repo_id}/files/{file.path}"
    for response in (requests.get(relay, timeout=30), requests.get(api, headers=auth, timeout=30)):
        assert response.status_code == 200 and response.content == SHARD
        assert response.history[0].status_code == 302
        assert response.url.startswith(f"{nginx.url}/storage/")

    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        grant=grant,
        reason="Weights shared on a forum",
    )
    for response in (requests.get(relay, timeout=30), requests.get(api, headers=auth, timeout=30)):
        assert response.status_code == 403
        assert response.json()["code"] == "revoked"


HF_SCRIPT = """
import hashlib, json, sys
from huggingface_hub import hf_hub_download
repo_id, out = sys.argv[1], sys.argv[2]
result = {}
for name in ("config.json", "checkpoint_last-model_part-0-shard0.pt"):
    path = hf_hub_download(repo_id, name, local_dir=out)
    result[name] = hashlib.sha256(open(path, "rb").read()).hexdigest()
print(json.dumps(result))
"""


def hf_download(nginx, repo_id: str, out: Path, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k not in ("HUGGING_FACE_HUB_TOKEN",)}
    env.update(
        HF_ENDPOINT=nginx.url,
        HF_HOME=str(out.parent / "hf-home"),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-c", HF_SCRIPT, repo_id, str(out)], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_hugging_face_client_downloads_and_verifies_through_nginx(nginx, shard, gated, tmp_path):
    import json

    expected = {
        "config.json": hashlib.sha256(CONFIG).hexdigest(),
        "checkpoint_last-model_part-0-shard0.pt": hashlib.sha256(SHARD).hexdigest(),
    }
    release, _, token = gated
    for repo_id, secret in ((shard.release.repo_id, None), (release.repo_id, token)):
        out = tmp_path / repo_id.replace("/", "--")
        result = hf_download(nginx, repo_id, out, secret)
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
    outsider = hf_download(nginx, release.repo_id, tmp_path / "outsider", token_secret(UserFactory()))
    assert outsider.returncode != 0 and "GatedRepo" in outsider.stderr


@pytest.mark.parametrize("value", ["_protected/", "/_protected", "/", "/a b/", "/../x/"])
def test_a_malformed_accel_location_stops_the_process(value):
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; settings.DEBUG"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "LOCAL_STORAGE_ACCEL_REDIRECT": value},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "LOCAL_STORAGE_ACCEL_REDIRECT must be the path of an nginx internal location" in result.stderr
