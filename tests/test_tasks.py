"""The Tasks module on both databases: a seller's day with a customer who calls and calls.

Siti rings Ana's deal three times while Ana is busy: one "Call back" task waits for Ana,
counting the three calls; it closes by itself once Siti is reached, whether she rings again
and Ana answers or Ana calls her back. Times are fixed (``at(minutes)``, Monday 09:00 UTC).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from factories import at, make_contact, make_deal, make_pipeline, make_user, timeline_of
from sqlmodel import select

from pbx_crm.db import transaction
from pbx_crm.funnel import calls, tasks
from pbx_crm.models import Deal, Task
from pbx_crm.rules.phones import ExtensionPlan, classify_caller

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
