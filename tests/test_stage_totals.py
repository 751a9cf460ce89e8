"""The board's column totals kept by the deal services: after every kind of change they equal
a recount from the deals, and two moves between the same columns at once never deadlock.
"""

from __future__ import annotations

import threading
import time

import pytest
from factories import at, make_pipeline, make_unsorted_deal, make_user, stages_by_name
from sqlalchemy import event, select, text

from pbx_crm.funnel import board, deals, stage_totals
from pbx_crm.db import transaction
from pbx_crm.errors import StaleVersion
from pbx_crm.models import StageTotal


def kept(session) -> dict:
    session.flush()
    return {(row.pipeline_id, row.stage_id, row.owner_key): (row.deals, row.amount_minor)
            for row in session.exec(select(StageTotal)).scalars() if row.deals}


def recounted(session) -> dict:
    return {(row.pipeline_id, row.stage_id, row.owner_key): (row.deals, row.amount_minor)
            for row in session.execute(stage_totals.counted_from_deals())}


def test_every_kind_of_deal_change_keeps_the_totals_equal_to_a_recount(session):
    pipeline = make_pipeline(session)
    other = make_pipeline(session, name="Rentals")
    stage = stages_by_name(session, pipeline)
    ana, budi = make_user(session, "ana"), make_user(session, "budi")
    hana = make_user(session, "hana", role="head")
    steps = []

    def check(what):
        assert kept(session) == recounted(session), what
        steps.append(what)

    shop = deals.create_deal(session, ana, title="Shop", amount_minor=100, now=at(0))
    check("created by a seller")
    call = make_unsorted_deal(session, amount_minor=70, now=at(1))
    make_unsorted_deal(session, amount_minor=5, now=at(1), pipeline_id=other.id)
    check("created in Unsorted, in two pipelines")
    deals.move_deal(session, ana, shop.id, to_stage_id=stage["Commercial proposal"].id,
                    expected_version=shop.version, now=at(2))
    check("moved")
    deals.take_deal(session, budi, call.id, now=at(3))
    check("taken")
    deals.update_deal(session, budi, call.id, expected_version=None, amount_minor=700,
                      now=at(4))
    check("amount changed")
    deals.assign_deal(session, hana, call.id, owner_id=ana.user_id, now=at(5))
    check("reassigned")
    waiting = make_unsorted_deal(session, amount_minor=30, now=at(6))
    deals.assign_deal(session, hana, waiting.id, owner_id=budi.user_id, now=at(7))
    check("Unsorted deal assigned by a head")
    dragged = make_unsorted_deal(session, amount_minor=40, now=at(8))
    deals.move_deal(session, ana, dragged.id, to_stage_id=stage["Closing"].id,
                    expected_version=None, now=at(9))
    check("dragged out of Unsorted (a take, then a move)")
    deals.close_won(session, ana, shop.id, expected_version=None, now=at(10))
    check("won")
    deals.close_lost(session, budi, waiting.id, reason="too dear", expected_version=None,
                     now=at(11))
    check("lost")
    deals.reopen_deal(session, budi, waiting.id, expected_version=None, now=at(12))
    check("reopened")
    deals.update_deal(session, ana, shop.id, expected_version=None, title="Shop v2",
                      now=at(13))
    check("title changed (no effect on totals)")
    with pytest.raises(StaleVersion):
        deals.move_deal(session, ana, call.id, to_stage_id=stage["Closing"].id,
                        expected_version=1, now=at(14))
    check("a stale move changes nothing")

    # And the board reads them: a head's columns, and a seller's with Unsorted.
    assert board.column_totals(session, hana, pipeline.id) == {
        stage["Opportunity"].id: board.ColumnTotal(stage["Opportunity"].id, 2, 730),
        stage["Closing"].id: board.ColumnTotal(stage["Closing"].id, 1, 40),
        stage["Won"].id: board.ColumnTotal(stage["Won"].id, 1, 100),
    }
    assert board.column_totals(session, budi, pipeline.id) == {
        stage["Opportunity"].id: board.ColumnTotal(stage["Opportunity"].id, 1, 30),
    }
    assert board.column_totals(session, ana, other.id) == {
        stages_by_name(session, other)["Unsorted"].id:
            board.ColumnTotal(stages_by_name(session, other)["Unsorted"].id, 1, 5)}
    assert len(steps) == 13


