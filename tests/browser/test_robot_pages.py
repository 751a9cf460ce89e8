"""The robot pages in a real Chromium, on both databases: a head adds a robot with the form
(whose fields follow the chosen kinds), and a seller answers a robot's nudge from the deal
card, after which the board no longer marks the deal overdue."""

from __future__ import annotations

from factories import (
    at,
    make_contact,
    make_deal,
    make_pipeline,
    make_user,
    stages_by_name,
)
from sqlmodel import select

from pbx_crm.robots import passes
from pbx_crm.robots import rules as robot_rules
from pbx_crm.db import transaction
from pbx_crm.models import Deal, RobotRule, RobotRun

HOUR = 60


def _crm(engine):
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        stage = stages_by_name(session, pipeline)
        ana = make_user(session, "ana", extensions=["101"])
        hana = make_user(session, "hana", role="head")
        contact = make_contact(session)
        deal = make_deal(session, ana, title="Website redesign", contact_id=contact.id,
                         stage_id=stage["Commercial proposal"].id, priority=2, now=at(0))
    return {"stage": stage, "hana": hana, "deal": deal}


def test_a_head_adds_a_robot_with_the_form(open_page, engine):
    crm = _crm(engine)
    page = open_page("hana")
    page.click('header.top a[href="/robots"]')
    page.wait_for_url("**/robots")
    form = page.locator("form.robot-form")
    time_fields = form.locator('fieldset[data-condition="time_in_stage"]')
    days_fields = form.locator('fieldset[data-condition="no_activity"]')
    assert time_fields.is_visible() and not days_fields.is_visible()

    form.locator("select[name=stage_id]").select_option(
        str(crm["stage"]["Commercial proposal"].id))
    form.locator("input[name=name]").fill("Quiet proposal")
    form.locator("#robot-condition").select_option("no_activity")
    assert days_fields.is_visible() and not time_fields.is_visible()
    form.locator("input[name=days]").fill("3")
    form.locator("#robot-action").select_option("set_priority")
    assert form.locator('fieldset[data-action="set_priority"]').is_visible()
    assert not form.locator('fieldset[data-action="notify_owner notify_heads"]').is_visible()
    form.locator("select[name=priority]").select_option("high")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/robots?pipeline=*")

    rule_line = page.locator(".robot-rule", has_text="Quiet proposal")
    assert "3 days" in rule_line.inner_text() and "high" in rule_line.inner_text()
    with transaction(engine, read_only=True) as session:
        rule = session.exec(select(RobotRule)).one()
    assert (rule.condition, rule.condition_params, rule.action, rule.action_params) == (
        "no_activity", {"days": 3}, "set_priority", {"priority": 2})


def test_a_seller_answers_a_nudge_on_the_card_and_the_overdue_mark_goes(open_page, engine,
                                                                        settings):
    crm = _crm(engine)
    deal = crm["deal"]
    with transaction(engine) as session:
        robot_rules.create_rule(session, crm["hana"],
                                stage_id=crm["stage"]["Commercial proposal"].id,
                                name="Proposal waits", condition="time_in_stage",
                                condition_params={"hours": 48}, action="notify_owner")
    assert passes.robot_pass(engine, settings, now=at(49 * HOUR)).fired == 1

    page = open_page("ana")
    card = page.locator(f"#deal-{deal.id}")
    assert card.locator(".overdue").is_visible()
    card.locator("a.title").click()
    page.wait_for_url(f"**/deals/{deal.id}")
    nudge = page.locator("#nudges li.nudge")
    assert "Proposal waits" in nudge.inner_text()
    with page.expect_response(f"**/deals/{deal.id}/nudges/*/answer") as answered:
        nudge.get_by_role("button", name="Lower priority").click()
    assert answered.value.status == 303
    page.wait_for_url(f"**/deals/{deal.id}")
    page.wait_for_load_state()
    assert page.locator("#nudges").count() == 0
    assert "Nudge answered: lower priority" in page.locator("ol.timeline").inner_text()
    page.goto("/board")
    assert page.locator(f"#deal-{deal.id} .overdue").count() == 0
    with transaction(engine, read_only=True) as session:
        run = session.exec(select(RobotRun)).one()
        assert run.answer == "lower_priority"
        assert session.get(Deal, deal.id).priority == 1
