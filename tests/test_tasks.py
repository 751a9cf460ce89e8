"""The Tasks module on both databases: a seller's day with a customer who calls and calls.

Siti rings Ana's deal three times while Ana is busy: one "Call back" task waits for Ana,
counting the three calls; it closes by itself once Siti is reached, whether she rings again
and Ana answers or Ana calls her back. Ana's Tasks page groups her tasks by her day in
Jakarta; Hana, the head, sees the team's. When a task falls due Ana is told once, however
many schedulers run. Times are fixed (``at(minutes)``, Monday 09:00 UTC = 16:00 in Jakarta).
"""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from factories import (
    ADMIN,
    at,
    make_contact,
    make_deal,
    make_pipeline,
    make_user,
    timeline_of,
)
from sqlmodel import select

from pbx_crm.db import transaction
from pbx_crm.errors import Forbidden
from pbx_crm.funnel import calls, deals, task_list, tasks
from pbx_crm.models import Deal, Event, Notification, Task
from pbx_crm.people import users
from pbx_crm.robots import task_reminders
from pbx_crm.rules.phones import ExtensionPlan, classify_caller

JAKARTA = ZoneInfo("Asia/Jakarta")

PLAN = ExtensionPlan.parse("100-199")
SITI = "+62 811-2000-3000"
SITI_E164 = "+6281120003000"


@pytest.fixture
def crm(engine):
    """Hana heads Ana (ext 101) and Budi (ext 102); Ana has Siti's deal."""
    with transaction(engine) as session:
        make_pipeline(session)
        hana = make_user(session, "hana", role="head")
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        siti = make_contact(session, name="Siti Rahmawati", phones=(SITI,))
        deal = make_deal(session, ana, title="Office fit-out", contact_id=siti.id, now=at(-60))
    return {"hana": hana, "ana": ana, "budi": budi, "deal": deal.id}


def ring(session, uniqueid, minutes, number=SITI):
    calls.record_inbound_call(session, uniqueid=uniqueid, linkedid=uniqueid,
                              caller=classify_caller(number, region="ID", extensions=PLAN),
                              caller_name="Siti", did="2150001", create_deals=True,
                              region="ID", now=at(minutes))


def missed(session, uniqueid, minutes, number=SITI):
    """A call that rings for a minute; nobody picks up."""
    ring(session, uniqueid, minutes, number)
    return calls.record_hangup(session, uniqueid=uniqueid, dial_status="NOANSWER",
                               hangup_cause=19, now=at(minutes + 1))


def callbacks(session, deal_id):
    return list(session.exec(select(Task).where(Task.deal_id == deal_id, Task.kind == "callback")
                             .order_by(Task.id)))


# --- one callback task per deal ---------------------------------------------------------------


def test_three_missed_calls_leave_one_callback_task_that_counts_them(engine, crm):
    with transaction(engine) as session:
        first = missed(session, "1.1", 0)
        missed(session, "1.2", 5)
        third = missed(session, "1.3", 30)

    with transaction(engine, read_only=True) as session:
        task, = callbacks(session, crm["deal"])
    assert (task.assignee_id, task.done_at, task.missed_calls) == (crm["ana"].user_id, None, 3)
    assert task.title == f"Call back {SITI_E164} (3 missed calls)"
    assert (task.phone, task.call_id, task.last_missed_at) == (SITI_E164, third.id, at(31))
    # Due a quarter of an hour after the first call, however many came after it.
    assert task.due_at == first.ended_at + tasks.CALLBACK_DUE


def test_two_hangups_of_one_customer_recorded_at_once_leave_one_task(engine, crm):
    with transaction(engine) as session:
        ring(session, "2.1", 0)
        ring(session, "2.2", 0)
    second = threading.Thread(target=lambda: _hang_up(engine, "2.2"))
    with transaction(engine) as session:
        calls.record_hangup(session, uniqueid="2.1", dial_status="NOANSWER", hangup_cause=19,
                            now=at(1))
        # The second hangup is recorded while the first has not committed: it waits for it.
        second.start()
    second.join(timeout=30)

    with transaction(engine, read_only=True) as session:
        task, = callbacks(session, crm["deal"])
    assert task.missed_calls == 2


def _hang_up(engine, uniqueid):
    with transaction(engine) as session:
        calls.record_hangup(session, uniqueid=uniqueid, dial_status="CANCEL", hangup_cause=16,
                            now=at(1))


# --- closed once the customer is reached ------------------------------------------------------


