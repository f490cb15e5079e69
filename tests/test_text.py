"""The free-text rule (access/text.py) for line separators, through the channels text arrives on and the emails
it ends up in: U+2028 (LINE SEPARATOR) and U+2029 (PARAGRAPH SEPARATOR) end a line for many mail readers and
for Python's own str.splitlines(), so they are treated as the line breaks they are."""

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from access import emails, services
from access.models import AccessRequest, Lab
from access.services.notifications import request_notify
from access.text import LINE_BREAKS, clean_text, one_line, plain_lines
from tests.factories import ANSWERS, AccessRequestFactory, ReleaseFactory, token_secret
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db

LS, PS = "\u2028", "\u2029"
SEPARATORS = (LS, PS)
FORM = {**ANSWERS, "accept_license": "on", "noncommercial_attested": "on"}
BODY = {**ANSWERS, "repo_id": "facebook/opt-175b", "accept_license": True, "noncommercial_attested": True}
INTENDED_USE = f"First paragraph: {ANSWERS['intended_use']}{PS}Second paragraph: the results are published openly."


# --- The rule in memory: every character str.splitlines() breaks a line at ---------------------------------


@pytest.mark.parametrize("ch", sorted(LINE_BREAKS))
def test_one_line_fields_refuse_every_kind_of_line_break(ch):
    assert f"a{ch}b".splitlines() == ["a", "b"]  # the table is what Python (and mail libraries) split on
    with pytest.raises(ValidationError) as exc:
        clean_text(f"Alice{ch}Example", multiline=False, name=True)
    assert exc.value.code == "line_breaks"


@pytest.mark.parametrize(
    ("ch", "kept"),
    [("\n", "\n"), ("\r\n", "\r\n"), (LS, "\n"), (PS, "\n")],
)
def test_multi_line_fields_keep_newlines_and_take_the_two_separators_as_newlines(ch, kept):
    assert clean_text(f"first{ch}second", multiline=True) == f"first{kept}second"


@pytest.mark.parametrize("ch", ["\x0b", "\x0c", "\x85", "\x1c", "\x1d", "\x1e"])
def test_multi_line_fields_refuse_the_line_breaks_that_are_control_characters(ch):
    with pytest.raises(ValidationError) as exc:
        clean_text(f"first{ch}second", multiline=True)
    assert exc.value.code == "control_characters"


def test_what_emails_render_has_newlines_only_and_subjects_one_line():
    text = "".join(f"line{n}{ch}" for n, ch in enumerate(sorted(LINE_BREAKS)))
    assert not set(plain_lines(text)) & (LINE_BREAKS - {"\n", "\r"})
    assert plain_lines(text).splitlines() == text.splitlines()
    assert one_line(f"  New request{LS}from Alice\n") == "New request from Alice"


# --- Through the channels ------------------------------------------------------------------------------------


@pytest.fixture
def release(local_storage):
    return ReleaseFactory(repo_id="facebook/opt-175b", access="gated")


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(user)}")
    return client


def sent_text() -> str:
    """Every subject, body and HTML alternative the portal handed to the mail backend."""
    parts = []
    for message in mail.outbox:
        parts += [message.subject, message.body, *(content for content, _type in message.alternatives)]
    return "".join(parts)