def test_a_rebuild_repairs_totals_written_around_the_services(session):
    pipeline = make_pipeline(session)
    ana = make_user(session, "ana")
    deal = deals.create_deal(session, ana, title="Shop", amount_minor=100, now=at(0))
    # A bulk import writing deals directly leaves the totals behind ...
    session.execute(text("UPDATE deals SET amount_minor = 900 WHERE id = :id"),
                    {"id": deal.id})
    session.execute(text("DELETE FROM stage_totals"))
    assert kept(session) == {}
    # ... until they are recounted.
    assert stage_totals.rebuild(session, pipeline_id=pipeline.id) == 1
    assert kept(session) == recounted(session) == {
        (pipeline.id, deal.stage_id, ana.user_id): (1, 900)}


def test_a_move_locks_the_totals_rows_in_one_order_whichever_way_it_goes(engine):
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        stage = stages_by_name(session, pipeline)
        ana = make_user(session, "ana")
        deal = deals.create_deal(session, ana, title="Shop", now=at(0),
                                 stage_id=stage["Closing"].id)
    written = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO STAGE_TOTALS"):
            written.append(parameters)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        with transaction(engine) as session:
            # Backwards, from a later column to an earlier one.
            deals.move_deal(session, ana, deal.id, to_stage_id=stage["Opportunity"].id,
                            expected_version=None, now=at(1))
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    stage_ids = [params["stage_id"] if isinstance(params, dict) else params[1]
                 for params in written]
    assert stage_ids == sorted(stage_ids) == sorted([stage["Opportunity"].id,
                                                     stage["Closing"].id])


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_two_moves_across_the_same_columns_at_once_both_go_through(engine):
    """One of Ana's cards goes right while another goes left, in two transactions at once:
    the second waits for the first's totals rows, then both commit."""
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        stage = stages_by_name(session, pipeline)
        ana = make_user(session, "ana")
        right = deals.create_deal(session, ana, title="Right", amount_minor=10, now=at(0),
                                  stage_id=stage["Opportunity"].id)
        left = deals.create_deal(session, ana, title="Left", amount_minor=20, now=at(0),
                                 stage_id=stage["Closing"].id)
    outcome, backend = {}, {}
    started = threading.Event()

    def move_left():
        try:
            with transaction(engine) as other:
                backend["pid"] = other.execute(text("SELECT pg_backend_pid()")).scalar()
                started.set()
                deals.move_deal(other, ana, left.id, to_stage_id=stage["Opportunity"].id,
                                expected_version=None, now=at(2))
            outcome["left"] = "moved"
        except Exception as error:  # reported by the assertion below
            outcome["left"] = error
        finally:
            started.set()

    with transaction(engine) as session:
        deals.move_deal(session, ana, right.id, to_stage_id=stage["Closing"].id,
                        expected_version=None, now=at(1))
        worker = threading.Thread(target=move_left)
        worker.start()
        assert started.wait(10)
        # Hold the first move's row locks until the second is seen waiting on one of them.
        deadline = time.monotonic() + 10
        with engine.connect() as watcher:
            while watcher.execute(
                    text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity "
                         "WHERE pid = :pid"), {"pid": backend["pid"]}).scalar() is not True:
                assert time.monotonic() < deadline, "the second move never waited"
                watcher.rollback()
    worker.join(10)
    assert outcome == {"left": "moved"}
    with transaction(engine, read_only=True) as session:
        assert kept(session) == recounted(session)
        assert board.column_totals(session, ana, pipeline.id) == {
            stage["Opportunity"].id: board.ColumnTotal(stage["Opportunity"].id, 1, 20),
            stage["Closing"].id: board.ColumnTotal(stage["Closing"].id, 1, 10)}
