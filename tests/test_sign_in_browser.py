"""Signing in through an institution in a real browser (Chromium): the faculty member clicks "Sign in with …",
signs in at the provider and comes back signed in, sees her verified affiliation on her account page, applies to
a gated release with the form filled in from it, and a reviewer sees "Verified by …" on her request. Every page of
the way is axe-clean (no serious or critical finding) and does not scroll sideways, at 1280 and 390 px, in English
and Simplified Chinese.

Twice: against the OpenID Provider under the tests' control (tests/support/oidc_provider.py, which answers the
authorization request at once), and against the demo OpenID Provider `make run` starts (tests/support/demo_idp.py,
with its own sign-in page). The portal's Content-Security-Policy must allow the provider's origin in
`form-action`: Chrome applies it to the redirect that follows the sign-in form's POST, which the first step shows."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from access import services
from access.claims import origin
from access.models import AccessRequest
from tests.factories import LicenseFactory, ReleaseFactory, UserFactory, add_file
from tests.support.oidc_provider import configure
from tests.test_pages_browser import LOCALES, VIEWPORTS, check_shown

pytest_plugins = ["tests.support.browser"]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's password
TEXT = {
    "en": {"sign_in_with": "Sign in with {name}", "verified_by": "Verified by {name} today: faculty@uni.example"},
    "zh-hans": {"sign_in_with": "通过 {name} 登录", "verified_by": "今天由 {name} 验证：faculty@uni.example"},
}


def allow_form_action(settings, issuer: str) -> None:
    directives = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    settings.CONTENT_SECURITY_POLICY = {
        "DIRECTIVES": {**directives, "form-action": ["'self'", origin(issuer)]},
    }


@pytest.fixture
def gated(local_storage):
    """A gated release for each language and width: each round applies to its own."""
    releases = {}
    for lang in LOCALES:
        for viewport in VIEWPORTS:
            release = ReleaseFactory(repo_id=f"lab/gated-{lang}-{viewport}", access="gated", license=LicenseFactory())
            add_file(release, "config.json", b"{}\n")
            releases[lang, viewport] = release
    return releases


@pytest.fixture
def rita(db):
    return services.reviewer_add(
        actor=services.command_actor("add_reviewer"), user=UserFactory(email="rita@portal.example")
    )


def journey(
    *, browser, live_server, shots, gated, rita, name: str, provider_id: str, at_provider, lang: str, viewport: str
) -> None:
    """The faculty member's sign-in (the first round creates her account, the others sign in to it), her account
    page and her application, then the reviewer's view of it."""
    words = TEXT[lang]
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORTS[viewport], **LOCALES[lang])
    context.set_default_timeout(15_000)
    page = context.new_page()
    step = f"{lang}-{viewport}"
    # A callback the session did not start (no such state) ends on the sign-in error page.
    assert page.goto(f"/accounts/oidc/{provider_id}/login/callback/?code=x&state=not-ours").status == 401
    check_shown(page, shots, f"{step}-sign-in-failed", f"{step}-sign-in-failed")
    page.goto("/accounts/login/")
    check_shown(page, shots, f"{step}-sign-in", f"{step}-sign-in")
    page.get_by_role("button", name=words["sign_in_with"].format(name=name)).click()
    at_provider(page)
    page.wait_for_url(re.compile(r"^" + re.escape(live_server.url) + r"/$"))
    expect(page.locator("header .who")).to_have_text("ada.lovelace@uni.example")

    page.goto("/account/identities/")
    expect(page.locator('#verified-facts tr[data-value="faculty@uni.example"]')).to_be_visible()
    check_shown(page, shots, f"{step}-account", f"{step}-account")

    page.goto(f"/models/{gated.repo_id}/apply")
    expect(page.locator("input[name=full_name]")).to_have_value("Ada Lovelace")
    expect(page.locator("input[name=affiliation]")).to_have_value(re.compile(r"University"))
    expect(page.locator("#field-affiliation .verified-help")).to_be_visible()
    check_shown(page, shots, f"{step}-apply", f"{step}-apply")
    page.locator("select[name=organization_type]").select_option("academic")
    page.locator("select[name=country]").select_option("GB")
    page.locator("input[name=role]").fill("Professor")
    page.locator("textarea[name=intended_use]").fill(
        "Studying how large language models trace the steps of a proof, and where they lose the thread, for a "
        "graduate course on computation and proof."
    )
    page.locator("input[name=accept_license]").check()
    page.locator("input[name=noncommercial_attested]").check()
    with page.expect_navigation():
        page.locator("#apply-form button[type=submit]").click()
    errors = page.locator(".errorlist").all_inner_texts()
    assert re.search(r"/requests/[0-9a-f]{32}/$", page.url), errors
    context.close()

    request = AccessRequest.objects.get(applicant__email="ada.lovelace@uni.example", release=gated)
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORTS[viewport], **LOCALES[lang])
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.locator("input[name=login]").fill(rita.email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/$"))
    page.goto(f"/review/requests/{request.public_id}/")
    expect(page.locator("#verified-facts")).to_contain_text(words["verified_by"].format(name=name))
    check_shown(page, shots, f"{step}-review", f"{step}-review")
    context.close()


def test_a_faculty_member_signs_in_applies_and_the_reviewer_sees_the_verified_affiliation(
    browser, live_server, shots, settings, idp, university, gated, rita
):
    settings.SITE_URL = live_server.url
    # Without the provider's origin in form-action, Chrome stops the redirect that follows the form's POST.
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Sign in with Test University").click()
    page.wait_for_timeout(500)
    assert not idp.authorizations and not page.url.startswith(idp.issuer)
    context.close()

    allow_form_action(settings, idp.issuer)
    for lang in LOCALES:
        for viewport in VIEWPORTS:
            journey(
                browser=browser,
                live_server=live_server,
                shots=shots,
                gated=gated[lang, viewport],
                rita=rita,
                name="Test University",
                provider_id="test-university",
                at_provider=lambda page: None,  # the test provider answers at once
                lang=lang,
                viewport=viewport,
            )


def test_through_the_demo_openid_provider(browser, live_server, shots, settings, demo_idp, gated, rita):
    demo = demo_idp(live_server.url)
    settings.SITE_URL = live_server.url
    configure(settings, demo, provider_id="demo-university", name="Demo University")
    allow_form_action(settings, demo.issuer)
    actor = services.command_actor("test")
    institution = services.institution_create(
        actor=actor, ror_id="0demoun01", name="Demo University", email_domains=["uni.example"], issuers=[demo.issuer]
    )
    services.institution_confirm(actor=actor, institution=institution)
    password = demo.people["ada.lovelace@uni.example"]

    def at_provider(page):
        # The demo institution's own sign-in page (each round is a new browser context, so it always asks).
        page.wait_for_url(re.compile(r"^" + re.escape(demo.url) + r"/"))
        page.locator("input[name=username]").fill("ada.lovelace@uni.example")
        page.locator("input[name=password]").fill(password)
        page.locator("main form button[type=submit]").click()

    for lang in LOCALES:
        for viewport in VIEWPORTS:
            journey(
                browser=browser,
                live_server=live_server,
                shots=shots,
                gated=gated[lang, viewport],
                rita=rita,
                name="Demo University",
                provider_id="demo-university",
                at_provider=at_provider,
                lang=lang,
                viewport=viewport,
            )
