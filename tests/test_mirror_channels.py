"""`?mirror=` on every download channel (API file redirect, Hugging Face resolve, relay URLs), all through the one
selector and the one gate, and mirrors kept in a local directory: signed portal URLs naming the mirror, served
from its own directory (or its own nginx location), verified like any other mirror."""

import hashlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from access import downloads, selectors, services
from access.models import AuditEvent, DownloadEvent, ReleaseMirror
from access.storage import LocalStorage, get_storage
from tests.factories import ReleaseFactory, add_file, grant_for, token_secret

pytestmark = pytest.mark.django_db

PIECE = 1024
WEIGHTS = hashlib.shake_256(b"lab-weights").digest(4 * PIECE + 5)
FILES = {"config.json": b'{"model_type": "opt"}\n', "pytorch_model.bin": WEIGHTS}
REPO = "facebook/opt-125m"


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def local_mirror(directory: Path, *, priority: int = 2, accel: str = "") -> dict:
    return {"backend": "local", "dir": str(directory), "accel_redirect": accel, "location": "nl", "priority": priority}


def copy_release(release, root: Path) -> None:
    """The lab copies the primary's files to its own disks (rsync, in practice)."""
    for file in release.files.all():
        target = root / file.storage_key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(FILES[file.path])


@pytest.fixture
def release(local_storage):
    release = ReleaseFactory(repo_id=REPO, access="open")
    for path, content in FILES.items():
        add_file(release, path, content, piece_size=PIECE)
    release.refresh_from_db()
    return release


@pytest.fixture
def lab(settings, tmp_path, release):
    """Mirror `lab`: a directory of the lab's own, holding an exact copy, verified for the release."""
    root = tmp_path / "lab-disks"
    copy_release(release, root)
    settings.STORAGE_MIRRORS = {"lab": local_mirror(root)}
    get_storage.cache_clear()
    run("verify_mirror", release.repo_id, "lab")
    return root


def fetch(client, url: str, **headers):
    """GET a URL the portal signed, through the test client (the portal serves LocalStorage URLs itself)."""
    parts = urlsplit(url)
    return client.get(parts.path, dict(pair.split("=", 1) for pair in parts.query.split("&") if pair), **headers)


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- one selector on every channel ------------------------------------------------------------------


def test_the_api_redirects_to_a_local_mirror_and_it_serves_the_bytes(release, lab, client):
    api = APIClient()
    response = api.get(f"/api/v1/models/{REPO}/files/pytorch_model.bin", {"mirror": "lab"})
    assert response.status_code == 302 and response["X-Mirror"] == "lab"
    assert "/storage/lab/" in response["Location"]
    served = fetch(client, response["Location"])
    assert served.status_code == 200 and body(served) == WEIGHTS
    ranged = fetch(client, response["Location"], HTTP_RANGE=f"bytes={PIECE}-{2 * PIECE - 1}")
    assert ranged.status_code == 206 and body(ranged) == WEIGHTS[PIECE : 2 * PIECE]
    default = api.get(f"/api/v1/models/{REPO}/files/pytorch_model.bin")
    assert default["X-Mirror"] == "primary" and "/storage/lab/" not in default["Location"]


def signed_in(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(user)}")
    return api


@pytest.mark.parametrize("method", ["get", "head"])
def test_hf_resolve_honours_the_mirror_asked_for(release, lab, alice, method):
    client = signed_in(alice)  # a signed-in download leaves its own DownloadEvent row
    response = getattr(client, method)(f"/{REPO}/resolve/main/pytorch_model.bin", {"mirror": "lab"})
    assert response.status_code == 302 and response["X-Mirror"] == "lab"
    assert "/storage/lab/" in response["Location"] and f"revision={release.revision}" in response["Location"]
    assert response["X-Linked-Etag"] == f'"{hashlib.sha256(WEIGHTS).hexdigest()}"'
    served = fetch(client, response["Location"])
    assert body(served) == WEIGHTS and served["X-Repo-Commit"] == release.revision
    assert client.get(f"/{REPO}/resolve/main/pytorch_model.bin")["X-Mirror"] == "primary"
    assert DownloadEvent.objects.filter(via="hf").count() == 2


def test_the_relay_honours_the_mirror_asked_for(release, lab, client, alice):
    file = release.files.get(path="pytorch_model.bin")
    relay = downloads.relay_url(file.pk, file.path, user_id=alice.pk, base_url="http://testserver")
    response = client.get(urlsplit(relay).path, {"mirror": "lab"})
    assert response.status_code == 302 and response["X-Mirror"] == "lab"
    assert body(fetch(client, response["Location"])) == WEIGHTS
    assert client.get(urlsplit(relay).path)["X-Mirror"] == "primary"
    assert DownloadEvent.objects.filter(via="relay").count() == 2