def test_an_answered_call_from_the_customer_closes_the_callback_on_the_timeline(engine, crm):
    with transaction(engine) as session:
        missed(session, "3.1", 0)
        missed(session, "3.2", 10)
        ring(session, "3.3", 20)
        calls.record_answer(session, uniqueid="3.3", extension="101", now=at(20) + timedelta(
            seconds=8))

    with transaction(engine, read_only=True) as session:
        task, = callbacks(session, crm["deal"])
        deal = session.get(Deal, crm["deal"])
        done = [e for e in timeline_of(session, deal) if e.kind == "task"]
    assert task.done_at == at(20) + timedelta(seconds=8) and task.done_by_id is None
    done_line, = done
    assert done_line.body == f"Done: Call back {SITI_E164} (2 missed calls)"
    assert (done_line.author_id, done_line.data["task_id"]) == (None, task.id)
    assert done_line.call_id is not None

    # Siti rings again later and nobody answers: a new callback task, one open again.
    with transaction(engine) as session:
        missed(session, "3.4", 60)
        open_ = [t for t in callbacks(session, crm["deal"]) if t.done_at is None]
    assert [t.missed_calls for t in open_] == [1]


def test_a_call_back_the_customer_answers_closes_it_and_one_they_miss_does_not(engine, crm):
    dial = classify_caller("081120003000", region="ID", extensions=PLAN)
    with transaction(engine) as session:
        missed(session, "4.1", 0)
        # Ana clicks to call Siti back: nobody answers.
        calls.record_outbound_call(session, uniqueid="4.2", linkedid="4.2", extension="101",
                                   dialed=dial, clicked_deal_id=crm["deal"], now=at(10))
        calls.record_hangup(session, uniqueid="4.2", dial_status="NOANSWER", hangup_cause=19,
                            now=at(11))
        assert callbacks(session, crm["deal"])[0].done_at is None
        # She tries again; Siti answers and they talk for a minute.
        calls.record_outbound_call(session, uniqueid="4.3", linkedid="4.3", extension="101",
                                   dialed=dial, clicked_deal_id=crm["deal"], now=at(30))
        calls.record_hangup(session, uniqueid="4.3", dial_status="ANSWER", hangup_cause=16,
                            answered_seconds=60, now=at(32))

    with transaction(engine, read_only=True) as session:
        task, = callbacks(session, crm["deal"])
    assert task.done_at == at(32)


def test_a_new_callers_callback_waits_in_unsorted_and_counts_their_calls(engine, crm):
    stranger = "+62 857-1111-2222"
    with transaction(engine) as session:
        first = missed(session, "5.1", 0, stranger)
        missed(session, "5.2", 3, stranger)
        task, = callbacks(session, first.deal_id)
    assert (task.assignee_id, task.missed_calls, task.phone) == (None, 2, "+6285711112222")


# --- the Tasks page: overdue, today, upcoming, done ---------------------------------------------


def titles(lines):
    return [line.task.title for line in lines]


def test_tasks_fall_into_overdue_today_and_upcoming_by_the_users_day_in_jakarta(engine, crm):
    ana, deal = crm["ana"], crm["deal"]
    late_evening = at(7 * 60 + 30)  # 16:30 UTC, 23:30 in Jakarta
    with transaction(engine) as session:
        for title, due in (("Send the offer", at(7 * 60)),  # 23:00 in Jakarta
                           ("Confirm the meeting", at(7 * 60 + 45)),  # 23:45
                           ("Call the architect", at(8 * 60 + 15)),  # 00:15, Tuesday
                           ("Visit the site", at(30 * 60)),
                           ("Some day: a reference", None)):
            tasks.add_task(session, ana, deal, title=title, due_at=due, now=at(0))
        brochure = tasks.add_task(session, ana, deal, title="Print the brochure", now=at(0))
        tasks.complete_task(session, ana, brochure.id, now=at(6 * 60))

    with transaction(engine, read_only=True) as session:
        jakarta = task_list.task_groups(session, ana, zone=JAKARTA, now=late_evening)
        utc = task_list.task_groups(session, ana, zone=ZoneInfo("UTC"), now=late_evening)
    assert titles(jakarta.overdue) == ["Send the offer"]
    assert titles(jakarta.today) == ["Confirm the meeting"]
    assert titles(jakarta.upcoming) == ["Call the architect", "Visit the site",
                                        "Some day: a reference"]
    assert titles(jakarta.done) == ["Print the brochure"]
    assert jakarta.overdue[0].overdue(late_evening) and jakarta.open_count == 5
    # In UTC the architect's call (17:15) is still Monday's: the zone decides.
    assert titles(utc.today) == ["Confirm the meeting", "Call the architect"]


