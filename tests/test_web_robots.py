"""The robot pages over real HTTP, on both databases: who may see and change the rules, the
rule form (add, refuse, edit, switch off and on, delete), the runs list, and the answers to a
robot's nudge from the deal card and from the notifications.

The team: ana and budi sell, hana is the head. Ana's "Website redesign" has sat in
Commercial proposal since Monday morning; a robot there reminds the owner after 48 hours.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from factories import (
    at,
    make_contact,
    make_deal,
    make_pipeline,
    make_unsorted_deal,
    make_user,
    stages_by_name,
    timeline_of,
)
from sqlmodel import select
from webtools import Client, signed_in

from pbx_crm.robots import passes
from pbx_crm.robots import rules as robot_rules
from pbx_crm.db import transaction
from pbx_crm.models import Deal, Notification, RobotRule, RobotRun

HOUR = 60


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        stage = stages_by_name(session, pipeline)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        hana = make_user(session, "hana", role="head")
        contact = make_contact(session)
        ana_deal = make_deal(session, ana, title="Website redesign", contact_id=contact.id,
                             stage_id=stage["Commercial proposal"].id, priority=2, now=at(0))
        budi_deal = make_deal(session, budi, title="ERP rollout",
                              stage_id=stage["Commercial proposal"].id, now=at(0))
    return {"pipeline": pipeline, "stage": stage, "ana": ana, "budi": budi, "hana": hana,
            "ana_deal": ana_deal, "budi_deal": budi_deal}




def rules(engine) -> list[RobotRule]:
    with transaction(engine, read_only=True) as session:
        return list(session.exec(select(RobotRule).order_by(RobotRule.id)))


def run_of(engine, run_id: int) -> RobotRun:
    with transaction(engine, read_only=True) as session:
        return session.get(RobotRun, run_id)


def add_reminder(engine, crm, **changes) -> RobotRule:
    with transaction(engine) as session:
        return robot_rules.create_rule(session, crm["hana"], **{
            "stage_id": crm["stage"]["Commercial proposal"].id, "name": "Proposal waits",
            "condition": "time_in_stage", "condition_params": {"hours": 48},
            "action": "notify_owner", "action_params": {}, **changes})


def nudged(engine, settings, crm) -> dict[int, int]:
    """The 48-hour robot fires on both proposals: {deal id: run id}."""
    add_reminder(engine, crm)
    report = passes.robot_pass(engine, settings, now=at(49 * HOUR))
    assert report.fired == 2 and report.failed == 0
    with transaction(engine, read_only=True) as session:
        return {run.deal_id: run.id for run in session.exec(select(RobotRun))}


RULE_FORM = {"name": "Proposal waits", "condition": "time_in_stage", "time_count": "48",
             "time_unit": "business_hours", "days": "", "minutes": "", "min_amount": "",
             "max_amount": "", "action": "create_task", "message": "ignored",
             "task_title": "Call the customer", "due_hours": "8", "priority": "low",
             "lost_reason": "", "user_id": ""}


def rule_form(crm, **changes) -> dict:
    return {**RULE_FORM, "stage_id": str(crm["stage"]["Commercial proposal"].id),
            "target_stage_id": str(crm["stage"]["Closing"].id), **changes}


# --- who may -------------------------------------------------------------------------------


def test_a_seller_is_refused_every_robots_route_and_sees_no_robots_link(web, crm, engine):
    rule = add_reminder(engine, crm)
    ana = signed_in(web, "ana")
    assert "/robots" not in ana.get("/board").text
    assert ana.get("/robots").status == 403
    for path, data in [("/robots/rules", rule_form(crm)),
                       (f"/robots/rules/{rule.id}/edit", rule_form(crm, name="Mine now")),
                       (f"/robots/rules/{rule.id}/active", {"active": "no"}),
                       (f"/robots/rules/{rule.id}/delete", {})]:
        answer = ana.post(path, data)
        assert answer.status == 403, path
        assert "Only a head may" in answer.text, path
    [kept] = rules(engine)
    assert (kept.name, kept.active, kept.action) == ("Proposal waits", True, "notify_owner")


def test_signed_out_visitors_are_sent_to_sign_in_and_posts_need_the_csrf_token(web, crm,
                                                                              engine):
    rule = add_reminder(engine, crm)
    visitor = Client(web.url)
    answer = visitor.get("/robots")
    assert answer.status == 303 and "/login?next=%2Frobots" in answer.location
    assert visitor.post(f"/robots/rules/{rule.id}/delete", csrf=False).status == 401
    hana = signed_in(web, "hana")
    assert hana.post(f"/robots/rules/{rule.id}/delete", {"csrf_token": "forged"}).status \
        == 403
    assert len(rules(engine)) == 1


def test_a_head_sees_the_rules_per_stage_and_the_robots_link(web, crm, engine):
    add_reminder(engine, crm)
    add_reminder(engine, crm, stage_id=crm["stage"]["Closing"].id, name="Closing drags",
                 condition="no_activity", condition_params={"days": 5,
                                                            "min_amount": 100_000_000},
                 action="notify_heads", action_params={"message": "Help close it"})
    hana = signed_in(web, "hana")
    assert 'href="/robots"' in hana.get("/board").text
    page = hana.get("/robots")
    assert page.status == 200
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert '<script src="/static/robots.js"></script>' in page.text
    assert "<script>" not in page.text  # no inline script
    proposal = _stage_block(page.text, crm["stage"]["Commercial proposal"].id)
    closing = _stage_block(page.text, crm["stage"]["Closing"].id)
    assert "Proposal waits" in proposal and "48 hours" in proposal
    assert "Closing drags" in closing and "5 days" in closing
    # Money as written in the company's country, in English too (not the US's IDR1,000,000).
    assert "from Rp1.000.000" in closing
    assert "Help close it" in closing and "Proposal waits" not in closing
    assert "No robot runs yet." in page.text
    script = hana.get("/static/robots.js")
    assert script.status == 200 and "robot-params" in script.text


def _stage_block(html: str, stage_id: int) -> str:
    match = re.search(rf'data-stage-id="{stage_id}">(.*?)</div>', html, re.DOTALL)
    assert match, f"no block for stage {stage_id}"
    return match.group(1)


# --- the form ------------------------------------------------------------------------------


def test_a_head_adds_edits_switches_off_and_deletes_a_rule_through_the_forms(web, crm,
                                                                           engine):
    hana = signed_in(web, "hana")
    added = hana.post("/robots/rules", rule_form(crm))
    assert added.status == 303 and added.location.endswith(
        f"/robots?pipeline={crm['pipeline'].id}")
    [rule] = rules(engine)
    # Only the chosen kinds' fields were read: no message on a task, no days on a time rule.
    assert (rule.name, rule.stage_id, rule.condition, rule.condition_params, rule.action,
            rule.action_params, rule.active) == (
        "Proposal waits", crm["stage"]["Commercial proposal"].id, "time_in_stage",
        {"business_hours": 48}, "create_task", {"title": "Call the customer", "due_hours": 8},
        True)

    form = hana.get(f"/robots?edit={rule.id}")
    assert form.status == 200
    assert f'action="/robots/rules/{rule.id}/edit"' in form.text
    assert 'name="task_title" value="Call the customer"' in form.text
    assert '<option value="business_hours" selected>' in form.text

    edited = hana.post(f"/robots/rules/{rule.id}/edit", rule_form(
        crm, name="Push to closing", condition="no_activity", days="7", min_amount="2,500,000",
        action="move_to_stage"))
    assert edited.status == 303
    [rule] = rules(engine)
    assert (rule.name, rule.condition, rule.condition_params, rule.action,
            rule.action_params) == ("Push to closing", "no_activity",
                                    {"days": 7, "min_amount": 250_000_000}, "move_to_stage",
                                    {"stage_id": crm["stage"]["Closing"].id})
    assert rule.stage_id == crm["stage"]["Commercial proposal"].id

    assert hana.post(f"/robots/rules/{rule.id}/active", {"active": "no"}).status == 303
    assert rules(engine)[0].active is False
    page = hana.get("/robots").text
    assert "(off)" in page and ">Turn on<" in page
    assert hana.post(f"/robots/rules/{rule.id}/active", {"active": "yes"}).status == 303
    assert rules(engine)[0].active is True
    assert hana.post(f"/robots/rules/{rule.id}/active", {"active": "maybe"}).status == 400

    assert hana.post(f"/robots/rules/{rule.id}/delete").status == 303
    assert rules(engine) == []
    assert hana.post(f"/robots/rules/{rule.id}/delete").status == 404


@pytest.mark.parametrize("changes, message", [
    ({"name": "  "}, "“name” cannot be empty."),
    ({"condition": "sits_forever"}, "Unknown condition “sits_forever”"),
    ({"time_count": "0"}, "“business_hours” must be a whole number from 1 to 8760."),
    ({"time_unit": "weeks"}, "Choose hours, days, business hours or business days."),
    ({"condition": "amount"}, "An amount threshold needs min_amount or max_amount"),
    ({"min_amount": "abc"}, "“abc” is not an amount."),
    ({"min_amount": "5.000", "max_amount": "1.000"}, "min_amount is above max_amount"),
    ({"condition": "unsorted_not_taken", "minutes": "30"}, "belongs on the Unsorted stage"),
    ({"action": "set_priority", "priority": "urgent"}, "Priority is low, normal or high."),
    ({"action": "reassign", "user_id": "99999"}, "Reassign to an active user."),
    ({"action": "move_to_stage", "target_stage_id": "commercial"}, "must be a whole number"),
    ({"action": "create_task", "due_hours": "-1"}, "“due_hours” must be a whole number"),
    ({"stage_id": ""}, "Choose stage."),
])
def test_a_malformed_rule_form_shows_the_message_keeps_the_typing_and_adds_nothing(
        web, crm, engine, changes, message):
    hana = signed_in(web, "hana")
    answer = hana.post("/robots/rules", rule_form(crm, **changes))
    assert answer.status == 400, answer.text[:300]
    assert message in answer.text.replace("&#34;", '"').replace("&#39;", "'")
    assert 'role="alert"' in answer.text
    assert 'name="task_title" value="Call the customer"' in answer.text  # typing kept
    assert rules(engine) == []


def test_a_rule_on_a_won_stage_is_refused(web, crm, engine):
    hana = signed_in(web, "hana")
    answer = hana.post("/robots/rules", rule_form(crm, stage_id=str(crm["stage"]["Won"].id)))
    assert answer.status == 400 and "Robots work on open stages" in answer.text
    assert rules(engine) == []


def test_a_malformed_edit_changes_nothing(web, crm, engine):
    rule = add_reminder(engine, crm)
    hana = signed_in(web, "hana")
    answer = hana.post(f"/robots/rules/{rule.id}/edit", rule_form(
        crm, name="Renamed", action="move_to_stage",
        target_stage_id=str(crm["stage"]["Commercial proposal"].id)))
    assert answer.status == 400 and "not to this stage" in answer.text
    assert f'action="/robots/rules/{rule.id}/edit"' in answer.text
    [kept] = rules(engine)
    assert (kept.name, kept.action, kept.action_params) == ("Proposal waits", "notify_owner",
                                                            {})
    assert hana.post("/robots/rules/99999/edit", rule_form(crm)).status == 404


def test_the_runs_list_shows_what_the_robots_did_and_what_failed(web, crm, engine, settings):
    add_reminder(engine, crm)
    add_reminder(engine, crm, name="Ring the owner", action="call_owner")  # no AMI: fails
    passes.robot_pass(engine, settings, now=at(49 * HOUR))
    page = signed_in(web, "hana").get("/robots").text
    runs = page[page.index('id="runs"'):]
    assert runs.count('class="run status-done"') == 2
    assert runs.count('class="run status-failed"') == 2
    assert "No AMI host is configured" in runs
    assert "Website redesign" in runs and "ERP rollout" in runs


# --- answering a nudge -----------------------------------------------------------------------


def test_the_owner_answers_a_nudge_from_the_deal_card_and_the_overdue_mark_goes(
        web, crm, engine, settings):
    runs = nudged(engine, settings, crm)
    deal = crm["ana_deal"]
    ana = signed_in(web, "ana")
    assert 'class="overdue"' in ana.get("/board").text
    card = ana.get(f"/deals/{deal.id}").text
    action = f'action="/deals/{deal.id}/nudges/{runs[deal.id]}/answer"'
    assert action in card and "Proposal waits" in card
    # Budi's nudge is not on Ana's card.
    assert f"/nudges/{runs[crm['budi_deal'].id]}/" not in card

    answered = ana.post(f"/deals/{deal.id}/nudges/{runs[deal.id]}/answer",
                        {"answer": "lower_priority", "snooze_days": "3"})
    assert answered.status == 303 and answered.location.endswith(f"/deals/{deal.id}")
    run = run_of(engine, runs[deal.id])
    assert (run.answer, run.snooze_until, run.answered_by_id) == (
        "lower_priority", None, crm["ana"].user_id)
    with transaction(engine, read_only=True) as session:
        assert session.get(Deal, deal.id).priority == 1
        assert "Nudge answered: lower priority" in [e.body for e in timeline_of(session, deal)]
        note = session.exec(select(Notification).where(
            Notification.robot_run_id == run.id)).one()
        assert note.read_at is not None
    assert 'class="overdue"' not in ana.get("/board").text
    card = ana.get(f"/deals/{deal.id}").text
    assert action not in card and 'id="nudges"' not in card

    again = ana.post(f"/deals/{deal.id}/nudges/{runs[deal.id]}/answer",
                     {"answer": "moved_on"})
    assert again.status == 409 and "answered already (lower priority)" in again.text


def test_a_nudge_answer_from_the_card_is_checked(web, crm, engine, settings):
    runs = nudged(engine, settings, crm)
    deal = crm["ana_deal"]
    ana = signed_in(web, "ana")
    path = f"/deals/{deal.id}/nudges/{runs[deal.id]}/answer"
    for data, status, message in [
            ({"answer": "snooze", "snooze_days": "0"}, 400, "from 1 to 90"),
            ({"answer": "snooze", "snooze_days": "soon"}, 400, "not a valid number of days"),
            ({"answer": "forget_it"}, 400, "Unknown answer"),
    ]:
        answer = ana.post(path, data)
        assert answer.status == status and message in answer.text, data
    # Budi's run posted under Ana's deal: not this deal's nudge.
    crossed = ana.post(f"/deals/{deal.id}/nudges/{runs[crm['budi_deal'].id]}/answer",
                       {"answer": "moved_on"})
    assert crossed.status == 400 and "has no robot nudge" in crossed.text
    assert run_of(engine, runs[deal.id]).answer is None
    assert run_of(engine, runs[crm["budi_deal"].id]).answer is None


def test_a_seller_answering_another_sellers_nudge_gets_403(web, crm, engine, settings):
    runs = nudged(engine, settings, crm)
    ana_deal, ana_run = crm["ana_deal"], runs[crm["ana_deal"].id]
    budi = signed_in(web, "budi")
    from_card = budi.post(f"/deals/{ana_deal.id}/nudges/{ana_run}/answer",
                          {"answer": "moved_on"})
    assert from_card.status == 403
    from_list = budi.post(f"/nudges/{ana_run}/answer", {"answer": "moved_on"})
    assert from_list.status == 403
    assert run_of(engine, ana_run).answer is None
    assert budi.post("/nudges/99999/answer", {"answer": "moved_on"}).status == 404


def test_the_owner_snoozes_a_nudge_from_the_notifications(web, crm, engine, settings):
    runs = nudged(engine, settings, crm)
    run_id = runs[crm["ana_deal"].id]
    ana = signed_in(web, "ana")
    listed = ana.get("/notifications").text
    assert f'action="/nudges/{run_id}/answer"' in listed
    assert f"/nudges/{runs[crm['budi_deal'].id]}/" not in listed
    refused = ana.post(f"/nudges/{run_id}/answer", {"answer": "snooze", "snooze_days": "91"})
    assert refused.status == 400 and "from 1 to 90" in refused.text
    assert run_of(engine, run_id).answer is None

    answered = ana.post(f"/nudges/{run_id}/answer", {"answer": "snooze", "snooze_days": "5"})
    assert answered.status == 303 and answered.location.endswith("/notifications")
    run = run_of(engine, run_id)
    assert run.answer == "snooze" and run.answered_at is not None
    assert run.snooze_until - run.answered_at == timedelta(days=5)
    listed = ana.get("/notifications").text
    assert f'action="/nudges/{run_id}/answer"' not in listed  # answered: no buttons
    assert 'class="overdue"' not in ana.get("/board").text
    # The head answers Budi's nudge from the card (a head may change any deal).
    hana = signed_in(web, "hana")
    budi_deal = crm["budi_deal"]
    assert hana.post(f"/deals/{budi_deal.id}/nudges/{runs[budi_deal.id]}/answer",
                     {"answer": "moved_on"}).status == 303
    assert run_of(engine, runs[budi_deal.id]).answer == "moved_on"


def test_the_robot_pages_speak_indonesian(web, crm, engine, settings):
    runs = nudged(engine, settings, crm)
    with transaction(engine) as session:
        from pbx_crm.models import User

        for login in ("hana", "ana"):
            user = session.exec(select(User).where(User.login == login)).one()
            user.language = "id"
            session.add(user)
    page = signed_in(web, "hana").get("/robots").text
    assert "Tambah robot" in page and "Add robot" not in page
    card = signed_in(web, "ana").get(f"/deals/{crm['ana_deal'].id}").text
    assert f"/nudges/{runs[crm['ana_deal'].id]}/answer" in card
    assert "Tunda" in card and "Moved on" not in card


def test_a_run_on_the_unsorted_stage_names_it_in_the_head_s_language(web, crm, engine,
                                                                     settings):
    with transaction(engine) as session:
        make_unsorted_deal(session, now=at(0))
        robot_rules.create_rule(session, crm["hana"], stage_id=crm["stage"]["Unsorted"].id,
                                name="Caller waits", condition="unsorted_not_taken",
                                condition_params={"minutes": 30}, action="notify_heads")
    assert passes.robot_pass(engine, settings, now=at(31)).fired == 1
    head = signed_in(web, "hana")
    assert head.post("/settings/language", {"language": "id"}).status == 303
    runs = head.get("/robots").text.split('id="runs"')[1]
    assert "<td>Belum Disortir</td>" in runs and "<td>Unsorted</td>" not in runs
