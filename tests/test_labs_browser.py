"""Labs in a real browser, in English and Simplified Chinese: a PI creates a lab and invites a member by email,
the member accepts, the PI applies once for the lab, a reviewer approves, and the member accepts the license on
the lab grant's page and sees the download commands. Screenshots go to test-artifacts/browser/<test>/."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.utils import translation
from playwright.sync_api import expect

from tests.factories import UserFactory
from tests.test_browser import ANSWERS, FULL_NAME, INTENDED_USE, REPO, opt_175b, reviewer, sign_in  # noqa: F401

pytest_plugins = ["tests.support.browser"]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LOCALES = {"en": {"locale": "en-US"}, "zh-hans": {"locale": "zh-CN", "accept_language": "zh-Hans,zh;q=0.9"}}


def says(lang: str, text: str) -> str:
    """The page's wording in this language, asserted to be translated for Chinese."""
    with translation.override(lang):
        shown = translation.gettext(text)
    if lang != "en":
        assert shown != text, f"no translation for {text!r}"
    return shown


def approve(review, shots):
    shots(review, "reviewer-approves")
    review.locator("#decide-approve").get_by_role("button", name="Approve", exact=True).click()
    expect(review.locator("#review-status")).to_have_attribute("data-status", "approved")


def lab_story(*, lang, new_page, shots, reviewer_user, pi_email, member_email):
    pi = UserFactory(email=pi_email)
    UserFactory(email=member_email)
    owner = new_page(**LOCALES[lang])
    sign_in(owner, shots, pi.email, "owner-sign-in")

    # The PI creates the lab and invites a member.
    owner.locator("header a[href='/labs/']").click()
    expect(owner.locator("main h1")).to_have_text(says(lang, "Your labs"))
    owner.locator("#id_name").fill("Language Lab")
    owner.locator("#id_ror_id").fill("02mhbdp94")
    owner.locator("#id_email_domains").fill("uni.example")
    shots(owner, "create-lab")
    owner.locator("#create-lab button[type=submit]").click()
    expect(owner.locator("#lab-name")).to_have_text("Language Lab")
    owner.locator("#lab-invite #id_email").fill(member_email)
    shots(owner, "invite")
    owner.locator("#lab-invite button[type=submit]").click()
    expect(owner.locator("#invitations")).to_contain_text(member_email)
    shots(owner, "invited")
    (invitation,) = [m for m in mail.outbox if m.to == [member_email] and "Language Lab" in m.subject]
    link = re.search(r"https?://\S+/labs/invitations/[^\s/]+/", invitation.body).group(0)

    # The member signs in and accepts.
    member = new_page(**LOCALES[lang])
    sign_in(member, shots, member_email, "member-sign-in")
    member.goto(link)
    shots(member, "invitation")
    member.locator("#accept-invitation").click()
    expect(member.locator("#lab-name")).to_have_text("Language Lab")
    expect(member.locator(f"#lab-members tr[data-member='{member_email}']")).to_contain_text(
        says(lang, "Declared domain")
    )
    shots(member, "member-joined")

    # The PI applies once for the whole lab, with the release's form.
    owner.reload()
    expect(owner.locator("#lab-members")).to_contain_text(member_email)
    owner.locator(f"#lab-apply a[href*='/models/{REPO}/apply']").click()
    expect(owner.locator("#lab-applying")).to_be_visible()
    owner.locator("#id_lab-all_members").check()
    for name, value in ANSWERS.items():
        owner.locator(f"#id_{name}").fill(value)
    owner.locator("#id_organization_type").select_option("academic")
    owner.locator("#id_country").select_option("NL")
    owner.locator("#id_intended_use").fill(INTENDED_USE)
    owner.locator("#id_accept_license").check()
    owner.locator("#id_noncommercial_attested").check()
    shots(owner, "lab-request-form")
    owner.locator("#apply-form button[type=submit]").click()
    expect(owner.locator("#request-status")).to_have_attribute("data-status", "pending")
    shots(owner, "lab-request-pending")

    # The reviewer sees the lab, its members and their declared domains, and decides once.
    review = new_page(locale="en-US")
    sign_in(review, shots, reviewer_user.email, "reviewer-sign-in")
    review.goto("/review/")
    review.get_by_role("link", name=FULL_NAME).click()
    lab_section = review.locator("#lab-request")
    expect(lab_section).to_contain_text("Language Lab")
    expect(lab_section.locator(f"tr[data-member='{member_email}']")).to_contain_text("Declared domain")
    shots(review, "reviewer-sees-lab")
    approve(review, shots)

    # The member finds the lab's grant, accepts the license personally, and gets the commands.
    member.reload()
    member.locator(".lab-grant-link").first.click()
    expect(member).to_have_url(re.compile(r"/labs/grants/[0-9a-f]{32}/$"))
    expect(member.locator("#seat-state")).to_have_attribute("data-code", "lab_license_pending")
    expect(member.locator("#license-text")).to_be_visible()
    shots(member, "member-license")
    member.locator("#id_accept_license").check()
    member.locator("#id_noncommercial_attested").check()
    member.locator("#license-form button[type=submit]").click()
    expect(member.locator("#seat-state")).to_have_attribute("data-code", "granted")
    expect(member.locator("#instructions")).to_contain_text(f"python3 download.py {REPO}")
    shots(member, "member-download-page")

    # The reviewer's grant page shows the member's place on the lab's grant.
    review.goto(member.url.replace("/labs/grants/", "/review/grants/"))
    expect(review.locator(f"#lab-seats tr[data-member='{member_email}']")).to_contain_text("Active")
    shots(review, "reviewer-lab-grant")


def test_a_lab_applies_once_and_a_member_downloads_after_accepting(new_page, shots, opt_175b, reviewer):  # noqa: F811
    lab_story(
        lang="en",
        new_page=new_page,
        shots=shots,
        reviewer_user=reviewer,
        pi_email="pi@uni.example",
        member_email="max@uni.example",
    )


def test_the_lab_story_in_simplified_chinese(new_page, shots, opt_175b, reviewer):  # noqa: F811
    lab_story(
        lang="zh-hans",
        new_page=new_page,
        shots=shots,
        reviewer_user=reviewer,
        pi_email="lin@uni.example",
        member_email="wang@uni.example",
    )
