"""Synthetic data: written in bulk, yet what the services would have written.

Speed is measured in the benchmarks, not here; these check that the rows obey the funnel's
rules, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import phonenumbers
import pytest
from sqlalchemy import func, text
from sqlmodel import select

from pbx_crm.funnel import board, deals, pipelines
from pbx_crm.db import make_engine, transaction
from pbx_crm.enums import StageKind
from pbx_crm.rules.funnel import Actor
from pbx_crm.reporting import days as report_days, days_rebuild
from pbx_crm.models import (
    Contact,
    ContactPhone,
    Deal,
    Stage,
    StageHistory,
    TimelineEntry,
    User,
)
from pbx_crm.sample.seed import SELLER_FUNNEL, seed_synthetic

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def seed(engine, **kw):
    options = dict(deals=2000, contacts=500, sellers=5, region="ID", random_seed=42, now=NOW)
    return seed_synthetic(engine, **{**options, **kw})


def test_seeded_deals_follow_the_funnel_rules(engine):
    report = seed(engine)
    assert (report.deals, report.contacts, report.sellers) == (2000, 500, 5)

    with transaction(engine) as session:
        stages = {s.id: s for s in pipelines.stages_of(session, report.pipeline_id)}
        all_deals = session.exec(select(Deal)).all()
        history = session.exec(select(StageHistory)
                               .order_by(StageHistory.deal_id, StageHistory.id)).all()
        timeline_rows = session.exec(select(func.count()).select_from(TimelineEntry)).one()
        sellers = set(session.exec(select(User.id).where(User.role == "seller")).all())
        contact_ids = set(session.exec(select(Contact.id)).all())

    assert [s.name for s in stages.values()] == ["Unsorted"] + [n for n, _ in SELLER_FUNNEL]
    assert len(all_deals) == 2000 and len(sellers) == 5
    assert {d.stage_id for d in all_deals} == set(stages)  # every stage has deals
    by_stage = defaultdict(int)
    for deal in all_deals:
        stage = stages[deal.stage_id]
        by_stage[stage.name] += 1
        assert deal.pipeline_id == report.pipeline_id
        assert deal.contact_id in contact_ids
        if stage.is_unsorted:
            assert deal.owner_id is None and deal.source == "call"
        else:
            assert deal.owner_id in sellers
        assert (deal.closed_at is not None) == (stage.kind != StageKind.OPEN.value)
        assert (deal.lost_reason is not None) == (stage.kind == StageKind.LOST.value)
        assert NOW - timedelta(days=366) < deal.created_at <= deal.stage_entered_at <= NOW
        assert deal.closed_at in (None, deal.stage_entered_at)
    # Weighted toward the early stages.
    assert by_stage["Opportunity"] > by_stage["Commercial proposal"] > by_stage["Closing"]

    rows_of = defaultdict(list)
    for row in history:
        rows_of[row.deal_id].append(row)
    assert timeline_rows == len(history) == report.history_rows
    assert set(rows_of) == {deal.id for deal in all_deals}  # no history of a missing deal
    for deal in all_deals:
        rows = rows_of[deal.id]
        first, last = rows[0], rows[-1]
        assert first.from_stage_id is None and first.from_entered_at is None
        assert first.moved_at == deal.created_at
        assert first.moved_by_id == (None if deal.source == "call" else deal.owner_id)
        assert sum(r.from_stage_id is None for r in rows) == 1
        assert last.to_stage_id == deal.stage_id and last.moved_at == deal.stage_entered_at
        for before, after in zip(rows, rows[1:]):
            assert after.from_stage_id == before.to_stage_id
            assert after.from_entered_at == before.moved_at <= after.moved_at
            assert after.moved_by_id == deal.owner_id
        # Moves go forward through the working stages, as a real deal travels.
        positions = [stages[r.to_stage_id].position for r in rows]
        assert positions == sorted(positions)
        assert deal.version == len(rows)


def test_seeded_phones_are_valid_unique_numbers_of_the_region(engine):
    seed(engine, deals=10)
    with transaction(engine) as session:
        phones = session.exec(select(ContactPhone)).all()
        per_contact = session.exec(select(func.count()).select_from(ContactPhone)
                                   .group_by(ContactPhone.contact_id)).all()
    assert len(per_contact) == 500 and set(per_contact) == {1, 2}
    assert len({p.e164 for p in phones}) == len(phones)
    for phone in phones:
        number = phonenumbers.parse(phone.e164)
        assert phonenumbers.is_valid_number(number), phone.e164
        assert phonenumbers.region_code_for_number(number) == "ID"
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == \
            phone.e164


def test_another_region_gets_its_own_valid_numbers(engine):
    seed(engine, deals=0, contacts=50, region="DE")
    with transaction(engine) as session:
        numbers = session.exec(select(ContactPhone.e164)).all()
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(n)) for n in numbers)
    assert all(n.startswith("+49") for n in numbers)


def test_seeding_again_adds_more_and_the_services_carry_on_after_it(engine):
    first = seed(engine, deals=300, contacts=40)
    again = seed(engine, deals=200, contacts=30, random_seed=43)
    assert first.sellers_created == 5 and again.sellers_created == 0
    assert first.seller_password and again.seller_password is None
    with transaction(engine) as session:
        assert session.exec(select(func.count()).select_from(Deal)).one() == 500
        assert session.exec(select(func.count()).select_from(Contact)).one() == 70
        # The id sequences moved past the seeded rows: a deal made now gets a fresh id.
        seller = session.exec(select(User).where(User.login == "seller001")).one()
        deal = deals.create_deal(session, Actor.of(seller), title="Made by hand")
        assert deal.id == 501
        # ... and it is newest on its column, above every seeded card.
        stage = session.get(Stage, deal.stage_id)
        assert board.column_cards(session, Actor.of(seller), stage, limit=1)[0].id == deal.id


@pytest.fixture
def sqlite_file(tmp_path, _sqlite_template):
    """A migrated SQLite file of its own: make_sqlite("name") -> engine."""
    made = []

    def make_sqlite(name):
        path = tmp_path / f"{name}.sqlite3"
        shutil.copy(_sqlite_template, path)
        made.append(make_engine(f"sqlite:///{path}"))
        return made[-1]

    yield make_sqlite
    for engine in made:
        engine.dispose()


def test_timestamps_are_stored_as_text_the_way_the_services_store_them(sqlite_file):
    # SQLite keeps timestamps as text, and the board orders by it: one format for all rows.
    engine = sqlite_file("crm")
    seed(engine, deals=20, contacts=5)
    with transaction(engine) as session:
        seller = session.exec(select(User).where(User.login == "seller001")).one()
        deals.create_deal(session, Actor.of(seller), title="Made by hand", now=NOW)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT created_at FROM deals")).scalars().all()
        moved = connection.execute(text("SELECT moved_at FROM stage_history")).scalars().all()
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", s) for s in stored + moved)


def test_the_same_random_seed_gives_the_same_data(sqlite_file):
    engine, other = sqlite_file("one"), sqlite_file("other")
    seed(engine, deals=300, contacts=50)
    seed(other, deals=300, contacts=50)

    def dump(e):
        with e.connect() as connection:
            return [connection.execute(text(f"SELECT * FROM {table} ORDER BY id")).all()
                    for table in ("contacts", "contact_phones", "deals", "stage_history")]

    assert dump(engine) == dump(other)


def test_bad_counts_are_refused(engine):
    from pbx_crm.errors import ValidationError

    with pytest.raises(ValidationError):
        seed(engine, deals=10, sellers=0)
    with pytest.raises(ValidationError):
        seed(engine, deals=-1)


def test_the_seed_leaves_the_reports_daily_tables_counting_the_company_s_days(engine,
                                                                             pbx_crm_at):
    """Seeded history is written around the deal services: the seed recounts the reports'
    tables, in the company's zone (all of them, when they counted another)."""
    code, _, err = pbx_crm_at(engine.url.render_as_string(hide_password=False),
                              "--time-zone", "Europe/Berlin", "seed", "--deals", "200",
                              "--contacts", "40", "--sellers", "2", "--random-seed", "7")
    assert code == 0, err
    with transaction(engine) as session:
        assert report_days.day_zone(session) == "Europe/Berlin"
        seeded = days_rebuild.totals(session), days_rebuild.histogram_totals(session)
        assert seeded[0]
        days_rebuild.rebuild(session, time_zone="Europe/Berlin")
        assert (days_rebuild.totals(session), days_rebuild.histogram_totals(session)) == seeded
