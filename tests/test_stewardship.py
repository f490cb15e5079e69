"""Stewardship of a grant: progress reports with renewals, close-outs when access ends, the public register of
uses and the transparency numbers, through the API as scripts use it and the services the schedule runs."""

from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from access import services
from access.models import AuditEvent, CloseOut, Grant, LabMembership, ModelRelease, ProgressReport
from access.services import stewardship
from tests.factories import ANSWERS, ReleaseFactory, UserFactory, add_file, grant_for, token_secret

pytestmark = pytest.mark.django_db(transaction=True)

REPO = "facebook/opt-175b"


def api(user=None):
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(user)}")
    return client


def rita(reviewer):
    return services.Actor(user=reviewer, credential="session", reauthenticated=True)


@pytest.fixture
def release(local_storage):
    release = ReleaseFactory(repo_id=REPO, access="gated")
    add_file(release, "config.json", b"{}")
    return release


def set_policy(release, **flags):
    ModelRelease.objects.filter(pk=release.pk).update(**flags)
    release.refresh_from_db()
    return release


def ended(grant, days_ago=1):
    """The grant expired `days_ago` days ago, as the hourly expiry task sees it."""
    now = timezone.now()
    Grant.objects.filter(pk=grant.pk).update(
        issued_at=now - timedelta(days=400), expires_at=now - timedelta(days=days_ago)
    )
    services.grants_expire()
    grant.refresh_from_db()
    return grant


def apply(user, release, **extra):
    body = {"repo_id": release.repo_id, "accept_license": True, "noncommercial_attested": True, **ANSWERS, **extra}
    return api(user).post("/api/v1/access-requests", body, format="json")


REPORT = {
    "summary": "Fine-tuned the 175B model for calibration studies; evaluated on held-out benchmarks.",
    "publications": ["10.48550/arXiv.2205.01068", "https://doi.org/10.1000/xyz123"],
    "derived_models": "A calibrated 175B adapter, not released.",
    "incidents": "none",
}


