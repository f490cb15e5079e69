"""The Hugging Face Hub-compatible endpoints, driven by the real huggingface_hub client and `hf` CLI against a
live portal."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub as hf
import pytest
import requests
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.hf_api import RepoFile, RepoFolder
from huggingface_hub.utils import close_session

from access import counts as counters
from access import services
from access.models import DownloadCount, DownloadEvent
from tests.factories import ReleaseFactory, add_file, grant_for, token_secret

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OPEN_FILES = {
    "config.json": b'{"model_type": "opt", "hidden_size": 768}\n',
    "tokenizer/vocab.json": b'{"hello": 0, "world": 1}\n',
    "checkpoint_last-model_part-0-shard0.pt": hashlib.shake_256(b"shard0").digest(70_000),
    "checkpoint_last-model_part-0-shard1.pt": hashlib.shake_256(b"shard1").digest(50_001),
    "README.md": b"",
}
GATED_FILES = {
    "config.json": b'{"model_type": "opt", "hidden_size": 12288}\n',
    "checkpoint_last-model_part-0-shard0.pt": hashlib.shake_256(b"gated0").digest(40_000),
}
HF_CLI = Path(sys.executable).with_name("hf")


@pytest.fixture(autouse=True)
def hf_env(monkeypatch, tmp_path):
    """huggingface_hub with no Xet, no telemetry and no token or cache from the machine."""
    env = {
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    # constants are read when huggingface_hub is imported
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    yield
    close_session()


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    """Live-server threads close their database connection after each request: a thread kept alive by an HTTP
    keep-alive connection would otherwise keep the test database from being dropped."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.fixture
def portal(live_server, settings, local_storage):
    settings.SITE_URL = live_server.url
    return live_server.url


@pytest.fixture
def open_release(portal):
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    for path, content in OPEN_FILES.items():
        add_file(release, path, content)
    release.refresh_from_db()
    return release


@pytest.fixture
def gated_release(portal):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    for path, content in GATED_FILES.items():
        add_file(release, path, content)
    release.refresh_from_db()
    return release


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_snapshot(folder, files):
    folder = Path(folder)
    got = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts}
    assert got == set(files)
    for path, content in files.items():
        assert sha256(folder / path) == hashlib.sha256(content).hexdigest(), path


def test_it_serves_a_whole_open_release_to_snapshot_download(portal, open_release, tmp_path):
    folder = hf.snapshot_download(open_release.repo_id, endpoint=portal, cache_dir=tmp_path / "cache", token=False)
    assert Path(folder).name == open_release.revision
    assert_snapshot(folder, OPEN_FILES)
    # One HEAD per file (the client fetches the signed URL itself); anonymous and open, so counted, not logged.
    assert not DownloadEvent.objects.filter(via="hf").exists()
    assert counters.download_counts_flush() == len(OPEN_FILES)
    counted = dict(DownloadCount.objects.values_list("file__path", "count"))
    assert counted == dict.fromkeys(OPEN_FILES, 1)


def test_it_serves_one_file_to_hf_hub_download(portal, open_release, tmp_path):
    path = hf.hf_hub_download(
        open_release.repo_id, "tokenizer/vocab.json", endpoint=portal, cache_dir=tmp_path / "c", token=False
    )
    assert Path(path).read_bytes() == OPEN_FILES["tokenizer/vocab.json"]
    pinned = hf.hf_hub_download(
        open_release.repo_id,
        "config.json",
        revision=open_release.revision,
        endpoint=portal,
        cache_dir=tmp_path / "c",
        token=False,
    )
    assert Path(pinned).read_bytes() == OPEN_FILES["config.json"]
    # the cache names blobs after the SHA-256 the portal publishes
    blob = Path(pinned).resolve()
    assert blob.name == hashlib.sha256(OPEN_FILES["config.json"]).hexdigest()


def test_model_info_has_the_revision_and_lfs_checksums(portal, open_release, gated_release):
    api = hf.HfApi(endpoint=portal, token=False)
    info = api.model_info(open_release.repo_id)
    assert info.sha == open_release.revision
    assert info.gated is False and info.private is False
    assert info.last_modified is not None
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == set(OPEN_FILES)
    for path, content in OPEN_FILES.items():
        assert siblings[path].size == len(content)
        assert siblings[path].lfs.sha256 == hashlib.sha256(content).hexdigest()
    assert api.model_info(open_release.repo_id, revision=open_release.revision).sha == open_release.revision
    gated = api.model_info(gated_release.repo_id)  # metadata is public, like /api/v1
    assert gated.gated == "manual"
    assert gated.card_data is not None


