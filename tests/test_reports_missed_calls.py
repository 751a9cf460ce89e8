"""Missed calls and their call backs, kept as the calls are recorded, equal a recount.

Calls by stage count the missed calls from the daily call counts (``report_call_days.missed``,
kept where a call ends missed and moved with the deal to its new owner); the callback report
reads each missed call's call back from the call (``calls.called_back_at``, kept as calls
arrive, in any order). Both must say what a recount from the calls says: a rebuild of the
daily counts, and the first later call out or answered call of the deal, looked for.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from factories import make_contact, make_pipeline, make_user, stages_by_name
from sqlalchemy import func, or_, select
from test_reports_histograms import (
    BASE, JAKARTA, PROPOSAL, caller, generated_funnel, report,
)

from pbx_crm.db import transaction
from pbx_crm.funnel import call_backs, calls, deals
from pbx_crm.models import Call
from pbx_crm.reporting import days_rebuild

PHONE = "+62 812-7777-0001"
table = Call.__table__


def call_backs_looked_for(session) -> dict:
    """Every inbound call's call back as the calls give it: the deal's first later call that
    is a call out or an answered call (what the callback report looked for before)."""
    later = table.alias("later")
    first_later = (select(func.min(later.c.ringing_at))
                   .where(later.c.deal_id == table.c.deal_id,
                          later.c.ringing_at > table.c.ringing_at,
                          or_(later.c.direction == "outbound",
                              later.c.disposition == "answered"))
                   .scalar_subquery())
    return dict(session.execute(select(table.c.uniqueid, first_later)
                                .where(table.c.direction == "inbound",
                                       table.c.deal_id.is_not(None))).all())


def call_backs_kept(session) -> dict:
    return dict(session.execute(select(table.c.uniqueid, table.c.called_back_at)
                                .where(table.c.direction == "inbound",
                                       table.c.deal_id.is_not(None))).all())


class Phones:
    """The PBX's side of a few calls on one customer's deal, each at a moment of its own."""

    def __init__(self, session, deal, seller_extension="101"):
        self.session, self.deal, self.extension = session, deal, seller_extension

    def ring_in(self, key, at):
        calls.record_inbound_call(self.session, uniqueid=key, linkedid=key,
                                  caller=caller(PHONE), caller_name=None, did="2150001",
                                  create_deals=False, region="ID", now=at)

    def hang_up(self, key, at, status):
        calls.record_hangup(self.session, uniqueid=key, dial_status=status, hangup_cause=16,
                            answered_seconds=30, now=at)

    def missed(self, key, at):
        self.ring_in(key, at)
        self.hang_up(key, at + timedelta(seconds=40), "NOANSWER")

    def call_out(self, key, at):
        calls.record_outbound_call(self.session, uniqueid=key, linkedid=key,
                                   extension=self.extension, dialed=caller(PHONE),
                                   clicked_deal_id=self.deal.id, now=at)

    def called_back_at(self, key):
        return self.session.execute(select(table.c.called_back_at)
                                    .where(table.c.uniqueid == key)).scalar_one()


def one_deal(session):
    pipeline = make_pipeline(session)
    head = make_user(session, "hana", role="head")
    ana = make_user(session, "ana", extensions=["101"])
    budi = make_user(session, "budi", extensions=["102"])
    contact = make_contact(session, name="Toko Maju", phones=(PHONE,))
    deal = deals.create_deal(session, ana, title="Toko Maju", contact_id=contact.id,
                             amount_minor=500, now=BASE)
    return pipeline, head, ana, budi, deal


def test_the_kept_missed_calls_and_call_backs_equal_a_recount(session):
    generated_funnel(session)
    session.flush()
    kept, backs = days_rebuild.histogram_totals(session)["missed calls"], call_backs_kept(session)
    assert kept and any(backs.values()) and None in backs.values()
    assert backs == call_backs_looked_for(session)
    days_rebuild.rebuild(session, time_zone=JAKARTA)
    call_backs.fill_call_backs(session)
    assert days_rebuild.histogram_totals(session)["missed calls"] == kept
    assert call_backs_kept(session) == backs


def test_a_missed_call_counts_in_its_stage_then_for_the_deals_new_owner(session):
    pipeline, head, ana, budi, deal = one_deal(session)
    phones = Phones(session, deal)
    stage = stages_by_name(session, pipeline)
    phones.missed("in-1", BASE + timedelta(days=2))
    phones.ring_in("in-2", BASE + timedelta(days=3))
    deals.move_deal(session, head, deal.id, to_stage_id=stage[PROPOSAL].id,
                    expected_version=None, now=BASE + timedelta(days=3, minutes=1))
    # Ended missed after the deal moved on: it rang, and counts, in the first stage.
    phones.hang_up("in-2", BASE + timedelta(days=3, minutes=2), "CANCEL")
    phones.missed("in-3", BASE + timedelta(days=4))
    deals.assign_deal(session, head, deal.id, owner_id=budi.user_id,
                      now=BASE + timedelta(days=5))
    session.flush()

    kept = days_rebuild.histogram_totals(session)["missed calls"]
    assert deals.load_deal(session, deal.id)[0].stage_id == stage[PROPOSAL].id
    per_stage_and_seller = Counter()
    for (_, _, stage_id, seller_id), (missed,) in kept.items():
        per_stage_and_seller[stage_id, seller_id] += missed
    assert per_stage_and_seller == {(stage["Opportunity"].id, budi.user_id): 2,
                                    (stage[PROPOSAL].id, budi.user_id): 1}
    by_stage = {row.name: row.missed for row in report(session, head, pipeline).calls}
    assert (by_stage["Opportunity"], by_stage[PROPOSAL]) == (2, 1)
    assert {row.seller_name: row.missed for row in report(session, head, pipeline).callbacks
            } == {"Budi": 3}
    days_rebuild.rebuild(session, time_zone=JAKARTA)
    assert days_rebuild.histogram_totals(session)["missed calls"] == kept


def test_a_call_back_replayed_out_of_order_still_times_the_missed_call_to_the_first(session):
    pipeline, head, ana, budi, deal = one_deal(session)
    phones = Phones(session, deal)
    day = BASE + timedelta(days=10)
    phones.missed("in-1", day)
    phones.call_out("out-3", day + timedelta(hours=3))
    assert phones.called_back_at("in-1") == day + timedelta(hours=3)
    # The seller's first call back, an hour after the missed call, reaches the CRM late.
    phones.call_out("out-2", day + timedelta(hours=1))
    assert phones.called_back_at("in-1") == day + timedelta(hours=1)

    # A missed call replayed after its call back was recorded finds it as it is written.
    phones.call_out("out-5", day + timedelta(days=1, hours=2))
    phones.missed("in-4", day + timedelta(days=1))
    assert phones.called_back_at("in-4") == day + timedelta(days=1, hours=2)

    # An answered call in calls back once it ends answered, even if it ends after a later
    # call out; a missed one calls back nothing.
    phones.missed("in-6", day + timedelta(days=2))
    phones.ring_in("in-7", day + timedelta(days=2, minutes=30))
    phones.missed("in-8", day + timedelta(days=2, minutes=40))
    phones.call_out("out-9", day + timedelta(days=2, hours=4))
    assert phones.called_back_at("in-6") == day + timedelta(days=2, hours=4)
    phones.hang_up("in-7", day + timedelta(days=2, hours=5), "ANSWER")
    assert phones.called_back_at("in-6") == day + timedelta(days=2, minutes=30)
    assert phones.called_back_at("in-8") == day + timedelta(days=2, hours=4)
    session.flush()
    assert call_backs_kept(session) == call_backs_looked_for(session)

    rows = report(session, head, pipeline, period=(date(2024, 2, 1), date(2024, 3, 1))
                  ).callbacks
    assert [(row.seller_name, row.missed, row.called_back, row.within_target)
            for row in rows] == [("Ana", 4, 4, 1)]
    assert rows[0].median_seconds == (60 * 60 + 2 * 3600) / 2
    assert rows[0].avg_seconds == (3600 + 2 * 3600 + 30 * 60 + 3 * 3600 + 20 * 60) / 4


def test_the_callback_report_is_the_same_read_from_the_kept_call_backs_or_a_refill(session):
    pipeline, head, ana = generated_funnel(session)
    for kw in ({}, {"seller_id": ana.user_id}):
        kept = report(session, head, pipeline, **kw).callbacks
        assert sum(row.missed for row in kept) > sum(row.called_back for row in kept) > 0
        call_backs.fill_call_backs(session)
        assert report(session, head, pipeline, **kw).callbacks == kept


def test_report_rebuild_counts_and_calls_back_the_calls_written_by_hand(engine, pbx_crm_at):
    with transaction(engine) as session:
        _, _, _, _, deal = one_deal(session)
        for key, hours, direction, disposition in (("in-1", 1, "inbound", "missed"),
                                                   ("out-1", 3, "outbound", "answered")):
            session.add(Call(uniqueid=key, linkedid=key, direction=direction,
                             disposition=disposition, ringing_at=BASE + timedelta(hours=hours),
                             deal_id=deal.id))  # as an import past the call writer

    code, out, _ = pbx_crm_at(engine.url.render_as_string(hide_password=False),
                              "--time-zone", JAKARTA, "report", "rebuild")

    assert code == 0 and "the calls' call backs set again" in out
    with transaction(engine, read_only=True) as session:
        assert Phones(session, deal).called_back_at("in-1") == BASE + timedelta(hours=3)
        missed = days_rebuild.histogram_totals(session)["missed calls"]
        assert sum(count for (count,) in missed.values()) == 1
