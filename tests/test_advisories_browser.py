"""An advisory in a real browser: a release manager drafts and publishes it in the editor, and a holder who fetched
the affected revision sees the banner on the release page, reads the advisory and acknowledges it (English, 1280
px); a holder who never fetched it sees the banner on their grant page on a phone in Simplified Chinese (390 px); a
reviewer reads the acknowledgement counts on the advisory's page on a phone. Every page is checked with axe and for
sideways scrolling."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from rest_framework.test import APIClient

from access import services
from access.models import Advisory, AdvisoryRecipient
from tests.factories import UserFactory, grant_for, token_secret
from tests.test_browser import REPO, opt_175b  # noqa: F401
from tests.test_pages_browser import check_page, check_shown, context_for, sign_in, zh

pytest_plugins = ["tests.support.browser"]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_advisory_reaches_its_holders_pages_in_both_languages_and_on_a_phone(
    browser,
    live_server,
    shots,
    opt_175b,  # noqa: F811
    reviewer,
):
    alice, bob = UserFactory(email="alice@uni.example"), UserFactory(email="bob@uni.example", language="zh-hans")
    grant_for(alice, opt_175b, reviewer)
    bobs_grant = grant_for(bob, opt_175b, reviewer)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice)}")
    assert api.get(f"/api/v1/models/{REPO}/manifest").status_code == 200
    rita = UserFactory(email="rm-rita@portal.example")
    services.release_manager_add(actor=services.command_actor("tests"), user=rita)

    # Rita drafts the advisory in the editor and publishes it (desktop, English).
    editor = context_for(browser, live_server, lang="en", viewport="desktop").new_page()
    sign_in(editor, rita.email)
    check_page(editor, shots, f"/manage/{REPO}/advisories", "desktop-en-editor")
    editor.locator("#id_affected_revisions_0").check()
    editor.locator("#id_severity").select_option("high")
    editor.locator("#id_title").fill("Memorised addresses in greedy decoding")
    editor.locator("#id_summary").fill("Greedy decoding reproduces street addresses from the training set.")
    editor.locator("#id_mitigation").fill("Sample with temperature 0.7 or above until a fixed revision is published.")
    editor.locator("#advisory-form button[type=submit]").click()
    expect(editor.locator("#advisory-status")).to_have_attribute("data-status", "draft")
    check_shown(editor, shots, "draft", "desktop-en-draft")
    editor.locator("#publish").click()
    expect(editor.locator("#advisory-status")).to_have_attribute("data-status", "published")
    advisory = Advisory.objects.get()
    assert list(AdvisoryRecipient.objects.values_list("user__email", flat=True)) == [alice.email]

    # Alice (who fetched it) sees the banner, reads the advisory and acknowledges it: desktop, English.
    desktop = context_for(browser, live_server, lang="en", viewport="desktop").new_page()
    sign_in(desktop, alice.email)
    check_page(desktop, shots, f"/models/{REPO}", "desktop-en-release")
    expect(desktop.locator("#advisory-banners")).to_contain_text(advisory.identifier)
    desktop.locator(f"#advisory-banners li[data-advisory='{advisory.identifier}'] a").click()
    expect(desktop.locator("#advisory-title")).to_contain_text(advisory.identifier)
    check_shown(desktop, shots, "advisory", "desktop-en-advisory")
    desktop.locator("#acknowledge").click()
    expect(desktop.locator("#acknowledgement")).to_contain_text("You acknowledged this advisory")
    check_page(desktop, shots, f"/models/{REPO}", "desktop-en-release-after")
    expect(desktop.locator("#advisory-banners")).to_have_count(0)

    # Bob holds a grant but never fetched it: not told, yet his grant page shows it (phone, Chinese).
    phone = context_for(browser, live_server, lang="zh-hans", viewport="phone").new_page()
    sign_in(phone, bob.email)
    check_page(phone, shots, f"/grants/{bobs_grant.public_id}/", "phone-zh-grant")
    expect(phone.locator("#advisory-banners")).to_contain_text(zh("Advisories to read and acknowledge"))

    # A reviewer reads the counts on the advisory's page (phone, Chinese).
    review = context_for(browser, live_server, lang="zh-hans", viewport="phone").new_page()
    sign_in(review, reviewer.email)
    check_page(review, shots, f"/advisories/{advisory.public_id}/", "phone-zh-advisory")
    expect(review.locator("#acknowledgement-counts")).to_contain_text("1")
