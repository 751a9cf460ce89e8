"""Robots under stress and at their edges, on both databases: a scheduler that dies mid-pass,
two schedulers at once, nudges by e-mail through a real SMTP server on loopback, reminder
calls seen by the AMI emulator, the APScheduler clock, the CLI, and the working clock.
"""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from aiosmtpd.controller import Controller
from factories import (
    at,
    make_contact,
    make_deal,
    make_pipeline,
    make_user,
    stages_by_name,
    timeline_of,
)
from sqlmodel import select

from pbx_crm.cli import main as cli
from pbx_crm.funnel import deals
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.config import ConfigError, load_settings
from pbx_crm.db import make_engine, transaction
from pbx_crm.enums import TimelineKind
from pbx_crm.robots import passes, triggers
from pbx_crm.robots import rules as robot_rules
from pbx_crm.robots import scheduler as robot_scheduler
from pbx_crm.robots.scheduler import RobotScheduler
from pbx_crm.models import Notification, RobotRule, RobotRun, User
from pbx_crm.rules.working_hours import WorkingClock, parse_working_days

DAY = 24 * 60
WAIT = 5.0


@pytest.fixture
def team(engine):
    """Dewi (head), Ana (ext 101, ana@example.co.id) with twelve proposals waiting."""
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        stages = stages_by_name(session, pipeline)
        dewi = make_user(session, "dewi", role="head")
        ana = make_user(session, "ana", extensions=["101"])
        # No user service sets an e-mail address yet: written as an admin would.
        session.get(User, ana.user_id).email = "ana@example.co.id"
        customer = make_contact(session)
        proposals = [make_deal(session, ana, title=f"Proposal {i}", contact_id=customer.id,
                               stage_id=stages["Commercial proposal"].id, now=at(i))
                     for i in range(12)]
    return {"stages": stages, "dewi": dewi, "ana": ana, "deals": proposals}


def rule(engine, team, action="notify_owner", **params):
    with transaction(engine) as session:
        return robot_rules.create_rule(session, team["dewi"],
                                       stage_id=team["stages"]["Commercial proposal"].id,
                                       name="Proposal waits", condition="time_in_stage",
                                       condition_params={"hours": 48}, action=action,
                                       action_params=params)


def counts(engine) -> tuple[int, int, int]:
    """(runs, distinct run keys, notifications)"""
    with transaction(engine, read_only=True) as session:
        keys = list(session.exec(select(RobotRun.run_key)))
        notes = list(session.exec(select(Notification.id)))
    return len(keys), len(set(keys)), len(notes)


# --- crashes and concurrency ------------------------------------------------------------------


class PowerCut(BaseException):
    """The process dies: nothing after this point runs, the open transaction is lost."""


def test_a_scheduler_that_dies_mid_pass_loses_nothing_and_repeats_nothing(engine, team,
                                                                            settings):
    rule(engine, team)
    acted = []

    def die_on_the_fifth(run_id):
        acted.append(run_id)
        if len(acted) == 5:
            raise PowerCut

    with pytest.raises(PowerCut):
        passes.robot_pass(engine, settings, now=at(3 * DAY), batch=4,
                          on_run=die_on_the_fifth)
    assert counts(engine) == (4, 4, 4)  # the first batch committed, the second was lost

    report = passes.robot_pass(engine, settings, now=at(3 * DAY + 1), batch=4)  # restarted
    assert report.fired == 8
    assert counts(engine) == (12, 12, 12)
    assert passes.robot_pass(engine, settings, now=at(3 * DAY + 2)).fired == 0


def test_two_schedulers_at_once_fire_each_run_once(engine, team, settings):
    rule(engine, team, action="create_task")
    rule(engine, team)
    url = engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    start = threading.Barrier(2)
    reports, errors = [], []

    def scheduler(own_engine):
        try:
            start.wait(WAIT)
            reports.append(passes.robot_pass(own_engine, settings, now=at(3 * DAY), batch=3))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=scheduler, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for own_engine in engines:
        own_engine.dispose()
    assert errors == []
    assert sum(r.fired for r in reports) == 24
    assert counts(engine) == (24, 24, 12)
    with transaction(engine, read_only=True) as session:
        from pbx_crm.models import Task
        assert len(session.exec(select(Task)).all()) == 12


