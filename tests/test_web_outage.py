"""The web UI while PostgreSQL does not answer (its host gone: a proxy in front of it cuts
every connection and refuses new ones), and once it is back.

A seller who opens a page or sends a form meanwhile reads, in her own language, that the CRM
cannot reach its database and nothing was changed (503, with a time to come back), not a
server error; the log says it once, not once a request; the next request after the database
is back works as before. The screen-pop stream that was open keeps its heartbeat through the
outage instead of ending (the browser side: ``browser/test_pops_after_an_outage.py``).
"""

from __future__ import annotations

import logging

import pytest
from factories import ADMIN, make_deal, make_pipeline, make_user
from sqlmodel import select
from webtools import WebServer, signed_in

from pbx_crm.db import transaction
from pbx_crm.models import Task
from pbx_crm.people import users
from pbx_crm.webui.app import load_translations

AWAY = ("The CRM cannot reach its database just now: nothing was changed. Calls still ring "
        "through. Try again in a moment.")


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        deal = make_deal(session, ana, title="Office fit-out")
        return {"ana": ana, "deal_id": deal.id}


@pytest.fixture
def web(settings, behind_proxy):
    with WebServer(settings, behind_proxy) as web:
        yield web


def test_a_page_opened_while_the_database_is_away_says_so_and_works_once_it_is_back(
        web, crm, proxy, caplog):
    ana = signed_in(web, "ana")
    assert ana.get("/board").status == 200

    proxy.cut()
    with caplog.at_level(logging.WARNING, logger="pbx_crm.webui.app"):
        pages = [ana.get(path) for path in ("/board", "/tasks", f"/deals/{crm['deal_id']}")]

    for page in pages:
        assert page.status == 503 and page.headers["Retry-After"] == "10"
        assert AWAY in page.text and "Traceback" not in page.text
    said = [r.getMessage() for r in caplog.records if r.name == "pbx_crm.webui.app"]
    assert len(said) == 1 and "the database did not answer a web request" in said[0]

    proxy.restore()
    board = ana.get("/board")
    assert board.status == 200 and "Office fit-out" in board.text


def test_a_form_sent_while_the_database_is_away_changes_nothing_and_says_so_in_json(
        web, engine, crm, proxy):
    ana = signed_in(web, "ana")
    proxy.cut()

    answer, body = ana.post_json("/tasks", {"deal_id": crm["deal_id"], "title": "Call back"})

    assert answer.status == 503 and body == {"error": AWAY}
    proxy.restore()
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(Task)).all() == []
    answer, body = ana.post_json("/tasks", {"deal_id": crm["deal_id"], "title": "Call back"})
    assert answer.status == 201 and body["task"]["title"] == "Call back"


def test_an_indonesian_seller_reads_it_in_indonesian(web, engine, crm, proxy):
    with transaction(engine) as session:
        users.set_language(session, ADMIN, crm["ana"].user_id, "id")
    ana = signed_in(web, "ana")
    assert ana.get("/board").status == 200  # the page she last read remembers her language

    proxy.cut()
    page = ana.get("/board")

    indonesian = load_translations("id").gettext(AWAY)
    assert indonesian != AWAY
    assert page.status == 503 and indonesian in page.text and AWAY not in page.text
