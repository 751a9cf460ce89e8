"""The queries behind the Kanban board: a column's cards, and each column's count and money.

A column is read newest first, a page at a time ("show more" passes the last card's
``(created_at, id)``), so a pipeline with 100k deals costs one short index range per column.
A seller's board holds their own deals plus the shared Unsorted column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, true, tuple_, union_all
from sqlmodel import Session, select

from .funnel import Actor
from .models import Deal, Stage

PAGE_SIZE = 50


@dataclass(frozen=True)
class ColumnTotal:
    stage_id: int
    deals: int
    amount_minor: int


def _owner_shown(actor: Actor, owner_id: int | None) -> int | None:
    """Whose cards fill the working columns: a seller's own, or the seller a head filters on
    (None: everyone's). Unsorted deals are nobody's yet and show on every board."""
    return owner_id if actor.sees_everything else actor.user_id


def column_cards(session: Session, actor: Actor, stage: Stage, *, owner_id: int | None = None,
                 after: tuple[datetime, int] | None = None,
                 limit: int = PAGE_SIZE) -> list[Deal]:
    """One column's cards, newest first; ``after`` continues from the last card shown."""
    query = select(Deal).where(Deal.stage_id == stage.id)
    shown = _owner_shown(actor, owner_id)
    if stage.is_unsorted:
        query = query.where(Deal.owner_id.is_(None))
    elif shown is not None:
        query = query.where(Deal.owner_id == shown)
    if after is not None:
        # A row-value comparison: one index range, where an OR of two terms scans.
        query = query.where(tuple_(Deal.created_at, Deal.id) < tuple_(*after))
    query = query.order_by(Deal.created_at.desc(), Deal.id.desc()).limit(limit)
    return list(session.exec(query))


def _totals_query(pipeline_id: int, owner_condition):
    return (select(Deal.stage_id, func.count().label("deals"),
                   func.coalesce(func.sum(Deal.amount_minor), 0).label("amount"))
            .where(Deal.pipeline_id == pipeline_id, owner_condition).group_by(Deal.stage_id))


def column_totals(session: Session, actor: Actor, pipeline_id: int, *,
                  owner_id: int | None = None) -> dict[int, ColumnTotal]:
    """Count and money per stage of a pipeline, as the actor's board shows them.

    Each branch reads one covering index (stage totals; owner totals), never the table.
    """
    shown = _owner_shown(actor, owner_id)
    if shown is None:
        query = _totals_query(pipeline_id, true())
    else:
        parts = union_all(_totals_query(pipeline_id, Deal.owner_id == shown),
                          _totals_query(pipeline_id, Deal.owner_id.is_(None))).subquery()
        query = select(parts.c.stage_id, func.sum(parts.c.deals),
                       func.sum(parts.c.amount)).group_by(parts.c.stage_id)
    return {stage_id: ColumnTotal(stage_id, int(count), int(total))
            for stage_id, count, total in session.exec(query)}
