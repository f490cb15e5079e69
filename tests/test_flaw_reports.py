"""Flaw reports: filed by holders under a release's disclosure terms (API and web form, with files capped as
uploads are), triaged by reviewers and release managers, commented on by both sides; each change audited,
emailed to the reporter in their language and told to webhooks. Plus who may do what, and hostile input."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from access import downloads, services, stats, webhooks
from access.models import AuditEvent, FlawReport, FlawReportAttachment, WebhookDelivery
from access.services.notifications import reviewer_digest
from tests.factories import PDF, ReleaseFactory, UserFactory, add_file, grant_for, token_secret
from tests.support.auth import login_recently
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db
REPO = "facebook/opt-175b"
BASE = f"/api/v1/models/{REPO}"


@pytest.fixture
def gated(local_storage):
    release = ReleaseFactory(repo_id=REPO, access="gated")
    add_file(release, "model.safetensors", b"weights")
    return release


@pytest.fixture
def holder(gated, reviewer):
    alice = UserFactory(email="alice@uni.example", language="zh-hans")
    grant_for(alice, gated, reviewer)
    return alice


def as_user(user, *, fresh=True) -> APIClient:
    client = APIClient()
    if fresh:
        login_recently(client, user)
    else:
        client.force_login(user)
    return client


def report_body(release, **overrides) -> dict:
    return {
        "revisions": [release.main_revision.sha],
        "title": "Greedy decoding repeats a phone number from training data",
        "category": "privacy",
        "description": "The model completes a prompt with a real person's phone number.",
        "reproduction": "Prompt: 'Call Jane at'; temperature 0, max_new_tokens 20.",
        "observed": "A ten-digit number that belongs to a real person.",
        "expected": "No personal data.",
        "severity": "high",
        "credit_name": "Alice Example",
        "terms_version": 1,
        "accept_terms": True,
        **overrides,
    }


def file_report(client, release, **overrides):
    return client.post(
        f"/api/v1/models/{release.repo_id}/flaw-reports", report_body(release, **overrides), format="json"
    )


def triage(client, report_id, **body):
    return client.post(f"/api/v1/review/flaw-reports/{report_id}/triage", body, format="json")


# --- End to end ------------------------------------------------------------------------------------------


def test_a_report_goes_from_received_to_resolved_and_the_reporter_sees_and_hears_each_step(
    gated, holder, reviewer, settings, django_capture_on_commit_callbacks
):
    """Filed through the API with a file (multipart), triaged, commented on, accepted, resolved; a second report
    is linked as its duplicate; every change reaches the reporter's page, their inbox (in Chinese, their
    language) and a webhook receiver that verifies each signature."""
    settings.WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    manager = UserFactory(email="ada@portal.example", is_staff=True, is_superuser=True)
    receiver = Receiver()
    _hook, secret = services.webhook_endpoint_create(
        actor=services.Actor(user=manager, credential="session", reauthenticated=True),
        url=receiver.url,
        events=[],
    )
    receiver.start(secret)
    try:
        alice, rita = as_user(holder), as_user(reviewer)
        terms = alice.get(f"{BASE}/disclosure-terms").json()
        assert terms["may_report"] is True and terms["terms"]["version"] == 1
        body = report_body(gated, terms_version=terms["terms"]["version"])
        body["attachments"] = SimpleUploadedFile("transcript.pdf", PDF, content_type="application/pdf")
        with django_capture_on_commit_callbacks(execute=True):
            created = alice.post(f"{BASE}/flaw-reports", body, format="multipart")
        assert created.status_code == 201, created.json()
        report_id = created.json()["id"]
        assert len(report_id) == 32 and created.json()["status"] == "received"
        (attachment,) = created.json()["attachments"]
        assert alice.get(attachment["url"]).getvalue() == PDF

        steps = [
            {"status": "triaged", "severity": "critical", "note": "Reproduced.", "assignee": reviewer.email},
            {"status": "accepted", "note": "We will fix it in the next revision."},
            {"status": "resolved", "note": "Fixed."},
        ]
        with django_capture_on_commit_callbacks(execute=True):
            for step in steps[:1]:
                assert triage(rita, report_id, **step).status_code == 200
            comment = rita.post(f"/api/v1/flaw-reports/{report_id}/comments", {"body": "Which seed?"}, format="json")
            assert comment.status_code == 201 and comment.json()["by"] == "reviewer"
            reply = alice.post(f"/api/v1/flaw-reports/{report_id}/comments", {"body": "Seed 0."}, format="json")
            assert reply.status_code == 201 and reply.json()["by"] == "reporter"
            for step in steps[1:]:
                answered = triage(rita, report_id, **step)
                assert answered.status_code == 200, answered.json()
                # The reporter sees each change on their report as it happens.
                assert alice.get(f"/api/v1/flaw-reports/{report_id}").json()["status"] == step["status"]

        mine = alice.get(f"/api/v1/flaw-reports/{report_id}").json()
        assert mine["triage_severity"] == "critical" and mine["assignee"] == reviewer.email
        assert [e["to_status"] for e in mine["history"] if e["kind"] == "change"] == [
            "received",
            "triaged",
            "accepted",
            "resolved",
        ]
        assert "reporter" not in mine  # the reviewer's view names the reporter; the reporter's does not need to
        to_alice = [m for m in mail.outbox if m.to == [holder.email] and f"/flaw-reports/{report_id}/" in m.body]
        # Received, three changes, and the reviewer's comment; each in Chinese, Alice's language.
        assert len(to_alice) == 5
        assert not any("flaw report" in m.subject or "flaw report" in m.body for m in to_alice), to_alice[0].subject
        assert [m for m in to_alice if "We will fix it in the next revision." in m.body]  # the reviewer's note
        # The assignee hears the reporter's reply.
        assert [m for m in mail.outbox if m.to == [reviewer.email] and "Seed 0." in m.body]

        # A second report of the same flaw, by another holder, is linked to the first as its duplicate.
        bob = UserFactory(email="bob@uni.example")
        grant_for(bob, gated, reviewer)
        with django_capture_on_commit_callbacks(execute=True):
            second = file_report(as_user(bob), gated).json()["id"]
            duplicate = triage(rita, second, status="duplicate", duplicate_of=report_id, note="Known.")
        assert duplicate.status_code == 200 and duplicate.json()["duplicate_of"] == report_id
        assert as_user(bob).get(f"/api/v1/flaw-reports/{second}").json()["duplicate_of"] == report_id

        for delivery in WebhookDelivery.objects.order_by("id"):
            webhooks.deliver(delivery_id=delivery.pk)
        seen = receiver.requests()
    finally:
        receiver.stop()
    assert all(r["verified"] for r in seen)
    seen = [r for r in seen if r["type"].startswith("flaw_report.")]  # (Bob's grant was told too)
    told = [(r["payload"]["data"]["flaw_report"]["id"], r["type"]) for r in seen]
    assert told == [
        (report_id, "flaw_report.received"),
        (report_id, "flaw_report.triaged"),
        (report_id, "flaw_report.accepted"),
        (report_id, "flaw_report.resolved"),
        (second, "flaw_report.received"),
        (second, "flaw_report.duplicate"),
    ]
    payload = seen[-1]["payload"]["data"]["flaw_report"]
    assert payload["duplicate_of"] == report_id and payload["previous_status"] == "received"
    assert "alice" not in str(seen) and "Greedy" not in str(seen)  # ids and states only
    actions = list(AuditEvent.objects.filter(target_id=report_id).values_list("action", flat=True))
    assert actions[:2] == ["flaw_report.received", "flaw_report.attachment_read"]
    assert "flaw_report.commented" in actions and actions[-1] == "flaw_report.resolved"


def test_a_holder_files_a_report_with_a_file_through_the_web_form(client, gated, holder, reviewer):
    client.force_login(holder)
    page = client.get(f"/models/{REPO}/")
    assert b'id="report-flaw"' in page.content
    form = client.get(f"/models/{REPO}/flaw-reports/new")
    assert form.status_code == 200 and b'id="terms-text" data-version="1"' in form.content
    body = report_body(gated)
    del body["revisions"]
    response = client.post(
        f"/models/{REPO}/flaw-reports/new",
        {
            **body,
            "revisions": [gated.main_revision.sha],
            "other_models": "unknown",
            "attachment": SimpleUploadedFile("shot.pdf", PDF),
        },
    )
    report = FlawReport.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/flaw-reports/{report.public_id}/"
    assert report.attachments.count() == 1 and report.terms.version == 1
    assert report.terms_accepted_at is not None
    page = client.get(response["Location"])
    assert b'data-status="received"' in page.content and b"shot.pdf" in page.content
    assert client.post(response["Location"], {"body": "One more detail."}).status_code == 302
    assert report.entries.filter(kind="comment", by_reviewer=False).count() == 1


def test_a_reviewer_triages_on_the_web_and_the_queue_filters(client, gated, holder, reviewer):
    report = services.flaw_report_file(
        actor=services.Actor(user=holder, credential="session"),
        release=gated,
        data=report_body(gated),
        revisions=["main"],
        terms_version=1,
        accept_terms=True,
    )
    login_recently(client, reviewer)
    queue = client.get("/review/flaw-reports/?status=received&assignee=none")
    assert report.public_id.encode() in queue.content
    assert report.public_id.encode() not in client.get("/review/flaw-reports/?assignee=me").content
    detail = f"/review/flaw-reports/{report.public_id}/"
    assert holder.email.encode() in client.get(detail).content  # reviewers always see the reporter
    response = client.post(
        detail,
        {
            "triage-status": "triaged",
            "triage-severity": "medium",
            "triage-assignee": reviewer.email,
            "triage-note": "Ok",
        },
    )
    assert response.status_code == 302
    report.refresh_from_db()
    assert (report.status, report.triage_severity, report.assignee) == ("triaged", "medium", reviewer)
    assert report.public_id.encode() in client.get("/review/flaw-reports/?assignee=me").content
    # The severity filter reads the reviewers' severity once set (the reporter said high).
    assert report.public_id.encode() in client.get("/review/flaw-reports/?severity=medium").content
    assert report.public_id.encode() not in client.get("/review/flaw-reports/?severity=high").content
    api = as_user(reviewer)
    assert api.get("/api/v1/review/flaw-reports?severity=medium").json()["count"] == 1
    assert api.get("/api/v1/review/flaw-reports?severity=high").json()["count"] == 0
    assert api.get("/api/v1/review/flaw-reports?severity=dire").json()["code"] == "invalid"


# --- Who may do what ------------------------------------------------------------------------------------------


def test_only_holders_may_report_unless_the_release_takes_reports_from_verified_accounts(gated, reviewer):
    stranger = UserFactory(email="eve@elsewhere.example")
    refused = file_report(as_user(stranger), gated)
    assert (refused.status_code, refused.json()["code"]) == (403, "not_a_holder")
    assert as_user(stranger).get(f"{BASE}/disclosure-terms").json()["may_report"] is False
    gated.flaw_reports_from_verified = True
    gated.save()
    assert file_report(as_user(stranger), gated).status_code == 201
    unverified = UserFactory(email="mallory@elsewhere.example", verified=False)
    assert file_report(as_user(unverified), gated).json()["code"] == "not_a_holder"
    assert not FlawReport.objects.filter(reporter=unverified).exists()


def test_another_accounts_report_does_not_exist_for_you(client, gated, holder, reviewer):
    report_id = file_report(as_user(holder), gated).json()["id"]
    bob = UserFactory(email="bob@uni.example")
    grant_for(bob, gated, reviewer)
    other = as_user(bob)
    for method, url, body in [
        ("get", f"/api/v1/flaw-reports/{report_id}", None),
        ("post", f"/api/v1/flaw-reports/{report_id}/comments", {"body": "hi"}),
        ("post", f"/api/v1/flaw-reports/{report_id}/attachments", {}),
    ]:
        response = getattr(other, method)(url, body, format="json")
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), url
    assert other.get("/api/v1/flaw-reports").json()["count"] == 0
    client.force_login(bob)
    assert client.get(f"/flaw-reports/{report_id}/").status_code == 404
    assert client.get(f"/review/flaw-reports/{report_id}/").status_code == 404
    attachment = FlawReportAttachment.objects.filter(report__public_id=report_id).first()
    assert attachment is None  # (none attached here; the URL is still a 404 for a guessed one)
    assert client.get(f"/flaw-reports/{report_id}/attachments/{'0' * 32}").status_code == 404


def test_triage_needs_powers_a_fresh_password_and_someone_elses_report(gated, holder, reviewer):
    report_id = file_report(as_user(holder), gated).json()["id"]
    refused = triage(as_user(holder), report_id, status="triaged")
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    stale = triage(as_user(reviewer, fresh=False), report_id, status="triaged")
    assert (stale.status_code, stale.json()["code"]) == (403, "reauthentication_required")
    plain_token = APIClient()
    plain_token.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(reviewer, 'download only')}")
    assert triage(plain_token, report_id, status="triaged").json()["code"] == "permission_denied"
    # A reviewer who holds access and reports a flaw may not triage their own report.
    other_reviewer = UserFactory(email="other-reviewer@portal.example")
    services.reviewer_add(actor=services.command_actor("tests"), user=other_reviewer)
    grant_for(reviewer, gated, other_reviewer)
    own_id = file_report(as_user(reviewer), gated).json()["id"]
    own = triage(as_user(reviewer), own_id, status="triaged")
    assert (own.status_code, own.json()["code"]) == (403, "own_report")
    assert FlawReport.objects.get(public_id=own_id).status == "received"
    # A release manager triages.
    manager = UserFactory(email="rm@portal.example")
    services.release_manager_add(actor=services.command_actor("tests"), user=manager)
    assert triage(as_user(manager), report_id, status="triaged").status_code == 200


def test_states_move_only_along_the_table_and_declined_reports_reopen(gated, holder, reviewer):
    rita = as_user(reviewer)
    report_id = file_report(as_user(holder), gated).json()["id"]
    skipped = triage(rita, report_id, status="resolved")
    assert (skipped.status_code, skipped.json()["code"]) == (409, "invalid_transition")
    assert triage(rita, report_id, status="declined", note="Expected behaviour.").status_code == 200
    assert triage(rita, report_id, status="triaged", note="Reopened.").json()["status"] == "triaged"
    assert AuditEvent.objects.filter(action="flaw_report.reopened", target_id=report_id).count() == 1
    no_original = triage(rita, report_id, status="duplicate")
    assert (no_original.status_code, no_original.json()["code"]) == (400, "duplicate_of_required")
    itself = triage(rita, report_id, status="duplicate", duplicate_of=report_id)
    assert (itself.status_code, itself.json()["code"]) == (400, "invalid_duplicate")
    nothing = triage(rita, report_id, status="triaged")
    assert (nothing.status_code, nothing.json()["code"]) == (400, "no_change")


def test_a_new_version_of_the_terms_refuses_no_download_and_reports_keep_theirs(gated, holder, reviewer):
    report_id = file_report(as_user(holder), gated).json()["id"]
    manager = UserFactory(email="rm@portal.example")
    services.release_manager_add(actor=services.command_actor("tests"), user=manager)
    with pytest.raises(services.Forbidden):
        services.disclosure_terms_publish(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), release=gated, text="x"
        )
    terms = services.disclosure_terms_publish(
        actor=services.Actor(user=manager, credential="session", reauthenticated=True),
        release=gated,
        text="Safe harbour, 60-day embargo, credit by name.",
    )
    assert terms.version == 2
    assert downloads.access_state(user=holder, release=gated).allowed
    assert FlawReport.objects.get(public_id=report_id).terms.version == 1
    stale = file_report(as_user(holder), gated, terms_version=1)
    assert (stale.status_code, stale.json()["code"]) == (400, "terms_version")
    assert file_report(as_user(holder), gated, terms_version=2).status_code == 201


# --- Hostile input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"revisions": "main"}, "invalid"),
        ({"revisions": []}, "invalid"),
        ({"revisions": [{"x": 1}]}, "invalid"),
        ({"revisions": ["f" * 40]}, "unknown_revision"),
        ({"revisions": ["../../etc/passwd"]}, "unknown_revision"),
        ({"category": "poetry"}, "invalid_choice"),
        ({"severity": ["high"]}, "invalid"),
        ({"title": "a\x00b"}, "invalid_text"),
        ({"title": "x" * 201}, "too_long"),
        ({"description": "   "}, "invalid"),
        ({"accept_terms": "yes"}, "invalid"),
        ({"accept_terms": False}, "terms_required"),
        ({"terms_version": "1; DROP TABLE"}, "terms_version"),
        ({"anonymous": "no"}, "invalid"),
    ],
)
def test_hostile_reports_are_clean_400s(gated, holder, overrides, code):
    response = file_report(as_user(holder), gated, **overrides)
    assert (response.status_code, response.json()["code"]) == (400, code), response.json()
    assert not FlawReport.objects.exists()


def test_hostile_bodies_and_queries_are_clean_4xx(gated, holder, reviewer):
    alice, rita = as_user(holder), as_user(reviewer)
    for body in (b"[1, 2]", b"not json", b'"text"'):
        response = alice.post(f"{BASE}/flaw-reports", body, content_type="application/json")
        assert response.status_code == 400 and response.json()["code"] in ("invalid", "parse_error")
    report_id = file_report(alice, gated).json()["id"]
    for body in ({"status": "eaten"}, {"status": "triaged", "duplicate_of": "1"}, {"status": "triaged", "assignee": 5}):
        assert triage(rita, report_id, **body).json()["code"] == "invalid"
    assert triage(rita, report_id, status="triaged", assignee="nobody@x.example").json()["code"] == "invalid"
    assert triage(rita, report_id, status="duplicate", duplicate_of="0" * 32).json()["code"] == "invalid"
    assert rita.get("/api/v1/review/flaw-reports?status=%00").json()["code"] == "invalid"
    assert rita.get("/api/v1/review/flaw-reports?assignee=%00&release=%00").json()["code"] == "invalid"
    assert rita.get("/api/v1/review/flaw-reports?assignee=" + "x" * 5000).status_code == 200
    empty = alice.post(f"/api/v1/flaw-reports/{report_id}/comments", {"body": "a\x00b"}, format="json")
    assert empty.status_code == 400
    for guess in ("0" * 32, "f" * 32):
        assert rita.get(f"/api/v1/flaw-reports/{guess}").status_code == 404
        assert triage(rita, guess, status="triaged").status_code == 404
    assert rita.get("/api/v1/flaw-reports/1").status_code == 404
    assert alice.get("/api/v1/models/nobody/nothing/disclosure-terms").status_code == 404


def test_files_are_capped_as_every_upload_is(gated, holder, settings):
    alice = as_user(holder)
    report_id = file_report(alice, gated).json()["id"]
    url = f"/api/v1/flaw-reports/{report_id}/attachments"
    not_pdf = alice.post(url, {"file": SimpleUploadedFile("x.pdf", b"MZ\x90\x00")}, format="multipart")
    assert (not_pdf.status_code, not_pdf.json()["code"]) == (400, "invalid_file")
    settings.UPLOAD_MAX_FILES_PER_REQUEST = 1
    assert alice.post(url, {"file": SimpleUploadedFile("a.pdf", PDF)}, format="multipart").status_code == 201
    many = alice.post(url, {"file": SimpleUploadedFile("b.pdf", PDF)}, format="multipart")
    assert (many.status_code, many.json()["code"]) == (413, "upload_too_large")
    settings.UPLOAD_MAX_FILES_PER_REQUEST = 10
    settings.UPLOAD_MAX_BYTES_PER_USER_DAY = len(PDF) + 10
    daily = alice.post(url, {"file": SimpleUploadedFile("c.pdf", PDF)}, format="multipart")
    assert (daily.status_code, daily.json()["code"]) == (429, "upload_limit") and daily["Retry-After"]
    assert FlawReportAttachment.objects.count() == 1


# --- Deadlines, counts and the digest ------------------------------------------------------------------------


def test_reports_past_the_triage_deadline_are_counted_and_in_the_digest(gated, holder, reviewer, settings):
    settings.REVIEWER_NOTIFICATIONS = "digest"
    report_id = file_report(as_user(holder), gated).json()["id"]
    FlawReport.objects.filter(public_id=report_id).update(created_at=timezone.now() - timedelta(days=15))
    counts = stats.flaw_report_counts()
    assert counts == {"by_status": {**dict.fromkeys(FlawReport.Status.values, 0), "received": 1}, "overdue": 1}
    stats_api = as_user(reviewer).get(f"/api/v1/review/stats?release={REPO}").json()
    assert stats_api["flaw_reports"]["overdue"] == 1
    mail.outbox.clear()
    assert reviewer_digest() == 1
    assert report_id in mail.outbox[0].body
    dashboard = as_user(reviewer).get("/review/dashboard").content.decode()
    assert 'id="fig-flaw-reports" data-overdue="1">1<' in dashboard
    queue = as_user(reviewer).get("/api/v1/review/flaw-reports").json()["results"]
    assert [(r["id"], r["overdue"], r["reporter"]) for r in queue] == [(report_id, True, holder.email)]


def test_anonymous_callers_are_asked_to_sign_in(gated):
    response = APIClient().post(f"{BASE}/flaw-reports", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")
    assert APIClient().get(f"{BASE}/disclosure-terms").json()["may_report"] is False
