"""Signing in through the demo OpenID Provider `make run` starts (demo_idp/, a separate process), with `requests`
against the live portal: the portal's sign-in form → the provider's sign-in page → the portal's callback. The
faculty member gets an account with her address and her faculty affiliation at Demo University verified; the
student's affiliation is a student's."""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import pytest
import requests

from access import services
from access.identities import verified_affiliations
from access.models import User
from tests.support.oidc_provider import configure

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
INPUT = re.compile(r"<input\b([^>]*)>", re.I)
ATTR = re.compile(r'([\w-]+)\s*=\s*"([^"]*)"')


def forms(page: requests.Response) -> list[tuple[str, dict, list[str]]]:
    """Each form of an HTML page: its absolute action, its fields' values, and the names of its submit inputs."""
    found = []
    for attrs, body in FORM.findall(page.text):
        action = urljoin(page.url, html.unescape(dict(ATTR.findall(attrs)).get("action", "")) or page.url)
        fields, submits = {}, []
        for field in INPUT.findall(body):
            a = {k.lower(): html.unescape(v) for k, v in ATTR.findall(field)}
            if a.get("type", "").lower() == "submit":
                submits.append(a.get("name", ""))
            elif "name" in a and a.get("type", "").lower() != "checkbox":
                fields[a["name"]] = a.get("value", "")
        found.append((action, fields, submits))
    return found


def follow(session: requests.Session, response: requests.Response) -> requests.Response:
    """Follow redirects by hand, so each hop is seen (the portal's and the provider's)."""
    while response.is_redirect:
        response = session.get(urljoin(response.url, response.headers["Location"]), allow_redirects=False)
    return response


def sign_in_through_demo(idp, portal: str, email: str) -> tuple[requests.Session, requests.Response]:
    """The portal's "Sign in with Demo University" form, the provider's sign-in page, the portal's callback."""
    session = requests.Session()
    login = session.get(f"{portal}/accounts/login/")
    action, fields, _ = next(f for f in forms(login) if "/accounts/oidc/demo-university/login/" in f[0])
    assert fields["process"] == "login"
    started = session.post(action, data=fields, headers={"Referer": login.url}, allow_redirects=False)
    assert started.status_code == 302 and started.headers["Location"].startswith(f"{idp.issuer}/authorize")
    left = idp.sign_in(session, started.headers["Location"], email, idp.people[email])
    callback = left.headers["Location"]
    assert left.is_redirect and callback.startswith(f"{portal}/accounts/oidc/demo-university/login/callback/?")
    return session, follow(session, session.get(callback, allow_redirects=False))


@pytest.fixture
def demo(demo_idp, settings, live_server):
    demo = demo_idp(live_server.url)
    settings.SITE_URL = live_server.url
    configure(settings, demo, provider_id="demo-university", name="Demo University")
    actor = services.command_actor("test")
    institution = services.institution_create(
        actor=actor, ror_id="0demoun01", name="Demo University", email_domains=["uni.example"], issuers=[demo.issuer]
    )
    services.institution_confirm(actor=actor, institution=institution)
    return demo, institution


def test_the_faculty_member_signs_in_through_the_demo_provider(demo, live_server):
    demo, institution = demo
    email = "ada.lovelace@uni.example"
    session, page = sign_in_through_demo(demo, live_server.url, email)
    assert page.status_code == 200 and page.url.rstrip("/") == live_server.url, page.url
    ada = User.objects.get(email=email)
    assert ada.emailaddress_set.get(email=email).verified
    assert {f.kind for f in verified_affiliations(ada, institution)} >= {"faculty", ""}
    assert "faculty@uni.example" in session.get(f"{live_server.url}/account/identities/").text


def test_the_student_is_verified_as_a_student(demo, live_server):
    demo, institution = demo
    email = "sam.student@uni.example"
    sign_in_through_demo(demo, live_server.url, email)
    kinds = {f.kind for f in verified_affiliations(User.objects.get(email=email), institution)}
    assert "student" in kinds and "faculty" not in kinds