@pytest.mark.parametrize("separator", SEPARATORS)
def test_a_full_name_with_a_line_separator_is_refused_through_the_api(release, alice, separator):
    body = {**BODY, "full_name": f"Alice Example{separator}Bcc: everyone@example.org"}
    response = api_for(alice).post("/api/v1/access-requests", body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == ["full_name"]
    assert "one line" in response.json()["fields"]["full_name"][0]
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize("separator", SEPARATORS)
def test_a_full_name_with_a_line_separator_is_refused_on_the_web_form(client, release, alice, separator):
    client.force_login(alice)
    response = client.post("/models/facebook/opt-175b/apply", {**FORM, "full_name": f"Alice{separator}Example"})
    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["full_name"]
    assert 'id="errors-full_name"' in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_a_full_name_with_a_line_separator_is_refused_by_the_service(release, alice):
    with pytest.raises(services.ServiceError) as exc:
        services.request_submit(
            actor=services.Actor(user=alice, credential="session"),
            release=release,
            data={**ANSWERS, "full_name": f"Alice{LS}Example", "noncommercial_attested": True},
            license_accepted=True,
        )
    assert exc.value.field == "full_name"
    assert not AccessRequest.objects.exists()


def test_a_lab_name_with_a_line_separator_is_refused(alice):
    response = api_for(alice).post("/api/v1/labs", {"name": f"NLP Lab{LS}Bcc: x@example.org"}, format="json")
    assert response.status_code == 400 and "name" in response.json()["fields"]
    assert not Lab.objects.exists()


def test_intended_use_with_a_paragraph_separator_is_stored_with_a_newline_through_the_api(release, alice):
    response = api_for(alice).post("/api/v1/access-requests", {**BODY, "intended_use": INTENDED_USE}, format="json")
    assert response.status_code == 201, response.content
    stored = AccessRequest.objects.get().intended_use
    assert stored == INTENDED_USE.replace(PS, "\n")


def test_intended_use_with_a_paragraph_separator_is_stored_with_a_newline_from_the_web_form(client, release, alice):
    client.force_login(alice)
    response = client.post("/models/facebook/opt-175b/apply", {**FORM, "intended_use": INTENDED_USE})
    assert response.status_code == 302
    assert AccessRequest.objects.get().intended_use == INTENDED_USE.replace(PS, "\n")


def test_no_email_carries_a_line_separator_from_what_people_wrote(
    release, alice, reviewer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(alice).post("/api/v1/access-requests", {**BODY, "intended_use": INTENDED_USE}, format="json")
    assert response.status_code == 201, response.content
    request = AccessRequest.objects.get()
    client = APIClient()
    login_recently(client, reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        asked = client.post(
            f"/api/v1/review/access-requests/{request.public_id}/request-info",
            {"reason": f"Which lab?{LS}Which cluster?"},
            format="json",
        )
    assert asked.status_code == 200, asked.content
    request.refresh_from_db()
    assert request.info_request == "Which lab?\nWhich cluster?"
    with django_capture_on_commit_callbacks(execute=True):
        services.request_answer(
            actor=services.Actor(user=alice, credential="session"),
            access_request=request,
            answer=f"The NLP lab.{PS}Our own cluster.",
        )
    with django_capture_on_commit_callbacks(execute=True):
        rejected = client.post(
            f"/api/v1/review/access-requests/{request.public_id}/reject",
            {"reason": f"Not research use.{PS}Apply again with a project description."},
            format="json",
        )
    assert rejected.status_code == 200, rejected.content
    templates = {message.subject for message in mail.outbox}
    assert len(templates) >= 3, templates  # submitted, question, rejected (and reviewers' notices)
    assert "Apply again with a project description." in "".join(m.body for m in mail.outbox)
    assert not any(separator in sent_text() for separator in SEPARATORS)


def test_the_email_helper_keeps_line_separators_out_of_text_stored_before_the_rule(release, alice):
    """Rows written before the rule (or by anything that bypassed it) still reach emails only as plain lines."""
    request = AccessRequestFactory(
        applicant=alice,
        release=release,
        full_name=f"Alice{LS}Example",
        status="rejected",
        decision_reason=f"Not research use.{PS}Bcc: everyone@example.org",
    )
    event = services.audit(
        actor=services.task_actor("tests"), action="request.reject", target=request, access_request=request
    )
    assert request_notify(event.pk) is True
    (message,) = mail.outbox
    assert "Alice\nExample" in message.body and "Not research use.\nBcc: everyone@example.org" in message.body
    assert not any(separator in sent_text() for separator in SEPARATORS)
    subject, text, html = emails.render("review_new_request", {"request": request, "release": release})
    assert "\n" not in subject and "Alice Example" in subject
    assert not any(separator in subject + text + html for separator in SEPARATORS)
