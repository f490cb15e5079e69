"""The marked demo release against the live portal with the real clients: three researchers download it with
download.py, `hf download` and aria2c's Metalink, and a lab member with download.py. Every client verifies what it
received against what the portal told it (the person's own hashes and pieces); the marked shards differ between
people, and one person's stay the same across a renewal and a resumed download. Then the copies they downloaded are
traced back to them (trace_copy and the API): each whole, mixed from two of them, re-saved with the safetensors
library, too small, and an open release's."""

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from safetensors.numpy import load_file, save_file

from access import catalog_data, services, tracing
from access.models import ModelRelease
from access.storage import get_storage
from tests.factories import AccessRequestFactory, UserFactory, grant_for, token_secret
from tests.test_download_live import download
from tests.test_hf import cli
from tests.test_tracing import trace_dir

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REPO = catalog_data.MARKED_REPO_ID
SHARDS = sorted(catalog_data.MARKED_DEMO_FILES)


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    """Live-server threads close their database connection after each request (see tests/test_hf.py)."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


def session(user):
    return services.Actor(user=user, credential="session", reauthenticated=True)


def digests(folder: Path) -> dict[str, str]:
    return {p: hashlib.sha256((folder / p).read_bytes()).hexdigest() for p in [*SHARDS, "config.json"]}


def told(portal: str, token: str) -> dict[str, str]:
    """The hashes the portal gives this person (their manifest)."""
    response = requests.get(
        f"{portal}/api/v1/models/{REPO}/manifest", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return {e["path"]: e["sha256"] for e in response.json()["files"]}


def test_each_person_downloads_their_own_marked_copy_with_every_client(
    live_server, settings, local_storage, reviewer, tmp_path
):
    portal = settings.SITE_URL = live_server.url
    call_command("load_demo_catalog", only=[REPO], stdout=io.StringIO())
    release = ModelRelease.objects.get(repo_id=REPO)
    people = {name: UserFactory(email=f"{name}@uni.example") for name in ("ada", "ben", "cho", "pi", "max")}
    grants = {name: grant_for(people[name], release, reviewer) for name in ("ada", "ben", "cho")}
    lab = services.lab_create(actor=session(people["pi"]), name="Marked Lab")
    _invitation, secret = services.lab_invite(actor=session(people["pi"]), lab=lab, email=people["max"].email)
    services.lab_invitation_accept(actor=session(people["max"]), token=secret)
    request = AccessRequestFactory(applicant=people["pi"], release=release, lab=lab, all_members=True)
    services.request_approve(actor=session(reviewer), access_request=request)
    lab_grant = services.grant_issue(request_id=request.pk)
    services.lab_seat_accept(
        actor=session(people["max"]), grant=lab_grant, version="1.0", accept_license=True, noncommercial_attested=True
    )
    tokens = {name: token_secret(user) for name, user in people.items()}
    got = {}

    # download.py (which checks every file's SHA-256 and pieces) for Ada and for Max, the lab member
    for name in ("ada", "max"):
        result = download(portal, REPO, tmp_path / name, tokens[name])
        assert result.returncode == 0, result.stdout + result.stderr
        got[name] = digests(tmp_path / name)

    # `hf download` for Ben (the Hub client checks the size and the X-Linked-Etag it was given)
    result = cli(
        ["download", REPO, "--local-dir", str(tmp_path / "ben")], portal=portal, home=tmp_path, token=tokens["ben"]
    )
    assert result.returncode == 0, result.stderr
    got["ben"] = digests(tmp_path / "ben")

    # aria2c with the Metalink for Cho: every piece checked against Cho's own piece hashes
    response = requests.get(
        f"{portal}/api/v1/models/{REPO}/manifest?format=metalink",
        headers={"Authorization": f"Bearer {tokens['cho']}"},
        timeout=10,
    )
    assert response.status_code == 200
    (tmp_path / "cho.meta4").write_text(response.text)
    log = tmp_path / "aria2.log"
    command = [shutil.which("aria2c"), "-M", str(tmp_path / "cho.meta4"), "-d", str(tmp_path / "cho"), "-l", str(log)]
    result = subprocess.run([*command, "--log-level=info", "--summary-interval=0"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert log.read_text().count("Good chunk checksum") >= len(SHARDS)
    got["cho"] = digests(tmp_path / "cho")

    for name, hashes in got.items():
        assert hashes == told(portal, tokens[name]), f"{name} received what the portal told them"
    for shard in SHARDS:
        original = release.files.get(path=shard).sha256
        assert original not in {hashes[shard] for hashes in got.values()}, "nobody receives the original"
    assert len({tuple(hashes[s] for s in SHARDS) for hashes in got.values()}) == 4, "four people, four copies"
    assert len({hashes["config.json"] for hashes in got.values()}) == 1, "unmarked files are the same for all"

    # Each downloaded directory, traced, names exactly its person, with their grant or lab seat
    for name in ("ada", "ben", "cho", "max"):
        result = trace_dir(tmp_path / name)
        assert result["status"] == "match" and result["observed"] == len(SHARDS), result
        (named,) = result["candidates"]
        assert named["user"] == people[name].email and named["agree"] == len(SHARDS)
        if name == "max":
            assert (named["grants"], [s["lab"] for s in named["seats"]]) == ([], ["Marked Lab"])
        else:
            assert ([g["id"] for g in named["grants"]], named["seats"]) == ([grants[name].public_id], [])
    traced(tmp_path, people, grants, portal, reviewer)

    # Ada renews: a new grant, the same copy
    renewal = services.request_renew(actor=session(people["ada"]), grant=grants["ada"])
    services.request_approve(actor=session(reviewer), access_request=renewal)
    services.grant_issue(request_id=renewal.pk)
    again = download(portal, REPO, tmp_path / "ada-renewed", tokens["ada"])
    assert again.returncode == 0, again.stdout + again.stderr
    assert digests(tmp_path / "ada-renewed") == got["ada"]

    # Ada's interrupted download resumes from its .part file into the same copy
    shard = tmp_path / "ada" / SHARDS[1]
    data = shard.read_bytes()
    shard.unlink()
    (tmp_path / "ada" / f"{SHARDS[1]}.part").write_bytes(data[: len(data) // 2])
    resumed = download(portal, REPO, tmp_path / "ada", tokens["ada"])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"transferred_bytes={len(data) - len(data) // 2}" in resumed.stdout
    assert digests(tmp_path / "ada") == got["ada"]


def traced(tmp_path: Path, people: dict, grants: dict, portal: str, reviewer) -> None:
    """The leaks a release manager meets, from the directories the clients downloaded."""
    # mixed: Ada's first 36 shards and Ben's other 28, under one directory: both are named, and nobody else
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, shard in enumerate(SHARDS):
        shutil.copyfile(tmp_path / ("ada" if i < 36 else "ben") / shard, mixed / shard)
    result = trace_dir(mixed)
    assert result["status"] == "match", result
    assert {c["user"] for c in result["candidates"]} == {people["ada"].email, people["ben"].email}
    assert all(c["any_innocent"] < tracing.CONFIDENCE for c in result["candidates"])

    # re-saved by the safetensors library with other metadata, every tensor in one file (numpy has no bfloat16:
    # the F16 and F32 shards): no hash matches, the values name Cho
    tensors = {}
    for shard in SHARDS:
        if catalog_data.MARKED_DEMO_FILES[shard][0][1] != "BF16":
            tensors.update(load_file(str(tmp_path / "cho" / shard)))
    resaved = tmp_path / "resaved"
    resaved.mkdir()
    save_file(tensors, str(resaved / "model.safetensors"), metadata={"format": "np", "saved_by": "someone else"})
    result = trace_dir(resaved)
    assert [c["user"] for c in result["candidates"]] == [people["cho"].email], result
    read = [f for f in result["files"] if f["state"] == "marked"]
    assert {f["how"] for f in read} == {"values"} and len(read) == result["candidates"][0]["agree"] > 32

    # too few marked files (8 of 64: 4^-8 per holder) and an open release's files: nobody is named
    few = tmp_path / "few"
    few.mkdir()
    for shard in SHARDS[:8]:
        shutil.copyfile(tmp_path / "ada" / shard, few / shard)
    result = trace_dir(few)
    assert (result["status"], result["candidates"], result["closest"]["agree"]) == ("no_confident_match", [], 8)
    call_command("load_demo_catalog", "--size", "64", only=["facebook/opt-125m"], stdout=io.StringIO())
    opened = tmp_path / "opt-125m"
    opened.mkdir()
    for f in ModelRelease.objects.get(repo_id="facebook/opt-125m").files.all():
        shutil.copyfile(get_storage().path(f.storage_key), opened / f.path)
    result = trace_dir(opened)
    assert (result["status"], result["release"], result["candidates"]) == ("unmarked", "facebook/opt-125m", [])

    # the API, for a reviewer who manages releases, from Ben's hashes
    services.release_manager_add(actor=services.command_actor("tests"), user=reviewer)
    files = [{"name": p, "sha256": h} for p, h in digests(tmp_path / "ben").items()]
    response = requests.post(
        f"{portal}/api/v1/review/traces",
        json={"files": files},
        headers={"Authorization": f"Bearer {token_secret(reviewer, review=True)}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert [c["user"] for c in response.json()["candidates"]] == [people["ben"].email]