@pytest.mark.parametrize("value", ["mars", "LAB", "lab ", "../lab", "x" * 300, "lab%00", "primary,lab"])
def test_every_channel_refuses_an_unknown_mirror_with_the_same_400(release, lab, client, value):
    file = release.files.get(path="config.json")
    relay = urlsplit(downloads.relay_url(file.pk, file.path, user_id=None, base_url="http://testserver")).path
    answers = {
        "api": APIClient().get(f"/api/v1/models/{REPO}/files/config.json", {"mirror": value}),
        "hf": client.get(f"/{REPO}/resolve/main/config.json", {"mirror": value}),
        "hf-head": client.head(f"/{REPO}/resolve/main/config.json", {"mirror": value}),
        "relay": client.get(relay, {"mirror": value}),
    }
    detail = downloads.unknown_mirror_detail()
    assert "primary, lab" in detail and value not in detail
    for channel, response in answers.items():
        assert response.status_code == 400, channel
        assert response["Content-Type"] == "application/json", channel
        if channel != "hf-head":
            assert (response.json()["code"], response.json()["detail"]) == ("unknown_mirror", detail), channel
    assert answers["hf-head"]["X-Error-Message"] == detail
    assert not DownloadEvent.objects.exists()


def test_a_nul_byte_in_the_mirror_is_a_400_on_every_channel(release, lab, client):
    file = release.files.get(path="config.json")
    relay = urlsplit(downloads.relay_url(file.pk, file.path, user_id=None, base_url="http://testserver")).path
    for url in (f"/api/v1/models/{REPO}/files/config.json", f"/{REPO}/resolve/main/config.json", relay):
        response = client.get(url, {"mirror": "lab\x00"})
        assert response.status_code == 400 and response.json()["code"] == "invalid", url
    assert not DownloadEvent.objects.exists()


def test_a_mirror_not_serving_the_release_falls_back_on_every_channel(release, lab, client):
    services.mirror_disable(actor=services.command_actor("t"), release=release, mirror="lab")
    file = release.files.get(path="config.json")
    relay = urlsplit(downloads.relay_url(file.pk, file.path, user_id=None, base_url="http://testserver")).path
    for response in (
        APIClient().get(f"/api/v1/models/{REPO}/files/config.json", {"mirror": "lab"}),
        client.head(f"/{REPO}/resolve/main/config.json", {"mirror": "lab"}),
        client.get(relay, {"mirror": "lab"}),
    ):
        assert response.status_code == 302 and response["X-Mirror"] == "primary"
        assert "/storage/lab/" not in response["Location"]


def test_the_gate_decides_before_the_mirror_on_every_channel(local_storage, settings, tmp_path, alice, reviewer):
    gated = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    file = add_file(gated, "checkpoint_last-model_part-0-shard0.pt", WEIGHTS, piece_size=PIECE)
    gated.refresh_from_db()
    root = tmp_path / "lab"
    (root / file.storage_key).parent.mkdir(parents=True)
    (root / file.storage_key).write_bytes(WEIGHTS)
    settings.STORAGE_MIRRORS = {"lab": local_mirror(root)}
    get_storage.cache_clear()
    run("verify_mirror", gated.repo_id, "lab")
    grant = grant_for(alice, gated, reviewer)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice)}")
    relay = urlsplit(downloads.relay_url(file.pk, file.path, user_id=alice.pk, base_url="http://testserver")).path
    urls = [f"/api/v1/models/{gated.repo_id}/files/{file.path}", f"/{gated.repo_id}/resolve/main/{file.path}", relay]
    for url in urls:
        assert api.get(url, {"mirror": "lab"})["X-Mirror"] == "lab", url
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        grant=grant,
        reason="shared on a forum",
    )
    for url in urls:
        for mirror in ("lab", "mars"):
            response = api.get(url, {"mirror": mirror})
            assert response.status_code == 403 and response.json()["code"] == "revoked", (url, mirror)
    assert DownloadEvent.objects.count() == 3


# --- local mirrors: their own URLs, their own directory --------------------------------------------


def test_a_local_mirror_url_names_the_mirror_and_opens_no_other_location(release, lab, client):
    file = release.files.get(path="pytorch_model.bin")
    url = urlsplit(get_storage("lab").signed_url(file.storage_key, filename=file.path)).path
    assert url.startswith("/storage/lab/")
    assert body(client.get(url)) == WEIGHTS
    # The same signature on the primary's URL, or the primary's signature on the mirror's, is no signature.
    on_primary = url.replace("/storage/lab/", "/storage/", 1)
    assert client.get(on_primary).status_code == 403
    primary_url = urlsplit(get_storage().signed_url(file.storage_key, filename=file.path)).path
    assert client.get(primary_url.replace("/storage/", "/storage/lab/", 1)).status_code == 403
    # Another mirror's name, or the primary's, in the URL: not a local location.
    for name in ("mars", "primary"):
        response = client.get(url.replace("/storage/lab/", f"/storage/{name}/", 1))
        assert response.status_code == 404 and response.json()["code"] == "not_found", name


