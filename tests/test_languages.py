"""Each account remembers its language — the browser's at sign-up, then the last one chosen in the interface — and
every email, the portal's and allauth's, is written in it."""

from __future__ import annotations

import pytest
from django.core import mail

from access import services
from access.models import User
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory

pytestmark = pytest.mark.django_db


def chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def sign_up(client, email, accept_language):
    return client.post(
        "/accounts/signup/",
        {"email": email, "password1": "a long enough password 42", "password2": "a long enough password 42"},
        HTTP_ACCEPT_LANGUAGE=accept_language,
    )


@pytest.mark.parametrize(("browser", "saved"), [("zh-CN,zh;q=0.9", "zh-hans"), ("en-GB,en;q=0.8", "en")])
def test_sign_up_keeps_the_browsers_language_and_writes_the_confirmation_in_it(client, browser, saved):
    mail.outbox.clear()
    sign_up(client, "lin@uni.example", browser)
    assert User.objects.get(email="lin@uni.example").language == saved
    (message,) = mail.outbox
    assert chinese(message.subject + message.body) is (saved == "zh-hans")


def test_choosing_a_language_in_the_interface_is_remembered(client):
    alice = UserFactory(email="alice@uni.example", language="en")
    client.force_login(alice)
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.language == "zh-hans"
    # Signed out, the switcher still works and remembers nothing.
    client.logout()
    assert client.post("/i18n/setlang/", {"language": "en", "next": "/"}).status_code == 302
    alice.refresh_from_db()
    assert alice.language == "zh-hans"


def test_an_unknown_language_changes_nothing(client):
    alice = UserFactory(email="alice@uni.example", language="en")
    client.force_login(alice)
    client.post("/i18n/setlang/", {"language": "xx", "next": "/"})
    alice.refresh_from_db()
    assert alice.language == "en"


def test_a_signed_in_person_reads_their_language_on_a_browser_that_chose_none(client):
    alice = UserFactory(email="alice@uni.example", language="zh-hans")
    client.force_login(alice)
    body = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="zh-hans">' in body
    client.cookies["django_language"] = "en"
    assert '<html lang="en">' in client.get("/").content.decode()


def test_the_portals_and_allauths_emails_are_written_in_the_recipients_language(
    client, reviewer, django_capture_on_commit_callbacks
):
    lin = UserFactory(email="lin@uni.example", language="zh-hans")
    ann = UserFactory(email="ann@uni.example", language="en")
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    actor = services.Actor(user=reviewer, credential="session", reauthenticated=True)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        for person in (lin, ann):
            services.request_reject(
                actor=actor, access_request=AccessRequestFactory(applicant=person, release=release), reason="No."
            )
    by_address = {m.to[0]: m for m in mail.outbox}
    assert "未获批准" in by_address[lin.email].subject and chinese(by_address[lin.email].body)
    assert "was not approved" in by_address[ann.email].subject or "rejected" in by_address[ann.email].body
    assert not chinese(by_address[ann.email].subject + by_address[ann.email].body)
    # allauth's own: a password reset, asked from an English browser, goes out in the account's language.
    mail.outbox.clear()
    client.post("/accounts/password/reset/", {"email": lin.email}, HTTP_ACCEPT_LANGUAGE="en")
    (reset,) = mail.outbox
    assert chinese(reset.subject) and chinese(reset.body)


def test_signed_out_the_browser_still_decides(client):
    assert '<html lang="zh-hans">' in client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
