"""The Hugging Face reviewer calls (list, accept, reject, cancel, grant, whoami), driven by the real
huggingface_hub client and `hf auth whoami` against a live portal."""

import huggingface_hub as hf
import pytest
from huggingface_hub import errors as hf_errors

from access import services
from access.api import hf_review
from access.models import AccessRequest, AuditEvent, Grant
from tests.factories import ANSWERS, AccessRequestFactory, ReleaseFactory, UserFactory, grant_for, token_secret
from tests.test_hf import _no_persistent_db_connections, cli, hf_env, portal  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def gated(portal):  # noqa: F811
    return ReleaseFactory(repo_id="facebook/opt-175b", access="gated")


@pytest.fixture
def api(portal, reviewer):  # noqa: F811
    return hf.HfApi(endpoint=portal, token=token_secret(reviewer, name="review script", review=True))


def test_it_lists_each_of_the_hubs_three_lists(api, gated, alice, bob, reviewer):
    waiting = AccessRequestFactory(applicant=alice, release=gated, full_name="Alice Example")
    asked = AccessRequestFactory(applicant=bob, release=gated)
    services.request_ask_info(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=asked,
        question="Which lab?",
    )
    carol, dave, erin = (UserFactory(email=f"{n}@uni.example") for n in ("carol", "dave", "erin"))
    grant_for(carol, gated, reviewer)
    rejected = AccessRequestFactory(applicant=dave, release=gated)
    services.request_reject(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=rejected,
        reason="Not research.",
    )
    revoked = grant_for(erin, gated, reviewer)
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        grant=revoked,
        reason="Shared the weights.",
    )
    AccessRequestFactory(release=gated, status="withdrawn")

    pending = list(api.list_pending_access_requests(gated.repo_id))
    assert [(r.username, r.status) for r in pending] == [(alice.email, "pending"), (bob.email, "pending")]
    first = pending[0]
    assert first.request_id == waiting.public_id
    assert first.email == alice.email and first.fullname == "Alice Example"
    assert first.timestamp == waiting.created_at.replace(microsecond=waiting.created_at.microsecond // 1000 * 1000)
    assert first.fields["intended_use"] == waiting.intended_use and first.fields["country"] == "NL"
    assert [r.username for r in api.list_accepted_access_requests(gated.repo_id)] == [carol.email]
    assert {r.username for r in api.list_rejected_access_requests(gated.repo_id)} == {dave.email, erin.email}


def test_a_script_accepting_while_it_pages_through_pending_skips_no_one(api, gated, monkeypatch):
    monkeypatch.setattr(hf_review, "PAGE_SIZE", 2)  # the live server runs in this process
    requests = [AccessRequestFactory(release=gated) for _ in range(5)]
    seen = []
    for pending in api.list_pending_access_requests(gated.repo_id):
        api.accept_access_request(gated.repo_id, pending.username)
        seen.append(pending.request_id)
    assert seen == [r.public_id for r in requests]
    assert AccessRequest.objects.filter(status="approved").count() == 5
    assert Grant.objects.count() == 5


def test_accepting_approves_through_the_service_and_issues_the_grant(api, gated, alice, reviewer):
    request = AccessRequestFactory(applicant=alice, release=gated)
    api.accept_access_request(gated.repo_id, alice.email.upper())
    request.refresh_from_db()
    assert (request.status, request.reviewer) == ("approved", reviewer)
    assert Grant.objects.get(request=request).is_active
    event = AuditEvent.objects.get(action="request.approve")
    assert event.actor == reviewer and event.credential.startswith("token:")
    with pytest.raises(hf_errors.HfHubHTTPError) as again:
        api.accept_access_request(gated.repo_id, request_id=request.public_id)
    assert again.value.response.status_code == 409
    assert "already accepted" in str(again.value)


def test_rejecting_needs_a_reason_the_applicant_will_see(api, gated, alice, bob):
    request = AccessRequestFactory(applicant=alice, release=gated)
    with pytest.raises(hf_errors.BadRequestError) as no_reason:
        api.reject_access_request(gated.repo_id, alice.email, rejection_reason=None)
    assert "Give a reason" in str(no_reason.value)
    with pytest.raises(hf_errors.BadRequestError):
        api.reject_access_request(gated.repo_id, alice.email, rejection_reason="bad\x1b[31m reason")
    request.refresh_from_db()
    assert request.status == "pending"
    api.reject_access_request(gated.repo_id, request_id=request.public_id, rejection_reason="Commercial use.")
    request.refresh_from_db()
    assert (request.status, request.decision_reason) == ("rejected", "Commercial use.")
    with pytest.raises(hf_errors.HfHubHTTPError) as nobody:
        api.reject_access_request(gated.repo_id, bob.email, rejection_reason="x")
    assert nobody.value.response.status_code == 404


def test_rejecting_an_accepted_request_revokes_its_grant(api, gated, alice, reviewer):
    grant = grant_for(alice, gated, reviewer)
    api.reject_access_request(gated.repo_id, alice.email, rejection_reason="Broke the license.")
    grant.refresh_from_db()
    assert grant.revoked_at is not None and grant.revoke_reason == "Broke the license."
    assert [r.username for r in api.list_rejected_access_requests(gated.repo_id)] == [alice.email]


def test_cancelling_an_accepted_request_revokes_the_grant_and_a_rejected_one_stays(api, gated, alice, bob, reviewer):
    grant = grant_for(alice, gated, reviewer)
    api.cancel_access_request(gated.repo_id, alice.email)
    grant.refresh_from_db()
    assert grant.revoked_at is not None and grant.revoke_reason == "Access cancelled by a reviewer."
    assert grant.revoked_by == reviewer
    assert list(api.list_accepted_access_requests(gated.repo_id)) == []

    rejected = AccessRequestFactory(applicant=bob, release=gated)
    services.request_reject(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=rejected,
        reason="No.",
    )
    with pytest.raises(hf_errors.HfHubHTTPError) as reopen:
        api.cancel_access_request(gated.repo_id, bob.email)
    assert reopen.value.response.status_code == 409 and "not reopened" in str(reopen.value)
    pending = AccessRequestFactory(release=gated)
    with pytest.raises(hf_errors.HfHubHTTPError) as already:
        api.cancel_access_request(gated.repo_id, request_id=pending.public_id)
    assert already.value.response.status_code == 409


def test_granting_someone_who_never_applied_records_the_reviewers_decision(api, gated, alice, reviewer):
    body = api.grant_access(gated.repo_id, alice.email)
    request = AccessRequest.objects.get(applicant=alice)
    assert body == {"requestId": request.public_id, "status": "accepted", "portalStatus": "approved"}
    assert (request.origin, request.status, request.reviewer) == ("reviewer", "approved", reviewer)
    assert request.noncommercial_attested is False  # nothing is attested on the applicant's behalf
    assert Grant.objects.get(request=request).is_active
    actions = list(AuditEvent.objects.filter(request=request).values_list("action", "actor"))
    assert actions[:2] == [("request.granted", reviewer.pk), ("request.approve", reviewer.pk)]
    with pytest.raises(hf_errors.BadRequestError) as twice:
        api.grant_access(gated.repo_id, alice.email)
    assert "already has access" in str(twice.value)
    with pytest.raises(hf_errors.HfHubHTTPError) as unknown:
        api.grant_access(gated.repo_id, "nobody@nowhere.example")
    assert unknown.value.response.status_code == 404


def test_granting_someone_with_an_open_request_approves_it_and_a_rejected_one_gets_a_new_request(
    api, gated, alice, bob, reviewer
):
    open_request = AccessRequestFactory(applicant=alice, release=gated)
    api.grant_access(gated.repo_id, alice.email)
    open_request.refresh_from_db()
    assert open_request.status == "approved" and AccessRequest.objects.filter(applicant=alice).count() == 1
    rejected = AccessRequestFactory(applicant=bob, release=gated)
    services.request_reject(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=rejected,
        reason="No.",
    )
    api.accept_access_request(gated.repo_id, bob.email)  # the Hub moves rejected → accepted
    rejected.refresh_from_db()
    assert rejected.status == "rejected"  # a decided request is never reopened
    assert AccessRequest.objects.get(applicant=bob, origin="reviewer").status == "approved"


def test_a_reviewer_cannot_decide_their_own_request_through_the_hub_calls(api, gated, reviewer):
    AccessRequestFactory(applicant=reviewer, release=gated)
    for call in (
        lambda: api.accept_access_request(gated.repo_id, reviewer.email),
        lambda: api.grant_access(gated.repo_id, reviewer.email),
    ):
        with pytest.raises(hf_errors.HfHubHTTPError) as own:
            call()
        assert own.value.response.status_code == 403
    assert not Grant.objects.exists()


def lab_request(owner, release, lab_name="Language Lab"):
    act = services.Actor(user=owner, credential="session", reauthenticated=True)
    lab = services.lab_create(actor=act, name=lab_name)
    return services.request_submit_for_lab(
        actor=act,
        release=release,
        lab=lab,
        data={**ANSWERS, "noncommercial_attested": True},
        license_accepted=True,
        all_members=True,
    )


def test_lab_requests_carry_their_lab_and_a_users_two_open_requests_are_not_guessed(api, gated, alice):
    by_lab = lab_request(alice, gated)
    own = AccessRequestFactory(applicant=alice, release=gated)
    pending = {r.request_id: r for r in api.list_pending_access_requests(gated.repo_id)}
    assert set(pending) == {by_lab.public_id, own.public_id}
    assert pending[by_lab.public_id].fields["lab"] == "Language Lab"
    assert pending[by_lab.public_id].fields["covers"] == "all members"
    assert pending[by_lab.public_id].fields["lab_id"] == by_lab.lab.public_id
    assert "lab" not in pending[own.public_id].fields
    with pytest.raises(hf_errors.HfHubHTTPError) as ambiguous:
        api.accept_access_request(gated.repo_id, alice.email)
    response = ambiguous.value.response
    assert response.status_code == 409 and response.headers["X-Error-Code"] == "AmbiguousRequest"
    message = response.json()["detail"]
    for request in (by_lab, own):
        assert f"/api/v1/review/access-requests/{request.public_id}/approve" in message
    assert set(AccessRequest.objects.values_list("status", flat=True)) == {"pending"}


def test_a_reviewer_in_the_lab_cannot_accept_its_request_through_the_hub_calls(portal, gated, alice):  # noqa: F811
    by_lab = lab_request(alice, gated)
    insider = UserFactory(email="ida@uni.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=insider)
    act = services.Actor(user=alice, credential="session", reauthenticated=True)
    _invitation, secret = services.lab_invite(actor=act, lab=by_lab.lab, email=insider.email, role="admin")
    services.lab_invitation_accept(actor=services.Actor(user=insider, credential="session"), token=secret)
    api = hf.HfApi(endpoint=portal, token=token_secret(insider, name="review script", review=True))
    with pytest.raises(hf_errors.HfHubHTTPError) as refused:
        api.accept_access_request(gated.repo_id, alice.email)
    assert refused.value.response.status_code == 403
    by_lab.refresh_from_db()
    assert by_lab.status == "pending" and not Grant.objects.exists()


def reviewer_calls(api, repo, user):
    return {
        "list pending": lambda: list(api.list_pending_access_requests(repo)),
        "list accepted": lambda: list(api.list_accepted_access_requests(repo)),
        "list rejected": lambda: list(api.list_rejected_access_requests(repo)),
        "accept": lambda: api.accept_access_request(repo, user),
        "reject": lambda: api.reject_access_request(repo, user, rejection_reason="No."),
        "cancel": lambda: api.cancel_access_request(repo, user),
        "grant": lambda: api.grant_access(repo, user),
    }


@pytest.mark.parametrize("holder", ["researcher", "reviewer without reviewer access"])
def test_a_token_without_reviewer_powers_gets_403_on_every_reviewer_call(portal, gated, alice, bob, reviewer, holder):  # noqa: F811
    AccessRequestFactory(applicant=bob, release=gated)
    secret = token_secret(alice) if holder == "researcher" else token_secret(reviewer, name="downloads")
    api = hf.HfApi(endpoint=portal, token=secret)
    for name, call in reviewer_calls(api, gated.repo_id, bob.email).items():
        with pytest.raises(hf_errors.HfHubHTTPError) as refused:
            call()
        assert refused.value.response.status_code == 403, name
        assert refused.value.response.headers["X-Error-Message"], name
    # A researcher learns nothing about the release either: a missing repo is refused the same way.
    with pytest.raises(hf_errors.HfHubHTTPError) as missing:
        list(api.list_pending_access_requests("facebook/opt-9000b"))
    assert missing.value.response.status_code == 403
    assert AccessRequest.objects.get(applicant=bob).status == "pending"
    assert not Grant.objects.exists()


def test_without_a_token_every_reviewer_call_is_a_credentials_error(portal, gated, bob):  # noqa: F811
    api = hf.HfApi(endpoint=portal, token=False)
    for name, call in reviewer_calls(api, gated.repo_id, bob.email).items():
        with pytest.raises(hf_errors.HfHubHTTPError) as refused:
            call()
        assert refused.value.response.status_code == 401, name


def test_unknown_and_open_repos_get_the_hubs_errors(api, portal):  # noqa: F811
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        list(api.list_pending_access_requests("facebook/opt-9000b"))
    ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    with pytest.raises(hf_errors.BadRequestError):
        list(api.list_pending_access_requests("facebook/opt-125m"))


def test_whoami_names_the_account_the_token_and_its_role(api, portal, alice, reviewer, tmp_path):  # noqa: F811
    me = api.whoami()
    assert (me["name"], me["email"], me["portalRole"], me["canReview"]) == (reviewer.email,) * 2 + ("reviewer", True)
    assert me["auth"]["accessToken"]["displayName"] == "review script"
    assert me["auth"]["accessToken"]["role"] == "write"
    researcher = hf.HfApi(endpoint=portal, token=token_secret(alice, name="laptop")).whoami()
    assert (researcher["name"], researcher["portalRole"], researcher["canReview"]) == (alice.email, "researcher", False)
    assert researcher["auth"]["accessToken"] == {**researcher["auth"]["accessToken"], "role": "read"}
    with pytest.raises(hf_errors.HfHubHTTPError) as bad:
        hf.HfApi(endpoint=portal, token="mp_not-a-token").whoami()
    assert bad.value.response.status_code == 401

    result = cli(["auth", "whoami"], portal=portal, home=tmp_path, token=token_secret(alice, name="cli"))
    assert result.returncode == 0, result.stderr
    assert alice.email in result.stdout
    refused = cli(["auth", "whoami"], portal=portal, home=tmp_path, token="mp_not-a-token")
    assert refused.returncode != 0
