"""Access requests: the form's rules, every transition and every refused one, the reviewer's tools."""

import threading
from datetime import UTC, timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from access import services
from access.models import AccessRequest, AuditEvent, DecisionRule, Grant
from access.services.workflow import TRANSITIONS
from tests.factories import ANSWERS as FORM_ANSWERS
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory

pytestmark = pytest.mark.django_db

ANSWERS = {**FORM_ANSWERS, "publications": "https://scholar.example/alice", "noncommercial_attested": True}


@pytest.fixture
def release(local_storage):
    return ReleaseFactory(repo_id="facebook/opt-175b", access="gated")


def actor(user):
    return services.Actor(user=user, credential="session", ip="127.0.0.1", reauthenticated=True)


def submit(user, release, **overrides):
    return services.request_submit(
        actor=actor(user), release=release, data={**ANSWERS, **overrides}, license_accepted=True
    )


def test_it_records_the_license_version_time_and_ip(alice, release, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        request = submit(alice, release)
    assert request.status == "pending"
    assert request.license_version == "1.0" and request.license_accepted_ip == "127.0.0.1"
    assert request.email == alice.email
    assert AuditEvent.objects.filter(action="request.submitted", request=request).count() == 1
    assert [m.to for m in mail.outbox] == [[alice.email]]
    assert f"/requests/{request.public_id}/" in mail.outbox[0].body


def test_it_refuses_an_unverified_email(release):
    user = UserFactory(verified=False)
    with pytest.raises(services.ServiceError) as exc:
        submit(user, release)
    assert exc.value.code == "email_unverified"
    assert not AccessRequest.objects.exists()


def test_a_second_open_request_is_refused(alice, release):
    first = submit(alice, release)
    with pytest.raises(services.OpenRequestExists) as exc:
        submit(alice, release)
    assert exc.value.existing == first
    assert AccessRequest.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_submits_store_one_request(release):
    alice = UserFactory()
    barrier = threading.Barrier(2)
    outcomes = []

    def go():
        barrier.wait()
        try:
            submit(alice, release)
            outcomes.append("created")
        except services.OpenRequestExists:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created", "refused"]
    assert AccessRequest.objects.filter(applicant=alice).count() == 1


def act(action, *, actor, access_request, reason="x"):
    """The service for one transition, by its name: these tests walk the whole state machine."""
    match action:
        case "approve":
            return services.request_approve(actor=actor, access_request=access_request, reason=reason)
        case "reject":
            return services.request_reject(actor=actor, access_request=access_request, reason=reason)
        case "request_info":
            return services.request_ask_info(actor=actor, access_request=access_request, question=reason)
        case "answer":
            return services.request_answer(actor=actor, access_request=access_request, answer=reason)
        case "withdraw":
            return services.request_withdraw(actor=actor, access_request=access_request)
    raise AssertionError(action)


@pytest.mark.parametrize(
    ("start", "action", "end"),
    [
        ("pending", "request_info", "needs_info"),
        ("needs_info", "answer", "pending"),
        ("pending", "approve", "approved"),
        ("needs_info", "approve", "approved"),
        ("pending", "reject", "rejected"),
        ("needs_info", "reject", "rejected"),
        ("pending", "withdraw", "withdrawn"),
        ("needs_info", "withdraw", "withdrawn"),
    ],
)
def test_every_allowed_transition(release, reviewer, start, action, end):
    request = AccessRequestFactory(release=release, status=start)
    who = request.applicant if action in ("answer", "withdraw") else reviewer
    act(action, actor=actor(who), access_request=request, reason="Because.")
    request.refresh_from_db()
    assert request.status == end
    event = AuditEvent.objects.get(action=f"request.{action}", request=request)
    assert event.data["from"] == start and event.data["to"] == end
    assert event.actor == who


@pytest.mark.parametrize(
    ("start", "action"),
    [
        (s, a)
        for s in ["pending", "needs_info", "approved", "rejected", "withdrawn"]
        for a in ["request_info", "answer", "approve", "reject", "withdraw"]
        if s not in TRANSITIONS[a][0]
    ],
)
def test_every_refused_transition_changes_nothing(release, reviewer, start, action):
    request = AccessRequestFactory(release=release, status=start, decision_reason="kept")
    who = request.applicant if action in ("answer", "withdraw") else reviewer
    with pytest.raises(services.InvalidTransition):
        act(action, actor=actor(who), access_request=request)
    request.refresh_from_db()
    assert request.status == start and request.decision_reason == "kept"
    assert not AuditEvent.objects.filter(request=request).exists()


def test_a_rejection_needs_a_reason(release, reviewer):
    request = AccessRequestFactory(release=release)
    with pytest.raises(services.ServiceError) as exc:
        services.request_reject(actor=actor(reviewer), access_request=request, reason=" ")
    assert exc.value.code == "reason_required"


def test_a_rejected_applicant_waits_for_the_cooldown(alice, release, reviewer, settings):
    settings.REJECTION_COOLDOWN_DAYS = 30
    request = submit(alice, release)
    services.request_reject(actor=actor(reviewer), access_request=request, reason="Too vague.")
    with pytest.raises(services.ServiceError) as exc:
        submit(alice, release)
    assert exc.value.code == "cooldown"
    AccessRequest.objects.filter(pk=request.pk).update(decided_at=timezone.now() - timedelta(days=31))
    again = submit(alice, release)
    assert again.status == "pending"


def test_a_withdrawn_applicant_may_apply_again_at_once(alice, release):
    request = submit(alice, release)
    services.request_withdraw(actor=actor(alice), access_request=request)
    assert submit(alice, release).status == "pending"


def test_approval_issues_one_grant_and_one_email(alice, release, reviewer, django_capture_on_commit_callbacks):
    request = submit(alice, release)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.request_approve(actor=actor(reviewer), access_request=request)
    grant = Grant.objects.get(request=request)
    assert grant.is_active
    services.grant_issue(request_id=request.pk)
    assert Grant.objects.filter(request=request).count() == 1
    assert len(mail.outbox) == 1
    assert f"/grants/{grant.public_id}/" in mail.outbox[0].body
    assert "/storage/" not in mail.outbox[0].body and "X-Amz" not in mail.outbox[0].body


def test_bulk_decisions_decide_what_they_can(release, reviewer):
    pending = AccessRequestFactory.create_batch(3, release=release)
    withdrawn = AccessRequestFactory(release=release, status="withdrawn")
    result = services.requests_decide_many(
        actor=actor(reviewer), public_ids=[r.public_id for r in [*pending, withdrawn]], action="reject", reason="No."
    )
    assert sorted(result["done"]) == sorted(r.public_id for r in pending)
    assert list(result["refused"]) == [withdrawn.public_id]
    assert AccessRequest.objects.filter(status="rejected").count() == 3


def test_auto_approval_for_an_allowlisted_domain(release, django_capture_on_commit_callbacks):
    """The former allow-list, as the migration writes it: a rule on the verified email domain."""
    rule = DecisionRule.objects.create(
        release=release, position=1, action="approve", conditions={"email_domains": ["uni.example"]}
    )
    insider, outsider = UserFactory(email="i@uni.example"), UserFactory(email="o@else.example")
    with django_capture_on_commit_callbacks(execute=True):
        approved = submit(insider, release)
    assert approved.status == "approved"
    assert AuditEvent.objects.get(action="request.approve", request=approved).credential == f"rule:{rule.pk}"
    assert Grant.objects.filter(request=approved).exists()
    assert submit(outsider, release).status == "pending"


def test_reviewers_are_told_of_new_requests(alice, release, reviewer, settings, django_capture_on_commit_callbacks):
    settings.REVIEWER_NOTIFICATIONS = "realtime"
    with django_capture_on_commit_callbacks(execute=True):
        submit(alice, release)
    assert reviewer.email in [m.to[0] for m in mail.outbox]


def test_the_daily_digest_lists_new_requests(release, reviewer, settings):
    from access.tasks import reviewer_digest

    settings.REVIEWER_NOTIFICATIONS = "digest"
    AccessRequestFactory.create_batch(2, release=release)
    assert reviewer_digest() == 1
    assert reviewer_digest() == 0  # once a day
    assert "2 new access requests" in mail.outbox[-1].subject


def test_a_rejected_applicant_is_told_the_same_date_everywhere_in_utc(
    client, alice, release, reviewer, settings, django_capture_on_commit_callbacks
):
    settings.REJECTION_COOLDOWN_DAYS = 30
    request = submit(alice, release)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.request_reject(actor=actor(reviewer), access_request=request, reason="Too vague.")
    request.refresh_from_db()
    ends = request.decided_at + timedelta(days=30)
    when = f"{ends.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    sentence = f"You may apply again from {when}."
    (email,) = mail.outbox
    assert sentence in email.body and sentence in email.alternatives[0][0]
    with pytest.raises(services.ServiceError) as exc:
        submit(alice, release)
    assert sentence in str(exc.value)
    client.force_login(alice)
    page = client.get(f"/requests/{request.public_id}/").content.decode()
    assert sentence in page
    assert sentence in client.get("/models/facebook/opt-175b/").content.decode()
    # During the cool-down the apply page says so instead of showing a form refused on submit.
    apply = client.get("/models/facebook/opt-175b/apply").content.decode()
    assert sentence in apply and 'id="apply-form"' not in apply and 'href="/help#contact"' in apply
    # In Chinese: the same date and time, the same one sentence.
    alice.language = "zh-hans"
    alice.save(update_fields=["language"])
    chinese = client.get("/models/facebook/opt-175b/apply", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    assert f"您可以从 {when} 起重新申请。" in chinese
