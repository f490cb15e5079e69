"""A release's decision rule in a real browser (Chromium), through the demo OpenID Provider `make run` starts: the
demo faculty member signs in with Demo University, applies to OPT-175B and has the grant at once, the request's
page saying why; `download.py` then downloads the release with her token. The demo student's request waits for a
reviewer. English and Simplified Chinese (one release for each: a person holds one grant per release)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from access import services
from access.models import AccessRequest, Grant
from tests.factories import LicenseFactory, ReleaseFactory, add_file, token_secret
from tests.support.oidc_provider import configure
from tests.test_pages_browser import LOCALES, check_shown
from tests.test_sign_in_browser import allow_form_action

pytest_plugins = ["tests.support.browser"]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FACULTY, STUDENT = "ada.lovelace@uni.example", "sam.student@uni.example"
SCRIPT = Path(__file__).resolve().parents[1] / "access" / "client" / "download.py"
TEXT = {
    "en": {"sign_in_with": "Sign in with Demo University", "why": "verified faculty at Demo University"},
    "zh-hans": {"sign_in_with": "通过 Demo University 登录", "why": "Demo University 已验证的教职人员"},
}
FILES = {"config.json": b'{"model_type": "opt"}\n', "checkpoint_last-model_part-0-shard0.pt": os.urandom(4096)}


@pytest.fixture
def releases(local_storage):
    """OPT-175B for each language, with its rule: verified faculty of Demo University are approved."""
    made = {}
    for lang in LOCALES:
        release = ReleaseFactory(repo_id=f"facebook/opt-175b-{lang}", access="gated", license=LicenseFactory())
        for path, content in FILES.items():
            add_file(release, path, content)
        services.release_rules_set(
            actor=services.command_actor("test"),
            release=release,
            rules=[
                {"action": "approve", "conditions": {"affiliation_kinds": ["faculty"], "institutions": ["0demoun01"]}}
            ],
        )
        made[lang] = release
    return made


def apply(browser, live_server, shots, *, demo, email: str, release, lang: str) -> AccessRequest:
    """Sign in with Demo University as `email`, apply to `release`; the request the portal recorded."""
    context = browser.new_context(base_url=live_server.url, **LOCALES[lang])
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_role("button", name=TEXT[lang]["sign_in_with"]).click()
    page.wait_for_url(re.compile(r"^" + re.escape(demo.url) + r"/"))
    page.locator("input[name=username]").fill(email)
    page.locator("input[name=password]").fill(demo.people[email])
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile(r"^" + re.escape(live_server.url) + r"/$"))
    if page.locator("html").get_attribute("lang") != lang:
        # The account remembers the language of its first visit: the person picks theirs in the header.
        with page.expect_navigation():
            page.locator("form.lang select[name=language]").select_option(lang)
    page.goto(f"/models/{release.repo_id}/apply")
    page.locator("select[name=organization_type]").select_option("academic")
    page.locator("select[name=country]").select_option("GB")
    page.locator("input[name=role]").fill("Researcher")
    page.locator("textarea[name=intended_use]").fill(
        "Studying how large language models trace the steps of a proof, and where they lose the thread, for a "
        "graduate course on computation and proof."
    )
    page.locator("input[name=accept_license]").check()
    page.locator("input[name=noncommercial_attested]").check()
    with page.expect_navigation():
        page.locator("#apply-form button[type=submit]").click()
    assert re.search(r"/requests/[0-9a-f]{32}/$", page.url), page.locator(".errorlist").all_inner_texts()
    check_shown(page, shots, f"{lang}-{email.split('@')[0]}-request", f"{lang}-{email.split('@')[0]}-request")
    request = AccessRequest.objects.get(applicant__email=email, release=release)
    if request.status == "approved":
        expect(page.locator("main")).to_contain_text(TEXT[lang]["why"])
    context.close()
    return request


def test_the_demo_faculty_member_is_approved_by_the_rule_and_downloads_and_the_student_waits(
    browser, live_server, shots, settings, demo_idp, releases, tmp_path
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

    for lang, release in releases.items():
        approved = apply(browser, live_server, shots, demo=demo, email=FACULTY, release=release, lang=lang)
        assert approved.status == "approved" and approved.decided_by_rule is not None
        grant = Grant.objects.get(request=approved)
        assert grant.affiliation == "faculty@uni.example" and grant.rested_on

        target = tmp_path / lang
        done = subprocess.run(
            [sys.executable, str(SCRIPT), release.repo_id, "--dir", str(target), "--portal", live_server.url],
            env={**os.environ, "PORTAL_TOKEN": token_secret(grant.user, name=f"download-{lang}")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        for path, content in FILES.items():
            assert hashlib.sha256((target / path).read_bytes()).hexdigest() == hashlib.sha256(content).hexdigest()

        waiting = apply(browser, live_server, shots, demo=demo, email=STUDENT, release=release, lang=lang)
        assert waiting.status == "pending" and waiting.decided_by_rule is None
