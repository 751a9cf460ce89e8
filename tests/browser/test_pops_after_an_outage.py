"""Pops come back by themselves after the database was away, in a real Chromium on
PostgreSQL (behind a proxy that cuts it off).

ana's board is open when the database goes away and her web node restarts meanwhile (a
deploy, a crash): her browser's stream is refused, the page says that calls cannot pop up
just now (no reload needed), and it tries again by itself. Once the database is back, the
note goes and the next call pops as before, without a reload.
"""

from __future__ import annotations

import pytest
from factories import make_contact, make_deal, make_pipeline, make_user
from webtools import WebServer

from pbx_crm.db import transaction

BUDI = "+62 812-3456-7890"
PAUSED = "Calls cannot pop up here just now: trying again by itself."


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        caller = make_contact(session, name="Budi Santoso", phones=(BUDI,))
        make_deal(session, ana, title="Website redesign", contact_id=caller.id)


@pytest.fixture
def web(settings, behind_proxy):
    with WebServer(settings, behind_proxy) as web:
        yield web


def test_pops_come_back_by_themselves_after_the_database_was_away(
        open_page, web, crm, settings, behind_proxy, proxy, pbx):
    ana = open_page("ana")
    paused = ana.locator("#screenpops .pop-stopped")

    proxy.cut()
    port = web.server.server_port
    web.__exit__(None, None, None)  # the node restarts while the database is away
    with WebServer(settings, behind_proxy, port=port):
        paused.wait_for()
        assert PAUSED in paused.inner_text()
        assert ana.url.endswith("/board")  # nothing asked her to reload

        proxy.restore()
        paused.wait_for(state="detached", timeout=20_000)  # tried again: 3 s, then 6 s
        pbx.incoming(pbx.trunk_call(BUDI, "Budi"))
        card = ana.locator("#screenpops .pop").first
        card.wait_for()
        assert card.locator(".pop-deal").inner_text() == "Website redesign"
