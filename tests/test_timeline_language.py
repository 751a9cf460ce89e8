"""One language at a time: what the services wrote for later (a deal's timeline, a robot's
notice, a reminder e-mail) reads in the reader's language, on both databases.

Ana sells in Indonesian. Her customer Siti calls and Ana answers; Siti calls again and
nobody picks up; Ana moves the deal on, finishes a task, and a robot reminds her that the
proposal waits, which she answers. Her deal page says every line in Indonesian, as the
catalog words it; the same page in English says what the stored bodies say, and the export
keeps those English bodies. Lines written before words were kept show their body.
"""

from __future__ import annotations

import html
import json
import re
import socket
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from factories import (
    ADMIN, at, make_contact, make_deal, make_pipeline, make_unsorted_deal, make_user,
    stages_by_name,
)
from sqlmodel import select
from webtools import signed_in

from pbx_crm.db import transaction
from pbx_crm.enums import TimelineKind
from pbx_crm.funnel import calls, deals, tasks
from pbx_crm.models import Notification, RobotRun, TimelineEntry
from pbx_crm.people import users
from pbx_crm.people.language import Words, catalog
from pbx_crm.robots import nudges, passes, task_reminders
from pbx_crm.robots import rules as robot_rules
from pbx_crm.rules.phones import ExtensionPlan, classify_caller

SITI = "+6281120003000"
DAY = 24 * 60
INDONESIAN = catalog("id")


def say(template: str, **values) -> str:
    """``template`` as the Indonesian catalog words it, values filled in."""
    text = INDONESIAN.gettext(template)
    return text % values if values else text


def call(session, uniqueid: str, *, minutes: int, answered_by: str | None, talk: int = 0):
    caller = classify_caller(SITI, region="ID", extensions=ExtensionPlan.parse("100-199"))
    calls.record_inbound_call(session, uniqueid=uniqueid, linkedid=uniqueid, caller=caller,
                              caller_name="Siti", did="2150001", create_deals=True,
                              region="ID", now=at(minutes))
    if answered_by:
        calls.record_answer(session, uniqueid=uniqueid, extension=answered_by,
                            now=at(minutes))
    calls.record_hangup(session, uniqueid=uniqueid,
                        dial_status="ANSWER" if answered_by else "NOANSWER", hangup_cause=16,
                        answered_seconds=talk if answered_by else None,
                        now=at(minutes + 1))


@pytest.fixture
def ana_s_day(engine, settings):
    """Ana's deal "Office fit-out" after the day above; Ana reads Indonesian."""
    with transaction(engine) as session:
        stages = stages_by_name(session, make_pipeline(session))
        ana = make_user(session, "ana", extensions=["101"])
        make_user(session, "hana", role="head")
        users.set_language(session, ana, ana.user_id, "id")
        siti = make_contact(session, name="Siti Rahmawati", phones=(SITI,))
        deal = make_deal(session, ana, title="Office fit-out", contact_id=siti.id,
                         stage_id=stages["Opportunity"].id, now=at(0))
    with transaction(engine) as session:
        call(session, "1.1", minutes=5, answered_by="101", talk=42)
        call(session, "1.2", minutes=20, answered_by=None)
        deals.move_deal(session, ana, deal.id, to_stage_id=stages["Commercial proposal"].id,
                        expected_version=None, now=at(30))
        task = tasks.add_task(session, ana, deal.id, title="Send the offer", now=at(31))
        tasks.complete_task(session, ana, task.id, now=at(40))
    with transaction(engine) as session:
        robot_rules.create_rule(session, ADMIN, stage_id=stages["Commercial proposal"].id,
                                name="Proposal waits", condition="time_in_stage",
                                condition_params={"hours": 48}, action="notify_owner",
                                action_params={"message": "Call Siti about the offer"})
    assert passes.robot_pass(engine, settings, now=at(3 * DAY)).fired == 1
    with transaction(engine) as session:
        run = session.exec(select(RobotRun)).one()
        nudges.answer_nudge(session, ana, run.id, answer="moved_on", now=at(3 * DAY + 5))
    return {"deal": deal.id, "ana": ana, "stages": stages}


def timeline(page: str) -> list[str]:
    """The deal page's timeline lines, as read: each line's who, call and body."""
    found = re.search(r'<ol class="timeline">(.*?)</ol>', page, re.S)
    assert found, "no timeline"
    items = re.findall(r"<li[^>]*>(.*?)</li>", found.group(1), re.S)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", item)).split()) for item in items]


