"""Versioned licenses and re-consent: a release moves to a new version, every channel refuses holders on an
older one with `license_update` (decided in the one gate), and accepting — or, where the release asks for it,
a reviewer's approval — lets them download again."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from access import downloads, services
from access.models import AccessRequest, AuditEvent, DownloadEvent, Grant, License
from tests.factories import ReleaseFactory, UserFactory, add_file, grant_for, token_secret
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db

SHARD = "checkpoint_last-model_part-0-shard0.pt"
CHANNELS = [
    f"/api/v1/models/facebook/opt-175b/files/{SHARD}",
    "/api/v1/models/facebook/opt-175b/manifest",
    "/api/v1/models/facebook/opt-175b/manifest?format=aria2",
    f"/facebook/opt-175b/resolve/main/{SHARD}",
    "/api/models/facebook/opt-175b/tree/main",
]


@pytest.fixture
def release(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, SHARD, b"weights")
    return release


@pytest.fixture
def v11(release):
    return services.license_publish(
        actor=services.command_actor("tests"),
        slug=release.license.slug,
        version="1.1",
        title=release.license.title,
        text="Version 1.1: the same terms, and you report misuse within 30 days.",
        summary_of_changes="Misuse must be reported within 30 days.",
    )


@pytest.fixture
def holder(release, alice, reviewer):
    grant = grant_for(alice, release, reviewer)
    return grant, token_secret(alice)


def move(release, license_obj, mode=None):
    services.release_set_license(actor=services.command_actor("tests"), release=release, license=license_obj, mode=mode)
    release.refresh_from_db()


def bearer(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_every_request_and_grant_records_the_version_accepted(release, holder):
    grant, _token = holder
    assert grant.license == release.license and grant.request.license_version == "1.0"
    assert grant.license_accepted_at == grant.request.license_accepted_at


def test_the_gate_reads_a_persons_facts_in_five_queries_and_none_once_cached(release, holder, alice):
    grant, token = holder
    with CaptureQueriesContext(connection) as queries:
        decision = downloads.access_state(user=alice, release=release)
    assert decision.allowed and decision.grant.pk == grant.pk
    # Outside a request nothing is cached: the release's documents to acknowledge and its withdrawn revisions (in
    # a request, kept for everyone who asks for the release), then the person's grants, lab grants and requests,
    # one query each (and their acknowledgements, only when the release has documents to acknowledge).
    tables = [q["sql"].split(" FROM ", 1)[1].split(" ", 1)[0] for q in queries]
    assert tables == [
        '"access_documentversion"',
        '"access_revisionwithdrawal"',
        '"access_grant"',
        '"access_grant"',
        '"access_accessrequest"',
    ], tables
    client = bearer(token)
    assert client.get(CHANNELS[0]).status_code == 302
    with CaptureQueriesContext(connection) as queries:
        assert client.get(CHANNELS[0]).status_code == 302
    reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
    assert reads == [], reads


def test_moving_to_a_new_version_refuses_every_channel_until_the_holder_accepts(
    release, v11, holder, django_capture_on_commit_callbacks
):
    grant, token = holder
    with django_capture_on_commit_callbacks(execute=True):
        move(release, v11)
    client = bearer(token)
    for url in CHANNELS:
        response = client.get(url)
        assert response.status_code == 403, url
        assert response.json()["code"] == "license_update", url
        assert f"/grants/{grant.public_id}/license" in response.json()["detail"]
        if "/api/v1/" not in url:
            assert response["X-Error-Code"] == "GatedRepo"
            assert "version 1.1" in response["X-Error-Message"]
    refusals = AuditEvent.objects.filter(action="download.refused", data__code="license_update")
    assert refusals.count() == len(CHANNELS)
    assert DownloadEvent.objects.count() == 0

    # Holders are emailed once, with a link to accept.
    [email] = [m for m in mail.outbox if "accept version 1.1" in m.subject]
    assert email.to == [grant.user.email] and f"/grants/{grant.public_id}/license" in email.body
    services.license_update_notify(release.pk)
    assert len([m for m in mail.outbox if "accept version 1.1" in m.subject]) == 1

    wrong = client.post(
        f"/api/v1/grants/{grant.public_id}/accept-license",
        {"version": "1.0", "accept_license": True, "noncommercial_attested": True},
        format="json",
    )
    assert wrong.status_code == 400 and wrong.json()["fields"] == {"version": [wrong.json()["detail"]]}
    accepted = client.post(
        f"/api/v1/grants/{grant.public_id}/accept-license",
        {"version": "1.1", "accept_license": True, "noncommercial_attested": True},
        format="json",
        REMOTE_ADDR="192.0.2.9",
    )
    assert accepted.status_code == 200, accepted.json()
    assert accepted.json()["grant"]["license_version"] == "1.1" and accepted.json()["grant"]["license_current"]
    assert accepted.json()["review_request"] is None
    for url in CHANNELS:
        assert client.get(url).status_code in (200, 302), url
    grant.refresh_from_db()
    assert (grant.license, grant.license_accepted_ip) == (v11, "192.0.2.9")
    event = AuditEvent.objects.get(action="grant.license_accepted")
    assert event.data == {"license": v11.slug, "version": "1.1", "from": "1.0"}
    assert AccessRequest.objects.count() == 1  # no new review


def test_the_accept_page_shows_the_new_text_and_what_changed(client, release, v11, holder, alice):
    grant, _token = holder
    move(release, v11)
    client.force_login(alice)
    page = client.get(f"/grants/{grant.public_id}/").content.decode()
    assert f'href="/grants/{grant.public_id}/license"' in page
    form = client.get(f"/grants/{grant.public_id}/license").content.decode()
    assert "Misuse must be reported within 30 days." in form and "report misuse within 30 days" in form
    refused = client.post(f"/grants/{grant.public_id}/license", {"version": "1.1", "accept_license": "on"})
    assert refused.status_code == 200 and "non-commercial" in refused.content.decode()
    done = client.post(
        f"/grants/{grant.public_id}/license",
        {"version": "1.1", "accept_license": "on", "noncommercial_attested": "on"},
    )
    assert done["Location"] == f"/grants/{grant.public_id}/"
    assert downloads.access_state(user=alice, release=release).allowed


def test_a_release_may_ask_for_a_new_review_instead(release, v11, holder, alice, reviewer):
    grant, token = holder
    move(release, v11, mode="review")
    client = bearer(token)
    accepted = client.post(
        f"/api/v1/grants/{grant.public_id}/accept-license",
        {"version": "1.1", "accept_license": True, "noncommercial_attested": True},
        format="json",
    ).json()
    review = AccessRequest.objects.get(public_id=accepted["review_request"])
    assert (review.status, review.reconsent_of, review.license_version) == ("pending", grant, "1.1")
    assert review.full_name == grant.request.full_name
    response = client.get(f"/api/v1/models/facebook/opt-175b/files/{SHARD}")
    assert response.json()["code"] == "license_update" and "waiting for a reviewer" in response.json()["detail"]
    again = client.post(
        f"/api/v1/grants/{grant.public_id}/accept-license",
        {"version": "1.1", "accept_license": True, "noncommercial_attested": True},
        format="json",
    ).json()
    assert again["review_request"] == review.public_id  # one request, not two

    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=review
    )
    services.grant_issue(request_id=review.pk)  # what the worker runs
    grant.refresh_from_db()
    assert grant.license == v11 and Grant.objects.count() == 1
    assert client.get(f"/api/v1/models/facebook/opt-175b/files/{SHARD}").status_code == 302
    assert services.grants_reconcile(older_than=timedelta(0)) == []


def test_the_reviewer_grant_list_shows_who_is_on_an_old_version(client, release, v11, holder, reviewer):
    grant, _token = holder
    bob = UserFactory(email="bob@lab.example")
    move(release, v11)
    newer = grant_for(bob, release, reviewer)
    assert newer.license == v11
    login_recently(client, reviewer)
    page = client.get("/review/grants/").content.decode()
    assert page.count("older version") == 1
    old_only = client.get("/review/grants/", {"license": "old"}).content.decode()
    assert grant.user.email in old_only and "bob@lab.example" not in old_only


def test_only_release_managers_move_a_release(release, v11, reviewer):
    with pytest.raises(services.Forbidden):
        services.release_set_license(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
            release=release,
            license=v11,
        )


def test_the_command_publishes_and_moves(release, holder, tmp_path, django_capture_on_commit_callbacks):
    text = tmp_path / "v2.txt"
    text.write_text("Version 2 of the terms.")
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "release_license", release.repo_id, "--license-version", "2.0", "--text-file", str(text), "--summary", "New"
        )
    release.refresh_from_db()
    assert release.license.version == "2.0" and License.objects.filter(slug=release.license.slug).count() == 2
    assert any("accept version 2.0" in m.subject for m in mail.outbox)
