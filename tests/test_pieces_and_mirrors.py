"""Per-piece SHA-256 recorded at registration, the Metalink manifest, and mirrors: a mirror serves a release
only once its copy was verified, and a failed verification says which files differ."""

import hashlib
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pgtrigger
import pytest
import requests
from defusedxml import ElementTree as ET
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from access import selectors, services
from access.models import AuditEvent, DownloadEvent, ModelFile, ModelRelease, ReleaseMirror
from access.storage import Hasher, get_storage
from tests.factories import REGISTRAR, ReleaseFactory, add_file, grant_for, token_secret

pytestmark = pytest.mark.django_db

NS = {"m": "urn:ietf:params:xml:ns:metalink"}
PIECE = 1024
FILES = {
    "config.json": b'{"model_type": "opt"}\n',
    "pytorch_model.bin": hashlib.shake_256(b"weights").digest(5 * PIECE + 17),
    "empty.txt": b"",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def piece_hashes(data: bytes, size: int = PIECE) -> list[str]:
    return [sha(data[i : i + size]) for i in range(0, len(data), size)]


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


@pytest.fixture
def release(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    for path, content in FILES.items():
        add_file(release, path, content, piece_size=PIECE)
    return release


@pytest.fixture
def mirror(settings, nanio, release):
    """Mirror `eu` on the nanio bucket (its own prefix), holding an exact copy of the release."""
    prefix = f"mirror-{uuid.uuid4().hex[:8]}"
    settings.STORAGE_MIRRORS = {
        "eu": {
            "backend": "s3",
            "bucket": nanio.bucket,
            "prefix": prefix,
            "endpoint_url": nanio.endpoint_url,
            "region": nanio.region,
            "access_key": nanio.access_key,
            "secret_key": nanio.secret_key,
            "session_token": None,
            "addressing_style": "path",
            "location": "de",
            "priority": 2,
        }
    }
    settings.STORAGE_LOCATION = "us"
    get_storage.cache_clear()
    client = nanio.client()
    for file in release.files.all():
        client.put_object(Bucket=nanio.bucket, Key=f"{prefix}/{file.storage_key}", Body=FILES[file.path])
    return {"prefix": prefix, "client": client, "bucket": nanio.bucket}


def put(mirror, release, path, body):
    key = release.files.get(path=path).storage_key
    mirror["client"].put_object(Bucket=mirror["bucket"], Key=f"{mirror['prefix']}/{key}", Body=body)


def manifest(release, fmt, **params):
    return APIClient().get(f"/api/v1/models/{release.repo_id}/manifest", {"format": fmt, **params})


# --- pieces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, PIECE - 1, PIECE, PIECE + 1, 10 * PIECE])
def test_it_hashes_pieces_whatever_the_chunks_are(chunk):
    data = FILES["pytorch_model.bin"]
    hasher = Hasher(PIECE)
    for i in range(0, len(data), chunk):
        hasher.update(data[i : i + chunk])
    digest = hasher.digest()
    assert (digest.size, digest.sha256, digest.piece_size) == (len(data), sha(data), PIECE)
    assert list(digest.pieces) == piece_hashes(data)
    assert len(digest.pieces) == 6  # five whole pieces and a short last one


def test_registering_a_file_records_its_pieces(release):
    file = release.files.get(path="pytorch_model.bin")
    assert file.piece_size == PIECE
    assert file.piece_hashes == piece_hashes(FILES["pytorch_model.bin"])
    assert release.files.get(path="empty.txt").piece_hashes == []


def test_the_pieces_of_an_unchanged_file_never_change(release):
    file = release.files.get(path="pytorch_model.bin")
    before = file.pieces
    data = FILES["pytorch_model.bin"]
    changed = services.release_upsert_file(
        actor=REGISTRAR,
        release=release,
        path=file.path,
        size=file.size,
        sha256=file.sha256,
        storage_key=file.storage_key,
        piece_size=2048,
        pieces=piece_hashes(data, 2048),
    )
    file.refresh_from_db()
    assert not changed and (file.piece_size, file.pieces) == (PIECE, before)


def test_piece_hashes_that_do_not_cover_the_file_are_refused(release):
    with pytest.raises(services.ServiceError) as exc:
        services.release_upsert_file(
            actor=REGISTRAR,
            release=release,
            path="x.bin",
            size=3000,
            sha256="0" * 64,
            storage_key="k",
            piece_size=PIECE,
            pieces=["0" * 64],
        )
    assert exc.value.code == "invalid_pieces"


def test_register_release_hashes_pieces_and_keeps_published_files_as_they_are(local_storage, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(FILES["pytorch_model.bin"])
    out = run("register_release", "lab/model-p", "--from-dir", str(src), "--piece-size", str(PIECE))
    assert "6 pieces of 1024" in out
    file = ModelFile.objects.get(release__repo_id="lab/model-p", path="a.bin")
    assert file.piece_hashes == piece_hashes(FILES["pytorch_model.bin"])
    # A published file never changes, its pieces included: registering it again changes nothing.
    assert "0 added or changed, 1 unchanged" in run("register_release", "lab/model-p", "--from-prefix", "lab/model-p")
    file.refresh_from_db()
    assert file.piece_size == PIECE and file.piece_hashes == piece_hashes(FILES["pytorch_model.bin"])
    # Changed bytes are a new revision, hashed in pieces like any new file.
    (src / "a.bin").write_bytes(FILES["pytorch_model.bin"][::-1])
    assert "1 added or changed" in run("register_release", "lab/model-p", "--from-dir", str(src), "--rehash")
    changed = ModelFile.objects.get(release__repo_id="lab/model-p", path="a.bin", revision__number=2)
    assert changed.piece_hashes == [sha(FILES["pytorch_model.bin"][::-1])]  # the default 16 MiB: one piece


def test_the_demo_catalog_uses_small_pieces(local_storage):
    run("load_demo_catalog", "--size", "16384", "--only", "facebook/opt-125m")
    file = ModelFile.objects.get(release__repo_id="facebook/opt-125m", path="pytorch_model.bin")
    assert file.piece_size == 4096 and len(file.piece_hashes) == 5
    with local_storage.open(file.storage_key) as f:
        data = f.read()
    assert file.piece_hashes == piece_hashes(data, 4096)


# --- manifests ------------------------------------------------------------------------------------


def test_the_json_manifest_lists_each_files_pieces(release):
    files = {f["path"]: f for f in manifest(release, "json").json()["files"]}
    assert files["pytorch_model.bin"]["pieces"] == {"length": PIECE, "sha256": piece_hashes(FILES["pytorch_model.bin"])}
    assert files["empty.txt"]["pieces"] == {"length": PIECE, "sha256": []}
    assert "urls" not in files["config.json"]  # no mirror serves the release


def test_the_metalink_manifest_is_metalink_4_with_pieces(release, settings):
    response = manifest(release, "metalink")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/metalink4+xml"
    assert response["Content-Disposition"] == 'inline; filename="manifest.meta4"'
    root = ET.fromstring(response.content)
    assert root.tag == "{urn:ietf:params:xml:ns:metalink}metalink"
    files = {f.get("name"): f for f in root.findall("m:file", NS)}
    assert set(files) == set(FILES)
    for path, data in FILES.items():
        node = files[path]
        assert node.findtext("m:size", namespaces=NS) == str(len(data))
        assert node.find("m:hash", NS).get("type") == "sha-256"
        assert node.findtext("m:hash", namespaces=NS) == sha(data)
        urls = node.findall("m:url", NS)
        assert [u.get("priority") for u in urls] == ["1"]
        assert "/storage/" in urls[0].text
        pieces = node.find("m:pieces", NS)
        if not data:
            assert pieces is None  # an empty file has no piece to hash
            continue
        assert (pieces.get("length"), pieces.get("type")) == (str(PIECE), "sha-256")
        assert [h.text for h in pieces.findall("m:hash", NS)] == piece_hashes(data)
    assert DownloadEvent.objects.filter(via="manifest", manifest_format="metalink").count() == 1


def test_the_grant_pages_batch_is_offered_as_metalink(client, local_storage, alice, reviewer):
    gated = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(gated, "checkpoint_last-model_part-0-shard0.pt", FILES["pytorch_model.bin"], piece_size=PIECE)
    grant = grant_for(alice, gated, reviewer)
    client.force_login(alice)
    page = client.get(f"/grants/{grant.public_id}/")
    assert f"/grants/{grant.public_id}/batch.metalink" in page.content.decode()
    response = client.get(f"/grants/{grant.public_id}/batch.metalink")
    assert response.status_code == 200 and response["Content-Type"] == "application/metalink4+xml"
    node = ET.fromstring(response.content).find("m:file", NS)
    assert [h.text for h in node.find("m:pieces", NS).findall("m:hash", NS)] == piece_hashes(FILES["pytorch_model.bin"])
    assert node.find("m:url", NS).text == grant.batches.get().urls[0]["url"]


# --- mirrors --------------------------------------------------------------------------------------


def test_a_mirror_serves_nothing_until_it_is_verified(release, mirror):
    assert [loc.name for loc in selectors.release_locations(release=release)] == ["primary"]
    assert "urls" not in manifest(release, "json").json()["files"][0]
    response = APIClient().get(f"/api/v1/models/{release.repo_id}/files/config.json", {"mirror": "eu"})
    assert response.status_code == 302 and response["X-Mirror"] == "primary"
    assert "/storage/" in response["Location"]


def test_a_verified_mirror_is_listed_and_chosen_on_request(release, mirror):
    out = run("verify_mirror", release.repo_id, "eu")
    assert "eu verified for facebook/opt-125m" in out and "enabled" in out
    row = ReleaseMirror.objects.get(release=release, mirror="eu")
    assert (row.status, row.revision, row.files_checked) == ("enabled", release.revision, 3)
    assert row.bytes_checked == sum(map(len, FILES.values()))
    event = AuditEvent.objects.get(action="mirror.verified")
    assert event.credential == "command:verify_mirror" and event.data["mirror"] == "eu"

    files = {f["path"]: f for f in manifest(release, "json").json()["files"]}
    urls = files["pytorch_model.bin"]["urls"]
    assert [(u["mirror"], u["priority"], u["location"]) for u in urls] == [("primary", 1, "us"), ("eu", 2, "de")]
    assert urls[0]["url"] == files["pytorch_model.bin"]["url"] and "/storage/" in urls[0]["url"]
    assert f"/{mirror['prefix']}/" in urls[1]["url"] and "X-Amz-Signature=" in urls[1]["url"]

    node = next(f for f in ET.fromstring(manifest(release, "metalink").content) if f.get("name") == "pytorch_model.bin")
    assert [(u.get("location"), u.get("priority")) for u in node.findall("m:url", NS)] == [("us", "1"), ("de", "2")]

    api = APIClient()
    chosen = api.get(f"/api/v1/models/{release.repo_id}/files/pytorch_model.bin", {"mirror": "eu"})
    assert chosen.status_code == 302 and chosen["X-Mirror"] == "eu"
    assert requests.get(chosen["Location"], timeout=10).content == FILES["pytorch_model.bin"]
    default = api.get(f"/api/v1/models/{release.repo_id}/files/pytorch_model.bin")
    assert default["X-Mirror"] == "primary" and "/storage/" in default["Location"]


def test_hf_resolve_and_relay_urls_take_a_verified_s3_mirror(release, mirror, client):
    from urllib.parse import urlsplit

    from access import downloads

    run("verify_mirror", release.repo_id, "eu")
    file = release.files.get(path="pytorch_model.bin")
    relay = urlsplit(downloads.relay_url(file.pk, file.path, user_id=None, base_url="http://testserver")).path
    for response in (
        client.head(f"/{release.repo_id}/resolve/main/pytorch_model.bin", {"mirror": "eu"}),
        client.get(relay, {"mirror": "eu"}),
    ):
        assert response.status_code == 302 and response["X-Mirror"] == "eu"
        assert f"/{mirror['prefix']}/" in response["Location"] and "X-Amz-Signature=" in response["Location"]
        assert "revision=" not in response["Location"]  # only LocalStorage URLs carry the revision
        assert requests.get(response["Location"], timeout=10).content == FILES["pytorch_model.bin"]


def test_the_default_order_follows_priority(release, mirror, settings):
    run("verify_mirror", release.repo_id, "eu")
    settings.STORAGE_PRIORITY = 5
    response = APIClient().get(f"/api/v1/models/{release.repo_id}/files/config.json")
    assert response["X-Mirror"] == "eu"
    assert [u["mirror"] for u in manifest(release, "json").json()["files"][0]["urls"]] == ["eu", "primary"]
    explicit = APIClient().get(f"/api/v1/models/{release.repo_id}/files/config.json", {"mirror": "primary"})
    assert explicit["X-Mirror"] == "primary"


def test_an_unknown_mirror_is_a_clear_400(release, mirror):
    response = APIClient().get(f"/api/v1/models/{release.repo_id}/files/config.json", {"mirror": "mars"})
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_mirror" and "primary, eu" in response.json()["detail"]
    assert not DownloadEvent.objects.filter(file__isnull=False).exists()


def test_a_failed_verification_keeps_the_mirror_disabled_and_says_which_files_differ(release, mirror):
    run("verify_mirror", release.repo_id, "eu")
    weights = bytearray(FILES["pytorch_model.bin"])
    weights[3 * PIECE + 5] ^= 0x01
    put(mirror, release, "pytorch_model.bin", bytes(weights))
    put(mirror, release, "config.json", FILES["config.json"] + b" ")
    mirror["client"].delete_object(
        Bucket=mirror["bucket"], Key=f"{mirror['prefix']}/{release.files.get(path='empty.txt').storage_key}"
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="differs from the record in 3 of 3 files; it stays disabled"):
        call_command("verify_mirror", release.repo_id, "eu", stdout=io.StringIO(), stderr=err)
    assert "pytorch_model.bin: pieces 3 differ" in err.getvalue()
    assert "config.json: size is 23, expected 22" in err.getvalue()
    assert "empty.txt: missing on the mirror" in err.getvalue()
    row = ReleaseMirror.objects.get(release=release, mirror="eu")
    assert row.status == "failed"
    assert {d["path"]: d["problem"] for d in row.differences} == {
        "pytorch_model.bin": "pieces",
        "config.json": "size",
        "empty.txt": "missing",
    }
    event = AuditEvent.objects.get(action="mirror.verification_failed")
    assert event.data["differences"] == 3 and {d["path"] for d in event.data["differing"]} == set(FILES)
    # What was enabled before is not any more.
    assert [loc.name for loc in selectors.release_locations(release=release)] == ["primary"]
    assert "urls" not in manifest(release, "json").json()["files"][0]


def test_a_different_file_of_the_same_size_is_caught_by_its_hash(release, mirror):
    # A file registered before pieces were hashed (published files are otherwise immutable in the database).
    with pgtrigger.ignore("access.ModelFile:published_files_immutable"):
        ModelFile.objects.filter(release=release, path="config.json").update(piece_size=0, pieces="")
    put(mirror, release, "config.json", b'{"model_type": "OPT"}\n')
    with pytest.raises(CommandError):
        run("verify_mirror", release.repo_id, "eu")
    assert ReleaseMirror.objects.get(release=release, mirror="eu").differences[0]["problem"] == "sha256"


def test_a_mirror_verified_for_an_earlier_revision_does_not_serve(release, mirror):
    run("verify_mirror", release.repo_id, "eu")
    add_file(release, "extra.txt", b"new file", piece_size=PIECE)
    release.refresh_from_db()
    assert [loc.name for loc in selectors.release_locations(release=release)] == ["primary"]


def test_a_mirror_can_be_disabled_and_that_is_audited(release, mirror):
    run("verify_mirror", release.repo_id, "eu")
    out = run("verify_mirror", release.repo_id, "eu", "--disable", "--reason", "bucket migration")
    assert "no longer serves" in out
    assert ReleaseMirror.objects.get(release=release, mirror="eu").status == "disabled"
    assert AuditEvent.objects.get(action="mirror.disabled").data == {
        "mirror": "eu",
        "from": "enabled",
        "reason": "bucket migration",
    }
    assert [loc.name for loc in selectors.release_locations(release=release)] == ["primary"]


def test_only_reviewers_verify_mirrors(release, mirror, alice):
    with pytest.raises(services.Forbidden):
        services.mirror_verify(actor=services.Actor(user=alice, credential="session"), release=release, mirror="eu")
    with pytest.raises(services.ServiceError) as exc:
        services.mirror_verify(actor=services.command_actor("t"), release=release, mirror="mars")
    assert exc.value.code == "unknown_mirror"
    with pytest.raises(CommandError, match="primary storage"):
        run("verify_mirror", release.repo_id, "primary")
    assert not ReleaseMirror.objects.exists()


def test_a_gated_manifest_still_needs_a_grant_whatever_the_format(local_storage, alice, reviewer):
    gated = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(gated, "checkpoint_last-model_part-0-shard0.pt", b"shard", piece_size=PIECE)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice)}")
    refused = api.get("/api/v1/models/facebook/opt-175b/manifest", {"format": "metalink"})
    assert refused.status_code == 403 and refused.json()["code"] == "gated"
    grant_for(alice, gated, reviewer)
    assert api.get("/api/v1/models/facebook/opt-175b/manifest", {"format": "metalink"}).status_code == 200


# --- settings -------------------------------------------------------------------------------------


def settings_of(env: dict) -> subprocess.CompletedProcess:
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        "print(json.dumps({'m': settings.STORAGE_MIRRORS, 'p': settings.PIECE_SIZE}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"SECRET_KEY": "x", "DJANGO_SETTINGS_MODULE": "portal.settings", "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_mirrors_are_read_from_the_environment():
    result = settings_of(
        {
            "STORAGE_MIRRORS": "eu-west,lab",
            "MIRROR_EU_WEST_S3_BUCKET": "weights-eu",
            "MIRROR_EU_WEST_S3_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com",
            "MIRROR_EU_WEST_S3_REGION": "eu-west-1",
            "MIRROR_EU_WEST_LOCATION": "IE",
            "MIRROR_LAB_S3_BUCKET": "weights",
            "MIRROR_LAB_S3_ENDPOINT_URL": "https://minio.lab.example",
            "MIRROR_LAB_PRIORITY": "7",
            "PIECE_SIZE": "4194304",
        }
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["p"] == 4194304
    assert list(data["m"]) == ["eu-west", "lab"]
    assert (data["m"]["eu-west"]["bucket"], data["m"]["eu-west"]["location"], data["m"]["eu-west"]["priority"]) == (
        "weights-eu",
        "ie",
        2,
    )
    assert (data["m"]["lab"]["endpoint_url"], data["m"]["lab"]["priority"]) == ("https://minio.lab.example", 7)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STORAGE_MIRRORS": "eu"}, "MIRROR_EU_S3_BUCKET"),
        ({"STORAGE_MIRRORS": "EU"}, "lower-case"),
        ({"STORAGE_MIRRORS": "primary"}, "differ from STORAGE_NAME"),
        ({"STORAGE_MIRRORS": "eu,eu", "MIRROR_EU_S3_BUCKET": "b"}, "twice"),
        ({"STORAGE_MIRRORS": "eu", "MIRROR_EU_S3_BUCKET": "b", "MIRROR_EU_LOCATION": "Europe"}, "two-letter"),
        ({"STORAGE_MIRRORS": "eu", "MIRROR_EU_S3_BUCKET": "b", "MIRROR_EU_PRIORITY": "0"}, "between 1 and 999999"),
        ({"STORAGE_MIRRORS": "eu", "MIRROR_EU_S3_BUCKET": "b", "MIRROR_EU_BACKEND": "ftp"}, "MIRROR_EU_BACKEND"),
        ({"PIECE_SIZE": "100"}, "PIECE_SIZE"),
    ],
)
def test_a_bad_mirror_setting_stops_the_process(env, message):
    result = settings_of(env)
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_releases_without_mirrors_make_no_mirror_query(release, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert selectors.release_location(release=release).name == "primary"
    assert ModelRelease.objects.count() == 1
