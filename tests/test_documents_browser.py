"""Release documents in a real browser, at desktop (1280) and phone (390) width: a holder is asked to acknowledge
the holders-only information for downstream providers before downloading, reads it, acknowledges it and has
access; a release manager previews a document before publishing it. axe-core finds no serious or critical
violation and no page scrolls sideways. (What a visitor reads of OPT-175B's figures, in both languages and at
both widths, is checked on the demo catalog by tests/test_pages_browser.py.)"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from access import services
from access.models import DocumentAcknowledgement
from tests.factories import ReleaseFactory, UserFactory, add_file, grant_for
from tests.test_pages_browser import VIEWPORTS, check_page, check_shown, context_for, sign_in

pytest_plugins = ["tests.support.browser"]  # browser, new_page, shots
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_holder_acknowledges_before_downloading_and_a_manager_previews(
    browser, live_server, shots, settings, local_storage
):
    settings.SITE_URL = live_server.url
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated", parameters=175_000_000_000)
    add_file(release, "config.json", b'{"model_type": "opt"}\n')
    reviewer = services.reviewer_add(actor=services.command_actor("add_reviewer"), user=UserFactory())
    manager = services.release_manager_add(
        actor=services.command_actor("add_release_manager"), user=UserFactory(email="mia@portal.example")
    )
    as_manager = services.Actor(user=manager, credential="session", reauthenticated=True)
    downstream = services.document_create(
        actor=as_manager,
        release=release,
        kind="downstream",
        title="Information for downstream providers",
        body="# For downstream providers\n\nNot for products.",
        visibility="holders",
        acknowledge_required=True,
    )
    document_url = f"/models/facebook/opt-175b/documents/{downstream.public_id}/"
    for viewport in VIEWPORTS:
        holder = UserFactory(email=f"ada-{viewport}@uni.example")
        grant_for(holder, release, reviewer)
        context = context_for(browser, live_server, lang="en", viewport=viewport)
        page = context.new_page()
        sign_in(page, holder.email)
        check_page(page, shots, "/models/facebook/opt-175b", f"{viewport}-acknowledge-first")
        state = page.locator("#request-access .access-state")
        expect(state).to_have_attribute("data-code", "acknowledge_documents")
        page.locator("#documents-to-acknowledge a").click()
        check_shown(page, shots, document_url, f"{viewport}-downstream")
        page.get_by_role("button", name="I have read version 1 and acknowledge it").click()
        expect(page.locator("#acknowledged")).to_be_visible()
        check_shown(page, shots, document_url, f"{viewport}-acknowledged")
        check_page(page, shots, "/models/facebook/opt-175b", f"{viewport}-access")
        expect(state).to_have_attribute("data-code", "granted")
        context.close()
        assert DocumentAcknowledgement.objects.filter(user=holder).count() == 1

    # A release manager starts from the training-content template and previews a document before publishing it.
    context = context_for(browser, live_server, lang="en", viewport="phone")
    page = context.new_page()
    sign_in(page, manager.email)
    check_page(page, shots, "/manage/facebook/opt-175b/documents/?kind=training_content", "manager-template")
    expect(page.locator("#id_body")).to_contain_text("3. Data processing")
    page.locator("#id_title").fill("Evaluation report")
    page.locator("#id_kind").select_option("evaluation")
    page.locator("#id_body").fill("## Results\n**Good** on most benchmarks.")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#document-preview strong")).to_have_text("Good")
    check_shown(page, shots, "manage documents (preview)", "manager-preview")
    context.close()
    assert not release.documents.filter(title="Evaluation report").exists()
