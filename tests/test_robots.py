"""Stage robots on both databases, driven by a controlled clock: every pass is given ``now``.

The scenarios are a sales team's: Ana's proposal sits too long and she is nudged once per
stage visit; a caller waits in Unsorted and the heads hear of it; a missed call nobody returned
becomes a task; an answered call pushes a fresh opportunity on. What the robots did is read
back from the runs, the notifications, the tasks, the deal's timeline and the audit log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from factories import (
    ADMIN,
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

from pbx_crm.funnel import calls, deals
from pbx_crm.people import users
from pbx_crm.db import transaction
from pbx_crm.enums import Priority, TimelineKind
from pbx_crm.errors import Conflict, Forbidden, ValidationError
from pbx_crm.models import AuditEntry, Deal, Notification, RobotRun, Task
from pbx_crm.rules.phones import ExtensionPlan, classify_caller
from pbx_crm.robots import nudges, passes, triggers
from pbx_crm.robots import rules as robot_rules

HOUR = 60  # factories.at() counts minutes
DAY = 24 * HOUR


@pytest.fixture
def crm(engine):
    """Dewi heads a team of Ana (ext 101) and Budi (ext 102); Ana has a deal with Budi
    Santoso (the customer) in Commercial proposal since Monday 09:00 UTC."""
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        stages = stages_by_name(session, pipeline)
        dewi = make_user(session, "dewi", role="head")
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        customer = make_contact(session)
        deal = make_deal(session, ana, contact_id=customer.id,
                         stage_id=stages["Commercial proposal"].id, now=at(0))
    return {"stages": stages, "dewi": dewi, "ana": ana, "budi": budi, "deal": deal,
            "customer": customer, "pipeline": pipeline}


def add_rule(engine, crm, stage="Commercial proposal", *, condition="time_in_stage",
             when=None, action="notify_owner", do=None, now=None, name="Proposal waits"):
    with transaction(engine) as session:
        return robot_rules.create_rule(session, crm["dewi"], stage_id=crm["stages"][stage].id,
                                       name=name, condition=condition,
                                       condition_params={"hours": 48} if when is None else when,
                                       action=action, action_params=do or {}, now=now)


def run_pass(engine, settings, minutes, **kw):
    return passes.robot_pass(engine, settings, now=at(minutes), **kw)


def runs(engine, rule=None) -> list[RobotRun]:
    with transaction(engine, read_only=True) as session:
        query = select(RobotRun).order_by(RobotRun.id)
        if rule is not None:
            query = query.where(RobotRun.rule_id == rule.id)
        return list(session.exec(query))


def notifications(engine, actor) -> list[Notification]:
    with transaction(engine, read_only=True) as session:
        return list(session.exec(select(Notification).where(Notification.user_id ==
                                                            actor.user_id)
                                 .order_by(Notification.id)))


def robot_entries(engine, deal) -> list[str]:
    with transaction(engine, read_only=True) as session:
        return [entry.body for entry in timeline_of(session, deal)
                if entry.kind == TimelineKind.ROBOT.value]


def deal_now(engine, deal) -> Deal:
    with transaction(engine, read_only=True) as session:
        return session.get(Deal, deal.id)


# --- rules: who sets them, what is refused ----------------------------------------------------


@pytest.mark.parametrize("stage, condition, when, action, do, message", [
    ("Commercial proposal", "sits_forever", {}, "notify_owner", {}, "Unknown condition"),
    ("Commercial proposal", "time_in_stage", {}, "notify_owner", {}, "exactly one of hours"),
    ("Commercial proposal", "time_in_stage", {"hours": 2, "days": 1}, "notify_owner", {},
     "exactly one of hours"),
    ("Commercial proposal", "time_in_stage", {"hours": -3}, "notify_owner", {},
     "“hours” must be a whole number"),
    ("Commercial proposal", "time_in_stage", {"hours": 2, "colour": "red"}, "notify_owner",
     {}, "Unknown setting(s) for time in stage: colour"),
    ("Commercial proposal", "no_activity", {"days": 0}, "notify_owner", {}, "from 1 to 365"),
    ("Commercial proposal", "amount", {}, "notify_owner", {}, "needs min_amount or"),
    ("Commercial proposal", "amount", {"min_amount": 5, "max_amount": 1}, "notify_owner", {},
     "no deal could match"),
    ("Commercial proposal", "unsorted_not_taken", {"minutes": 5}, "notify_heads", {},
     "belongs on the Unsorted stage"),
    ("Unsorted", "unsorted_not_taken", {"minutes": 5}, "notify_owner", {},
     "have no owner yet"),
    ("Unsorted", "call_answered", {}, "notify_heads", {}, "first working stage"),
    ("Commercial proposal", "call_missed", {}, "create_task", {}, "callback task"),
    ("Commercial proposal", "time_in_stage", {"hours": 1}, "teleport", {}, "Unknown action"),
    ("Commercial proposal", "time_in_stage", {"hours": 1}, "set_priority",
     {"priority": "urgent"}, "low, normal or high"),
    ("Commercial proposal", "time_in_stage", {"hours": 1}, "move_to_stage",
     {"stage": "Commercial proposal"}, "not to this stage"),
    ("Commercial proposal", "time_in_stage", {"hours": 1}, "move_to_stage",
     {"stage": "Lost"}, "“lost_reason” cannot be empty"),
    ("Commercial proposal", "time_in_stage", {"hours": 1}, "reassign", {"login": "nobody"},
     "active user"),
    ("Won", "time_in_stage", {"hours": 1}, "notify_owner", {}, "open stages"),
])
def test_a_rule_that_cannot_work_is_refused_with_a_reason(engine, crm, stage, condition, when,
                                                          action, do, message):
    with pytest.raises(ValidationError) as refused:
        add_rule(engine, crm, stage, condition=condition, when=when, action=action, do=do)
    assert message in refused.value.message
    assert runs(engine) == []


def test_only_a_head_sets_robots_and_sees_their_history(engine, crm):
    with pytest.raises(Forbidden), transaction(engine) as session:
        robot_rules.create_rule(session, crm["ana"], stage_id=crm["stages"]["Closing"].id,
                                name="Mine", condition="stage_entered", action="notify_heads")
    with pytest.raises(Forbidden), transaction(engine) as session:
        robot_rules.recent_runs(session, crm["ana"])


def test_rules_are_listed_changed_switched_and_deleted(engine, crm):
    rule = add_rule(engine, crm, do={"message": "Call them"})
    with transaction(engine) as session:
        robot_rules.update_rule(session, crm["dewi"], rule.id, condition_params={"days": 3},
                                action="reassign", action_params={"login": "budi"})
        robot_rules.set_rule_active(session, crm["dewi"], rule.id, False)
        [(listed, stage)] = robot_rules.list_rules(session, crm["dewi"], crm["pipeline"].id)
        assert (listed.condition_params, listed.action_params, listed.active, stage.name) == (
            {"days": 3}, {"user_id": crm["budi"].user_id}, False, "Commercial proposal")
        robot_rules.delete_rule(session, crm["dewi"], rule.id)
        assert robot_rules.list_rules(session, crm["dewi"]) == []
        actions = [a.action for a in session.exec(select(AuditEntry).where(
            AuditEntry.entity == "robot_rule").order_by(AuditEntry.id))]
    assert actions == ["create", "update", "disable", "delete"]


# --- timed conditions -------------------------------------------------------------------------


def test_a_rule_added_while_deals_sit_in_the_stage_nudges_them_once_per_visit(
        engine, crm, settings):
    ana, deal = crm["ana"], crm["deal"]
    with transaction(engine) as session:
        fresh = make_deal(session, ana, title="Fresh one",
                          stage_id=crm["stages"]["Commercial proposal"].id, now=at(5 * DAY))
    rule = add_rule(engine, crm, now=at(5 * DAY))  # Ana's deal has sat there for five days

    report = run_pass(engine, settings, 5 * DAY)
    assert report.fired == 1 and [r.deal_id for r in runs(engine)] == [deal.id]
    assert run_pass(engine, settings, 5 * DAY + 10).fired == 0  # the same visit: once
    [note] = notifications(engine, ana)
    assert note.deal_id == deal.id and "in Commercial proposal for 48 hours" in note.body
    assert "Moved on, lower its priority, or snooze?" in note.body

    assert run_pass(engine, settings, 7 * DAY).fired == 1  # the fresh deal, two days later
    assert runs(engine)[-1].deal_id == fresh.id

    # Ana moves the deal on and back: a new visit, nudged again two days after re-entering.
    with transaction(engine) as session:
        stages = crm["stages"]
        deals.move_deal(session, ana, deal.id, to_stage_id=stages["Closing"].id,
                        expected_version=None, now=at(8 * DAY))
        deals.move_deal(session, ana, deal.id, to_stage_id=stages["Commercial proposal"].id,
                        expected_version=None, now=at(8 * DAY + 1))
    assert run_pass(engine, settings, 9 * DAY).fired == 0
    assert run_pass(engine, settings, 10 * DAY + 1).fired == 1
    assert [r.deal_id for r in runs(engine, rule)] == [deal.id, fresh.id, deal.id]
    assert len({r.run_key for r in runs(engine)}) == 3
    assert robot_entries(engine, deal) == ["Proposal waits: reminded Ana"] * 2


def test_business_days_count_the_working_week_in_the_company_time_zone(engine, crm, settings):
    """09:00-18:00 Monday to Friday in Jakarta (UTC+7). The deal arrives on Friday at 17:00:
    one business day (nine working hours) is up on Monday at 17:00, not on Saturday."""
    jakarta = timedelta(hours=7)
    friday_1700 = datetime(2024, 5, 10, 17, 0, tzinfo=UTC) - jakarta
    with transaction(engine) as session:
        deal = make_deal(session, crm["ana"], title="Friday lead",
                         stage_id=crm["stages"]["Closing"].id, now=friday_1700)
    business = add_rule(engine, crm, "Closing", when={"business_days": 1}, name="Business day")
    wall_clock = add_rule(engine, crm, "Closing", when={"hours": 9}, name="Nine hours")
    settings = settings.replace(time_zone="Asia/Jakarta")

    def fired_at(moment):
        passes.robot_pass(engine, settings, now=moment)
        return {run.rule_id for run in runs(engine) if run.deal_id == deal.id}

    saturday_0200 = friday_1700 + timedelta(hours=9)
    assert fired_at(saturday_0200) == {wall_clock.id}
    assert fired_at(friday_1700 + timedelta(days=2, hours=23)) == {wall_clock.id}  # Sunday
    monday_1659 = friday_1700 + timedelta(days=3, minutes=-1)
    assert fired_at(monday_1659) == {wall_clock.id}
    assert fired_at(monday_1659 + timedelta(minutes=1)) == {wall_clock.id, business.id}


def test_a_deal_nobody_worked_on_for_days_is_nudged_once_per_quiet_spell(engine, crm,
                                                                           settings):
    rule = add_rule(engine, crm, condition="no_activity", when={"days": 3},
                    action="set_priority", do={"priority": "low"})
    deal = crm["deal"]
    with transaction(engine) as session:  # a note is activity
        deals.add_note(session, crm["ana"], deal.id, "Sent the quote", now=at(2 * DAY))
    assert run_pass(engine, settings, 4 * DAY).fired == 0
    assert run_pass(engine, settings, 5 * DAY + 1).fired == 1
    assert deal_now(engine, deal).priority == Priority.LOW.value
    assert run_pass(engine, settings, 7 * DAY).fired == 0
    with transaction(engine) as session:
        deals.add_note(session, crm["ana"], deal.id, "Still thinking", now=at(8 * DAY))
    assert run_pass(engine, settings, 11 * DAY + 1).fired == 1  # a second quiet spell
    assert len(runs(engine, rule)) == 2


def test_an_unsorted_caller_nobody_took_is_reported_to_the_heads(engine, crm, settings):
    with transaction(engine) as session:
        waiting = make_unsorted_deal(session, now=at(0))
        taken = make_unsorted_deal(session, title="Call from someone else", now=at(0))
        deals.take_deal(session, crm["budi"], taken.id, now=at(10))
    add_rule(engine, crm, "Unsorted", condition="unsorted_not_taken", when={"minutes": 30},
             action="notify_heads", name="Caller waiting")
    assert run_pass(engine, settings, 29).fired == 0
    assert run_pass(engine, settings, 31).fired == 1
    [note] = notifications(engine, crm["dewi"])
    assert note.deal_id == waiting.id and "nobody took it" in note.body
    assert notifications(engine, crm["budi"]) == []


PLAN = ExtensionPlan.parse("100-199")


def missed_call(session, uniqueid, minutes, number="+62 812-3456-7890"):
    caller = classify_caller(number, region="ID", extensions=PLAN)
    calls.record_inbound_call(session, uniqueid=uniqueid, linkedid=uniqueid, caller=caller,
                              caller_name="Budi", did="2150001", create_deals=True,
                              region="ID", now=at(minutes))
    return calls.record_hangup(session, uniqueid=uniqueid, dial_status="NOANSWER",
                               hangup_cause=19, now=at(minutes + 1))


def test_a_missed_call_not_returned_in_time_becomes_a_task(engine, crm, settings):
    deal = crm["deal"]
    add_rule(engine, crm, condition="missed_call_not_returned", when={"minutes": 30},
             action="create_task", do={"title": "Return Budi's call", "due_hours": 1},
             name="Missed call")
    with transaction(engine) as session:
        call = missed_call(session, "1700000000.1", 60)
    assert call.deal_id == deal.id and call.disposition == "missed"
    assert run_pass(engine, settings, 60 + 30).fired == 0
    assert run_pass(engine, settings, 60 + 32).fired == 1
    with transaction(engine, read_only=True) as session:
        tasks = list(session.exec(select(Task).where(Task.deal_id == deal.id)
                                  .order_by(Task.id)))
    # The PBX's own callback task, and the robot's: no more.
    assert [(t.kind, t.title) for t in tasks] == [("callback", tasks[0].title),
                                                 ("robot", "Return Budi's call")]
    assert tasks[1].assignee_id == crm["ana"].user_id and tasks[1].due_at == at(92 + 60)

    # A second missed call, returned by Ana ten minutes later: no task.
    with transaction(engine) as session:
        missed_call(session, "1700000000.2", 200)
        calls.record_outbound_call(session, uniqueid="1700000000.3", linkedid="1700000000.3",
                                   extension="101", clicked_deal_id=deal.id, now=at(210),
                                   dialed=classify_caller("+6281234567890", region="ID",
                                                          extensions=PLAN))
    assert run_pass(engine, settings, 300).fired == 0


def test_an_amount_threshold_raises_big_deals_priority(engine, crm, settings):
    deal = crm["deal"]
    add_rule(engine, crm, condition="amount", when={"min_amount": 100_000_000},
             action="set_priority", do={"priority": "high"}, name="Big deal")
    assert run_pass(engine, settings, 10).fired == 0
    with transaction(engine) as session:
        deals.update_deal(session, crm["ana"], deal.id, expected_version=None,
                          amount_minor=250_000_000, now=at(20))
    assert run_pass(engine, settings, 30).fired == 1
    assert deal_now(engine, deal).priority == Priority.HIGH.value
    assert run_pass(engine, settings, 40).fired == 0


# --- actions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("action, do, check", [
    ("move_to_stage", {"stage": "Document coordination"},
     lambda d, crm: d.stage_id == crm["stages"]["Document coordination"].id),
    ("reassign", {"login": "budi"}, lambda d, crm: d.owner_id == crm["budi"].user_id),
    ("set_priority", {"priority": "low"}, lambda d, crm: d.priority == Priority.LOW.value),
    ("move_to_stage", {"stage": "Lost", "lost_reason": "No answer for two days"},
     lambda d, crm: d.closed_at is not None and d.lost_reason == "No answer for two days"),
])
def test_each_action_changes_the_deal_through_the_services_and_says_so(
        engine, crm, settings, action, do, check):
    deal = crm["deal"]
    add_rule(engine, crm, action=action, do=do)
    [run_id] = run_pass(engine, settings, 3 * DAY).run_ids
    assert check(deal_now(engine, deal), crm)
    [run] = runs(engine)
    assert run.status == "done" and run.finished_at == at(3 * DAY)
    with transaction(engine, read_only=True) as session:
        entries = [e for e in timeline_of(session, deal) if e.robot_run_id == run_id]
        audit = session.exec(select(AuditEntry).where(AuditEntry.entity == "robot_run",
                                                      AuditEntry.entity_id == run_id)).one()
        service_audit = session.exec(select(AuditEntry).where(
            AuditEntry.entity == "deal", AuditEntry.entity_id == deal.id,
            AuditEntry.actor == "robot")).all()
    assert [e.kind for e in entries] == ["robot"] and entries[0].body.startswith("Proposal")
    assert audit.action == action and audit.actor == "robot"
    assert service_audit  # the deal services wrote their own audit rows, as the robot


def test_a_task_action_leaves_a_task_for_the_owner(engine, crm, settings):
    add_rule(engine, crm, action="create_task", do={"due_hours": 4})
    run_pass(engine, settings, 2 * DAY + 5)
    with transaction(engine, read_only=True) as session:
        [task] = session.exec(select(Task)).all()
    assert (task.kind, task.assignee_id, task.due_at) == (
        "robot", crm["ana"].user_id, at(2 * DAY + 5 + 4 * HOUR))
    assert task.title == "Proposal waits: Website redesign"


def test_a_refused_action_is_recorded_as_a_failure_and_the_others_go_on(engine, crm,
                                                                          settings):
    with transaction(engine) as session:
        other = make_deal(session, crm["budi"], title="Budi's proposal",
                          stage_id=crm["stages"]["Commercial proposal"].id, now=at(1))
    add_rule(engine, crm, action="reassign", do={"login": "budi"})
    with transaction(engine) as session:  # Budi leaves after the robot was set up
        users.set_active(session, ADMIN, "budi", False)
    report = run_pass(engine, settings, 3 * DAY)
    assert (report.fired, report.failed) == (2, 2)
    with transaction(engine, read_only=True) as session:
        failures = robot_rules.recent_runs(session, crm["dewi"], failed_only=True)
    assert {v.deal_title for v in failures} == {"Website redesign", "Budi's proposal"}
    assert all("not active" in v.run.error or "active" in v.run.error for v in failures)
    assert "could not reassign" in robot_entries(engine, other)[0]
    assert deal_now(engine, crm["deal"]).owner_id == crm["ana"].user_id


# --- nudge answers ----------------------------------------------------------------------------


def nudge(engine, crm, settings):
    add_rule(engine, crm)
    [run_id] = run_pass(engine, settings, 3 * DAY).run_ids
    return run_id


def test_lower_priority_is_stored_and_lowers_the_deal(engine, crm, settings):
    run_id = nudge(engine, crm, settings)
    with transaction(engine) as session:
        nudges.answer_nudge(session, crm["ana"], run_id, answer="lower_priority",
                            now=at(3 * DAY + 5))
    [run] = runs(engine)
    assert (run.answer, run.answered_by_id, run.answered_at) == (
        "lower_priority", crm["ana"].user_id, at(3 * DAY + 5))
    assert deal_now(engine, crm["deal"]).priority == Priority.LOW.value
    assert notifications(engine, crm["ana"])[0].read_at == at(3 * DAY + 5)
    assert robot_entries(engine, crm["deal"])[-1] == "Nudge answered: lower priority"


def test_a_snoozed_nudge_comes_back_once_the_snooze_is_over(engine, crm, settings):
    run_id = nudge(engine, crm, settings)
    with transaction(engine) as session:
        nudges.answer_nudge(session, crm["ana"], run_id, answer="snooze", snooze_days=2,
                            now=at(3 * DAY))
    assert run_pass(engine, settings, 5 * DAY - 1).fired == 0
    assert run_pass(engine, settings, 5 * DAY).fired == 1
    assert run_pass(engine, settings, 6 * DAY).fired == 0
    assert len(notifications(engine, crm["ana"])) == 2


def test_a_nudge_is_answered_once_by_its_seller(engine, crm, settings):
    run_id = nudge(engine, crm, settings)
    with pytest.raises(Forbidden), transaction(engine) as session:
        nudges.answer_nudge(session, crm["budi"], run_id, answer="moved_on")
    with pytest.raises(ValidationError, match="snooze_days"), \
            transaction(engine) as session:
        nudges.answer_nudge(session, crm["ana"], run_id, answer="snooze")
    with pytest.raises(ValidationError, match="Unknown answer"), \
            transaction(engine) as session:
        nudges.answer_nudge(session, crm["ana"], run_id, answer="later")
    with transaction(engine) as session:
        nudges.answer_nudge(session, crm["ana"], run_id, answer="moved_on")
    with pytest.raises(Conflict, match="answered already"), transaction(engine) as session:
        nudges.answer_nudge(session, crm["ana"], run_id, answer="snooze", snooze_days=1)
    assert runs(engine)[0].answer == "moved_on"


# --- triggers ---------------------------------------------------------------------------------


def ring_and_answer(session, uniqueid, minutes, extension="101"):
    caller = classify_caller("+62 812-3456-7890", region="ID", extensions=PLAN)
    calls.record_inbound_call(session, uniqueid=uniqueid, linkedid=uniqueid, caller=caller,
                              caller_name="Budi", did="2150001", create_deals=True,
                              region="ID", now=at(minutes))
    calls.record_answer(session, uniqueid=uniqueid, extension=extension, now=at(minutes + 1))
    calls.record_hangup(session, uniqueid=uniqueid, dial_status="ANSWER", hangup_cause=16,
                        answered_seconds=60, now=at(minutes + 2))


def test_an_answered_call_moves_a_deal_on_from_the_first_stage(engine, crm, settings):
    stages = crm["stages"]
    triggers.trigger_pass(engine, settings, now=at(0))  # the reader starts at the stream's end
    with transaction(engine) as session:
        deal = make_deal(session, crm["ana"], contact_id=crm["customer"].id,
                         title="Opportunity", now=at(5))
        deals.close_lost(session, crm["ana"], crm["deal"].id, reason="Went elsewhere",
                         expected_version=None, now=at(6))
    add_rule(engine, crm, "Opportunity", condition="call_answered", when={},
             action="move_to_stage", do={"stage": "Commercial proposal"}, name="Call answered")
    with transaction(engine) as session:
        ring_and_answer(session, "1700000001.1", 10)
    report = triggers.trigger_pass(engine, settings, now=at(13))
    assert report.fired == 1 and report.events > 0
    assert deal_now(engine, deal).stage_id == stages["Commercial proposal"].id
    assert triggers.trigger_pass(engine, settings, now=at(14)).fired == 0  # never twice


def test_a_call_that_takes_an_unsorted_deal_does_not_also_push_it_on(engine, crm, settings):
    triggers.trigger_pass(engine, settings, now=at(0))
    add_rule(engine, crm, "Opportunity", condition="call_answered", when={},
             action="move_to_stage", do={"stage": "Commercial proposal"}, name="Call answered")
    with transaction(engine) as session:
        caller = classify_caller("+62 811 999 0001", region="ID", extensions=PLAN)
        calls.record_inbound_call(session, uniqueid="1.1", linkedid="1.1", caller=caller,
                                  caller_name="New", did="1", create_deals=True, region="ID",
                                  now=at(10))
        calls.record_answer(session, uniqueid="1.1", extension="101", now=at(11))
        deal_id = calls.find_call(session, "1.1").deal_id
    assert triggers.trigger_pass(engine, settings, now=at(12)).fired == 0
    with transaction(engine, read_only=True) as session:
        assert session.get(Deal, deal_id).stage_id == crm["stages"]["Opportunity"].id


def test_a_missed_call_notifies_the_owner_and_leaves_one_callback_task(engine, crm, settings):
    triggers.trigger_pass(engine, settings, now=at(0))
    add_rule(engine, crm, condition="call_missed", when={}, action="notify_owner",
             name="Missed call")
    with transaction(engine) as session:
        missed_call(session, "1700000002.1", 30)
    assert triggers.trigger_pass(engine, settings, now=at(32)).fired == 1
    assert triggers.trigger_pass(engine, settings, now=at(33)).fired == 0
    [note] = notifications(engine, crm["ana"])
    assert "a missed call" in note.body
    with transaction(engine, read_only=True) as session:
        assert [t.kind for t in session.exec(select(Task))] == ["callback"]


def test_a_deal_moved_into_a_stage_starts_its_robots_at_once(engine, crm, settings):
    add_rule(engine, crm, "Closing", condition="stage_entered", when={},
             action="create_task", do={"title": "Send the contract", "due_hours": 2},
             name="Contract")
    with transaction(engine) as session:
        deals.move_deal(session, crm["ana"], crm["deal"].id,
                        to_stage_id=crm["stages"]["Closing"].id, expected_version=None,
                        now=at(100))
    assert triggers.trigger_pass(engine, settings, now=at(100)).fired == 1
    assert triggers.trigger_pass(engine, settings, now=at(101)).fired == 0
    with transaction(engine, read_only=True) as session:
        assert [t.title for t in session.exec(select(Task))] == ["Send the contract"]


def test_the_event_reader_waits_on_a_hole_then_skips_it(engine, crm, settings):
    """A hole in the event ids may be a write about to commit (PostgreSQL): the reader waits
    on it for a while before taking it as a rolled-back write."""
    from pbx_crm.funnel import events

    triggers.trigger_pass(engine, settings, now=at(0))
    with transaction(engine) as session:
        first = events.emit(session, "ringing", target_user_id=None, payload={}, now=at(1))
        hole = events.emit(session, "ringing", target_user_id=None, payload={}, now=at(1))
        events.emit(session, "ringing", target_user_id=None, payload={}, now=at(1))
    with transaction(engine) as session:
        session.delete(session.get(type(hole), hole.id))
    gaps: dict = {}
    assert triggers.trigger_pass(engine, settings, now=at(2), gaps=gaps).events == 1
    assert gaps == {hole.id: at(2)}
    assert triggers.trigger_pass(engine, settings, now=at(2), gaps=gaps).events == 0
    later = at(2) + triggers.EVENT_GAP_WAIT
    assert triggers.trigger_pass(engine, settings, now=later, gaps=gaps).events == 1
    assert first.id + 2 == hole.id + 1 and gaps == {}