def test_a_local_mirror_serves_its_own_directory(release, lab, client):
    file = release.files.get(path="config.json")
    (lab / file.storage_key).write_bytes(b'{"model_type": "lab copy"}\n')
    url = urlsplit(get_storage("lab").signed_url(file.storage_key, filename=file.path)).path
    assert body(client.get(url)) == b'{"model_type": "lab copy"}\n'
    primary = urlsplit(get_storage().signed_url(file.storage_key, filename=file.path)).path
    assert body(client.get(primary)) == FILES["config.json"]
    (lab / file.storage_key).unlink()
    response = client.get(url)
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_hostile_local_mirror_urls_are_clear_refusals(release, lab, client, tmp_path):
    (tmp_path / "secret.txt").write_text("outside the mirror")
    lab_storage = get_storage("lab")
    expires = int(time.time()) + 60
    hmac_key = LocalStorage._hmac_key("lab")
    for key in ("../secret.txt", "a/../../secret.txt", "./x", "a//b", "a\\b", "%2e%2e/secret.txt"):
        signature = LocalStorage.signature(key, expires, hmac_key)  # even a correctly signed traversal
        response = client.get(f"/storage/lab/{expires}/{signature}/{quote(key, safe='/%')}")
        assert response.status_code in (403, 404), key
        assert b"outside the mirror" not in body(response)
    good = urlsplit(lab_storage.signed_url("facebook/opt-125m/config.json", filename="config.json")).path
    _, _, _, stamp, signature, rest = good.split("/", 5)
    for path in (
        f"/storage/lab/{stamp}/{'0' * 64}/{rest}",
        f"/storage/lab/{stamp}/{signature.upper()}/{rest}",
        f"/storage/lab/{stamp}/zz%C3%BC/{rest}",
        f"/storage/lab/{int(stamp) + 1}/{signature}/{rest}",
        f"/storage/lab/{int(time.time()) - 5}/{LocalStorage.signature(rest, int(time.time()) - 5, hmac_key)}/{rest}",
    ):
        response = client.get(path)
        assert response.status_code == 403 and response.json()["code"] == "invalid_signature", path
    for path in (f"/storage/Lab/{stamp}/{signature}/{rest}", f"/storage/-x/{stamp}/{signature}/{rest}"):
        assert client.get(path).status_code == 404, path


def test_a_local_mirror_hands_its_bytes_to_its_own_nginx_location(release, lab, client, settings):
    settings.LOCAL_STORAGE_ACCEL_REDIRECT = "/_protected/"
    settings.STORAGE_MIRRORS = {"lab": local_mirror(lab, accel="/_lab/")}
    get_storage.cache_clear()
    file = release.files.get(path="pytorch_model.bin")
    for name, accel in (("lab", "/_lab/"), (None, "/_protected/")):
        storage = get_storage(name) if name else get_storage()
        response = client.get(urlsplit(storage.signed_url(file.storage_key, filename=file.path)).path)
        assert response.status_code == 200 and response.content == b""
        assert response["X-Accel-Redirect"] == accel + file.storage_key
        assert response["X-Linked-Size"] == str(len(WEIGHTS))


# --- verification -----------------------------------------------------------------------------------


def test_a_local_mirror_is_verified_and_enabled(release, lab):
    row = ReleaseMirror.objects.get(release=release, mirror="lab")
    assert (row.status, row.revision, row.files_checked, row.bytes_checked) == (
        "enabled",
        release.revision,
        2,
        sum(map(len, FILES.values())),
    )
    assert AuditEvent.objects.filter(action="mirror.verified", data__mirror="lab").exists()
    assert [loc.name for loc in selectors.release_locations(release=release)] == ["primary", "lab"]


def test_a_local_mirror_that_differs_stays_disabled_and_says_how(release, lab):
    weights = release.files.get(path="pytorch_model.bin")
    data = bytearray(WEIGHTS)
    data[2 * PIECE + 9] ^= 0x40
    (lab / weights.storage_key).write_bytes(bytes(data))
    config = release.files.get(path="config.json")
    (lab / config.storage_key).unlink()
    (lab / config.storage_key).mkdir()  # a directory where the file should be
    err = io.StringIO()
    with pytest.raises(CommandError, match="differs from the record in 2 of 2 files"):
        call_command("verify_mirror", release.repo_id, "lab", stdout=io.StringIO(), stderr=err)
    row = ReleaseMirror.objects.get(release=release, mirror="lab")
    assert row.status == "failed"
    problems = {d["path"]: (d["problem"], d["found"]) for d in row.differences}
    assert problems["pytorch_model.bin"] == ("pieces", [2])
    assert problems["config.json"][0] == "unreadable"
    assert [loc.name for loc in selectors.release_locations(release=release)] == ["primary"]
    (lab / config.storage_key).rmdir()
    with pytest.raises(CommandError):
        run("verify_mirror", release.repo_id, "lab")
    assert {d["path"]: d["problem"] for d in ReleaseMirror.objects.get(mirror="lab").differences} == {
        "pytorch_model.bin": "pieces",
        "config.json": "missing",
    }


