"""Two people acting on the same card at the same moment, on real threads and transactions.

Each contender runs in its own thread and its own ``transaction(engine)``, and a barrier
releases them together. Every race is run on twenty different deals, so both orders of arrival
(and, on PostgreSQL, truly overlapping transactions) get their turn.
"""

from __future__ import annotations

import threading

import pytest
from sqlmodel import func, select

from factories import ADMIN, make_deal, make_pipeline, make_unsorted_deal, make_user, stage_named
from pbx_crm.funnel import deals
from pbx_crm.db import transaction
from pbx_crm.errors import AlreadyTaken, StaleVersion
from pbx_crm.models import AuditEntry, Deal, StageHistory

ROUNDS = 20


def race(engine, *contenders):
    """Run each ``contender(session)`` in a thread and transaction of its own, all released
    at once; return what each returned or raised, in order."""
    barrier = threading.Barrier(len(contenders))
    outcomes: list = [None] * len(contenders)

    def run(index, contender):
        barrier.wait()
        try:
            with transaction(engine) as session:
                outcomes[index] = contender(session)
        except Exception as error:  # noqa: BLE001 - the outcome is what the test checks
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a contender never finished"
    return outcomes


@pytest.fixture
def sales(engine):
    """The Sales funnel, two sellers and a head, committed before any race starts."""
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        people = {login: make_user(session, login, role=role)
                  for login, role in (("ana", "seller"), ("budi", "seller"), ("hana", "head"))}
        stages = {name: stage_named(session, pipeline, name).id
                  for name in ("Unsorted", "Opportunity", "Commercial proposal", "Closing")}
    return people, stages


def test_two_sellers_taking_the_same_unsorted_deal_get_one_owner_and_one_refusal(
        engine, sales):
    people, stages = sales
    ana, budi = people["ana"], people["budi"]
    with transaction(engine) as session:
        deal_ids = [make_unsorted_deal(session, title=f"Caller {n}").id for n in range(ROUNDS)]

    winners = []
    for deal_id in deal_ids:
        outcomes = race(engine,
                        lambda s, deal_id=deal_id: deals.take_deal(s, ana, deal_id).owner_id,
                        lambda s, deal_id=deal_id: deals.take_deal(s, budi, deal_id).owner_id)
        [owner_id] = [o for o in outcomes if isinstance(o, int)]
        [refusal] = [o for o in outcomes if not isinstance(o, int)]
        assert isinstance(refusal, AlreadyTaken), refusal
        winner = "Ana" if owner_id == ana.user_id else "Budi"
        assert f"taken by {winner}" in refusal.message
        winners.append(owner_id)

    with transaction(engine, read_only=True) as session:
        for deal_id, owner_id in zip(deal_ids, winners, strict=True):
            deal = session.get(Deal, deal_id)
            assert (deal.owner_id, deal.stage_id, deal.version) == (
                owner_id, stages["Opportunity"], 2)
            takes = session.exec(select(func.count()).select_from(StageHistory).where(
                StageHistory.deal_id == deal_id,
                StageHistory.from_stage_id == stages["Unsorted"])).one()
            audited = session.exec(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.entity_id == deal_id, AuditEntry.action == "take")).one()
            assert (takes, audited) == (1, 1)


def test_two_moves_made_on_the_same_version_let_one_through_and_refuse_the_other(
        engine, sales):
    people, stages = sales
    ana, hana = people["ana"], people["hana"]
    with transaction(engine) as session:
        deal_ids = [make_deal(session, ana, title=f"Deal {n}").id for n in range(ROUNDS)]
    targets = {"ana": stages["Commercial proposal"], "hana": stages["Closing"]}
    stage_names = {stages["Commercial proposal"]: "Commercial proposal",
                   stages["Closing"]: "Closing"}

    landed = []
    for deal_id in deal_ids:
        outcomes = race(
            engine,
            lambda s, deal_id=deal_id: deals.move_deal(
                s, ana, deal_id, to_stage_id=targets["ana"], expected_version=1).stage_id,
            lambda s, deal_id=deal_id: deals.move_deal(
                s, hana, deal_id, to_stage_id=targets["hana"], expected_version=1).stage_id)
        [stage_id] = [o for o in outcomes if isinstance(o, int)]
        [refusal] = [o for o in outcomes if not isinstance(o, int)]
        assert isinstance(refusal, StaleVersion), refusal
        # The loser is told where the deal is now, in words (no version numbers).
        assert f"it is now in “{stage_names[stage_id]}”" in refusal.message
        assert "version" not in refusal.message
        landed.append(stage_id)

    with transaction(engine, read_only=True) as session:
        for deal_id, stage_id in zip(deal_ids, landed, strict=True):
            deal = session.get(Deal, deal_id)
            assert (deal.stage_id, deal.version) == (stage_id, 2)
            moves = deals.history_of(session, ADMIN, deal_id)[1:]
            assert [(m.from_stage_id, m.to_stage_id) for m in moves] == [
                (stages["Opportunity"], stage_id)]