def test_the_tree_lists_files_and_folders_and_pages(portal, open_release, monkeypatch):
    from access.api import hf as hf_views

    api = hf.HfApi(endpoint=portal, token=False)
    everything = list(api.list_repo_tree(open_release.repo_id, recursive=True))
    files = {e.path: e for e in everything if isinstance(e, RepoFile)}
    folders = [e.path for e in everything if isinstance(e, RepoFolder)]
    assert set(files) == set(OPEN_FILES)
    assert folders == ["tokenizer"]
    assert files["config.json"].lfs.sha256 == hashlib.sha256(OPEN_FILES["config.json"]).hexdigest()
    top = {e.path for e in api.list_repo_tree(open_release.repo_id)}
    assert top == {p for p in OPEN_FILES if "/" not in p} | {"tokenizer"}
    assert [e.path for e in api.list_repo_tree(open_release.repo_id, "tokenizer")] == ["tokenizer/vocab.json"]

    monkeypatch.setattr(hf_views, "TREE_PAGE_SIZE", 2)  # the live server runs in this process
    response = requests.get(f"{portal}/api/models/{open_release.repo_id}/tree/main?recursive=true")
    assert len(response.json()) == 2 and 'rel="next"' in response.headers["Link"]
    assert requests.get(response.url + "&cursor=%C2%B2").status_code == 400
    paged = [e.path for e in api.list_repo_tree(open_release.repo_id, recursive=True)]
    assert paged == [e.path for e in everything]


def test_unknown_repos_revisions_and_files_get_the_hub_errors(portal, open_release, tmp_path):
    api = hf.HfApi(endpoint=portal, token=False)
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        api.model_info("facebook/opt-9000b")
    for revision in ("v1.0", "refs/pr/1"):
        with pytest.raises(hf_errors.RevisionNotFoundError):
            api.model_info(open_release.repo_id, revision=revision)
    with pytest.raises(hf_errors.RevisionNotFoundError):
        hf.hf_hub_download(
            open_release.repo_id, "config.json", revision="dev", endpoint=portal, cache_dir=tmp_path, token=False
        )
    with pytest.raises(hf_errors.RemoteEntryNotFoundError):
        hf.hf_hub_download(open_release.repo_id, "nope.bin", endpoint=portal, cache_dir=tmp_path, token=False)
    with pytest.raises(hf_errors.RemoteEntryNotFoundError):
        list(api.list_repo_tree(open_release.repo_id, "no-such-folder"))
    base = f"{portal}/{open_release.repo_id}/resolve"
    assert requests.head(f"{base}/main/nope.bin").headers["X-Error-Code"] == "EntryNotFound"
    assert requests.head(f"{base}/{'0' * 40}/config.json").headers["X-Error-Code"] == "RevisionNotFound"
    missing = requests.get(f"{portal}/facebook/opt-9000b/resolve/main/config.json")
    assert (missing.status_code, missing.headers["X-Error-Code"]) == (404, "RepoNotFound")
    assert DownloadEvent.objects.count() == 0


def test_resolve_redirects_to_an_absolute_signed_url_with_the_metadata(portal, open_release):
    content = OPEN_FILES["checkpoint_last-model_part-0-shard0.pt"]
    url = f"{portal}/{open_release.repo_id}/resolve/main/checkpoint_last-model_part-0-shard0.pt"
    for method in (requests.head, requests.get):
        response = method(url, allow_redirects=False)
        assert response.status_code == 302
        assert response.headers["Location"].startswith(f"{portal}/storage/")
        assert response.headers["X-Repo-Commit"] == open_release.revision
        assert response.headers["X-Linked-Etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
        assert response.headers["X-Linked-Size"] == str(len(content))
        assert not any(h.lower().startswith("x-xet") for h in response.headers)
    assert requests.get(url).content == content
    assert counters.download_counts_flush() == 3  # HEAD, GET, GET: each counted once


def test_a_gated_release_needs_a_grant(portal, gated_release, alice, tmp_path):
    repo = gated_release.repo_id
    with pytest.raises(hf_errors.GatedRepoError) as anonymous:
        hf.snapshot_download(repo, endpoint=portal, cache_dir=tmp_path / "a", token=False)
    assert anonymous.value.response.status_code == 401
    assert "apply" in str(anonymous.value)
    with pytest.raises(hf_errors.GatedRepoError):
        hf.hf_hub_download(repo, "config.json", endpoint=portal, cache_dir=tmp_path / "a", token=False)
    with pytest.raises(hf_errors.GatedRepoError) as no_grant:
        hf.hf_hub_download(repo, "config.json", endpoint=portal, cache_dir=tmp_path / "b", token=token_secret(alice))
    assert no_grant.value.response.status_code == 403

    response = requests.get(f"{portal}/{repo}/resolve/main/config.json")
    assert response.status_code == 401
    assert response.headers["X-Error-Code"] == "GatedRepo"
    assert "apply" in response.headers["X-Error-Message"]
    assert response.json()["code"] == "not_authenticated"
    assert response.json()["error"] == response.headers["X-Error-Message"]
    assert not list((tmp_path / "a").rglob("config.json")) + list((tmp_path / "b").rglob("config.json"))
    assert DownloadEvent.objects.count() == 0


def test_an_approved_researcher_downloads_with_a_token_until_revoked(portal, gated_release, alice, reviewer, tmp_path):
    grant = grant_for(alice, gated_release, reviewer)
    secret = token_secret(alice)
    folder = hf.snapshot_download(gated_release.repo_id, endpoint=portal, cache_dir=tmp_path / "ok", token=secret)
    assert_snapshot(folder, GATED_FILES)
    events = DownloadEvent.objects.filter(via="hf")
    assert events.count() == len(GATED_FILES)
    assert all(e.user == alice and e.grant == grant and e.token is not None for e in events)

    reason = "Shared the weights publicly —\nsee the Lizenzverstoß report"
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), grant=grant, reason=reason
    )
    with pytest.raises(hf_errors.GatedRepoError) as revoked:
        hf.snapshot_download(gated_release.repo_id, endpoint=portal, cache_dir=tmp_path / "again", token=secret)
    assert "Shared the weights publicly" in str(revoked.value)
    with pytest.raises(hf_errors.GatedRepoError) as head_only:  # a HEAD: the message is only in the header
        hf.hf_hub_download(
            gated_release.repo_id, "config.json", endpoint=portal, cache_dir=tmp_path / "again", token=secret
        )
    assert "Shared the weights publicly — see the Lizenzverstoß report" in str(head_only.value)


