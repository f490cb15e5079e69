"""The reviewer's trace page in a real browser at phone width (390), in English and Chinese: a release manager
uploads a leaked copy's files and reads whose copy it is. axe-core finds no serious or critical violation and the
page does not scroll sideways."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from access import services
from tests.factories import UserFactory
from tests.test_pages_browser import check_page, check_shown, context_for, sign_in
from tests.test_tracing import copy_of, holder, register

pytest_plugins = ["tests.support.browser"]  # browser, new_page, shots
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_release_manager_traces_an_uploaded_copy_on_a_phone_in_both_languages(
    browser, live_server, shots, settings, local_storage, tmp_path
):
    settings.SITE_URL = live_server.url
    release = register(tmp_path, "lab/twelve", 12, 4)
    people = {name: holder(release, name) for name in ("ada", "ben", "cho")}
    manager = UserFactory(email="mia@portal.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=manager)
    services.release_manager_add(actor=services.command_actor("add_release_manager"), user=manager)
    copy = copy_of(release, people["ben"], tmp_path / "ben")
    files = sorted(str(p) for p in copy.glob("*.safetensors"))
    for lang, heading in (("en", "Named"), ("zh-hans", "已确认持有人")):
        context = context_for(browser, live_server, lang=lang, viewport="phone")
        page = context.new_page()
        sign_in(page, manager.email)
        check_page(page, shots, "/review/traces/", f"trace-form-{lang}")
        page.locator("#trace-files").set_input_files(files)
        page.locator("#trace-form button[type=submit]").click()
        expect(page.locator("#trace-result h2")).to_have_text(heading)
        expect(page.locator("#trace-candidates")).to_contain_text("ben@uni.example")
        check_shown(page, shots, "/review/traces/ (result)", f"trace-result-{lang}")
        context.close()