def test_an_indonesian_seller_reads_her_deals_day_in_indonesian(web, ana_s_day):
    page = signed_in(web, "ana").get(f"/deals/{ana_s_day['deal']}").text
    lines = timeline(page)
    answered = say("Inbound call %(outcome)s: %(number)s", outcome=say("answered"),
                   number=SITI)
    expected = [
        say("Nudge answered: %(answer)s", answer=say("moved on")),
        "Proposal waits: " + say("reminded %(name)s", name="Ana"),
        say("Done: %(title)s", title="Send the offer"),
        "Opportunity → Commercial proposal",
        say("Inbound call %(outcome)s: %(number)s", outcome=say("missed"), number=SITI),
        say("%(call)s, %(seconds)s s", call=answered, seconds=42),
        say("Deal created in %(stage)s", stage="Opportunity"),
    ]
    assert len(lines) == len(expected)
    for line, body in zip(lines, expected):
        assert line.endswith(body), (line, body)
    # The call lines say how each call went in the catalog's words, not the stored codes.
    assert f'{say("inbound call")} · {say("answered")} · ' in lines[-2]
    english = {"Inbound call", "answered", "missed", "Done:", "Nudge answered", "reminded",
               "Deal created", "moved on"}
    assert [word for word in english if word in " ".join(lines)] == []


def test_the_same_page_in_english_reads_as_the_stored_bodies_and_the_export_keeps_them(
        web, engine, ana_s_day):
    ana = signed_in(web, "ana")
    assert ana.post("/settings/language", {"language": "en"}).status == 303
    lines = timeline(ana.get(f"/deals/{ana_s_day['deal']}").text)
    with transaction(engine, read_only=True) as session:
        bodies = [entry.body for entry in session.exec(
            select(TimelineEntry).where(TimelineEntry.deal_id == ana_s_day["deal"])
            .order_by(TimelineEntry.created_at.desc(), TimelineEntry.id.desc()))]
    assert bodies == [
        "Nudge answered: moved on", "Proposal waits: reminded Ana", "Done: Send the offer",
        "Opportunity → Commercial proposal", f"Inbound call missed: {SITI}",
        f"Inbound call answered: {SITI}, 42 s", "Deal created in Opportunity"]
    assert [line.endswith(body) for line, body in zip(lines, bodies)] == [True] * 7
    assert "inbound call · answered · " in lines[-2]

    assert ana.post("/settings/language", {"language": "id"}).status == 303
    exported = json.loads(ana.get(f"/deals/{ana_s_day['deal']}/export").text)
    assert [line["body"] for line in exported["timeline"]] == bodies


def test_a_line_written_before_words_were_kept_shows_its_body(web, engine, ana_s_day):
    with transaction(engine) as session:
        session.add(TimelineEntry(deal_id=ana_s_day["deal"], kind=TimelineKind.NOTE.value,
                                  created_at=at(4 * DAY), body="Called from the old PBX",
                                  data={"direction": "inbound"}))
        session.add(TimelineEntry(deal_id=ana_s_day["deal"], kind=TimelineKind.ROBOT.value,
                                  created_at=at(4 * DAY + 1), body="Damaged by hand",
                                  data={"say": {"template": "%(gone)s",
                                                "values": {"other": 1}}}))
    lines = timeline(signed_in(web, "ana").get(f"/deals/{ana_s_day['deal']}").text)
    assert lines[0].endswith("Damaged by hand") and lines[1].endswith("Called from the old PBX")


def test_the_robots_notice_reads_in_the_sellers_language(web, ana_s_day):
    page = html.unescape(signed_in(web, "ana").get("/notifications").text)
    reason = say("in %(stage)s for %(count)s %(unit)s", stage="Commercial proposal", count=48,
                 unit=say("hours"))
    assert say("Deal #%(deal_id)s “%(title)s”: %(reason)s. %(message)s Moved on, lower its "
               "priority, or snooze?", deal_id=ana_s_day["deal"], title="Office fit-out",
               reason=reason, message="Call Siti about the offer") in page
    assert "Moved on, lower its priority" not in page


