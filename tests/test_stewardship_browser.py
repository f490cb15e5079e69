"""The stewardship journey in a real browser, in English and Simplified Chinese, at desktop and phone width: a holder
files a progress report (a bad DOI first), renews with one, closes their access and certifies deletion; the
public register and transparency page; the reviewer's list of close-outs, the grant with its reports and the
dashboard. Every page passes axe (no serious or critical finding) and does not scroll sideways."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from access import services
from access.models import Grant, ModelRelease
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory, add_file, grant_for
from tests.test_pages_browser import LOCALES, VIEWPORTS, check_page, check_shown, context_for, sign_in

pytest_plugins = ["tests.support.browser"]  # browser, shots
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO = "lab/steward-gated"


@pytest.fixture
def journey(local_storage, settings, live_server):
    """A small gated release asking for reports and close-outs, with a register and a transparency page; one
    holder per language and width, their grants in the renewal window; one listed use in the register."""
    settings.SITE_URL = live_server.url
    release = ReleaseFactory(repo_id=REPO, access="gated")
    add_file(release, "config.json", b"{}\n")
    ModelRelease.objects.filter(pk=release.pk).update(
        progress_report_required=True, closeout_required=True, public_register=True, transparency_public=True
    )
    release.refresh_from_db()
    rita = services.reviewer_add(
        actor=services.command_actor("add_reviewer"), user=UserFactory(email="rita@portal.example")
    )
    listed = AccessRequestFactory(
        applicant=UserFactory(email="lena@uni.example"),
        release=release,
        full_name="Lena Listed",
        register_consent=True,
        public_statement="Studying calibration of large models.",
    )
    services.request_approve(
        actor=services.Actor(user=rita, credential="session", reauthenticated=True), access_request=listed
    )
    services.grant_issue(request_id=listed.pk)
    holders = {}
    for lang in LOCALES:
        for viewport in VIEWPORTS:
            holder = UserFactory(email=f"holder-{lang}-{viewport}@uni.example", language=lang)
            grant = grant_for(holder, release, rita)
            Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(days=3))
            holders[(lang, viewport)] = (holder, grant)
    return {"release": release, "rita": rita, "holders": holders}


def test_the_stewardship_forms_and_pages_in_both_languages_at_both_widths(browser, live_server, shots, journey):
    for lang in LOCALES:
        for viewport in VIEWPORTS:
            walk(browser, live_server, shots, journey, lang=lang, viewport=viewport)


def walk(browser, live_server, shots, journey, *, lang, viewport):
    holder, grant = journey["holders"][(lang, viewport)]
    step = f"{lang}-{viewport}"
    context = context_for(browser, live_server, lang=lang, viewport=viewport)
    page = context.new_page()
    sign_in(page, holder.email)
    check_page(page, shots, f"/grants/{grant.public_id}/", f"{step}-grant")

    # A progress report: a DOI that is not one is refused beside the field, then filed.
    check_page(page, shots, f"/grants/{grant.public_id}/report", f"{step}-report-form")
    page.locator("#id_summary").fill("Fine-tuned for calibration studies.")
    page.locator("#id_publications").fill("not-a-doi")
    page.locator("#report-submit").click()
    expect(page.locator("#errors-publications")).to_be_visible()
    check_shown(page, shots, "report (refused)", f"{step}-report-refused")
    page.locator("#id_publications").fill("10.1000/xyz123\nhttps://doi.org/10.48550/arXiv.2205.01068")
    page.locator("#report-submit").click()
    page.wait_for_url(f"**/grants/{grant.public_id}/")

    # The renewal carries a report (this release requires one) and lands with the reviewers.
    page.locator("#renew-button").click()
    page.wait_for_url(f"**/grants/{grant.public_id}/renew")
    check_shown(page, shots, "renew", f"{step}-renew-form")
    page.locator("#id_summary").fill("Second year: evaluation on new benchmarks.")
    page.locator("#id_incidents").fill("none")
    page.locator("#report-submit").click()
    page.wait_for_url("**/requests/*/")
    renewal = grant.renewals.get()

    # Close my access, then certify deletion.
    check_page(page, shots, f"/grants/{grant.public_id}/close", f"{step}-close-confirm")
    page.locator("#close-confirm").click()
    page.wait_for_url(f"**/grants/{grant.public_id}/close-out")
    check_shown(page, shots, "close-out", f"{step}-closeout-form")
    page.locator("#id_deleted_on").fill(timezone.now().date().isoformat())
    page.locator("#id_locations").fill("2")
    page.locator("#id_statement").fill("Deleted from the cluster and the backup.")
    page.locator("#closeout-submit").click()
    expect(page.locator("#closeout-state-personal .badge.approved")).to_be_visible()
    check_shown(page, shots, "close-out (done)", f"{step}-closeout-done")
    # The application form asks for consent to the register, with a public statement.
    check_page(page, shots, f"/models/{REPO}/apply", f"{step}-apply-register")
    expect(page.locator("#register-consent")).to_be_visible()
    context.close()

    # The public pages.
    context = context_for(browser, live_server, lang=lang, viewport=viewport)
    page = context.new_page()
    check_page(page, shots, f"/models/{REPO}/register", f"{step}-register")
    expect(page.locator(".register-entry")).to_have_count(1)
    expect(page.locator("#register")).to_contain_text("Lena Listed")
    check_page(page, shots, f"/models/{REPO}/transparency", f"{step}-transparency")
    expect(page.locator("#transparency-closeouts")).to_be_visible()
    context.close()

    # The reviewer.
    context = context_for(browser, live_server, lang=lang, viewport=viewport)
    page = context.new_page()
    sign_in(page, journey["rita"].email)
    check_page(page, shots, "/review/close-outs/", f"{step}-review-closeouts")
    check_page(page, shots, f"/review/grants/{grant.public_id}/", f"{step}-review-grant-reports")
    expect(page.locator('#reports a[href="https://doi.org/10.1000/xyz123"]')).to_be_visible()
    check_page(page, shots, f"/review/requests/{renewal.public_id}/", f"{step}-review-renewal")
    check_page(page, shots, "/review/dashboard", f"{step}-dashboard")
    context.close()
