"""The queries behind the Kanban board: a column's cards, and each column's count and money.

A column is read newest first, a page at a time ("show more" passes the last card's
``(created_at, id)``), so a pipeline with 100k deals costs one short index range per column.
A seller's board holds their own deals plus the shared Unsorted column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_
from sqlmodel import Session, select

from .funnel import Actor
from .models import Deal, Stage

PAGE_SIZE = 50


@dataclass(frozen=True)
class ColumnTotal:
    stage_id: int
    deals: int
    amount_minor: int


def _visible_to(actor: Actor, owner_id: int | None):
    """The owner filter for a board: a head may narrow to one seller, a seller sees theirs.

    Unsorted deals (nobody's yet) stay on every board, as ``column_cards`` shows them.
    """
    if not actor.sees_everything:
        return or_(Deal.owner_id == actor.user_id, Deal.owner_id.is_(None))
    if owner_id is not None:
        return or_(Deal.owner_id == owner_id, Deal.owner_id.is_(None))
    return None


def column_cards(session: Session, actor: Actor, stage: Stage, *, owner_id: int | None = None,
                 after: tuple[datetime, int] | None = None,
                 limit: int = PAGE_SIZE) -> list[Deal]:
    """One column's cards, newest first; ``after`` continues from the last card shown."""
    query = select(Deal).where(Deal.stage_id == stage.id)
    if stage.is_unsorted:
        query = query.where(Deal.owner_id.is_(None))
    else:
        owner_filter = _visible_to(actor, owner_id)
        if owner_filter is not None:
            # A seller's own cards outside Unsorted: equality keeps the owner index usable.
            query = query.where(Deal.owner_id == (actor.user_id if not actor.sees_everything
                                                  else owner_id))
    if after is not None:
        created_at, deal_id = after
        query = query.where(or_(Deal.created_at < created_at,
                                and_(Deal.created_at == created_at, Deal.id < deal_id)))
    query = query.order_by(Deal.created_at.desc(), Deal.id.desc()).limit(limit)
    return list(session.exec(query))


def column_totals(session: Session, actor: Actor, pipeline_id: int, *,
                  owner_id: int | None = None) -> dict[int, ColumnTotal]:
    """Count and money per stage of a pipeline, as the actor's board shows them."""
    query = (select(Deal.stage_id, func.count(), func.coalesce(func.sum(Deal.amount_minor), 0))
             .where(Deal.pipeline_id == pipeline_id).group_by(Deal.stage_id))
    owner_filter = _visible_to(actor, owner_id)
    if owner_filter is not None:
        query = query.where(owner_filter)
    return {stage_id: ColumnTotal(stage_id, count, int(total))
            for stage_id, count, total in session.exec(query)}