def test_a_head_reads_the_title_the_pbx_gave_a_waiting_callers_deal_in_her_language(
        web, engine, settings):
    """A caller waits in Unsorted, in the deal the PBX opened and titled after them, and a
    robot tells the heads. Hana reads Indonesian: her notice names the deal as the pages do,
    in the catalog's words, while the stored body (the export's) keeps the PBX's title."""
    with transaction(engine) as session:
        stages = stages_by_name(session, make_pipeline(session))
        hana = make_user(session, "hana", role="head")
        users.set_language(session, hana, hana.user_id, "id")
        deal = make_unsorted_deal(session, title="Call from TOKO SUMBER REJEKI", now=at(0))
        robot_rules.create_rule(session, ADMIN, stage_id=stages["Unsorted"].id,
                                name="Caller waiting", condition="unsorted_not_taken",
                                condition_params={"minutes": 30}, action="notify_heads")
    assert passes.robot_pass(engine, settings, now=at(45)).fired == 1

    page = html.unescape(signed_in(web, "hana").get("/notifications").text)
    reason = say("waiting in Unsorted for %(minutes)s minutes, nobody took it", minutes=30)
    assert say("Deal #%(deal_id)s “%(title)s”: %(reason)s. %(message)s", deal_id=deal.id,
               title=say("Call from %(number)s", number="TOKO SUMBER REJEKI"),
               reason=reason, message="Caller waiting") in page
    assert "Call from" not in page
    with transaction(engine, read_only=True) as session:
        [notice] = session.exec(select(Notification)).all()
    assert notice.body.startswith(f"Deal #{deal.id} “Call from TOKO SUMBER REJEKI”: ")


def test_the_unsorted_stage_is_named_in_the_readers_words():
    words = Words("Deal created in %(stage)s", stage=deals.pipelines.stage_word(
        type("Stage", (), {"is_unsorted": True, "name": "Unsorted"})()))
    assert words.english == "Deal created in Unsorted"
    kept = Words.from_kept(json.loads(json.dumps(words.kept())))
    assert kept.said(INDONESIAN.gettext) == say("Deal created in %(stage)s",
                                                stage=say("Unsorted"))


# --- e-mail, in the recipient's language ------------------------------------------------------


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_settings(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield settings.replace(smtp_host="127.0.0.1", smtp_port=port,
                           smtp_from="crm@example.co.id"), inbox
    controller.stop()


def test_each_seller_s_reminder_mail_is_in_their_own_language(engine, smtp_settings):
    settings, inbox = smtp_settings
    with transaction(engine) as session:
        make_pipeline(session)
        for login, language in (("ana", "id"), ("budi", "en")):
            seller = make_user(session, login)
            users.set_language(session, seller, seller.user_id, language)
            users.set_email(session, seller, seller.user_id, f"{login}@example.co.id")
            deal = make_deal(session, seller, title=f"{login.title()}'s fit-out", now=at(0))
            tasks.add_task(session, seller, deal.id, title="Send the offer", due_at=at(60),
                           now=at(0))
    report = task_reminders.remind_due_tasks(engine, settings, now=at(61))
    assert (report.reminded, report.mailed) == (2, 2)
    mails = {mail["To"].addresses[0].username: mail for mail in inbox.messages}
    indonesian, english = mails["ana"], mails["budi"]
    assert indonesian["Subject"] == "[pbx-crm] " + say("Task due: %(title)s",
                                                         title="Send the offer")
    text = indonesian.get_content()
    assert "Mark it done" not in text and "Due:" not in text
    assert "Tandai selesai di halaman Tugas" in text and "Tenggat:" in text
    assert english["Subject"] == "[pbx-crm] Task due: Send the offer"
    assert "Mark it done on the Tasks page" in english.get_content()


def test_a_robots_mail_to_an_indonesian_seller_is_in_indonesian(engine, smtp_settings,
                                                                 ana_s_day):
    settings, inbox = smtp_settings
    with transaction(engine) as session:
        users.set_email(session, ana_s_day["ana"], ana_s_day["ana"].user_id,
                        "ana@example.co.id")
        robot_rules.create_rule(session, ADMIN,
                                stage_id=ana_s_day["stages"]["Commercial proposal"].id,
                                name="Still waiting", condition="time_in_stage",
                                condition_params={"days": 4}, action="notify_owner",
                                action_params={"message": "Ring Siti"})
    assert passes.robot_pass(engine, settings, now=at(5 * DAY)).fired == 1
    [mail] = inbox.messages
    assert mail["Subject"] == "[pbx-crm] Ring Siti"  # the head's own words, as written
    text = mail.get_content()
    assert say("in %(stage)s for %(count)s %(unit)s", stage="Commercial proposal", count=4,
               unit=say("days")) in text
    assert "snooze" not in text and "Moved on" not in text

