"""Click-to-call from a deal's card, in a real Chromium, on both databases and in both
languages: ana clicks "Call" next to her customer's number; the page says at once, next to
the button, that her phone rings now and which number follows. With the phone system gone,
the next click says so in the same place, and no call is recorded for it.

The phone system is the emulator's AMI server on loopback; ana is ext 101.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlmodel import select

from factories import ADMIN, make_contact, make_deal, make_pipeline, make_user
from pbx_crm.db import transaction
from pbx_crm.models import Call
from pbx_crm.people import users
from pbx_crm.webui.app import load_translations
from webtools import WebServer

RINGS_NOW = "Your phone (ext %(extension)s) rings now: pick it up, and %(number)s is called."
UNREACHABLE = "The phone system is not reachable right now; try again in a minute."


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        contact = make_contact(session, phones=("+62 812-3456-7890",))
        deal = make_deal(session, ana, contact_id=contact.id)
    return {"ana": ana, "deal": deal}


@pytest.fixture
def web(settings, engine, server):
    """The web UI with the phone system's AMI set: click-to-call is on."""
    ami = settings.replace(ami_host=server.host, ami_port=server.port, ami_username="crm",
                           ami_secret="secret")
    with WebServer(ami, engine) as web:
        yield web


@pytest.mark.parametrize("language", ["en", "id"])
def test_call_says_the_phone_rings_then_that_the_phone_system_is_away(
        open_page, crm, engine, server, language):
    with transaction(engine) as session:
        users.set_language(session, ADMIN, crm["ana"].user_id, language)
    say = load_translations(language).gettext
    ana = open_page("ana")
    ana.goto(f"/deals/{crm['deal'].id}")
    call = ana.locator("ul.phones form button.call")

    call.click()
    status = ana.locator("ul.phones .call-status")
    expect(status).to_have_text(say(RINGS_NOW) % {"extension": "101",
                                                  "number": "+6281234567890"})
    assert ana.url.endswith(f"/deals/{crm['deal'].id}")  # the same page, nothing reloaded
    [originate] = server.originates
    assert originate["Channel"] == "PJSIP/101"

    server.stop()  # the phone system goes away
    call.click()
    expect(status).to_have_text(say(UNREACHABLE), timeout=15_000)
    assert status.get_attribute("role") == "alert"
    with transaction(engine, read_only=True) as session:
        assert len(session.exec(select(Call)).all()) == 1  # the first call only
