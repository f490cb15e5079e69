"""Every page a visitor, researcher or reviewer sees, in a real browser, in English and Simplified Chinese, at desktop
(1280×900) and phone (390×844) width: axe-core finds no serious or critical violation, the page does not scroll
sideways, and each is screenshotted under test-artifacts/browser/<test>/. Then the keyboard: the phone menu and
a copy button work without a mouse, and a token created in the browser, copied from the page, downloads a gated
file in a shell.

The catalog is the demo's (load_demo_catalog): OPT-175B with its 992 shards, OPT-125M open."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import translation
from playwright.sync_api import expect

from access import footprint, services
from access.models import ModelRelease
from tests.factories import AccessRequestFactory, LicenseFactory, ReleaseFactory, UserFactory, add_file, grant_for
from tests.support.axe import axe_violations

pytest_plugins = ["tests.support.browser"]  # browser, new_page, shots
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's password
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
LOCALES = {
    "en": {"locale": "en-US"},
    "zh-hans": {"locale": "zh-CN", "extra_http_headers": {"Accept-Language": "zh-Hans,zh;q=0.9"}},
}


@pytest.fixture
def catalog(local_storage, settings, live_server):
    settings.SITE_URL = live_server.url
    call_command("load_demo_catalog", "--only", "facebook/opt-175b", "--only", "facebook/opt-125m", "--size", "1024")
    return ModelRelease.objects.get(repo_id="facebook/opt-175b")


@pytest.fixture
def people(catalog):
    """Rita reviews; Ada holds a grant on OPT-175B, is asked a question on one small gated release and has not
    applied for another; a token of hers is listed."""
    rita = services.reviewer_add(
        actor=services.command_actor("add_reviewer"), user=UserFactory(email="rita@portal.example")
    )
    ada = UserFactory(email="ada@uni.example")
    grant = grant_for(ada, catalog, rita)
    license_ = LicenseFactory(title="Small Model License")
    asked = ReleaseFactory(repo_id="lab/small-gated", access="gated", license=license_)
    add_file(asked, "config.json", b"{}\n")
    request = AccessRequestFactory(applicant=ada, release=asked)
    services.request_ask_info(
        actor=services.Actor(user=rita, credential="session", reauthenticated=True),
        access_request=request,
        question="Which lab?",
    )
    fresh = ReleaseFactory(repo_id="lab/other-gated", access="gated", license=license_)
    add_file(fresh, "config.json", b"{}\n")
    token, _secret = services.token_create(
        actor=services.Actor(user=ada, credential="session", reauthenticated=True), name="laptop"
    )
    # Ada's lab holds a grant on the other gated release; Max joined and has not accepted its license yet.
    lab = services.lab_create(
        actor=services.Actor(user=ada, credential="session", reauthenticated=True),
        name="Language Lab",
        ror_id="02mhbdp94",
        email_domains=["uni.example"],
    )
    max_ = UserFactory(email="max@gmail.example")
    _invitation, secret = services.lab_invite(
        actor=services.Actor(user=ada, credential="session", reauthenticated=True), lab=lab, email=max_.email
    )
    member = services.lab_invitation_accept(
        actor=services.Actor(user=max_, credential="session", reauthenticated=True), token=secret
    )
    _invitation, invitation = services.lab_invite(
        actor=services.Actor(user=ada, credential="session", reauthenticated=True), lab=lab, email="zoe@uni.example"
    )
    lab_request = AccessRequestFactory(applicant=ada, release=fresh, lab=lab, all_members=True)
    services.request_approve(
        actor=services.Actor(user=rita, credential="session", reauthenticated=True), access_request=lab_request
    )
    lab_grant = services.grant_issue(request_id=lab_request.pk)
    return {
        "ada": ada,
        "rita": rita,
        "grant": grant,
        "request": request,
        "fresh": fresh,
        "token": token,
        "lab": lab,
        "member": member,
        "invitation": invitation,
        "lab_request": lab_request,
        "lab_grant": lab_grant,
    }


def context_for(browser, live_server, *, lang, viewport, permissions=()):
    context = browser.new_context(
        base_url=live_server.url, viewport=VIEWPORTS[viewport], permissions=list(permissions), **LOCALES[lang]
    )
    context.set_default_timeout(10_000)
    return context


def sign_in(page, email):
    page.goto("/accounts/login/")
    page.locator("input[name=login]").fill(email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/$"))


def zh(text: str) -> str:
    """The Simplified Chinese of a message the portal shows (and that it has one)."""
    with translation.override("zh-hans"):
        shown = translation.gettext(text)
    assert shown != text, f"no translation for {text!r}"
    return shown


def check_page(page, shots, path, step, *, status=200, axe=True):
    """Open a page and assert what every page must be: its status, no sideways scroll, no serious axe finding."""
    response = page.goto(path)
    assert response.status == status, (path, response.status)
    check_shown(page, shots, path, step, axe=axe)


def check_shown(page, shots, path, step, *, axe=True):
    page.wait_for_load_state("load")
    overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    shots(page, step)
    assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
    if not axe:
        return
    violations = axe_violations(page)
    assert violations == [], f"{path}: {violations}"


REQUIREMENTS_TITLE = {"en": "What it takes to run it", "zh-hans": "运行它需要什么"}


def check_requirements(page, release, lang):
    """What it takes to run OPT-175B, as a visitor reads it: figures worked out by hand (175e9 parameters × 4, 2,
    1 and ½ bytes; 80 GB and 24 GB cards), the demo's real download size and its times, the emissions, and the
    documents."""
    section = page.locator("#requirements")
    expect(section.locator("h2")).to_have_text(REQUIREMENTS_TITLE[lang])
    expected = {
        "fp32": ("≈ 700 GB", "651.9 GiB", "9", "30"),
        "bf16": ("≈ 350 GB", "326.0 GiB", "5", "15"),
        "int8": ("≈ 175 GB", "163.0 GiB", "3", "8"),
        "int4": ("≈ 87.5 GB", "81.5 GiB", "2", "4"),
    }
    for dtype, (gb, gib, accelerators, cards) in expected.items():
        row = section.locator(f"tr[data-dtype={dtype}]")
        expect(row.locator(".weights-gb")).to_contain_text(gb)
        expect(row.locator(".weights-gb")).to_contain_text(gib)
        expect(row.locator(".accelerators")).to_have_text(accelerators)
        expect(row.locator(".consumer-cards")).to_have_text(cards)
    expect(section.locator("tr[data-dtype=bf16] .badge")).to_contain_text("fp16")  # as the demo says it is stored
    size = sum(release.files.values_list("size", flat=True))
    # The demo's real total in bytes (with or without the language's thousands separators), and its times.
    expect(section.locator("#download-size")).to_contain_text(re.compile("[,. ]?".join(f"{size:,}".split(","))))
    with translation.override(lang):
        times = [footprint.duration_text(size * 8 / bps) for _label, bps in footprint.LINKS]
    expect(section.locator("#download-times dd[data-link]")).to_have_text(times)
    expect(section.locator("#emissions")).to_be_visible()
    expect(page.locator("#documents li[data-document]")).to_have_count(3)


def visit_every_page(*, browser, live_server, shots, people, lang):
    grant, request, fresh, token = people["grant"], people["request"], people["fresh"], people["token"]
    for viewport in VIEWPORTS:
        # A visitor.
        context = context_for(browser, live_server, lang=lang, viewport=viewport)
        page = context.new_page()
        check_page(page, shots, "/", f"{viewport}-catalog")
        check_page(page, shots, "/models/facebook/opt-175b", f"{viewport}-gated-anonymous")
        check_requirements(page, grant.release, lang)
        if viewport == "desktop":
            # The state and the primary action are on the first screen, the 992 files behind a count.
            action = page.locator("#request-access .btn-primary")
            box = action.bounding_box()
            assert box is not None and box["y"] + box["height"] <= VIEWPORTS["desktop"]["height"]
            height = page.evaluate("document.scrollingElement.scrollHeight")
            assert height < 4000, height
            expect(page.locator("#file-list")).not_to_have_attribute("open", "")
            expect(page.locator("#files-title")).to_contain_text("992")
        check_page(page, shots, "/models/facebook/opt-125m", f"{viewport}-open-release")
        check_page(page, shots, "/licenses/opt-175b-noncommercial/v1.0/", f"{viewport}-license")
        check_page(page, shots, "/downloading", f"{viewport}-downloading")
        check_page(page, shots, "/help", f"{viewport}-help")
        check_page(page, shots, "/accounts/login/", f"{viewport}-sign-in")
        check_page(page, shots, "/accounts/signup/", f"{viewport}-sign-up")
        check_page(page, shots, "/accounts/confirm-email/", f"{viewport}-verification-sent")
        check_page(page, shots, "/accounts/confirm-email/not-a-key/", f"{viewport}-verification-link-invalid")
        check_page(page, shots, "/accounts/password/reset/", f"{viewport}-password-reset")
        check_page(page, shots, "/accounts/password/reset/done/", f"{viewport}-password-reset-sent")
        check_page(page, shots, "/accounts/password/reset/key/1-not-a-key/", f"{viewport}-password-reset-link-invalid")
        check_page(page, shots, "/models/nobody/nothing", f"{viewport}-not-found", status=404)
        # A form whose CSRF cookie is gone (a browser restored from an old session): the "form expired" page.
        page.goto("/accounts/login/")
        context.clear_cookies()
        page.locator("input[name=login]").fill("someone@uni.example")
        page.locator("input[name=password]").fill(PASSWORD)
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.locator("main form button[type=submit]").click()
        assert posted.value.status == 403
        check_shown(page, shots, "/accounts/login/ (CSRF)", f"{viewport}-form-expired")
        context.close()

        # A researcher.
        context = context_for(browser, live_server, lang=lang, viewport=viewport)
        page = context.new_page()
        sign_in(page, people["ada"].email)
        check_page(page, shots, "/models/facebook/opt-175b", f"{viewport}-gated-granted")
        check_page(page, shots, "/models/lab/small-gated", f"{viewport}-gated-needs-info")
        check_page(page, shots, "/models/lab/other-gated", f"{viewport}-gated-request-access")
        check_page(page, shots, f"/models/{fresh.repo_id}/apply", f"{viewport}-apply-form")
        check_page(page, shots, "/requests/", f"{viewport}-my-requests")
        check_page(page, shots, f"/requests/{request.public_id}/", f"{viewport}-request-detail")
        check_page(page, shots, f"/requests/{request.public_id}/withdraw", f"{viewport}-withdraw-confirm")
        check_page(page, shots, "/grants/", f"{viewport}-my-grants")
        check_page(page, shots, f"/grants/{grant.public_id}/", f"{viewport}-grant-992-files")
        check_page(page, shots, f"/grants/{grant.public_id}/license", f"{viewport}-grant-license")
        check_page(page, shots, "/tokens/", f"{viewport}-tokens")
        check_page(page, shots, f"/tokens/{token.pk}/revoke", f"{viewport}-token-revoke-confirm")
        check_page(page, shots, "/accounts/reauthenticate/", f"{viewport}-reauthenticate")
        lab, lab_grant = people["lab"], people["lab_grant"]
        check_page(page, shots, "/labs/", f"{viewport}-labs")
        check_page(page, shots, f"/labs/{lab.public_id}/", f"{viewport}-lab")
        check_page(page, shots, f"/labs/grants/{lab_grant.public_id}/", f"{viewport}-lab-grant")
        check_page(page, shots, f"/models/lab/small-gated/apply?lab={lab.public_id}", f"{viewport}-lab-apply-form")
        remove = f"/labs/{lab.public_id}/members/{people['member'].public_id}/remove"
        check_page(page, shots, remove, f"{viewport}-lab-remove-confirm")
        check_page(page, shots, f"/labs/invitations/{people['invitation']}/", f"{viewport}-lab-invitation")
        context.close()

        # A reviewer.
        context = context_for(browser, live_server, lang=lang, viewport=viewport)
        page = context.new_page()
        sign_in(page, people["rita"].email)
        check_page(page, shots, "/review/?status=", f"{viewport}-review-queue")
        check_page(page, shots, f"/review/requests/{request.public_id}/", f"{viewport}-review-request")
        check_page(page, shots, "/review/grants/", f"{viewport}-review-grants")
        check_page(page, shots, f"/review/grants/{grant.public_id}/", f"{viewport}-review-grant")
        check_page(
            page, shots, f"/review/requests/{people['lab_request'].public_id}/", f"{viewport}-review-lab-request"
        )
        check_page(page, shots, f"/review/grants/{people['lab_grant'].public_id}/", f"{viewport}-review-lab-grant")
        context.close()


def test_every_page_in_english_passes_axe_and_fits_a_phone(browser, live_server, shots, people):
    visit_every_page(browser=browser, live_server=live_server, shots=shots, people=people, lang="en")


def test_every_page_in_simplified_chinese_passes_axe_and_fits_a_phone(browser, live_server, shots, people):
    visit_every_page(browser=browser, live_server=live_server, shots=shots, people=people, lang="zh-hans")


def test_the_phone_menu_and_the_file_filter_work_from_the_keyboard(browser, live_server, shots, catalog):
    context = context_for(browser, live_server, lang="en", viewport="phone")
    page = context.new_page()
    page.goto("/models/facebook/opt-175b")
    toggle = page.locator(".menu-toggle")
    models = page.locator("#site-nav").get_by_role("link", name="Models")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(models).to_be_hidden()
    shots(page, "menu-closed")
    # Skip link first, then the brand, then the menu button.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(toggle).to_be_focused()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(models).to_be_visible()
    shots(page, "menu-open")
    page.keyboard.press("Tab")
    expect(models).to_be_focused()
    page.keyboard.press("Escape")
    expect(models).to_be_hidden()
    expect(toggle).to_be_focused()

    # The filter box narrows 992 files to one and opens the group that holds it.
    page.locator("#file-filter").fill("part-7-shard123")
    row = page.locator("tr[data-path='checkpoint_last-model_part-7-shard123.pt']")
    expect(row).to_be_visible()
    expect(page.locator("tr[data-path]:visible")).to_have_count(1)
    expect(page.locator(".filter-count")).to_contain_text("1")
    shots(page, "filtered")
    # Natural order: shard2 before shard10 within a part.
    paths = page.locator("tr[data-path^='checkpoint_last-model_part-0-']").evaluate_all(
        "rows => rows.map(r => r.dataset.path)"
    )
    assert paths[:3] == [f"checkpoint_last-model_part-0-shard{i}.pt" for i in range(3)]
    assert paths.index("checkpoint_last-model_part-0-shard2.pt") < paths.index(
        "checkpoint_last-model_part-0-shard10.pt"
    )
    context.close()


def test_the_menu_works_without_javascript_on_a_phone(browser, live_server, shots, catalog):
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORTS["phone"], java_script_enabled=False)
    page = context.new_page()
    page.goto("/")
    expect(page.locator(".menu-toggle")).to_be_hidden()
    expect(page.locator("#site-nav").get_by_role("link", name="Downloading")).to_be_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= VIEWPORTS["phone"]["width"]
    shots(page, "no-js-menu")
    context.close()


def test_a_token_copied_from_the_page_downloads_a_gated_file_in_a_shell(
    browser, live_server, shots, local_storage, settings, tmp_path
):
    settings.SITE_URL = live_server.url
    rita = services.reviewer_add(
        actor=services.command_actor("add_reviewer"), user=UserFactory(email="rita@portal.example")
    )
    ada = UserFactory(email="ada@uni.example")
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    weights = b"\x80\x02weights" * 100
    add_file(release, "config.json", b'{"model_type": "opt"}\n')
    add_file(release, "checkpoint_last-model_part-0-shard0.pt", weights)
    grant_for(ada, release, rita)

    context = context_for(
        browser, live_server, lang="en", viewport="desktop", permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    sign_in(page, ada.email)
    page.goto("/tokens/")
    page.get_by_label("Name").fill("shell")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token").inner_text().strip()
    commands = page.locator(".code").filter(has=page.locator("#token-commands"))
    expect(commands).to_contain_text(f"export PORTAL_TOKEN={secret}")
    shots(page, "token-created")

    # The copy button, from the keyboard: focus it, press Enter, and the clipboard holds the commands.
    button = commands.locator("button.copy")
    button.focus()
    page.keyboard.press("Enter")
    expect(button).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.locator("#token-commands").inner_text()
    shots(page, "copied")
    context.close()

    # Pasted into a shell as it is (Debian's python3, no `python`): the script downloads and verifies the files.
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    env.pop("PORTAL_TOKEN", None)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", copied], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert (work / "opt-175b" / "checkpoint_last-model_part-0-shard0.pt").read_bytes() == weights
    assert Path(work / "opt-175b" / "SHA256SUMS").exists()


def test_a_request_page_fits_a_phone_in_every_state(browser, live_server, shots, local_storage):
    """Each state of an individual and of a lab request, at 390 px in both languages: no sideways scroll, and
    every button of the page (the grant link first of all) inside the screen."""
    rita = services.reviewer_add(
        actor=services.command_actor("add_reviewer"), user=UserFactory(email="rita@portal.example")
    )
    ada = UserFactory(email="ada@uni.example")
    reviewer, applicant = (
        services.Actor(user=rita, credential="session", reauthenticated=True),
        services.Actor(user=ada, credential="session", reauthenticated=True),
    )
    lab = services.lab_create(actor=applicant, name="Language Lab", ror_id="02mhbdp94", email_domains=["uni.example"])
    pages = []
    for state in ("pending", "needs_info", "approved", "rejected", "withdrawn"):
        release = ReleaseFactory(repo_id=f"facebook/opt-66b-{state}", access="gated")
        add_file(release, "config.json", b"{}\n")
        for kind, extra in (("individual", {}), ("lab", {"lab": lab, "all_members": True})):
            request = AccessRequestFactory(applicant=ada, release=release, **extra)
            if state == "needs_info":
                services.request_ask_info(actor=reviewer, access_request=request, question="Which lab?")
            elif state == "approved":
                services.request_approve(actor=reviewer, access_request=request, reason="Welcome.")
                services.grant_issue(request_id=request.pk)
            elif state == "rejected":
                services.request_reject(actor=reviewer, access_request=request, reason="Commercial use.")
            elif state == "withdrawn":
                services.request_withdraw(actor=applicant, access_request=request)
            pages.append((state, kind, request))

    for lang in LOCALES:
        context = context_for(browser, live_server, lang=lang, viewport="phone")
        page = context.new_page()
        sign_in(page, ada.email)
        for state, kind, request in pages:
            path = f"/requests/{request.public_id}/"
            check_page(page, shots, path, f"{lang}-{state}-{kind}", axe=False)
            expect(page.locator("#request-status")).to_have_attribute("data-status", state)
            if state == "approved":
                expect(page.locator("#grant-link")).to_be_visible()
            width = page.evaluate("window.innerWidth")
            for button in page.locator("main .btn:visible, main button:visible").all():
                box = button.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (
                    path,
                    button.inner_text(),
                    box,
                )
        context.close()
