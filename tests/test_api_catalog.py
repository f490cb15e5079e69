import hashlib

import pytest
from rest_framework.test import APIClient

from access import counts as counters
from access.gate import loader as decision_cache
from access.models import DownloadCount, DownloadEvent
from access.redisconn import redis_key, shared_redis
from tests.factories import ReleaseFactory, add_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def open_release(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "config.json", b'{"a": 1}')
    add_file(release, "pytorch_model.bin", b"\x00weights" * 100)
    return release


@pytest.fixture
def gated_release(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, "checkpoint_last-model_part-0-shard0.pt", b"shard")
    return release


def test_it_lists_releases_including_gated_metadata(api, open_release, gated_release):
    data = api.get("/api/v1/models").json()
    assert data["count"] == 2
    by_id = {r["repo_id"]: r for r in data["results"]}
    assert by_id["facebook/opt-175b"]["access"] == "gated"
    assert by_id["facebook/opt-175b"]["license"]["slug"] == "test-noncommercial"
    assert by_id["facebook/opt-125m"]["file_count"] == 2


def test_it_shows_a_release_with_its_files(api, open_release):
    data = api.get("/api/v1/models/facebook/opt-125m/").json()
    assert [f["path"] for f in data["files"]] == ["config.json", "pytorch_model.bin"]
    assert data["files"][0]["sha256"] == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert len(data["revision"]) == 40


def test_it_redirects_an_open_file_to_a_signed_url_and_records_it(api, open_release):
    response = api.get("/api/v1/models/facebook/opt-125m/files/config.json")
    assert response.status_code == 302
    assert "/storage/" in response["Location"]
    assert response["Location"].endswith("/config.json")
    followed = api.get(response["Location"].replace("http://testserver", ""))
    assert b"".join(followed.streaming_content) == b'{"a": 1}'
    # Anonymous downloads of open files are counted per file and hour, not logged one row each.
    assert DownloadEvent.objects.filter(file__path="config.json").count() == 0
    assert counters.download_counts_flush() == 1
    counted = DownloadCount.objects.get(file__path="config.json")
    assert counted.count == 1 and counted.hour.minute == 0
    assert counters.release_downloads(release=open_release) == 1
    page = api.get("/models/facebook/opt-125m/").content.decode()
    assert "1 download in the last 30 days, one per person or address a day" in page


def test_counted_downloads_are_added_once_even_if_a_flush_is_repeated(api, open_release):
    for _ in range(3):
        api.get("/api/v1/models/facebook/opt-125m/files/config.json")
    api.head("/facebook/opt-125m/resolve/main/pytorch_model.bin")
    counters.send_pending()  # this process's counts into Redis, as its sending thread would
    client = shared_redis()
    # A flush that died after adding a batch but before deleting it: the batch is found again, not added twice.
    live = next(iter(client.scan_iter(match=redis_key(counters.LIVE + "*"))))
    batch = live.decode().replace(counters.LIVE, counters.BATCH) + ":dead"
    client.rename(live, batch)
    counters._flush_batch(client, batch, batch.split(counters.BATCH)[1].split(":")[0])
    client.hset(batch, mapping={str(f.pk): 1 for f in open_release.files.all()})  # as if the delete never ran
    assert counters.download_counts_flush() == 2  # read again, but the batch is known: nothing is added
    assert sum(DownloadCount.objects.values_list("count", flat=True)) == 4
    assert not list(client.scan_iter(match=redis_key(counters.LIVE + "*")))
    assert not list(client.scan_iter(match=redis_key(counters.BATCH + "*")))
    # The day's anonymous addresses stay (as a HyperLogLog) until the day is over.
    assert list(client.scan_iter(match=redis_key(counters.VISITORS + "*")))


def test_without_redis_an_anonymous_download_is_logged_as_a_row(api, open_release, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    decision_cache.forget()
    api.get("/api/v1/models/facebook/opt-125m/files/config.json")
    assert DownloadEvent.objects.filter(via="api", file__path="config.json", user=None).count() == 1


def test_head_answers_the_same_redirect(api, open_release):
    response = api.head("/api/v1/models/facebook/opt-125m/files/pytorch_model.bin")
    assert response.status_code == 302
    assert response["X-File-Size"] == str(len(b"\x00weights" * 100))


@pytest.mark.parametrize(
    "path",
    [
        "../config.json",
        "a/../config.json",
        "%2e%2e/config.json",
        "/etc/passwd",
        "config.json%00",
        "x\\y",
        "a%0Ab",
        "./config.json",
    ],
)
def test_it_does_not_find_paths_that_escape(api, open_release, path):
    response = api.get(f"/api/v1/models/facebook/opt-125m/files/{path}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_unknown_release_and_file_are_json_404(api, open_release):
    assert api.get("/api/v1/models/nobody/nothing").json()["code"] == "not_found"
    response = api.get("/api/v1/models/facebook/opt-125m/files/missing.bin")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("fmt", ["json", "aria2", "wget", "sha256sum"])
def test_the_manifest_comes_in_each_format(api, open_release, fmt):
    response = api.get(f"/api/v1/models/facebook/opt-125m/manifest?format={fmt}")
    assert response.status_code == 200
    body = response.content.decode()
    sha = hashlib.sha256(b'{"a": 1}').hexdigest()
    if fmt == "json":
        files = response.json()["files"]
        assert files[0]["sha256"] == sha and files[0]["url"].startswith("http://testserver/storage/")
    elif fmt == "aria2":
        assert f"  out=config.json\n  checksum=sha-256={sha}\n" in body
    elif fmt == "wget":
        assert all(line.rsplit("/", 1)[1] in ("config.json", "pytorch_model.bin") for line in body.splitlines())
    else:
        assert f"{sha}  config.json\n" in body
    assert DownloadEvent.objects.filter(via="manifest", manifest_format=fmt).count() == 1


def test_an_unknown_manifest_format_is_refused(api, open_release):
    response = api.get("/api/v1/models/facebook/opt-125m/manifest?format=zip")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_format"


def test_gated_files_and_manifest_refuse_anonymous_callers(api, gated_release):
    for url in (
        "/api/v1/models/facebook/opt-175b/files/checkpoint_last-model_part-0-shard0.pt",
        "/api/v1/models/facebook/opt-175b/manifest",
    ):
        response = api.get(url)
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"
        assert "apply" in response.json()["detail"]
    assert not DownloadEvent.objects.exists()


def test_absurd_pagination_is_a_clean_404(api, open_release):
    for page in ("999999999999999999", "-1", "abc"):
        response = api.get(f"/api/v1/models?page={page}")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_schema_and_docs_are_served_without_a_cdn(client):
    assert client.get("/api/schema").status_code == 200
    docs = client.get("/api/docs").content.decode()
    assert "cdn" not in docs.lower() and "jsdelivr" not in docs
