"""Browser tests: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright.

One browser for the whole run, a fresh context (cookies, storage) per test, and the web app
served over real HTTP on each database by ``webtools.WebServer``. Playwright never downloads
a browser here; ``./dev.sh test`` installs the ``chromium`` package when it is missing.
"""

from __future__ import annotations

import os
import shutil

import pytest

from factories import PASSWORD
from webtools import WebServer

CHROMIUM = os.environ.get("PBX_CRM_TEST_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package "
                    "(./dev.sh test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def web(settings, engine):
    with WebServer(settings, engine) as server:
        yield server


@pytest.fixture
def open_page(browser, web):
    """``open_page(login)``: a new browser context signed in as ``login`` (None: not)."""
    contexts = []

    def open_page(login: str | None = None, *, viewport=None):
        context = browser.new_context(base_url=web.url,
                                      viewport=viewport or {"width": 1400, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        if login:
            page.goto("/login")
            page.fill("input[name=login]", login)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/board")
        return page

    yield open_page
    for context in contexts:
        context.close()
