"""Playwright (sync API) on Debian's chromium for the browser tests: one browser per module, contexts per test,
and a screenshot per step under test-artifacts/browser/<test>/<NN-step>.png.

Playwright's sync API keeps an asyncio loop marked as running in the main thread, so Django's ORM, called from the
test itself, would refuse with SynchronousOnlyOperation. The `browser` fixture sets DJANGO_ALLOW_ASYNC_UNSAFE (the
documented escape hatch) only while the browser exists, and removes it afterwards so other tests and the worker
processes they start do not inherit it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing; run scripts/system-deps")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Shots:
    """Numbered screenshots for one test: shots(page, "signup") → 01-signup.png, 02-…"""

    def __init__(self, directory: Path):
        self.directory = directory
        self.n = 0
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)

    def __call__(self, page, step: str) -> Path:
        self.n += 1
        path = self.directory / f"{self.n:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', step)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shots(request):
    return Shots(ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name))


@pytest.fixture
def new_page(browser, live_server, shots, request):
    """new_page(locale=None, accept_language=None) → a page in a fresh context (its own cookies) on the live server.
    If the test fails, every page still open is screenshotted as NN-failure-<i>.png."""
    contexts = []
    failed_before = request.session.testsfailed

    def make(*, locale: str | None = None, accept_language: str | None = None):
        options = {"base_url": live_server.url, "viewport": {"width": 1280, "height": 900}}
        if locale:
            options["locale"] = locale
        if accept_language:
            options["extra_http_headers"] = {"Accept-Language": accept_language}
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    failed = request.session.testsfailed > failed_before
    for i, context in enumerate(contexts, 1):
        if failed:
            for page in context.pages:
                with contextlib.suppress(Exception):  # best effort; the test's own error is what matters
                    shots(page, f"failure-{i}")
        context.close()
