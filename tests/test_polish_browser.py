"""The edges a newcomer trips over, in a real browser at 1280 and 390 px (the reviewer's header also at 1024), each
page axe-clean and without sideways scroll: a signed-out visitor reading a gated release's license; the error
summary focused with links to its fields, the intended use counted as it is typed and 24×24 px checkboxes; the
grant page's per-file links; the reviewer landing on the queue, the header on one line from 1024 px, the
dashboard's charts (whole-number count axes, skipped date labels) and tables (captions never cut)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from access import services
from access.models import DownloadEvent
from tests.factories import LicenseFactory, ReleaseFactory, UserFactory, add_file, grant_for
from tests.test_pages_browser import VIEWPORTS, check_page, check_shown, context_for, sign_in

pytest_plugins = ["tests.support.browser"]  # browser, shots
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def researcher_world(local_storage, settings, live_server):
    settings.SITE_URL = live_server.url
    rita = services.reviewer_add(
        actor=services.command_actor("add_reviewer"), user=UserFactory(email="rita@portal.example")
    )
    license_ = LicenseFactory(
        slug="opt-175b-noncommercial", title="OPT-175B Non-Commercial Research License", text="Research only.\n" * 30
    )
    gated = ReleaseFactory(repo_id="facebook/opt-175b", access="gated", license=license_)
    for part in range(2):
        add_file(gated, f"checkpoint_last-model_part-{part}-shard0.pt", b"\x80weights" * 50)
    add_file(gated, "config.json", b"{}\n")
    held = ReleaseFactory(repo_id="facebook/opt-66b", access="gated", license=license_)
    add_file(held, "checkpoint_last-model_part-0-shard0.pt", b"\x80weights" * 50)
    add_file(held, "config.json", b"{}\n")
    ada = UserFactory(email="ada.lovelace-researcher@cs.university.example")
    grant = grant_for(ada, held, rita)
    return {"ada": ada, "grant": grant, "license": license_}


def test_a_newcomer_reads_the_license_fills_the_form_and_downloads_a_file(
    browser, live_server, shots, researcher_world
):
    ada, grant, license_ = researcher_world["ada"], researcher_world["grant"], researcher_world["license"]
    for viewport in VIEWPORTS:
        # Signed out: the gated release's license, one click from its page.
        context = context_for(browser, live_server, lang="en", viewport=viewport)
        page = context.new_page()
        check_page(page, shots, "/models/facebook/opt-175b", f"{viewport}-release-signed-out")
        page.locator("#license-link").click()
        page.wait_for_url(f"**/licenses/{license_.slug}/v{license_.version}/")
        expect(page.locator("#license-title")).to_contain_text(license_.title)
        expect(page.locator("#license-text")).to_contain_text("Research only.")
        check_shown(page, shots, "license", f"{viewport}-license")

        # The form: counted as typed; sent incomplete, its error summary is focused and links each field.
        sign_in(page, ada.email)
        page.goto("/models/facebook/opt-175b/apply")
        counter = page.locator("#id_intended_use_count")
        expect(counter).to_be_visible()
        page.locator("#id_intended_use").fill("Probing calibration.")
        expect(counter).to_have_attribute("data-count", "20")
        expect(counter).to_contain_text("20 characters, at least 100")
        for box in page.locator("main input[type=checkbox]").all():
            size = box.bounding_box()
            assert size["width"] >= 24 and size["height"] >= 24, size
        page.locator("#apply-form button[type=submit]").click()
        summary = page.locator("#error-summary")
        expect(summary).to_be_focused()
        expect(summary.locator("a[href='#id_intended_use']")).to_be_visible()
        check_shown(page, shots, "apply with errors", f"{viewport}-error-summary")
        summary.locator("a[href='#id_intended_use']").click()
        expect(page.locator("#id_intended_use")).to_be_focused()

        # The grant page: each file a link through the gate; on a phone its size and checksum are shown.
        check_page(page, shots, f"/grants/{grant.public_id}/", f"{viewport}-grant")
        row = page.locator("tr[data-path='config.json']")
        expect(row.locator("td.sha")).to_be_visible()
        expect(row.locator("td.num")).to_be_visible()
        before = DownloadEvent.objects.filter(user=ada, via="web").count()
        with page.expect_download() as fetched:
            row.locator("a").click()
        assert fetched.value.suggested_filename == "config.json"
        assert DownloadEvent.objects.filter(user=ada, via="web").count() == before + 1  # through the gate
        context.close()


@pytest.fixture
def review_world(local_storage, reviewer, settings, live_server):
    from tests.support.review_data import seed_review_world

    settings.SITE_URL = live_server.url
    return seed_review_world()


def test_a_reviewer_lands_on_the_queue_and_the_workspace_fits_a_laptop(browser, live_server, shots, review_world):
    for viewport, size in (("laptop", {"width": 1024, "height": 768}), *VIEWPORTS.items()):
        context = browser.new_context(base_url=live_server.url, viewport=size, locale="en-US")
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.goto("/accounts/login/")
        page.locator("input[name=login]").fill("rita@portal.example")
        page.locator("input[name=password]").fill("correct horse battery staple")
        page.locator("main form button[type=submit]").click()
        page.wait_for_url("**/review/")
        check_shown(page, shots, "/review/", f"{viewport}-queue")
        if viewport != "phone":
            # The header on one line: its links share one row, and the header is one row high.
            tops = page.locator("header.site .nav-links a, header.site .nav-account > *").evaluate_all(
                "els => els.filter(e => e.offsetParent).map(e => Math.round(e.getBoundingClientRect().top))"
            )
            assert max(tops) - min(tops) <= 8, tops
            height = page.locator("header.site").bounding_box()["height"]
            assert height <= 64, height

        check_page(page, shots, "/review/dashboard?period=90", f"{viewport}-dashboard")
        expect(page.locator(".chart-box[data-drawn=true]")).to_have_count(7)
        charts = page.evaluate(
            """() => Array.from(document.querySelectorAll('.chart-box canvas')).map(canvas => {
                const chart = Chart.getChart(canvas);
                const box = canvas.parentElement.id;
                const horizontal = chart.options.indexAxis === 'y';
                const category = chart.scales[horizontal ? 'y' : 'x'];
                const counts = Object.values(chart.scales).filter(s => s !== category && !['y1'].includes(s.id)
                    && !(box === 'box-decision-time'));
                return {
                    box: box,
                    labels: chart.data.labels.length,
                    shown: category.ticks.length,
                    rotation: category.labelRotation,
                    fractional: counts.flatMap(s => s.ticks.map(t => t.value)).filter(v => !Number.isInteger(v)),
                };
            })"""
        )
        for chart in charts:
            assert chart["fractional"] == [], chart
            assert chart["rotation"] == 0, chart
        downloads = next(c for c in charts if c["box"] == "box-downloads")
        assert downloads["labels"] > 30 and downloads["shown"] < downloads["labels"], downloads
        # Captions sit above the tables' scrolling boxes, whole.
        clipped = page.locator(".table-caption").evaluate_all(
            "els => els.filter(e => e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().height < 10)"
            ".map(e => e.id)"
        )
        assert clipped == []
        context.close()
