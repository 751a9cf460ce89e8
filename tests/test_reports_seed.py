"""Seeded detours for the report benchmarks: back one stage and forward again, still a history
the services could have written, and counted by the report as moves back."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func
from sqlmodel import select

from pbx_crm.funnel import pipelines
from pbx_crm.reporting import reports
from pbx_crm.db import transaction
from pbx_crm.errors import ValidationError
from pbx_crm.rules.funnel import Actor
from pbx_crm.models import Deal, StageHistory
from pbx_crm.sample.seed import seed_synthetic

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def test_detours_lengthen_the_history_and_show_as_moves_back(engine):
    # Seeded as `pbx-crm seed` does for a company in UTC: the reports' days counted in UTC.
    straight = seed_synthetic(engine, deals=500, contacts=50, sellers=3, region="ID",
                              pipeline_name="Straight", random_seed=3, now=NOW, time_zone="UTC")
    detours = seed_synthetic(engine, deals=500, contacts=50, sellers=3, region="ID",
                             pipeline_name="Detours", random_seed=3, now=NOW, detour_rate=0.45,
                             time_zone="UTC")
    assert straight.history_rows / 500 < 4.2 < 4.6 < detours.history_rows / 500
    with transaction(engine, read_only=True) as session:
        rows = session.exec(select(StageHistory).where(
            StageHistory.pipeline_id == detours.pipeline_id)
            .order_by(StageHistory.deal_id, StageHistory.moved_at, StageHistory.id)).all()
        final = dict(session.exec(select(Deal.id, Deal.stage_id)
                                  .where(Deal.pipeline_id == detours.pipeline_id)).all())
        versions = dict(session.exec(select(Deal.id, Deal.version)
                                     .where(Deal.pipeline_id == detours.pipeline_id)).all())
        positions = {s.id: s.position for s in pipelines.stages_of(session,
                                                                  detours.pipeline_id)}
        found = reports.funnel_report(session, Actor.system("cli"),
                                      pipeline_id=detours.pipeline_id, start=date(2024, 1, 1),
                                      end=date(2025, 1, 1), time_zone="UTC")
        in_year = session.exec(select(func.count()).select_from(StageHistory).where(
            StageHistory.pipeline_id == detours.pipeline_id,
            StageHistory.moved_at >= datetime(2024, 1, 1, tzinfo=UTC))).one()
    by_deal = defaultdict(list)
    for row in rows:
        by_deal[row.deal_id].append(row)
    backs = 0
    for deal_id, history in by_deal.items():
        # Each row leaves the stage the row before entered, at the moment it was entered.
        assert history[0].from_stage_id is None
        for before, row in zip(history, history[1:]):
            assert (row.from_stage_id, row.from_entered_at) == (before.to_stage_id,
                                                                before.moved_at)
            backs += positions[row.to_stage_id] < positions[row.from_stage_id]
        assert history[-1].to_stage_id == final[deal_id]
        assert versions[deal_id] == len(history)
    assert backs > 100
    # Every move of the year is entered somewhere, the creations included.
    assert sum(s.moved_back for s in found.stages) == backs
    assert sum(s.entered for s in found.stages) + found.outcomes.won + found.outcomes.lost \
        == in_year


def test_a_detour_rate_out_of_range_is_refused(engine):
    with pytest.raises(ValidationError, match="detour rate"):
        seed_synthetic(engine, deals=1, contacts=1, sellers=1, region="ID", detour_rate=1.0)