def test_two_trigger_readers_at_once_act_on_each_event_once(engine, team, settings):
    from pbx_crm.funnel import calls
    from pbx_crm.rules.phones import ExtensionPlan, classify_caller

    with transaction(engine) as session:
        robot_rules.create_rule(session, team["dewi"],
                                stage_id=team["stages"]["Commercial proposal"].id,
                                name="Missed call", condition="call_missed", action="notify_owner")
    triggers.trigger_pass(engine, settings, now=at(0))
    caller = classify_caller("+62 812-3456-7890", region="ID",
                             extensions=ExtensionPlan.parse("100-199"))
    with transaction(engine) as session:
        for i in range(5):
            calls.record_inbound_call(session, uniqueid=f"9.{i}", linkedid=f"9.{i}",
                                      caller=caller, caller_name=None, did=None,
                                      create_deals=True, region="ID", now=at(10 + i))
            calls.record_hangup(session, uniqueid=f"9.{i}", dial_status="NOANSWER",
                                hangup_cause=19, now=at(11 + i))
    url = engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    start = threading.Barrier(2)
    fired = []

    def reader(own_engine):
        start.wait(WAIT)
        fired.append(triggers.trigger_pass(own_engine, settings, now=at(20)).fired)

    threads = [threading.Thread(target=reader, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for own_engine in engines:
        own_engine.dispose()
    assert sum(fired) == 5  # however the two readers split the events
    assert counts(engine) == (5, 5, 5)


def test_a_run_left_pending_by_a_stopped_scheduler_is_marked_failed_not_repeated(
        engine, team, settings):
    rule(engine, team)
    passes.robot_pass(engine, settings, now=at(3 * DAY))
    with transaction(engine) as session:
        run = session.exec(select(RobotRun).order_by(RobotRun.id)).first()
        run.status = "pending"  # as if the process died before the e-mail went out
    assert passes.recover_interrupted(engine, now=at(3 * DAY + 1)) == 0  # too fresh to judge
    assert passes.recover_interrupted(engine, now=at(3 * DAY + 6)) == 1
    with transaction(engine, read_only=True) as session:
        run = session.get(RobotRun, run.id)
    assert run.status == "failed" and "interrupted" in run.error


# --- e-mail and reminder calls ----------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler keeping what it received."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def test_a_nudge_reaches_the_sellers_mailbox_over_smtp(engine, team, settings, smtp):
    controller, inbox = smtp
    settings = settings.replace(smtp_host="127.0.0.1", smtp_port=controller.port,
                                smtp_from="crm@example.co.id")
    with transaction(engine) as session:  # one deal due, to read one message
        for deal in team["deals"][1:]:
            deals.close_won(session, team["ana"], deal.id, expected_version=None, now=at(60))
    rule(engine, team, message="Move it to document coordination")
    report = passes.robot_pass(engine, settings, now=at(3 * DAY))
    assert (report.fired, report.failed) == (1, 0)
    [mail] = inbox.messages
    assert mail.mail_from == "crm@example.co.id" and mail.rcpt_tos == ["ana@example.co.id"]
    text = mail.content.decode()
    assert "Subject: [pbx-crm] Move it to document coordination" in text
    assert "Proposal 0" in text and "snooze" in text
    assert [r.status for r in _runs(engine)] == ["done"]


def test_with_the_mail_server_down_the_run_fails_visibly_and_the_crm_notice_stays(
        engine, team, settings):
    settings = settings.replace(smtp_host="127.0.0.1", smtp_port=free_port())
    rule(engine, team)
    report = passes.robot_pass(engine, settings, now=at(3 * DAY))
    assert report.failed == 12
    runs = _runs(engine)
    assert {r.status for r in runs} == {"failed"} and "e-mail to ana@example.co.id" in runs[0].error
    assert counts(engine)[2] == 12


def _runs(engine):
    with transaction(engine, read_only=True) as session:
        return list(session.exec(select(RobotRun).order_by(RobotRun.id)))


def test_a_reminder_call_rings_the_sellers_phone_through_ami(engine, team, settings, server):
    settings = settings.replace(ami_host=server.host, ami_port=server.port)
    with transaction(engine) as session:
        for deal in team["deals"][1:]:
            deals.close_won(session, team["ana"], deal.id, expected_version=None, now=at(60))
    rule(engine, team, action="call_owner")
    with AmiClient(*server.address, "crm", "secret", events="off", connect_timeout=WAIT,
                   action_timeout=WAIT) as client:
        assert client.wait_connected(WAIT)
        report = robot_scheduler.robot_pass(engine, settings, now=at(3 * DAY),
                                            originate=client.originate)
    assert (report.fired, report.failed) == (1, 0)
    [action] = server.originates
    deal = team["deals"][0]
    assert action["Channel"] == "PJSIP/101" and action["Exten"] == "6281234567890"
    assert action.get_all("Variable") == [f"CRM_DEAL_ID={deal.id}"]
    with transaction(engine, read_only=True) as session:
        entries = [(e.kind, e.body) for e in timeline_of(session, deal)
                   if e.kind in (TimelineKind.ROBOT.value, TimelineKind.CALL.value)]
    assert entries == [("robot", "Proposal waits: ringing Ana's phone"),
                       ("call", "Calling +6281234567890 from ext 101"),
                       ("robot", "Reminder call: PJSIP/101 rings, then +6281234567890")]
    assert [r.status for r in _runs(engine)] == ["done"]


def test_without_ami_a_reminder_call_fails_with_the_reason(engine, team, settings):
    rule(engine, team, action="call_owner")
    report = passes.robot_pass(engine, settings, now=at(3 * DAY))
    assert report.failed == 12
    assert "No AMI host is configured" in _runs(engine)[0].error


# --- the clock --------------------------------------------------------------------------------


def test_the_scheduler_runs_a_pass_as_soon_as_it_starts(engine, team, settings):
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED

    rule(engine, team)
    scheduler = RobotScheduler(engine, settings.replace(robot_pass_seconds=3600,
                                                        robot_trigger_seconds=3600))
    done = threading.Event()
    outcomes = []

    def listen(event):
        if event.job_id == "robot-pass":
            outcomes.append(event.exception)
            done.set()

    scheduler.scheduler.add_listener(listen, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()
    try:
        assert done.wait(30)
    finally:
        scheduler.stop()
    assert outcomes == [None]
    assert counts(engine)[0] == 12  # the deals were due by the real clock long ago


# --- command line -----------------------------------------------------------------------------


def test_a_head_manages_robots_from_the_command_line(engine, team, capsys):
    url = engine.url.render_as_string(hide_password=False)
    stage_id = team["stages"]["Commercial proposal"].id

    def run(*argv):
        code = cli.main(["--database-url", url, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("robot", "add", str(stage_id), "--name", "Proposal waits",
                         "--condition", "time_in_stage", "--when", "business_days=2",
                         "--action", "move_to_stage", "--do", "stage=Document coordination")
    assert code == 0, err
    assert "Added robot #1 “Proposal waits” on Commercial proposal" in out
    code, out, _ = run("robot", "list")
    assert "business_days=2" in out and "stage_id=" in out and "yes" in out
    assert run("robot", "disable", "1")[1].strip() == "Robot #1 “Proposal waits” is off."
    assert run("robot", "enable", "1")[1].strip() == "Robot #1 “Proposal waits” is on."
    code, _, err = run("robot", "add", str(stage_id), "--name", "x", "--condition", "nope",
                       "--action", "notify_owner")
    assert code == 1 and "Unknown condition “nope”" in err
    code, _, err = run("robot", "add", str(stage_id), "--name", "x", "--condition",
                       "time_in_stage", "--when", "hours", "--action", "notify_owner")
    assert code == 1 and "--when takes KEY=VALUE" in err
    assert run("robot", "runs")[1].strip() == "No robot runs yet."
    assert "Deleted robot #1" in run("robot", "delete", "1")[1]
    assert "No robots yet" in run("robot", "list")[1]


def test_the_command_line_takes_and_shows_robot_amounts_in_major_units(engine, team, capsys):
    """Rupiah as people write them (either way), kept as every amount is: in minor units."""
    url = engine.url.render_as_string(hide_password=False)
    stage_id = team["stages"]["Commercial proposal"].id

    def run(*argv):
        code = cli.main(["--database-url", url, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, _, err = run("robot", "add", str(stage_id), "--name", "Big deal", "--condition",
                       "amount", "--when", "min_amount=2.500.000", "--when",
                       "max_amount=10,000,000", "--action", "notify_owner")
    assert code == 0, err
    with transaction(engine, read_only=True) as session:
        [rule] = session.exec(select(RobotRule)).all()
        assert rule.condition_params == {"min_amount": 250_000_000, "max_amount": 1_000_000_000}
    listed = run("robot", "list")[1]
    assert "min_amount=Rp2.500.000" in listed and "max_amount=Rp10.000.000" in listed
    code, _, err = run("robot", "add", str(stage_id), "--name", "x", "--condition", "amount",
                       "--when", "min_amount=lots", "--action", "notify_owner")
    assert code == 1 and "“lots” is not an amount." in err


# --- the working clock and its settings ------------------------------------------------------


def test_working_clock_settings_are_read_with_the_other_settings():
    settings = load_settings(environ={"PBX_CRM_WORKING_HOURS": "08:30-17:00",
                                      "PBX_CRM_WORKING_DAYS": "sun-thu"})
    assert settings.working_hours == (time(8, 30), time(17))
    assert settings.working_days == parse_working_days("sun,mon,tue,wed,thu")
    for name, value, reason in (("WORKING_HOURS", "18:00-09:00", "end before they start"),
                                ("WORKING_HOURS", "nine to five", "such as 09:00-18:00"),
                                ("WORKING_DAYS", "mon-funday", "such as mon-fri")):
        with pytest.raises(ConfigError, match=reason):
            load_settings(environ={f"PBX_CRM_{name}": value})


def test_business_time_follows_daylight_saving_in_the_company_zone():
    """Berlin moves its clocks on 31 March 2024: working hours stay 09:00-18:00 local."""
    clock = WorkingClock(time(9), time(18), parse_working_days("mon-fri"), "Europe/Berlin")
    friday_1700 = datetime(2024, 3, 29, 16, 0, tzinfo=UTC)  # CET, UTC+1
    monday_1000 = datetime(2024, 4, 1, 8, 0, tzinfo=UTC)  # CEST, UTC+2
    assert clock.working_time(friday_1700, monday_1000) == timedelta(hours=2)
    assert clock.cutoff(monday_1000, timedelta(hours=2)) == friday_1700
