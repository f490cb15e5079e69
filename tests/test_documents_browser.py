"""What it takes to run OPT-175B and its documents, in a real browser, at desktop (1280) and phone (390) width, in
English and Simplified Chinese: a visitor reads the figures on the demo's release page and the public training
logbook; a holder (in English) is asked to acknowledge the holders-only information for downstream providers,
reads it, acknowledges it and has access; a release manager previews a new document. axe-core finds no serious or
critical violation and no page scrolls sideways."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.utils import translation
from playwright.sync_api import expect

from access import footprint, services
from access.models import DocumentAcknowledgement, ModelRelease
from tests.factories import UserFactory, grant_for
from tests.test_pages_browser import VIEWPORTS, check_page, check_shown, context_for, sign_in

pytest_plugins = ["tests.support.browser"]  # browser, new_page, shots
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TEXTS = {
    "en": {"title": "What it takes to run it", "acknowledge": "I have read version 1 and acknowledge it"},
    "zh-hans": {"title": "运行它需要什么", "acknowledge": "我已阅读第 1 版并确认"},
}


@pytest.fixture
def opt_175b(local_storage, settings, live_server):
    settings.SITE_URL = live_server.url
    call_command("load_demo_catalog", "--only", "facebook/opt-175b", "--size", "1024")
    return ModelRelease.objects.get(repo_id="facebook/opt-175b")


def test_a_visitor_reads_the_figures_and_a_holder_acknowledges_before_downloading(
    browser, live_server, shots, opt_175b
):
    release = opt_175b
    documents = {d.kind: d for d in release.documents.all()}
    size = sum(release.files.values_list("size", flat=True))
    reviewer = services.reviewer_add(actor=services.command_actor("add_reviewer"), user=UserFactory())
    manager = services.release_manager_add(
        actor=services.command_actor("add_release_manager"), user=UserFactory(email="mia@portal.example")
    )
    holders = {}
    for lang, texts in TEXTS.items():
        for viewport in VIEWPORTS:
            step = f"{lang}-{viewport}"
            # A visitor: the figures, signed out, and the public logbook.
            context = context_for(browser, live_server, lang=lang, viewport=viewport)
            page = context.new_page()
            check_page(page, shots, "/models/facebook/opt-175b", f"{step}-release")
            section = page.locator("#requirements")
            expect(section.locator("h2")).to_have_text(texts["title"])
            expect(section.locator("tr[data-dtype=fp32] .weights-gb")).to_contain_text("≈ 700 GB")
            expect(section.locator("tr[data-dtype=fp32] .weights-gb")).to_contain_text("651.9 GiB")
            expect(section.locator("tr[data-dtype=bf16] .weights-gb")).to_contain_text("≈ 350 GB")
            expect(section.locator("tr[data-dtype=fp32] .accelerators")).to_have_text("9")
            expect(section.locator("tr[data-dtype=fp32] .consumer-cards")).to_have_text("30")
            expect(section.locator("tr[data-dtype=bf16] .accelerators")).to_have_text("5")
            expect(section.locator("tr[data-dtype=bf16] .consumer-cards")).to_have_text("15")
            expect(section.locator("tr[data-dtype=bf16] .badge")).to_be_visible()  # fp16, as stored
            # The demo's real total, in bytes (with or without the language's thousands separators).
            digits = "[,. ]?".join(f"{size:,}".split(","))
            expect(section.locator("#download-size")).to_contain_text(re.compile(digits))
            with translation.override(lang):
                times = [footprint.duration_text(size * 8 / bps) for _label, bps in footprint.LINKS]
            expect(section.locator("#download-times dd[data-link]")).to_have_text(times)
            expect(section.locator("#emissions")).to_be_visible()
            expect(page.locator("#documents li[data-document]")).to_have_count(3)
            check_page(
                page,
                shots,
                f"/models/facebook/opt-175b/documents/{documents['logbook'].public_id}/",
                f"{step}-logbook",
            )
            holders_only = f"/models/facebook/opt-175b/documents/{documents['downstream'].public_id}/"
            check_page(page, shots, holders_only, f"{step}-holders-only-refused", status=401)
            context.close()

            if lang != "en":
                continue  # the holder's journey once per width: the pages are the same in Chinese
            # A holder: asked to acknowledge, reads, acknowledges, has access.
            holder = holders[step] = UserFactory(email=f"ada-{step}@uni.example")
            grant_for(holder, release, reviewer)
            context = context_for(browser, live_server, lang=lang, viewport=viewport)
            page = context.new_page()
            sign_in(page, holder.email)
            check_page(page, shots, "/models/facebook/opt-175b", f"{step}-acknowledge-first")
            state = page.locator("#request-access .access-state")
            expect(state).to_have_attribute("data-code", "acknowledge_documents")
            page.locator("#documents-to-acknowledge a").click()
            check_shown(page, shots, holders_only, f"{step}-downstream")
            page.get_by_role("button", name=texts["acknowledge"]).click()
            expect(page.locator("#acknowledged")).to_be_visible()
            check_shown(page, shots, holders_only, f"{step}-acknowledged")
            check_page(page, shots, "/models/facebook/opt-175b", f"{step}-access")
            expect(state).to_have_attribute("data-code", "granted")
            context.close()
            assert DocumentAcknowledgement.objects.filter(user=holder).count() == 1

    # A release manager previews a document before publishing it.
    context = context_for(browser, live_server, lang="en", viewport="phone")
    page = context.new_page()
    sign_in(page, manager.email)
    check_page(page, shots, "/manage/facebook/opt-175b/documents/?kind=training_content", "manager-template")
    page.locator("#id_title").fill("Evaluation report")
    page.locator("#id_kind").select_option("evaluation")
    page.locator("#id_body").fill("## Results\n**Good** on most benchmarks.")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#document-preview strong")).to_have_text("Good")
    check_shown(page, shots, "manage documents (preview)", "manager-preview")
    context.close()