def test_the_metalink_lists_a_local_mirror(release, lab):
    from defusedxml import ElementTree as ET

    ns = {"m": "urn:ietf:params:xml:ns:metalink"}
    response = APIClient().get(f"/api/v1/models/{REPO}/manifest", {"format": "metalink"})
    node = next(f for f in ET.fromstring(response.content) if f.get("name") == "pytorch_model.bin")
    urls = [(u.get("location"), u.get("priority"), urlsplit(u.text).path) for u in node.findall("m:url", ns)]
    assert [(loc, prio) for loc, prio, _ in urls] == [(None, "1"), ("nl", "2")]
    assert urls[1][2].startswith("/storage/lab/") and not urls[0][2].startswith("/storage/lab/")


# --- settings ----------------------------------------------------------------------------------------


def settings_of(env: dict) -> subprocess.CompletedProcess:
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.STORAGE_MIRRORS))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"SECRET_KEY": "x", "DJANGO_SETTINGS_MODULE": "portal.settings", "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_a_local_mirror_is_read_from_the_environment():
    result = settings_of(
        {
            "STORAGE_MIRRORS": "lab,eu",
            "MIRROR_LAB_BACKEND": "local",
            "MIRROR_LAB_LOCAL_DIR": "/srv/lab-disks/weights",
            "MIRROR_LAB_LOCAL_ACCEL_REDIRECT": "/_lab/",
            "MIRROR_LAB_LOCATION": "NL",
            "MIRROR_EU_S3_BUCKET": "weights-eu",
        }
    )
    assert result.returncode == 0, result.stderr
    mirrors = json.loads(result.stdout)
    assert mirrors["lab"] == {
        "backend": "local",
        "dir": "/srv/lab-disks/weights",
        "accel_redirect": "/_lab/",
        "location": "nl",
        "priority": 2,
    }
    assert (mirrors["eu"]["backend"], mirrors["eu"]["bucket"], mirrors["eu"]["priority"]) == ("s3", "weights-eu", 3)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MIRROR_LAB_LOCAL_DIR"),
        ({"MIRROR_LAB_LOCAL_DIR": "lab-disks"}, "absolute"),
        ({"MIRROR_LAB_LOCAL_DIR": "/srv/lab", "MIRROR_LAB_LOCAL_ACCEL_REDIRECT": "_lab"}, "internal location"),
        (
            {
                "MIRROR_LAB_LOCAL_DIR": "/srv/lab",
                "MIRROR_LAB_LOCAL_ACCEL_REDIRECT": "/_protected/",
                "LOCAL_STORAGE_ACCEL_REDIRECT": "/_protected/",
            },
            "its own nginx location",
        ),
    ],
)
def test_a_bad_local_mirror_setting_stops_the_process(env, message):
    result = settings_of({"STORAGE_MIRRORS": "lab", "MIRROR_LAB_BACKEND": "local", **env})
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_a_bad_ticket_or_a_missing_file_is_refused_before_the_mirror_is_looked_at(release, lab, client):
    file = release.files.get(path="config.json")
    relay = urlsplit(downloads.relay_url(file.pk, file.path, user_id=None, base_url="http://testserver")).path
    ticket = relay.split("/")[2]
    for mirror in ("lab", "mars"):
        forged = client.get(
            relay.replace(ticket, ticket[:-2] + ("AA" if ticket[-2:] != "AA" else "BB")), {"mirror": mirror}
        )
        assert forged.status_code == 403 and forged.json()["code"] == "invalid_signature"
        other_path = client.get(relay.replace("/config.json", "/pytorch_model.bin"), {"mirror": mirror})
        assert other_path.status_code == 404 and other_path.json()["code"] == "not_found"
        missing = client.head(f"/{REPO}/resolve/main/nothing.bin", {"mirror": mirror})
        assert missing.status_code == 404 and missing["X-Error-Code"] == "EntryNotFound"
        unknown = APIClient().get("/api/v1/models/facebook/nothing/files/config.json", {"mirror": mirror})
        assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    assert not DownloadEvent.objects.exists()
