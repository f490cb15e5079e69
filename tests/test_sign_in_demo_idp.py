"""Signing in through the demo OpenID Provider `make run` starts (demo_idp/, a separate process), with `requests`
against the live portal: the portal's sign-in form → the provider's sign-in and consent pages → the portal's
callback. The faculty member gets an account with her address and her faculty affiliation at Demo University
verified; the student's affiliation is a student's. Needs the demo provider's test fixture
(tests/support/demo_idp.py: `demo_idp`, a `DemoIdP(portal_url, var_dir)` with `.issuer`, `.client_id`,
`.client_secret` and `.people`)."""

from __future__ import annotations

import html
import importlib.util
import re
from urllib.parse import urljoin

import pytest
import requests

from access import services
from access.identities import verified_affiliations
from access.models import User
from tests.support.oidc_provider import configure

DEMO_IDP = importlib.util.find_spec("tests.support.demo_idp") is not None
pytest_plugins = ["tests.support.demo_idp"] if DEMO_IDP else []
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not DEMO_IDP,
        reason="needs the demo OpenID Provider's test fixture (tests/support/demo_idp.py, the `demo_idp` fixture), "
        "which is not in this branch yet",
    ),
]
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


def submit(session: requests.Session, page: requests.Response, action: str, fields: dict) -> requests.Response:
    return follow(session, session.post(action, data=fields, headers={"Referer": page.url}, allow_redirects=False))


def sign_in_through_demo(portal: str, email: str, password: str) -> tuple[requests.Session, requests.Response]:
    session = requests.Session()
    login = session.get(f"{portal}/accounts/login/")
    action, fields, _ = next(f for f in forms(login) if "/accounts/oidc/demo-university/login/" in f[0])
    assert fields["process"] == "login"
    started = session.post(action, data=fields, headers={"Referer": login.url}, allow_redirects=False)
    assert started.status_code == 302 and "/authorize" in started.headers["Location"]
    page = follow(session, started)
    # The provider's own sign-in page, then its consent page when it shows one.
    action, fields, _ = next(f for f in forms(page) if "password" in f[1])
    fields.update(username=email, password=password)
    page = follow(
        session, session.post(action, data=fields, headers={"Referer": page.url}, allow_redirects=False), portal
    )
    if not page.url.startswith(portal):
        consent = next((f for f in forms(page) if "allow" in f[2] or "allow" in f[1]), None)
        if consent is not None:
            action, fields, _ = consent
            fields["allow"] = "Authorize"
            page = follow(
                session, session.post(action, data=fields, headers={"Referer": page.url}, allow_redirects=False), portal
            )
    return session, page


def _password(people, email: str) -> str:
    found = people[email] if isinstance(people, dict) else next(p for p in people if email in p.values())
    return found if isinstance(found, str) else found["password"]


@pytest.fixture
def demo(request, settings, live_server):
    demo = request.getfixturevalue("demo_idp")
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
    session, page = sign_in_through_demo(live_server.url, email, _password(demo.people, email))
    assert page.status_code == 200 and page.url.rstrip("/") == live_server.url, page.url
    ada = User.objects.get(email=email)
    assert ada.emailaddress_set.get(email=email).verified
    assert {f.kind for f in verified_affiliations(ada, institution)} >= {"faculty", ""}
    assert "faculty@uni.example" in session.get(f"{live_server.url}/account/identities/").text


def test_the_student_is_verified_as_a_student(demo, live_server):
    demo, institution = demo
    email = "sam.student@uni.example"
    sign_in_through_demo(live_server.url, email, _password(demo.people, email))
    kinds = {f.kind for f in verified_affiliations(User.objects.get(email=email), institution)}
    assert "student" in kinds and "faculty" not in kinds
