"""Immutable release revisions: registering changed files publishes a new revision, published ones never change
(the service and the database both refuse), `main` is the latest, older ones stay downloadable by id on every
channel, and manifests name their revision."""

import hashlib
import io

import pytest
from django.core.management import call_command
from django.db import DatabaseError, transaction
from rest_framework.test import APIClient

from access import services
from access.models import DownloadEvent, ModelFile, ModelRelease, ReleaseRevision
from tests.factories import REGISTRAR, ReleaseFactory, add_file, grant_for, token_secret

pytestmark = pytest.mark.django_db

V1 = {"config.json": b'{"v": 1}\n', "weights.bin": b"revision one weights"}
V2_WEIGHTS = b"revision two weights, fixed"


@pytest.fixture
def release(local_storage, tmp_path):
    """facebook/opt-175b registered from a directory, then with one file changed: revisions 1 and 2."""
    src = tmp_path / "src"
    src.mkdir()
    for path, content in V1.items():
        (src / path).write_bytes(content)
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    call_command("register_release", release.repo_id, "--from-dir", str(src), "--notes", "First", stdout=io.StringIO())
    (src / "weights.bin").write_bytes(V2_WEIGHTS)
    out = io.StringIO()
    call_command("register_release", release.repo_id, "--from-dir", str(src), "--notes", "Fix the weights", stdout=out)
    assert "published revision 2" in out.getvalue()
    release.refresh_from_db()
    return release


def revision(release, number) -> ReleaseRevision:
    return release.revisions.get(number=number)


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def test_registering_a_changed_file_publishes_revision_two_and_keeps_revision_one(release, local_storage):
    one, two = revision(release, 1), revision(release, 2)
    assert release.main_revision == two and release.revision == two.sha != one.sha
    assert (one.notes, two.notes) == ("First", "Fix the weights")
    assert dict(one.files.values_list("path", "sha256")) == {p: sha(c) for p, c in V1.items()}
    assert dict(two.files.values_list("path", "sha256")) == {
        "config.json": sha(V1["config.json"]),
        "weights.bin": sha(V2_WEIGHTS),
    }
    assert dict(release.files.values_list("path", "sha256")) == dict(two.files.values_list("path", "sha256"))
    # The changed file went to a key of its own; revision one's bytes are untouched.
    old, new = one.files.get(path="weights.bin"), two.files.get(path="weights.bin")
    assert old.storage_key != new.storage_key
    with local_storage.open(old.storage_key) as f:
        assert f.read() == V1["weights.bin"]
    assert one.files.get(path="config.json").storage_key == two.files.get(path="config.json").storage_key


def test_registering_the_same_files_again_publishes_nothing(release, tmp_path):
    out = io.StringIO()
    call_command("register_release", release.repo_id, "--from-dir", str(tmp_path / "src"), "--rehash", stdout=out)
    assert "no new revision" in out.getvalue()
    assert release.revisions.count() == 2


def test_the_database_refuses_to_change_a_published_revision(release):
    one = revision(release, 1)
    file = one.files.get(path="weights.bin")
    for change in (
        lambda: ModelFile.objects.filter(pk=file.pk).update(sha256="0" * 64),
        lambda: ModelFile.objects.filter(pk=file.pk).update(size=1),
        lambda: ModelFile.objects.filter(pk=file.pk).update(path="other.bin"),
        lambda: ModelFile.objects.filter(pk=file.pk).delete(),
        lambda: ModelFile.objects.create(
            release=release, revision=one, path="extra.bin", size=1, sha256="0" * 64, storage_key="k"
        ),
        lambda: ReleaseRevision.objects.filter(pk=one.pk).update(sha="f" * 40),
        lambda: ReleaseRevision.objects.filter(pk=one.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="revision"), transaction.atomic():
            change()
    assert one.files.get(path="weights.bin").sha256 == sha(V1["weights.bin"])
    ReleaseRevision.objects.filter(pk=one.pk).update(notes="Notes may be corrected.")


def test_a_storage_key_of_a_published_file_is_never_given_other_contents(release):
    one = revision(release, 1)
    key = one.files.get(path="weights.bin").storage_key
    with pytest.raises(services.ServiceError) as exc:
        services.release_upsert_file(
            actor=REGISTRAR, release=release, path="weights.bin", size=3, sha256="a" * 64, storage_key=key
        )
    assert exc.value.code == "storage_key_in_use"


@pytest.fixture
def api(release, alice, reviewer):
    grant_for(alice, release, reviewer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice)}")
    return client