def test_a_holder_renews_with_a_progress_report_and_a_reviewer_approves_it(release, alice, reviewer):
    set_policy(release, progress_report_required=True)
    grant = grant_for(alice, release, reviewer)
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(days=3))
    mail.outbox.clear()
    services.grants_expire()  # the expiry warning says a report goes with the renewal
    (warning,) = [m for m in mail.outbox if alice.email in m.to]
    assert "progress report" in warning.body and f"/grants/{grant.public_id}/report" in warning.body
    url = f"/api/v1/grants/{grant.public_id}/renew"
    bare = api(alice).post(url, {}, format="json")
    assert bare.status_code == 400 and bare.json()["code"] == "progress_report_required"
    bad = api(alice).post(url, {"progress_report": {**REPORT, "publications": ["not a doi"]}}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_doi"
    assert not grant.renewals.exists()
    response = api(alice).post(url, {"progress_report": REPORT}, format="json")
    assert response.status_code == 201, response.content
    renewal = grant.renewals.get()
    report = ProgressReport.objects.get(renewal=renewal)
    assert report.publications == ["10.48550/arXiv.2205.01068", "10.1000/xyz123"]
    # Such a renewal is decided by a person: a decision rule may not approve it.
    with pytest.raises(services.Forbidden) as refused:
        services.request_approve(actor=services.rule_actor("domain"), access_request=renewal)
    assert refused.value.code == "human_review_required"
    history = api(reviewer).get(f"/api/v1/review/grants/{grant.public_id}/progress-reports")
    assert history.status_code == 403  # a reviewer's token needs reviewer access
    client = APIClient()
    client.force_login(reviewer)
    page = client.get(f"/review/requests/{renewal.public_id}/")
    assert page.status_code == 200
    assert b'href="https://doi.org/10.1000/xyz123"' in page.content
    services.request_approve(actor=rita(reviewer), access_request=renewal)
    renewed = services.grant_issue(request_id=renewal.pk)
    assert renewed.is_active and renewed.request.renewal_of_id == grant.pk
    assert AuditEvent.objects.filter(action="grant.progress_report", target_id=grant.public_id).exists()


def test_a_report_is_filed_any_time_and_only_by_the_holder(release, alice, bob, reviewer):
    grant = grant_for(alice, release, reviewer)
    url = f"/api/v1/grants/{grant.public_id}/progress-reports"
    assert api(bob).post(url, REPORT, format="json").status_code == 404
    for body, code in (
        ({"summary": ""}, "invalid"),
        ({"summary": "ok", "publications": "10.1/x"}, "invalid"),
        ({"summary": "ok", "publications": ["10.1234/a b"]}, "invalid_doi"),
        ({"summary": "ok", "publications": ["javascript:alert(1)"]}, "invalid_doi"),
        ([1, 2], "invalid"),
    ):
        response = api(alice).post(url, body, format="json")
        assert 400 <= response.status_code < 500 and response.json()["code"] == code, (body, response.content)
    response = api(alice).post(url, REPORT, format="json")
    assert response.status_code == 201
    assert response.json()["publication_links"][0] == "https://doi.org/10.48550/arXiv.2205.01068"
    assert api(alice).get(url).json()[0]["id"] == response.json()["id"]


def test_an_expired_holder_is_asked_for_a_close_out_and_files_it(release, alice, reviewer):
    grant = grant_for(alice, release, reviewer)
    mail.outbox.clear()
    ended(grant)
    closeout = CloseOut.objects.get(grant=grant)
    assert (closeout.user, closeout.scope, closeout.reason) == (alice, "personal", "expired")
    assert any("deleted" in m.subject and alice.email in m.to for m in mail.outbox)
    services.grants_expire()  # a second run asks nothing again
    assert CloseOut.objects.filter(grant=grant).count() == 1
    url = f"/api/v1/grants/{grant.public_id}/close-out"
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    for body, code in (
        ({"deleted_on": tomorrow, "locations": 2, "statement": "gone"}, "invalid_date"),
        ({"deleted_on": "yesterday", "locations": 2, "statement": "gone"}, "invalid"),
        ({"deleted_on": "2020-01-01", "locations": 2, "statement": "gone"}, "invalid_date"),
        (
            {"deleted_on": timezone.now().date().isoformat(), "locations": -1, "statement": "gone"},
            "number_out_of_range",
        ),
        ({"deleted_on": timezone.now().date().isoformat(), "locations": 2, "statement": "x" * 3000}, "invalid"),
        (
            {"deleted_on": timezone.now().date().isoformat(), "locations": 2, "statement": "ok", "scope": "lab"},
            "no_closeout",
        ),
    ):
        response = api(alice).post(url, body, format="json")
        assert 400 <= response.status_code < 500 and response.json()["code"] == code, (body, response.content)
    today = timezone.now().date().isoformat()
    response = api(alice).post(
        url, {"deleted_on": today, "locations": 2, "statement": "Deleted both copies."}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["outstanding"] is False and response.json()["locations"] == 2
    again = api(alice).post(url, {"deleted_on": today, "locations": 2, "statement": "again"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "no_closeout"
    assert AuditEvent.objects.filter(action="closeout.completed").count() == 1


def test_a_release_that_requires_close_out_refuses_a_new_request_until_it_is_filed(release, alice, reviewer):
    set_policy(release, closeout_required=True)
    grant = ended(grant_for(alice, release, reviewer))
    refused = apply(alice, release)
    assert refused.status_code == 400 and refused.json()["code"] == "closeout_required"
    assert f"/grants/{grant.public_id}/close-out" in refused.json()["detail"]
    services.closeout_file(
        actor=services.Actor(user=alice, credential="session"),
        grant=grant,
        deleted_on=timezone.now().date(),
        locations=1,
        statement="Deleted.",
    )
    assert apply(alice, release).status_code == 201


def test_a_holder_closes_their_access_and_is_asked_for_the_close_out(release, alice, bob, reviewer):
    grant = grant_for(alice, release, reviewer)
    assert api(bob).post(f"/api/v1/grants/{grant.public_id}/close").status_code == 404
    response = api(alice).post(f"/api/v1/grants/{grant.public_id}/close")
    assert response.status_code == 200 and response.json()["active"] is False
    grant.refresh_from_db()
    assert grant.closed_at is not None and not grant.is_active
    assert CloseOut.objects.get(grant=grant).reason == "closed"
    status = api(alice).get(f"/api/v1/models/{REPO}/files/config.json")
    assert status.status_code == 403 and status.json()["code"] == "expired"
    again = api(alice).post(f"/api/v1/grants/{grant.public_id}/close")
    assert again.status_code == 409 and again.json()["code"] == "grant_ended"
    renew = api(alice).post(f"/api/v1/grants/{grant.public_id}/renew", {}, format="json")
    assert renew.status_code == 400 and renew.json()["code"] == "grant_closed"
    client = APIClient()
    client.force_login(alice)
    page = client.get(f"/grants/{grant.public_id}/")
    assert b"renew-button" not in page.content and b"closeout-link" in page.content


def test_a_revoked_holder_is_asked_for_the_close_out(release, alice, reviewer):
    grant = grant_for(alice, release, reviewer)
    services.grant_revoke(actor=rita(reviewer), grant=grant, reason="Shared the weights.")
    assert CloseOut.objects.get(grant=grant).reason == "revoked"


def test_a_lab_member_removed_from_the_lab_is_asked_for_theirs(release, reviewer):
    owner = UserFactory(email="pi@cs.uni.example")
    actor = services.Actor(user=owner, credential="session")
    lab = services.lab_create(actor=actor, name="Language Lab", ror_id="02mhbdp94", email_domains=["uni.example"])
    max_ = UserFactory(email="max@uni.example")
    _inv, secret = services.lab_invite(actor=actor, lab=lab, email=max_.email)
    services.lab_invitation_accept(actor=services.Actor(user=max_, credential="session"), token=secret)
    body = {"repo_id": release.repo_id, "accept_license": True, "noncommercial_attested": True, **ANSWERS}
    response = api(owner).post(
        "/api/v1/access-requests", {**body, "lab": lab.public_id, "all_members": True}, format="json"
    )
    access_request = lab.access_requests.get(public_id=response.json()["id"])
    services.request_approve(actor=rita(reviewer), access_request=access_request)
    grant = Grant.objects.get(request=access_request)
    accepted = api(max_).post(
        f"/api/v1/grants/{grant.public_id}/accept-license",
        {"version": "1.0", "accept_license": True, "noncommercial_attested": True},
        format="json",
    )
    assert accepted.status_code == 200, accepted.content
    # The owner (or an admin) reports for the lab; a member does not.
    reports = f"/api/v1/grants/{grant.public_id}/progress-reports"
    by_member = api(max_).post(reports, REPORT, format="json")
    assert by_member.status_code == 403 and by_member.json()["code"] == "lab_admin_required"
    assert api(owner).post(reports, REPORT, format="json").status_code == 201
    membership = LabMembership.objects.current().get(lab=lab, user=max_)
    services.lab_member_remove(actor=actor, lab=lab, membership=membership)
    closeout = CloseOut.objects.get(grant=grant)
    assert (closeout.user, closeout.scope, closeout.reason) == (max_, "personal", "left_lab")
    # No longer a member, they still reach the grant to certify.
    today = timezone.now().date().isoformat()
    response = api(max_).post(
        f"/api/v1/grants/{grant.public_id}/close-out",
        {"deleted_on": today, "locations": 1, "statement": "Deleted my copy."},
        format="json",
    )
    assert response.status_code == 200, response.content
    # The lab's access ending asks the owner for the lab's copies too.
    services.grant_close(actor=actor, grant=grant)
    assert CloseOut.objects.filter(grant=grant, user=owner, scope="lab").exists()


def test_reminders_go_after_7_and_30_days_once_each_in_the_recipients_language(release, alice, reviewer):
    alice.language = "zh-hans"
    alice.save(update_fields=["language"])
    grant = ended(grant_for(alice, release, reviewer))
    closeout = CloseOut.objects.get(grant=grant)
    schedule = services.task_actor("closeouts_remind")
    mail.outbox.clear()
    assert services.closeouts_remind(actor=schedule) == {"7": 0, "30": 0}
    with pytest.raises(services.Forbidden):
        services.closeouts_remind(actor=services.Actor(user=reviewer, credential="session", reauthenticated=True))
    later = timezone.now() + timedelta(days=8)
    with mock.patch("django.utils.timezone.now", return_value=later):
        assert services.closeouts_remind(actor=schedule) == {"7": 1, "30": 0}
        assert services.closeouts_remind(actor=schedule) == {"7": 0, "30": 0}
    (reminder,) = [m for m in mail.outbox if alice.email in m.to]
    assert "提醒" in reminder.subject
    with mock.patch("django.utils.timezone.now", return_value=timezone.now() + timedelta(days=31)):
        assert stewardship.closeouts_remind_task() == {"7": 0, "30": 1}
    closeout.refresh_from_db()
    assert closeout.reminded_7_at and closeout.reminded_30_at
    assert len([m for m in mail.outbox if alice.email in m.to]) == 2
    assert AuditEvent.objects.filter(action="closeout.reminded").count() == 2


def test_the_register_and_transparency_show_only_consenting_approved_applicants(release, reviewer):
    set_policy(
        release,
        public_register=True,
        transparency_public=True,
    )
    services.release_rules_set(
        actor=services.command_actor("tests"),
        release=release,
        rules=[{"action": "approve", "conditions": {"email_domains": ["auto.example"]}}],
    )
    consenting, silent, withdrawing, waiting = (
        UserFactory(email=e) for e in ("cara@uni.example", "sam@uni.example", "wendy@uni.example", "pat@uni.example")
    )
    statement = {"register_consent": True, "public_statement": "Calibration research on reasoning benchmarks."}
    no_statement = apply(consenting, release, register_consent=True)
    assert no_statement.status_code == 400 and no_statement.json()["code"] == "statement_required"
    for person, extra in ((consenting, statement), (silent, {}), (withdrawing, statement), (waiting, statement)):
        assert apply(person, release, **extra).status_code == 201
    for person in (consenting, silent, withdrawing):
        services.request_approve(actor=rita(reviewer), access_request=person.access_requests.get())
        services.grant_issue(request_id=person.access_requests.get().pk)
    automatic = UserFactory(email="ann@auto.example")
    assert apply(automatic, release, **statement).json()["status"] == "approved"
    services.grant_issue(request_id=automatic.access_requests.get().pk)
    withdrawn_grant = Grant.objects.get(user=withdrawing)
    response = api(withdrawing).post(f"/api/v1/grants/{withdrawn_grant.public_id}/register/withdraw")
    assert response.status_code == 204
    register = APIClient().get(f"/api/v1/models/{REPO}/register")
    assert register.status_code == 200
    names = sorted(e["name"] for e in register.json()["entries"])
    assert len(names) == 2 and all(e["statement"] == statement["public_statement"] for e in register.json()["entries"])
    assert {g.user for g in Grant.objects.filter(public_id__in=[e["id"] for e in register.json()["entries"]])} == {
        consenting,
        automatic,
    }
    # The institution shows once it verifies something: a confirmed one whose domain is a verified address's.
    by_person = {e["name"]: e for e in register.json()["entries"]}
    assert all(e["institution"] is None for e in by_person.values())
    command = services.command_actor("tests")
    university = services.institution_create(
        actor=command, ror_id="0testun01", name="Test University", email_domains=["uni.example"]
    )
    services.institution_confirm(actor=command, institution=university)
    shown = {
        Grant.objects.get(public_id=e["id"]).user: e["institution"]
        for e in APIClient().get(f"/api/v1/models/{REPO}/register").json()["entries"]
    }
    assert shown == {
        consenting: {"name": "Test University", "ror": "https://ror.org/0testun01"},
        automatic: None,
    }
    page = APIClient().get(f"/models/{REPO}/register")
    assert page.status_code == 200 and b"Calibration research" in page.content and b"sam@" not in page.content
    numbers = APIClient().get(f"/api/v1/models/{REPO}/transparency").json()
    assert numbers["decided"] == 4 and numbers["approval_rate"] == 1.0
    assert numbers["time_to_decision"]["human"]["decided"] == 3
    assert numbers["time_to_decision"]["automatic"]["decided"] == 1
    assert APIClient().get(f"/models/{REPO}/transparency").status_code == 200
    set_policy(release, public_register=False)
    assert APIClient().get(f"/api/v1/models/{REPO}/register").status_code == 404


def test_reviewers_list_outstanding_close_outs_and_the_dashboard_counts_them(release, alice, reviewer):
    ended(grant_for(alice, release, reviewer))
    client = APIClient()
    client.force_login(reviewer)
    page = client.get("/review/close-outs/")
    assert page.status_code == 200 and alice.email.encode() in page.content
    dashboard = client.get("/review/dashboard")
    assert b'id="fig-closeouts">1<' in dashboard.content
    outsider = APIClient()
    outsider.force_login(alice)
    assert outsider.get("/review/close-outs/").status_code == 404
    assert api(alice).get("/api/v1/review/close-outs").status_code == 403


def test_a_lab_entry_names_the_lab_and_only_the_members_who_consent(release, reviewer):
    set_policy(release, public_register=True)
    owner, max_, zoe = (UserFactory(email=e) for e in ("pi@cs.uni.example", "max@uni.example", "zoe@uni.example"))
    owner.first_name, owner.last_name = "Pat", "Owner"
    owner.save()
    actor = services.Actor(user=owner, credential="session")
    lab = services.lab_create(actor=actor, name="Language Lab", ror_id="02mhbdp94", email_domains=["uni.example"])
    for person in (max_, zoe):
        _inv, secret = services.lab_invite(actor=actor, lab=lab, email=person.email)
        services.lab_invitation_accept(actor=services.Actor(user=person, credential="session"), token=secret)
    body = {"repo_id": release.repo_id, "accept_license": True, "noncommercial_attested": True, **ANSWERS}
    body.update(lab=lab.public_id, all_members=True, register_consent=True, public_statement="Multilingual evals.")
    response = api(owner).post("/api/v1/access-requests", body, format="json")
    assert response.status_code == 201, response.content
    access_request = lab.access_requests.get()
    services.request_approve(actor=rita(reviewer), access_request=access_request)
    grant = Grant.objects.get(request=access_request)
    for person in (max_, zoe):
        api(person).post(
            f"/api/v1/grants/{grant.public_id}/accept-license",
            {"version": "1.0", "accept_license": True, "noncommercial_attested": True},
            format="json",
        )
    services.register_seat_consent(actor=services.Actor(user=max_, credential="session"), grant=grant, consent=True)
    (entry,) = APIClient().get(f"/api/v1/models/{REPO}/register").json()["entries"]
    assert (entry["kind"], entry["name"], entry["members"]) == ("lab", "Language Lab", ["max"])
    assert entry["statement"] == "Multilingual evals." and entry["institution"] is None  # not a confirmed one
    with pytest.raises(services.ServiceError):
        services.register_withdraw(actor=services.Actor(user=max_, credential="session"), grant=grant)
    services.register_withdraw(actor=actor, grant=grant)
    assert APIClient().get(f"/api/v1/models/{REPO}/register").json()["entries"] == []
