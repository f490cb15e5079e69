"""The web side of requests and reviews, through Django's test client (the browser flow is in test_browser)."""

import pytest
from django.core import mail

from access import services
from access.models import AccessRequest, Grant
from tests.factories import ANSWERS, AccessRequestFactory, ReleaseFactory, UserFactory
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db

FORM = {**ANSWERS, "accept_license": "on", "noncommercial_attested": "on"}


@pytest.fixture
def release(local_storage):
    return ReleaseFactory(repo_id="facebook/opt-175b", access="gated")


def test_the_release_page_invites_anonymous_visitors_to_sign_in(client, release):
    body = client.get("/models/facebook/opt-175b").content.decode()
    assert "Sign in to request access" in body


def test_an_invalid_field_is_shown_next_to_it_and_answers_are_kept(client, alice, release):
    client.force_login(alice)
    response = client.post("/models/facebook/opt-175b/apply", {**FORM, "intended_use": "too short"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="errors-intended_use"' in body and "at least 100 characters" in body
    assert 'value="University of Examples"' in body
    assert not AccessRequest.objects.exists()


def test_the_license_must_be_accepted(client, alice, release):
    client.force_login(alice)
    form = {k: v for k, v in FORM.items() if k != "accept_license"}
    body = client.post("/models/facebook/opt-175b/apply", form).content.decode()
    assert 'id="errors-accept_license"' in body
    assert not AccessRequest.objects.exists()


def test_applying_creates_a_pending_request_and_a_second_visit_shows_it(client, alice, release):
    client.force_login(alice)
    response = client.post("/models/facebook/opt-175b/apply", FORM)
    request = AccessRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/requests/{request.public_id}/"
    assert client.get("/models/facebook/opt-175b/apply")["Location"] == f"/requests/{request.public_id}/"
    response = client.post("/models/facebook/opt-175b/apply", FORM)
    assert response["Location"] == f"/requests/{request.public_id}/"
    assert AccessRequest.objects.count() == 1
    assert 'data-status="pending"' in client.get(f"/requests/{request.public_id}/").content.decode()


def test_an_unverified_account_is_sent_to_verify(client, release):
    user = UserFactory(verified=False)
    client.force_login(user)
    response = client.post("/models/facebook/opt-175b/apply", FORM)
    assert response.status_code == 302 and "/accounts/email/" in response["Location"]
    assert not AccessRequest.objects.exists()


def test_the_applicant_answers_a_question(client, alice, release, reviewer, django_capture_on_commit_callbacks):
    request = AccessRequestFactory(applicant=alice, release=release)
    with django_capture_on_commit_callbacks(execute=True):
        services.request_ask_info(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
            access_request=request,
            question="Which lab?",
        )
    assert "Which lab?" in mail.outbox[-1].body
    client.force_login(alice)
    assert "Which lab?" in client.get(f"/requests/{request.public_id}/").content.decode()
    client.post(f"/requests/{request.public_id}/", {"answer": "The NLP lab of Prof. Example."})
    request.refresh_from_db()
    assert request.status == "pending" and request.info_response == "The NLP lab of Prof. Example."


def test_another_applicants_request_is_not_found(client, bob, release):
    request = AccessRequestFactory(release=release)
    client.force_login(bob)
    assert client.get(f"/requests/{request.public_id}/").status_code == 404
    assert client.post(f"/requests/{request.public_id}/withdraw").status_code == 404
    request.refresh_from_db()
    assert request.status == "pending"


@pytest.mark.parametrize("url", ["/review/", "/review/requests/{id}/", "/review/grants/", "/review/export/audit.csv"])
def test_reviewer_pages_are_404_for_applicants(client, alice, release, url):
    request = AccessRequestFactory(applicant=alice, release=release)
    client.force_login(alice)
    assert client.get(url.format(id=request.public_id)).status_code == 404


def test_staff_without_the_review_permission_is_not_a_reviewer(client, release):
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.get("/review/").status_code == 404


def test_the_queue_filters_and_searches(client, reviewer, release):
    AccessRequestFactory(release=release, full_name="Zed Zulu", country="DE", organization_type="government")
    AccessRequestFactory(release=release, full_name="Amy Alpha", country="NL", affiliation="Delft")
    login_recently(client, reviewer)
    body = client.get("/review/?country=DE").content.decode()
    assert "Zed Zulu" in body and "Amy Alpha" not in body
    body = client.get("/review/?search=delft").content.decode()
    assert "Amy Alpha" in body and "Zed Zulu" not in body
    body = client.get("/review/?organization_type=government").content.decode()
    assert "Zed Zulu" in body and "Amy Alpha" not in body
    assert client.get("/review/?page=99999999999").status_code == 404


def test_the_queue_is_oldest_first(client, reviewer, release):
    first = AccessRequestFactory(release=release, full_name="First Person")
    AccessRequestFactory(release=release, full_name="Second Person")
    assert first.created_at
    login_recently(client, reviewer)
    body = client.get("/review/").content.decode()
    assert body.index("First Person") < body.index("Second Person")


def test_a_reviewer_approves_from_the_detail_page(client, reviewer, release, django_capture_on_commit_callbacks):
    request = AccessRequestFactory(release=release)
    login_recently(client, reviewer)
    page = client.get(f"/review/requests/{request.public_id}/").content.decode()
    assert request.intended_use in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/review/requests/{request.public_id}/", {"action": "approve", "reason": ""})
    request.refresh_from_db()
    assert request.status == "approved" and request.reviewer == reviewer
    assert Grant.objects.filter(request=request).exists()


def test_deciding_twice_shows_a_clear_error(client, reviewer, release):
    request = AccessRequestFactory(release=release, status="approved")
    login_recently(client, reviewer)
    response = client.post(f"/review/requests/{request.public_id}/", {"action": "reject", "reason": "No"}, follow=True)
    assert "Cannot reject a request that is approved" in response.content.decode()
    request.refresh_from_db()
    assert request.status == "approved"


def test_bulk_reject_from_the_queue(client, reviewer, release):
    requests = AccessRequestFactory.create_batch(2, release=release)
    login_recently(client, reviewer)
    chosen = {"action": "reject", "reason": "Out of scope.", "ids": [r.public_id for r in requests]}
    page = client.post("/review/bulk", chosen).content.decode()  # the list of what would be rejected, first
    assert "Reject these 2 requests?" in page and "Out of scope." in page
    assert AccessRequest.objects.filter(status="rejected").count() == 0
    response = client.post("/review/bulk", {**chosen, "confirm": "1"}, follow=True)
    assert AccessRequest.objects.filter(status="rejected").count() == 2
    assert "2 requests rejected." in response.content.decode()


def test_the_reviewer_sees_earlier_requests_of_the_applicant(client, reviewer, release, alice):
    AccessRequestFactory(applicant=alice, release=release, status="rejected", decision_reason="Too vague earlier.")
    current = AccessRequestFactory(applicant=alice, release=release)
    login_recently(client, reviewer)
    assert "Too vague earlier." in client.get(f"/review/requests/{current.public_id}/").content.decode()


def test_html_in_answers_is_escaped_for_reviewers_and_in_emails(client, reviewer, release, alice):
    evil = "<script>alert(1)</script>"
    request = AccessRequestFactory(applicant=alice, release=release, full_name=evil, intended_use=evil * 10)
    login_recently(client, reviewer)
    body = client.get(f"/review/requests/{request.public_id}/").content.decode()
    assert evil not in body and "&lt;script&gt;" in body
    from access.emails import render

    _, _, html = render("request_submitted", {"request": request, "release": release})
    assert evil not in html


def test_csrf_is_enforced_on_forms(alice, release):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(alice)
    assert csrf_client.post("/models/facebook/opt-175b/apply", FORM).status_code == 403


def test_a_decision_needs_a_recent_password(client, reviewer, release, settings):
    request = AccessRequestFactory(release=release)
    client.force_login(reviewer)  # a session with no recent password entry
    assert client.get(f"/review/requests/{request.public_id}/").status_code == 200
    response = client.post(f"/review/requests/{request.public_id}/", {"action": "approve"})
    assert response.status_code == 302 and "/accounts/reauthenticate/" in response["Location"]
    request.refresh_from_db()
    assert request.status == "pending"


def test_a_saved_reason_fills_an_empty_reason(client, reviewer, release):
    from access.models import ReasonTemplate

    template = ReasonTemplate.objects.get(kind="reject", title="Commercial use")
    request = AccessRequestFactory(release=release)
    login_recently(client, reviewer)
    page = client.get(f"/review/requests/{request.public_id}/").content.decode()
    # Offered in the rejection's form only, with the text it fills the box with.
    reject_form = page[page.index('id="decide-reject"') :]
    approve_form = page[page.index('id="decide-approve"') : page.index('id="decide-request_info"')]
    assert f'<option value="{template.pk}" data-text="' in reject_form and "Commercial use" in reject_form
    assert "Commercial use" not in approve_form
    # A saved reason of another action is refused, and nothing is decided.
    refused = client.post(f"/review/requests/{request.public_id}/", {"action": "approve", "template": template.pk})
    assert refused.status_code == 400 and "another action" in refused.content.decode()
    request.refresh_from_db()
    assert request.status == "pending"
    client.post(f"/review/requests/{request.public_id}/", {"action": "reject", "reason": "", "template": template.pk})
    request.refresh_from_db()
    assert request.status == "rejected" and request.decision_reason == template.text
