"""Browser tests: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright.

One browser for the whole run, a fresh context (cookies, storage) per test, and the web app
served over real HTTP on each database by ``webtools.WebServer``. Playwright never downloads
a browser here; ``./dev.sh test`` installs the ``chromium`` package when it is missing.
"""

from __future__ import annotations

import os
import shutil
from functools import partial
from pathlib import Path

import pytest

from factories import PASSWORD
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.ami_listener import AmiListener
from telephony import Pbx
from webtools import WebServer

CHROMIUM = os.environ.get("PBX_CRM_TEST_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 10_000
AMI_WAIT = 10.0

# A page's words depend on the language and its data on the database, never on both: a test
# played in both languages plays each on one database, English on SQLite and Indonesian on
# PostgreSQL, rather than all four pairs (a browser scenario takes seconds).
LANGUAGE_DATABASE = {"en": "sqlite", "id": "postgres"}


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None) and item.callspec.params or {}
        language, database = params.get("language"), params.get("engine")
        if here in item.path.parents and language in LANGUAGE_DATABASE \
                and database is not None and LANGUAGE_DATABASE[language] != database:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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
def ami(settings, server):
    """The settings of a CRM whose phone system's AMI is the emulator's server (a test that
    pops calls serves its ``web`` with these)."""
    return settings.replace(ami_host=server.host, ami_port=server.port, ami_username="crm",
                            ami_secret="secret")


@pytest.fixture
def listener(engine, ami):
    """The AMI listener on the emulator's server, its first resync done. The call's end is
    written after a short grace (the hangup hook usually writes it)."""
    listener = AmiListener(engine, ami, client_factory=partial(
        AmiClient, reconnect_delay=0.01, connect_timeout=AMI_WAIT, action_timeout=AMI_WAIT),
        hangup_grace=0.2)
    listener.start()
    assert listener.wait_until(lambda: listener.resyncs >= 1, AMI_WAIT)
    yield listener
    listener.stop()


@pytest.fixture
def pbx(engine, tmp_path):
    """The FastAGI side of the phone system: the CRM's hooks, played by the emulator."""
    pbx = Pbx(engine, tmp_path / "pbx")
    yield pbx
    pbx.stop()


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