def test_a_seller_sees_her_deals_and_the_unsorted_queue_a_head_sees_the_team(engine, crm):
    ana, budi, hana = crm["ana"], crm["budi"], crm["hana"]
    with transaction(engine) as session:
        budis = make_deal(session, budi, title="ERP rollout", now=at(0))
        tasks.add_task(session, budi, budis.id, title="Demo the ERP", due_at=at(10), now=at(0))
        tasks.add_task(session, ana, crm["deal"], title="Send the offer", due_at=at(20),
                       now=at(0))
        missed(session, "6.1", 0, "+62 857-1111-2222")  # a stranger: Unsorted, nobody's

    def seen(actor, **kw):
        with transaction(engine, read_only=True) as session:
            groups = task_list.task_groups(session, actor, zone=JAKARTA, now=at(60), **kw)
        return sorted(titles(groups.overdue))

    unsorted_callback = "Call back +6285711112222 (missed call)"
    assert seen(ana) == [unsorted_callback, "Send the offer"]
    assert seen(budi) == [unsorted_callback, "Demo the ERP"]
    assert seen(hana) == [unsorted_callback, "Demo the ERP", "Send the offer"]
    assert seen(hana, owner_id=budi.user_id) == ["Demo the ERP"]
    with transaction(engine, read_only=True) as session:
        assert task_list.overdue_per_seller(session, now=at(60)) == {
            ana.user_id: 1, budi.user_id: 1}
    # Ana may not finish Budi's task.
    with transaction(engine) as session, pytest.raises(Forbidden):
        demo = session.exec(select(Task).where(Task.title == "Demo the ERP")).one()
        tasks.complete_task(session, ana, demo.id)


# --- a reminder when a task falls due -------------------------------------------------------------


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def mailbox():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield controller.port, inbox
    controller.stop()


def test_a_task_falling_due_reminds_its_owner_once_in_the_crm_the_stream_and_by_mail(
        engine, crm, settings, mailbox):
    port, inbox = mailbox
    settings = settings.replace(smtp_host="127.0.0.1", smtp_port=port,
                                smtp_from="crm@example.co.id")
    ana = crm["ana"]
    with transaction(engine) as session:
        users.set_email(session, ADMIN, ana.user_id, "ana@example.co.id")
        offer = tasks.add_task(session, ana, crm["deal"], title="Send the offer",
                               due_at=at(60), now=at(0))

    assert task_reminders.remind_due_tasks(engine, settings, now=at(59)).reminded == 0
    report = task_reminders.remind_due_tasks(engine, settings, now=at(61))
    assert (report.reminded, report.mailed, report.task_ids) == (1, 1, [offer.id])
    assert task_reminders.remind_due_tasks(engine, settings, now=at(120)).reminded == 0

    with transaction(engine, read_only=True) as session:
        notice, = session.exec(select(Notification)).all()
        event, = session.exec(select(Event).where(Event.kind == "task_due")).all()
        assert session.get(Task, offer.id).reminded_at == at(61)
    assert (notice.user_id, notice.kind, notice.task_id, notice.deal_id) == (
        ana.user_id, "task_due", offer.id, crm["deal"])
    assert (event.target_user_id, event.payload["task_id"]) == (ana.user_id, offer.id)
    mail, = inbox.messages
    assert mail.rcpt_tos == ["ana@example.co.id"]
    text = mail.content.decode()
    assert "Subject: [pbx-crm] Task due: Send the offer" in text
    assert "Due: 2024-05-06 17:00 (Asia/Jakarta)" in text  # 10:00 UTC, in Ana's zone


def test_two_schedulers_remind_each_task_once(engine, crm, settings):
    with transaction(engine) as session:
        for n in range(3):
            tasks.add_task(session, crm["ana"], crm["deal"], title=f"Task {n}", due_at=at(n),
                           now=at(0))
    other = {}
    second = threading.Thread(target=lambda: other.update(
        report=task_reminders.remind_due_tasks(engine, settings, now=at(10))))
    with transaction(engine) as session:
        claimed, _ = task_reminders.remind_batch(session, settings, now=at(10))
        # The other scheduler's pass runs while this one holds its batch uncommitted: on
        # PostgreSQL it skips the locked tasks, on SQLite it waits for the write lock.
        second.start()
    second.join(timeout=30)

    assert len(claimed) == 3 and other["report"].reminded == 0
    with transaction(engine, read_only=True) as session:
        assert len(session.exec(select(Notification)).all()) == 3


def test_an_unsorted_task_is_reminded_once_a_seller_takes_the_deal(engine, crm, settings):
    with transaction(engine) as session:
        call = missed(session, "7.1", 0, "+62 857-1111-2222")
    assert task_reminders.remind_due_tasks(engine, settings, now=at(30)).reminded == 0
    with transaction(engine) as session:
        deals.take_deal(session, crm["budi"], call.deal_id, now=at(40))
    assert task_reminders.remind_due_tasks(engine, settings, now=at(41)).reminded == 1
    with transaction(engine, read_only=True) as session:
        notice, = session.exec(select(Notification)).all()
    assert notice.user_id == crm["budi"].user_id
