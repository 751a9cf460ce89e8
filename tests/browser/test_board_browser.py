"""The board in a real Chromium, on both databases: sign in, drag a card, change a stage
from the card, create a deal, take an Unsorted deal, 403 on another seller's deal, and a
title made of markup that stays text."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlmodel import select

from factories import (
    make_contact, make_deal, make_pipeline, make_unsorted_deal, make_user, stages_by_name,
)
from pbx_crm.db import transaction
from pbx_crm.models import Deal

SCRIPT_TITLE = '<script>document.title = "owned"; window.pwned = 1</script>'


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        stage = stages_by_name(session, pipeline)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        contact = make_contact(session)
        ana_deal = make_deal(session, ana, title="Website redesign", contact_id=contact.id)
        budi_deal = make_deal(session, budi, title="ERP rollout")
        waiting = make_unsorted_deal(session, title="Call from 0812 3456 7890")
    return {"stage": stage, "ana_deal": ana_deal, "budi_deal": budi_deal,
            "waiting": waiting}


def stage_of(engine, deal_id: int) -> int:
    with transaction(engine, read_only=True) as session:
        return session.get(Deal, deal_id).stage_id


def column(page, stage):
    return page.locator(f'ul.cards[data-stage-id="{stage.id}"]')


def test_sign_in_shows_the_board(open_page, crm):
    page = open_page()
    page.goto("/board")
    page.wait_for_url("**/login?next=%2Fboard")
    page.fill("input[name=login]", "ana")
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    assert "Wrong login or password." in page.locator(".message.error").inner_text()
    page.fill("input[name=password]", "correct horse battery")
    page.click("button[type=submit]")
    page.wait_for_url("**/board")
    assert page.locator("#board section.column h2").first.inner_text() == "Unsorted"


def test_drag_a_card_to_another_column_and_it_stays_there_after_reload(open_page, crm,
                                                                        engine):
    page = open_page("ana")
    deal, target = crm["ana_deal"], crm["stage"]["Document coordination"]
    card = page.locator(f"#deal-{deal.id}")
    with page.expect_response(f"**/deals/{deal.id}/move") as moved:
        card.drag_to(column(page, target))
    assert moved.value.status == 200
    assert stage_of(engine, deal.id) == target.id
    section = page.locator(f'section.column[data-stage-id="{target.id}"]')
    expect(section.locator(".count")).to_have_text("1")  # once the page has taken the answer
    page.reload()
    assert column(page, target).locator(f"#deal-{deal.id}").count() == 1


def test_a_stale_drag_shows_the_message_and_where_the_card_really_is(open_page, crm, engine):
    page = open_page("ana")
    deal, stage = crm["ana_deal"], crm["stage"]
    with transaction(engine) as session:
        from pbx_crm.funnel import deals
        from pbx_crm.rules.funnel import Actor
        from pbx_crm.models import User

        ana = Actor.of(session.exec(select(User).where(User.login == "ana")).one())
        deals.move_deal(session, ana, deal.id, to_stage_id=stage["Closing"].id,
                        expected_version=deal.version)
    with page.expect_response(f"**/deals/{deal.id}/move") as moved:
        page.locator(f"#deal-{deal.id}").drag_to(column(page, stage["Commercial proposal"]))
    assert moved.value.status == 409
    # Once the page has taken the answer: the message on the card, where it really is.
    expect(page.locator(f"#deal-{deal.id} .card-refusal")).to_contain_text(
        "Someone else moved this deal meanwhile")
    expect(column(page, stage["Closing"]).locator(f"#deal-{deal.id}")).to_have_count(1)


def test_change_the_stage_from_the_deal_card(open_page, crm, engine):
    page = open_page("ana")
    deal, target = crm["ana_deal"], crm["stage"]["Signature and payment"]
    page.goto(f"/deals/{deal.id}")
    page.select_option("#stage-select", str(target.id))
    page.click("#stage-form button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#deal-stage").inner_text() == "Signature and payment"
    assert stage_of(engine, deal.id) == target.id


def test_create_a_deal_with_the_button(open_page, crm, engine):
    page = open_page("ana")
    page.click("#new-deal")
    page.fill("input[name=title]", "Fleet tracking")
    page.fill("input[name=phone]", "0811 2222 3333")
    page.fill("input[name=contact_name]", "Rudi Hartono")
    page.fill("input[name=amount]", "3,000,000")
    page.click("#new-deal-form button[type=submit]")
    page.wait_for_url("**/deals/*")
    assert page.locator("#deal-title").inner_text() == "Fleet tracking"
    assert "Rudi Hartono" in page.locator(".contact-name").inner_text()
    page.goto("/board")
    assert page.locator("li.card", has_text="Fleet tracking").count() == 1


def test_take_an_unsorted_deal(open_page, crm, engine):
    page = open_page("ana")
    waiting = crm["waiting"]
    page.locator(f"#deal-{waiting.id} form.take button").click()
    page.wait_for_url(f"**/deals/{waiting.id}")
    assert page.locator("#deal-stage").inner_text() == "Opportunity"
    page.goto("/board")
    assert column(page, crm["stage"]["Opportunity"]).locator(f"#deal-{waiting.id}").count() == 1


def test_a_seller_gets_403_on_another_sellers_deal(open_page, crm):
    page = open_page("ana")
    response = page.goto(f"/deals/{crm['budi_deal'].id}")
    assert response.status == 403
    assert "belongs to another seller" in page.locator(".message.error").inner_text()


def test_a_script_title_is_inert(open_page, crm, engine):
    with transaction(engine) as session:
        from pbx_crm.rules.funnel import Actor
        from pbx_crm.models import User

        ana = Actor.of(session.exec(select(User).where(User.login == "ana")).one())
        deal = make_deal(session, ana, title=SCRIPT_TITLE)
    page = open_page("ana")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    for path in ("/board", f"/deals/{deal.id}"):
        page.goto(path)
        assert page.evaluate("window.pwned") is None and page.title() != "owned"
        assert page.get_by_text(SCRIPT_TITLE).first.is_visible()
    assert dialogs == []


def test_on_a_phone_the_columns_stack(open_page, crm):
    page = open_page("ana", viewport={"width": 390, "height": 844})
    boxes = [page.locator("section.column").nth(i).bounding_box() for i in range(2)]
    assert boxes[0]["x"] == boxes[1]["x"] and boxes[1]["y"] > boxes[0]["y"]
    assert boxes[0]["width"] <= 390