def test_a_bad_token_is_a_credentials_error_not_a_missing_repo(portal, open_release, tmp_path):
    with pytest.raises(hf_errors.HfHubHTTPError) as bad:
        hf.hf_hub_download(open_release.repo_id, "config.json", endpoint=portal, cache_dir=tmp_path, token="mp_nope")
    assert bad.value.response.status_code == 401
    assert not isinstance(bad.value, hf_errors.RepositoryNotFoundError)
    assert bad.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_s3_files_are_fetched_from_storage_with_the_metadata_of_the_redirect(
    live_server, settings, s3_storage, alice, reviewer, tmp_path
):
    settings.SITE_URL = live_server.url
    release = ReleaseFactory(repo_id="facebook/opt-66b", access="gated")
    for path, content in GATED_FILES.items():
        add_file(release, path, content)
    grant_for(alice, release, reviewer)
    folder = hf.snapshot_download(
        release.repo_id, endpoint=live_server.url, cache_dir=tmp_path / "s3", token=token_secret(alice)
    )
    assert_snapshot(folder, GATED_FILES)


def cli(args, *, portal, home, token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k not in ("HUGGING_FACE_HUB_TOKEN",)}
    env.update(HF_ENDPOINT=portal, HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([str(HF_CLI), *args], env=env, capture_output=True, text=True, timeout=60)


def test_the_hf_cli_downloads_a_gated_release_with_a_token(portal, gated_release, alice, reviewer, tmp_path):
    assert HF_CLI.exists(), "the hf CLI ships with huggingface_hub"
    refused = cli(
        ["download", gated_release.repo_id, "--local-dir", str(tmp_path / "no")], portal=portal, home=tmp_path
    )
    assert refused.returncode != 0
    assert "requires approval" in refused.stderr  # the CLI's wording for GatedRepoError
    grant_for(alice, gated_release, reviewer)
    result = cli(
        ["download", gated_release.repo_id, "--local-dir", str(tmp_path / "opt")],
        portal=portal,
        home=tmp_path,
        token=token_secret(alice),
    )
    assert result.returncode == 0, result.stderr
    assert_snapshot(tmp_path / "opt", GATED_FILES)


def test_it_is_throttled_like_the_v1_api(portal, open_release, settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "ip": "2/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    url = f"{portal}/{open_release.repo_id}/resolve/main/config.json"
    assert [requests.head(url).status_code for _ in range(2)] == [302, 302]
    throttled = requests.head(url)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert throttled.headers["X-Error-Message"]
    assert counters.download_counts_flush() == 2  # the refused one is not counted


def test_a_signed_in_researcher_resolves_with_the_session(client, gated_release, alice, reviewer):
    url = f"/{gated_release.repo_id}/resolve/main/config.json"
    client.force_login(alice)
    assert client.head(url).status_code == 403
    grant_for(alice, gated_release, reviewer)
    response = client.head(url)
    assert response.status_code == 302
    assert response["X-Repo-Commit"] == gated_release.revision
    assert DownloadEvent.objects.get(via="hf").user == alice
