"""A flaw report in a real browser: a holder files one through the form with a file (English, 1280 px); a reviewer
triages it from the queue on a phone (Simplified Chinese, 390 px); the reporter reads the change on their
report's page on a phone, in Chinese. Every page is checked with axe and for sideways scrolling, and
screenshotted under test-artifacts/browser/<test>/."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from access.models import FlawReport
from tests.factories import PDF, UserFactory, grant_for
from tests.test_browser import REPO, opt_175b  # noqa: F401
from tests.test_pages_browser import check_page, check_shown, context_for, sign_in, zh

pytest_plugins = ["tests.support.browser"]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_flaw_report_from_the_form_through_triage_in_both_languages_and_on_a_phone(
    browser,
    live_server,
    shots,
    opt_175b,  # noqa: F811
    reviewer,
    tmp_path,
):
    alice = UserFactory(email="alice@uni.example")
    grant_for(alice, opt_175b, reviewer)
    evidence = tmp_path / "transcript.pdf"
    evidence.write_bytes(PDF)

    # The holder files a report from the release's page, at desktop width in English.
    desktop = context_for(browser, live_server, lang="en", viewport="desktop").new_page()
    sign_in(desktop, alice.email)
    desktop.goto(f"/models/{REPO}")
    desktop.locator("#report-flaw").click()
    expect(desktop.locator("#terms-text")).to_have_attribute("data-version", "1")
    desktop.locator("#id_revisions_0").check()
    desktop.locator("#id_title").fill("Greedy decoding repeats a phone number")
    desktop.locator("#id_category").select_option("privacy")
    desktop.locator("#id_description").fill("The model completes a prompt with a real phone number.")
    desktop.locator("#id_reproduction").fill("Prompt: 'Call Jane at'; temperature 0; max_new_tokens 20.")
    desktop.locator("#id_observed").fill("A real person's number.")
    desktop.locator("#id_expected").fill("No personal data.")
    desktop.locator("#id_severity").select_option("high")
    desktop.locator("#id_credit_name").fill("Alice Example")
    desktop.locator("#id_attachment").set_input_files(str(evidence))
    desktop.locator("#id_accept_terms").check()
    check_shown(desktop, shots, "form", "desktop-en-form")
    desktop.locator("#flaw-form button[type=submit]").click()
    expect(desktop.locator("#report-status")).to_have_attribute("data-status", "received")
    expect(desktop.locator("#attachments")).to_contain_text("transcript.pdf")
    check_shown(desktop, shots, "report", "desktop-en-report")
    report = FlawReport.objects.get()

    # A reviewer triages it from the queue, on a phone in Chinese.
    review = context_for(browser, live_server, lang="zh-hans", viewport="phone").new_page()
    sign_in(review, reviewer.email)
    check_page(review, shots, "/review/flaw-reports/", "phone-zh-queue")
    expect(review.locator("main h1")).to_have_text(zh("Flaw reports"))
    review.locator(f"#flaw-queue tr[data-report='{report.public_id}'] a").click()
    expect(review.locator("#reporter")).to_have_text(alice.email)
    check_shown(review, shots, "review", "phone-zh-review")
    review.locator("#id_triage-status").select_option("triaged")
    review.locator("#id_triage-severity").select_option("critical")
    review.locator("#id_triage-note").fill("Reproduced with seed 0.")
    review.locator("#triage-form button[type=submit]").click()
    expect(review.locator("#report-status")).to_have_attribute("data-status", "triaged")
    check_shown(review, shots, "triaged", "phone-zh-triaged")

    # The reporter reads the change on their page, on a phone in Chinese; they were emailed it.
    phone = context_for(browser, live_server, lang="zh-hans", viewport="phone").new_page()
    sign_in(phone, alice.email)
    check_page(phone, shots, f"/flaw-reports/{report.public_id}/", "phone-zh-report")
    expect(phone.locator("#report-status")).to_have_attribute("data-status", "triaged")
    expect(phone.locator("#history")).to_contain_text("Reproduced with seed 0.")
    check_page(phone, shots, f"/models/{REPO}/flaw-reports/new", "phone-zh-form")
    expect(phone.locator("#terms-title")).to_contain_text("1")
    check_page(phone, shots, "/flaw-reports/", "phone-zh-mine")
    assert [m for m in mail.outbox if m.to == [alice.email] and re.search(r"seed 0", m.body)]