def test_the_v1_endpoints_serve_main_or_a_revision_by_id(api, release):
    one = revision(release, 1)
    detail = api.get("/api/v1/models/facebook/opt-175b").json()
    assert (detail["revision"], detail["revision_number"]) == (release.revision, 2)
    assert [r["number"] for r in detail["revisions"]] == [2, 1]
    assert detail["revisions"][0]["notes"] == "Fix the weights"
    old = api.get("/api/v1/models/facebook/opt-175b", {"revision": one.sha}).json()
    assert old["revision"] == one.sha and {f["path"]: f["sha256"] for f in old["files"]}["weights.bin"] == sha(
        V1["weights.bin"]
    )

    manifest = api.get("/api/v1/models/facebook/opt-175b/manifest", {"revision": one.sha})
    assert manifest.json()["revision"] == one.sha and manifest["X-Revision"] == one.sha
    assert {f["path"]: f["sha256"] for f in manifest.json()["files"]}["weights.bin"] == sha(V1["weights.bin"])
    for fmt in ("aria2", "sha256sum"):
        text = api.get("/api/v1/models/facebook/opt-175b/manifest", {"format": fmt}).content.decode()
        assert text.startswith(f"# facebook/opt-175b revision {release.revision}\n")
    assert api.get("/api/v1/models/facebook/opt-175b/manifest?format=wget")["X-Revision"] == release.revision

    new_file = api.get("/api/v1/models/facebook/opt-175b/files/weights.bin")
    old_file = api.get(f"/api/v1/models/facebook/opt-175b/files/weights.bin?revision={one.sha}")
    assert new_file["X-Checksum-Sha256"] == sha(V2_WEIGHTS) and old_file["X-Checksum-Sha256"] == sha(V1["weights.bin"])
    events = DownloadEvent.objects.filter(file__isnull=False).order_by("id")
    assert [e.revision.number for e in events] == [2, 1]  # a grant covers every revision
    assert DownloadEvent.objects.filter(via="manifest").first().revision == one

    missing = api.get("/api/v1/models/facebook/opt-175b/manifest", {"revision": "0" * 40})
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert "has no revision" in missing.json()["detail"]
    assert api.get("/api/v1/models/facebook/opt-175b?revision=nonsense").status_code == 404


def test_the_hub_endpoints_take_a_revision_id(api, release):
    one = revision(release, 1)
    info = api.get(f"/api/models/facebook/opt-175b/revision/{one.sha}").json()
    assert info["sha"] == one.sha
    assert {s["rfilename"]: s["lfs"]["sha256"] for s in info["siblings"]}["weights.bin"] == sha(V1["weights.bin"])
    assert api.get("/api/models/facebook/opt-175b/revision/main").json()["sha"] == release.revision
    tree = api.get(f"/api/models/facebook/opt-175b/tree/{one.sha}").json()
    assert {e["path"]: e["lfs"]["oid"] for e in tree}["weights.bin"] == sha(V1["weights.bin"])
    resolved = api.head(f"/facebook/opt-175b/resolve/{one.sha}/weights.bin")
    assert resolved.status_code == 302 and resolved["X-Repo-Commit"] == one.sha
    # LocalStorage answers the client's followed HEAD with the revision that was asked for.
    storage = api.head(resolved["Location"].removeprefix("http://testserver"))
    assert storage["X-Repo-Commit"] == one.sha and storage["X-Linked-Etag"] == f'"{sha(V1["weights.bin"])}"'
    unknown = api.get(f"/api/models/facebook/opt-175b/tree/{'0' * 40}")
    assert unknown["X-Error-Code"] == "RevisionNotFound"


def test_the_release_page_shows_its_revisions(client, release):
    page = client.get("/models/facebook/opt-175b").content.decode()
    for rev in release.revisions.all():
        assert f'data-revision="{rev.sha}"' in page
    assert "Fix the weights" in page


def test_the_first_revision_keeps_the_id_releases_had_before_revisions(local_storage):
    release = ReleaseFactory(repo_id="lab/model", access="open")
    add_file(release, "a.bin", b"a")
    digest = hashlib.sha1(b"lab/model\n", usedforsecurity=False)
    digest.update(f"a.bin\0{1}\0{sha(b'a')}\n".encode())
    assert ModelRelease.objects.get(pk=release.pk).revision == digest.hexdigest()


def test_a_signed_storage_url_is_answered_without_a_database_query(release, local_storage, tmp_path, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    key = revision(release, 1).files.get(path="config.json").storage_key  # one object in both revisions
    url = local_storage.signed_url(key, filename="config.json").removeprefix("http://127.0.0.1:8000")
    one, two = revision(release, 1), revision(release, 2)
    for query, commit in (({}, two.sha), ({"revision": one.sha}, one.sha), ({"revision": two.sha}, two.sha)):
        first = client.head(url, query)
        with CaptureQueriesContext(connection) as queries:
            again = client.head(url, query)
        assert not queries.captured_queries, query
        for response in (first, again):
            assert response.status_code == 200
            assert (response["X-Repo-Commit"], response["X-Linked-Size"]) == (commit, str(len(V1["config.json"])))
    # What main holds is kept only until something changes: a third revision is main at once.
    (tmp_path / "src" / "weights.bin").write_bytes(b"revision three weights")
    call_command("register_release", release.repo_id, "--from-dir", str(tmp_path / "src"), stdout=io.StringIO())
    three = revision(release, 3)
    assert client.head(url)["X-Repo-Commit"] == three.sha
    assert client.head(url, {"revision": one.sha})["X-Repo-Commit"] == one.sha
    # A revision that does not hold the object is not trusted: main's answer, looked up afresh.
    assert client.head(url, {"revision": "0" * 40})["X-Repo-Commit"] == three.sha
