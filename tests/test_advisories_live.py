"""The advisory loop end to end, against one live portal, a real Celery worker (emails and webhooks in its own
process) and the real clients: three researchers fetch revision A with download.py, `hf download` and aria2c's
Metalink; the release moves to revision B, which a fourth holder fetches alone; a release manager drafts and
publishes an advisory on A (B fixes it) through the API. Exactly the three are emailed, in their language, a
webhook receiver is told, every tool names the advisory on A, download.py's `--acknowledge` is counted on the
advisory's page; an advisory under embargo is seen by a told holder only until its date; withdrawing A refuses
it on every channel with `revision_withdrawn`, naming B."""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import subprocess
from datetime import timedelta

import pytest
import requests
from django.test import Client
from django.utils import timezone

from access import services
from access.models import Advisory, AdvisoryRecipient, DownloadEvent, OutboundEmail, ReleaseRevision
from tests.factories import ReleaseFactory, UserFactory, grant_for, token_secret
from tests.support.auth import login_recently
from tests.support.processes import CeleryWorker, wait_until
from tests.support.webhook_receiver import Receiver
from tests.test_download_live import assert_verified, download
from tests.test_hf import cli
from tests.test_release_policies_live import publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REPO = "facebook/opt-175b"
SHARD = "checkpoint_last-model_part-0-shard0.pt"
A_FILES = {"config.json": b'{"model_type": "opt"}\n', SHARD: hashlib.shake_256(b"revision A").digest(40_000)}
B_FILES = {**A_FILES, SHARD: hashlib.shake_256(b"revision B, fixed").digest(40_001)}
LOCAL = "127.0.0.0/8"


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    """Live-server threads close their database connection after each request (see tests/test_hf.py)."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.fixture
def worker(worker_env, settings, local_storage):
    """One worker for the default queue (emails) and the webhooks queue, allowed to post to a local receiver."""
    settings.WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network(LOCAL)]
    worker_env.update(WEBHOOK_ALLOWED_NETWORKS=LOCAL, WEBHOOK_RETRY_BASE_SECONDS="1", WEBHOOK_TIMEOUT_SECONDS="2")
    started = CeleryWorker(worker_env, queues=["celery", "webhooks"]).start()
    yield started
    started.stop()


@pytest.fixture
def receiver():
    """A webhook receiver in its own process; the test starts it once its endpoint's secret is known."""
    hooks = Receiver()
    yield hooks
    if getattr(hooks, "process", None) is not None:
        hooks.stop()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def aria2_metalink(portal: str, token: str, folder, revision: str) -> tuple[str, subprocess.CompletedProcess]:
    manifest = requests.get(
        f"{portal}/api/v1/models/{REPO}/manifest",
        params={"format": "metalink", "revision": revision},
        headers=bearer(token),
        timeout=10,
    )
    assert manifest.status_code == 200, manifest.text
    path = folder.parent / f"{folder.name}.meta4"
    path.write_text(manifest.text)
    command = [shutil.which("aria2c") or "aria2c", "-M", str(path), "-d", str(folder), "--summary-interval=0"]
    return manifest.text, subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_an_advisory_reaches_exactly_the_holders_of_revision_a_in_every_tool_and_withdrawing_a_refuses_it(
    worker, receiver, live_server, settings, reviewer, tmp_path
):
    portal = settings.SITE_URL = live_server.url
    release = ReleaseFactory(repo_id=REPO, access="gated")
    a = publish(release, A_FILES, "First release")
    people = {
        name: UserFactory(email=f"{name}@uni.example", language=language)
        for name, language in (("ann", "en"), ("bo", "zh-hans"), ("cy", "en"), ("dee", "en"))
    }
    for user in people.values():
        grant_for(user, release, reviewer)
    tokens = {name: token_secret(user) for name, user in people.items()}
    # The release manager scripts through a token with reviewer access, which needs the review permission too.
    rita = UserFactory(email="rm-rita@portal.example")
    services.release_manager_add(actor=services.command_actor("tests"), user=rita)
    services.reviewer_add(actor=services.command_actor("tests"), user=rita)
    manager = bearer(token_secret(rita, review=True))
    admin = UserFactory(email="ops@portal.example", is_staff=True, is_superuser=True)
    hooks = receiver
    _endpoint, secret = services.webhook_endpoint_create(
        actor=services.Actor(user=admin, credential="session", reauthenticated=True),
        url=hooks.url,
        events=["advisory.published"],
    )
    hooks.start(secret)

    # Three researchers fetch revision A, each with another tool.
    fetched = download(portal, REPO, tmp_path / "ann", tokens["ann"])
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert_verified(tmp_path / "ann", A_FILES)
    fetched = cli(
        ["download", REPO, "--local-dir", str(tmp_path / "bo")], portal=portal, home=tmp_path, token=tokens["bo"]
    )
    assert fetched.returncode == 0, fetched.stderr
    _text, fetched = aria2_metalink(portal, tokens["cy"], tmp_path / "cy", a.sha)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    for name in ("bo", "cy"):
        assert (tmp_path / name / SHARD).read_bytes() == A_FILES[SHARD], name

    # The release moves to revision B; a fourth holder fetches only B.
    b = publish(release, B_FILES, "Fixed shard 0")
    release.refresh_from_db()
    assert release.revision == b.sha != a.sha
    fetched = download(portal, REPO, tmp_path / "dee", tokens["dee"])
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert_verified(tmp_path / "dee", B_FILES)
    on_a = set(DownloadEvent.objects.filter(revision=a).values_list("user__email", flat=True))
    assert on_a == {people[n].email for n in ("ann", "bo", "cy")}

    # A release manager drafts the advisory on A (B fixes it) and publishes it through the API.
    body = {
        "repo_id": REPO,
        "affected_revisions": [a.sha],
        "fixed_revision": b.sha,
        "severity": "high",
        "title": "Shard 0 of revision A reproduces training addresses",
        "summary": "Revision A's shard 0 reproduces addresses from the training set verbatim.",
        "mitigation": "Download revision B.",
    }
    created = requests.post(f"{portal}/api/v1/review/advisories", json=body, headers=manager, timeout=10)
    assert created.status_code == 201, created.text
    public_id = created.json()["public_id"]
    published = requests.post(f"{portal}/api/v1/review/advisories/{public_id}/publish", headers=manager, timeout=10)
    assert published.status_code == 200, published.text
    advisory_id = published.json()["id"]
    assert advisory_id.startswith(f"ADV-{timezone.now().year}-")
    advisory = Advisory.objects.get(public_id=public_id)

    # Exactly the three holders of A are emailed by the worker, each in their language; the webhook is told.
    emails = OutboundEmail.objects.filter(dedupe_key__startswith=f"advisory:{advisory.pk}:")
    wait_until(lambda: emails.count() == 3, timeout=30)
    subjects = dict(emails.values_list("to", "subject"))
    assert set(subjects) == {people[n].email for n in ("ann", "bo", "cy")}
    assert "公告" in subjects[people["bo"].email] and advisory_id in subjects[people["bo"].email]
    assert f"Advisory {advisory_id} on {REPO}: please read" in subjects[people["ann"].email]
    assert not OutboundEmail.objects.filter(to=people["dee"].email, template="advisory_published").exists()
    told = wait_until(lambda: [r for r in hooks.requests() if r["type"] == "advisory.published"], timeout=30)
    assert told[0]["verified"] and told[0]["payload"]["data"]["advisory"]["id"] == advisory_id
    assert told[0]["payload"]["data"]["advisory"]["affected_revisions"] == [a.sha]

    # Every tool names the advisory on A, and none on B.
    ann = bearer(tokens["ann"])
    manifest = requests.get(f"{portal}/api/v1/models/{REPO}/manifest", params={"revision": a.sha}, headers=ann)
    assert manifest.headers["X-Advisories"] == advisory_id
    assert [(x["id"], x["severity"], x["acknowledged"]) for x in manifest.json()["advisories"]] == [
        (advisory_id, "high", False)
    ]
    line = f"ADVISORY {advisory_id} (high, not acknowledged): {body['title']}"
    aria2 = requests.get(
        f"{portal}/api/v1/models/{REPO}/manifest", params={"format": "aria2", "revision": a.sha}, headers=ann
    )
    assert f"# {line}" in aria2.text
    metalink, fetched = aria2_metalink(portal, tokens["cy"], tmp_path / "cy-again", a.sha)
    assert f"<!-- {line}" in metalink and fetched.returncode == 0, fetched.stdout + fetched.stderr
    file_a = requests.get(
        f"{portal}/api/v1/models/{REPO}/files/{SHARD}", params={"revision": a.sha}, headers=ann, allow_redirects=False
    )
    assert (file_a.status_code, file_a.headers["X-Advisories"]) == (302, advisory_id)
    resolve_a = requests.head(f"{portal}/{REPO}/resolve/{a.sha}/{SHARD}", headers=ann, allow_redirects=False)
    assert (resolve_a.status_code, resolve_a.headers["X-Advisories"]) == (302, advisory_id)
    file_b = requests.get(f"{portal}/api/v1/models/{REPO}/files/{SHARD}", headers=ann, allow_redirects=False)
    assert file_b.status_code == 302 and "X-Advisories" not in file_b.headers

    # download.py prints the advisory before downloading A, and records the acknowledgement with --acknowledge.
    shown = download(portal, REPO, tmp_path / "ann", tokens["ann"], "--revision", a.sha)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"ADVISORY {advisory_id} (high): {body['title']}" in shown.stdout
    assert "--acknowledge" in shown.stdout
    assert not AdvisoryRecipient.objects.filter(advisory=advisory, acknowledged_at__isnull=False).exists()
    acknowledged = download(portal, REPO, tmp_path / "ann", tokens["ann"], "--revision", a.sha, "--acknowledge")
    assert acknowledged.returncode == 0 and "acknowledged." in acknowledged.stdout, acknowledged.stderr
    again = download(portal, REPO, tmp_path / "ann", tokens["ann"], "--revision", a.sha)
    assert advisory_id not in again.stdout  # acknowledged: not printed again
    bo = requests.post(f"{portal}/api/v1/advisories/{advisory_id}/acknowledge", headers=bearer(tokens["bo"]))
    assert bo.status_code == 200 and bo.json()["acknowledged"] is True
    counts = requests.get(f"{portal}/api/v1/advisories/{public_id}", headers=manager).json()["acknowledgements"]
    assert counts == {"told": 3, "acknowledged": 2}
    page = login_recently(Client(), rita).get(f"/advisories/{public_id}/").content.decode()
    assert "Told: 3; acknowledged: 2." in page

    # An advisory under embargo: only the accounts told (and current holders) see it until its date.
    embargoed = requests.post(
        f"{portal}/api/v1/review/advisories",
        json={**body, "title": "Revision A answers in a second language", "embargo_until": _later(days=3)},
        headers=manager,
        timeout=10,
    ).json()
    quiet = requests.post(f"{portal}/api/v1/review/advisories/{embargoed['public_id']}/publish", headers=manager)
    quiet_id = quiet.json()["id"]

    def public_sees(expected: bool) -> None:
        listing = requests.get(f"{portal}/api/v1/models/{REPO}/advisories", timeout=10).json()
        feed = requests.get(f"{portal}/models/{REPO}/advisories.atom", timeout=10)
        page = requests.get(f"{portal}/models/{REPO}", timeout=10).text
        stranger = requests.get(f"{portal}/api/v1/advisories/{quiet_id}", timeout=10)
        assert (quiet_id in [x["id"] for x in listing]) is expected
        assert feed.headers["Content-Type"].startswith("application/atom+xml")
        assert (quiet_id in feed.text) is expected and (quiet_id in page) is expected
        assert stranger.status_code == (200 if expected else 404)
        assert advisory_id in feed.text and advisory_id in page  # the first one is public all along

    public_sees(False)
    assert requests.get(f"{portal}/api/v1/advisories/{quiet_id}", headers=ann).status_code == 200
    named = requests.get(f"{portal}/api/v1/models/{REPO}/manifest", params={"revision": a.sha}, headers=ann)
    assert named.headers["X-Advisories"] == f"{quiet_id}, {advisory_id}"
    # Its date passes (set in the past, as the clock would): now anyone who sees the release sees it.
    Advisory.objects.filter(identifier=quiet_id).update(embargo_until=timezone.now() - timedelta(seconds=1))
    public_sees(True)

    # Withdrawing A refuses it on every channel with revision_withdrawn, naming B; main stays B.
    withdrawn = requests.post(
        f"{portal}/api/v1/review/advisories/{public_id}/withdraw-revision", json={}, headers=manager, timeout=10
    )
    assert withdrawn.json() == {"withdrawn": [a.sha], "main": b.sha}, withdrawn.text
    refusals = {
        "file": requests.get(
            f"{portal}/api/v1/models/{REPO}/files/{SHARD}",
            params={"revision": a.sha},
            headers=ann,
            allow_redirects=False,
        ),
        "manifest": requests.get(f"{portal}/api/v1/models/{REPO}/manifest", params={"revision": a.sha}, headers=ann),
        "metalink": requests.get(
            f"{portal}/api/v1/models/{REPO}/manifest", params={"format": "metalink", "revision": a.sha}, headers=ann
        ),
        "hf-resolve": requests.get(f"{portal}/{REPO}/resolve/{a.sha}/{SHARD}", headers=ann, allow_redirects=False),
    }
    for name, refused in refusals.items():
        assert (refused.status_code, refused.json()["code"]) == (403, "revision_withdrawn"), (name, refused.text)
        assert b.sha in refused.json()["detail"], name
    assert b.sha in refusals["hf-resolve"].headers["X-Error-Message"]  # what huggingface_hub shows
    assert refusals["hf-resolve"].headers["X-Error-Code"] == "RevisionNotFound"
    hub = cli(
        ["download", REPO, "--revision", a.sha, "--local-dir", str(tmp_path / "bo-pinned")],
        portal=portal,
        home=tmp_path,
        token=tokens["bo"],
    )
    assert hub.returncode != 0 and "Revision not found" in hub.stderr, hub.stderr
    assert "requires approval" not in hub.stderr  # what the CLI says of a gated repo, not of a withdrawn revision
    pinned = download(portal, REPO, tmp_path / "ann-pinned", tokens["ann"], "--revision", a.sha)
    assert pinned.returncode == 3, pinned.stdout + pinned.stderr
    assert "revision_withdrawn" in pinned.stderr and b.sha in pinned.stderr
    assert not (tmp_path / "ann-pinned" / SHARD).exists()
    latest = requests.get(f"{portal}/api/v1/models/{REPO}/files/{SHARD}", headers=ann, allow_redirects=False)
    assert latest.status_code == 302
    assert ReleaseRevision.objects.get(pk=a.pk).withdrawal.use_instead_id == b.pk


def _later(*, days: int) -> str:
    return (timezone.now() + timedelta(days=days)).isoformat()
