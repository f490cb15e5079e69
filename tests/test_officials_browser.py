"""A signing official's pages in a real browser (Chromium) at phone width, through the demo OpenID Provider `make
run` starts: the demo student signs up with Demo University; staff appoint a demo official, who signs in with
Demo University and, with no password asked (her sign-in is fresh), issues the student a library card, revokes
it, and issues another in Chinese; the student sees the card and who issued it, and a rule "valid library card"
approves his request. Every page is axe-clean and does not scroll sideways. The channels a revoked card closes
are tested without a browser (tests/test_library_cards.py)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from access import services
from access.models import LibraryCard, User
from tests.factories import ANSWERS, LicenseFactory, ReleaseFactory, add_file
from tests.support.oidc_provider import configure
from tests.test_pages_browser import LOCALES, VIEWPORTS, check_shown
from tests.test_sign_in_browser import allow_form_action

pytest_plugins = ["tests.support.browser"]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OFFICIAL, STUDENT = "olive.official@uni.example", "sam.student@uni.example"
TEXT = {
    "en": {"sign_in_with": "Sign in with Demo University", "nav": "Signing official", "issue": "Issue the card"},
    "zh-hans": {"sign_in_with": "通过 Demo University 登录", "nav": "签署官", "issue": "签发借阅卡"},
}


def signed_in(browser, live_server, demo, email: str, password: str, lang: str):
    """A phone-sized page signed in as `email` through Demo University, in `lang`."""
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORTS["phone"], **LOCALES[lang])
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_role("button", name=TEXT[lang]["sign_in_with"]).click()
    page.wait_for_url(re.compile(r"^" + re.escape(demo.url) + r"/"))
    page.locator("input[name=username]").fill(email)
    page.locator("input[name=password]").fill(password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile(r"^" + re.escape(live_server.url) + r"/$"))
    return page


def open_menu(page) -> None:
    """At phone width the navigation (and the language menu) is behind the menu button."""
    toggle = page.locator(".menu-toggle")
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") != "true":
        toggle.click()


def choose_language(page, lang: str) -> None:
    if page.locator("html").get_attribute("lang") != lang:
        open_menu(page)
        with page.expect_navigation():
            page.locator("form.lang select[name=language]").select_option(lang)


def test_an_official_issues_and_revokes_a_card_on_her_pages_in_both_languages_at_phone_width(
    browser, live_server, shots, settings, demo_idp, local_storage
):
    demo = demo_idp(live_server.url)
    settings.SITE_URL = live_server.url
    configure(settings, demo, provider_id="demo-university", name="Demo University")
    allow_form_action(settings, demo.issuer)
    operator = services.command_actor("test")
    institution = services.institution_create(
        actor=operator, ror_id="0demoun01", name="Demo University", email_domains=["uni.example"], issuers=[demo.issuer]
    )
    services.institution_confirm(actor=operator, institution=institution)
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated", license=LicenseFactory())
    add_file(release, "config.json", b"{}")
    services.release_rules_set(
        actor=operator, release=release, rules=[{"action": "approve", "conditions": {"library_card": True}}]
    )
    password = "official-demo-password-1"
    demo.create_person(email=OFFICIAL, name="Olive Official", password=password, affiliations=["staff@uni.example"])

    student_page = signed_in(browser, live_server, demo, STUDENT, demo.people[STUDENT], "en")
    official_page = signed_in(browser, live_server, demo, OFFICIAL, password, "en")
    services.official_appoint(actor=operator, institution=institution, user=User.objects.get(email=OFFICIAL))

    page = official_page
    for lang in LOCALES:
        page.goto("/")
        choose_language(page, lang)
        open_menu(page)
        page.get_by_role("link", name=TEXT[lang]["nav"]).first.click()
        page.wait_for_url(re.compile(r"/official/0demoun01/$"))
        student = page.locator(f"section.researcher[data-email='{STUDENT}']")
        expect(student).to_contain_text("student@uni.example")
        check_shown(page, shots, f"{lang}-official-researchers", f"{lang}-official-researchers")
        with page.expect_navigation():
            student.get_by_role("button", name=TEXT[lang]["issue"]).click()
        expect(page.locator(f"section.researcher[data-email='{STUDENT}'] .library-card")).to_have_count(
            1 if lang == "en" else 2
        )
        check_shown(page, shots, f"{lang}-official-card-issued", f"{lang}-official-card-issued")
        card = LibraryCard.objects.get(user__email=STUDENT, revoked_at__isnull=True)
        assert card.issued_by.email == OFFICIAL and card.all_releases
        if lang == "en":  # revoke the first card, then issue another in Chinese
            with page.expect_navigation():
                page.locator(f".library-card[data-card='{card.public_id}'] a.btn-danger").click()
            check_shown(page, shots, f"{lang}-official-revoke", f"{lang}-official-revoke")
            page.locator("#reason").fill("Issued for the wrong programme.")
            with page.expect_navigation():
                page.locator("#confirm-button").click()
            assert LibraryCard.objects.get(pk=card.pk).revoked_at is not None

    # The student sees the card that is valid, the revoked one and who issued them; the rule approves him.
    for lang in LOCALES:
        choose_language(student_page, lang)
        student_page.goto("/account/cards/")
        expect(student_page.locator("#my-cards .library-card")).to_have_count(2)
        expect(student_page.locator("#my-cards")).to_contain_text("Olive Official")
        check_shown(student_page, shots, f"{lang}-student-cards", f"{lang}-student-cards")
    request = services.request_submit(
        actor=services.Actor(user=User.objects.get(email=STUDENT), credential="session"),
        release=release,
        data={**ANSWERS, "noncommercial_attested": True},
        license_accepted=True,
    )
    request.refresh_from_db()
    assert request.status == "approved" and request.decided_by_rule is not None
