"""A refused move on the board, in a real Chromium, on both databases and in both languages:
ana has the board open; hana moves ana's deal to Closing from the deal's card; ana, whose
board still shows it in Opportunity, drags it to Commercial proposal. The move is refused, and ana
reads why on the card itself, in view, in her language and without version numbers, while
the card goes to Closing, where the deal is.

The board is wider than the window (nine columns), so Closing starts out of view.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from factories import ADMIN, make_contact, make_deal, make_pipeline, make_user, stages_by_name
from pbx_crm.db import transaction
from pbx_crm.people import users
from pbx_crm.webui.app import load_translations

MOVED_MEANWHILE = ("Someone else moved this deal meanwhile: it is in “%(stage)s” now, and "
                   "your move was not made.")


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        hana = make_user(session, "hana", role="head")
        contact = make_contact(session)
        deal = make_deal(session, ana, title="Website redesign", contact_id=contact.id)
        stage = stages_by_name(session, pipeline)
    return {"ana": ana, "hana": hana, "deal": deal, "stage": stage}


def column(page, stage):
    return page.locator(f'ul.cards[data-stage-id="{stage.id}"]')


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_stale_drag_is_refused_on_the_card_in_view_and_the_card_goes_where_the_deal_is(
        open_page, crm, engine, language):
    with transaction(engine) as session:
        users.set_language(session, ADMIN, crm["ana"].user_id, language)
    say = load_translations(language).gettext
    deal, stage = crm["deal"], crm["stage"]
    ana, hana = open_page("ana"), open_page("hana")
    card = ana.locator(f"#deal-{deal.id}")
    expect(column(ana, stage["Opportunity"]).locator(f"#deal-{deal.id}")).to_have_count(1)

    # hana moves the deal to Closing, from its card.
    hana.goto(f"/deals/{deal.id}")
    hana.select_option("#stage-select", str(stage["Closing"].id))
    hana.click("#stage-form button[type=submit]")
    expect(hana.locator("#deal-stage")).to_have_text("Closing")
    expect(column(ana, stage["Closing"])).not_to_be_in_viewport()  # ana's board, as it was

    # ana drags her stale card.
    with ana.expect_response(f"**/deals/{deal.id}/move") as refused:
        card.drag_to(column(ana, stage["Commercial proposal"]))
    assert refused.value.status == 409

    note = card.locator(".card-refusal")
    expect(note).to_have_text(say(MOVED_MEANWHILE) % {"stage": "Closing"})
    expect(note).to_be_in_viewport()
    assert not re.search(r"version|versi|\d", note.inner_text())
    expect(column(ana, stage["Closing"]).locator(f"#deal-{deal.id}")).to_have_count(1)
    expect(column(ana, stage["Commercial proposal"]).locator(f"#deal-{deal.id}")).to_have_count(0)
    assert note.get_attribute("role") == "alert"

    # From where it is now, ana's next move goes through and the note goes.
    with ana.expect_response(f"**/deals/{deal.id}/move") as moved:
        drag(ana, card, column(ana, stage["Implementation"]))
    assert moved.value.status == 200
    expect(note).to_have_count(0)


def drag(page, card, target):
    """A mouse drag in small steps, both ends in view (the board scrolls sideways)."""
    target.scroll_into_view_if_needed()
    card.scroll_into_view_if_needed()
    card.hover(position={"x": 20, "y": 10})  # waits until the card stands still
    end = target.bounding_box()
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + 10, steps=12)
    page.mouse.up()
