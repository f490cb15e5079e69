"""A lab of three against the live portal and a real Celery worker: the owner applies once, a reviewer approves
once, each member downloads with download.py only after accepting the license, and a removed member is refused
at once on the API, manifest, Hugging Face and relay channels while the others keep downloading."""

import pytest
import requests

from access import services
from access.downloads import relay_url
from access.models import DownloadEvent, Grant, LabMembership, OutboundEmail
from tests.factories import ANSWERS, UserFactory, token_secret
from tests.support.processes import wait_until
from tests.test_download_live import FILES, assert_verified, download, gated_release

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


def test_a_lab_of_three_applies_once_and_access_follows_membership(
    local_storage, celery_worker, live_server, reviewer, tmp_path
):
    portal = live_server.url
    release = gated_release(FILES)
    pi = UserFactory(email="pi@cs.uni.example")
    lab = services.lab_create(
        actor=services.Actor(user=pi, credential="session", reauthenticated=True),
        name="Language Lab",
        email_domains=["uni.example"],
    )
    members = [UserFactory(email="ada@cs.uni.example"), UserFactory(email="max@cs.uni.example")]
    for person in members:
        _invitation, secret = services.lab_invite(
            actor=services.Actor(user=pi, credential="session", reauthenticated=True), lab=lab, email=person.email
        )
        response = requests.post(
            f"{portal}/api/v1/lab-invitations/{secret}/accept",
            headers={"Authorization": f"Bearer {token_secret(person)}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
    tokens = {user.email: token_secret(user) for user in (pi, *members)}

    # The owner applies once for everyone; a reviewer approves once; the worker issues one lab grant.
    body = {"repo_id": release.repo_id, "accept_license": True, "noncommercial_attested": True, **ANSWERS}
    response = requests.post(
        f"{portal}/api/v1/access-requests",
        json={**body, "lab": lab.public_id, "all_members": True},
        headers={"Authorization": f"Bearer {tokens[pi.email]}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    request_id = response.json()["id"]
    review = token_secret(reviewer, review=True)
    response = requests.post(
        f"{portal}/api/v1/review/access-requests/{request_id}/approve",
        json={"reason": "A well-described project."},
        headers={"Authorization": f"Bearer {review}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    grant = wait_until(lambda: Grant.objects.filter(request__public_id=request_id).first(), timeout=30)
    assert grant.lab_id == lab.pk
    # Each covered member is told by the worker, once; the owner who applied hears once, from the grant's email.
    wait_until(
        lambda: (
            OutboundEmail.objects.filter(template="lab_notice", dedupe_key__startswith="lab:lab-grant:").count() == 2
        )
    )
    assert not OutboundEmail.objects.filter(template="lab_notice", to=pi.email).exists()

    # Members download only after accepting the license personally.
    for person in members:
        refused = download(portal, release.repo_id, tmp_path / f"before-{person.pk}", tokens[person.email])
        assert refused.returncode == 2
        assert "lab_license_pending" in refused.stderr and f"/labs/grants/{grant.public_id}/" in refused.stderr
        response = requests.post(
            f"{portal}/api/v1/grants/{grant.public_id}/accept-license",
            json={"version": "1.0", "accept_license": True, "noncommercial_attested": True},
            headers={"Authorization": f"Bearer {tokens[person.email]}"},
            timeout=10,
        )
        assert response.status_code == 200 and response.json()["seat"] == "active", response.text
    for user in (pi, *members):
        result = download(portal, release.repo_id, tmp_path / user.email, tokens[user.email])
        assert result.returncode == 0, result.stderr
        assert_verified(tmp_path / user.email, FILES)
        assert DownloadEvent.objects.filter(user=user, grant=grant).exists()

    # Removing a member ends their access at once on every channel; the others keep downloading.
    leaver = members[1]
    token = tokens[leaver.email]
    shard = "checkpoint_last-model_part-0-shard0.pt"
    # What a wget list hands out for S3: a relay URL that asks the gate again on every use.
    relay = relay_url(release.files.get(path=shard).pk, shard, user_id=leaver.pk, base_url=portal)
    assert requests.get(relay, allow_redirects=False, timeout=10).status_code == 302
    membership = LabMembership.objects.current().get(lab=lab, user=leaver)
    response = requests.delete(
        f"{portal}/api/v1/labs/{lab.public_id}/members/{membership.public_id}",
        headers={"Authorization": f"Bearer {tokens[pi.email]}"},
        timeout=10,
    )
    assert response.status_code == 204
    auth = {"Authorization": f"Bearer {token}"}
    calls = {
        "api": lambda: requests.get(
            f"{portal}/api/v1/models/{release.repo_id}/files/{shard}", headers=auth, allow_redirects=False, timeout=10
        ),
        "manifest": lambda: requests.get(
            f"{portal}/api/v1/models/{release.repo_id}/manifest", headers=auth, timeout=10
        ),
        "hf": lambda: requests.head(
            f"{portal}/{release.repo_id}/resolve/main/{shard}", headers=auth, allow_redirects=False, timeout=10
        ),
        "relay": lambda: requests.get(relay, allow_redirects=False, timeout=10),
    }
    for name, call in calls.items():
        assert call().status_code == 403, name
    refused = download(portal, release.repo_id, tmp_path / "after", token)
    assert refused.returncode == 2 and "HTTP 403" in refused.stderr
    stayer = members[0]
    again = download(portal, release.repo_id, tmp_path / "stayer-again", tokens[stayer.email])
    assert again.returncode == 0, again.stderr
    assert_verified(tmp_path / "stayer-again", FILES)
    wait_until(lambda: OutboundEmail.objects.filter(to=leaver.email, dedupe_key__startswith="lab:removed:").exists())
