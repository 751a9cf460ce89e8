"""The queries behind the Kanban board: a column's cards, and each column's count and money.

A column is read newest first, a page at a time ("show more" passes the last card's
``(created_at, id)``), so a pipeline with 100k deals costs one short index range per column.
A seller's board holds their own deals plus the shared Unsorted column.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, or_, true, tuple_, union_all
from sqlmodel import Session, select

from .enums import RobotRunStatus
from .errors import ValidationError
from .funnel import Actor
from .models import Contact, ContactPhone, Deal, RobotRule, RobotRun, Stage, User
from .phones import normalize_number

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
    query = _column_page(select(Deal), actor, stage, owner_id=owner_id, after=after,
                         limit=limit)
    return list(session.exec(query))


def _column_page(query, actor: Actor, stage: Stage, *, owner_id: int | None,
                 after: tuple[datetime, int] | None, limit: int):
    query = query.where(Deal.stage_id == stage.id)
    shown = _owner_shown(actor, owner_id)
    if stage.is_unsorted:
        query = query.where(Deal.owner_id.is_(None))
    elif shown is not None:
        query = query.where(Deal.owner_id == shown)
    if after is not None:
        # A row-value comparison: one index range, where an OR of two terms scans.
        query = query.where(tuple_(Deal.created_at, Deal.id) < tuple_(*after))
    return query.order_by(Deal.created_at.desc(), Deal.id.desc()).limit(limit)


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


# --- cards as the page shows them ---------------------------------------------------------

# A robot nudge still waiting for an answer, fired during the deal's current stage visit.
_overdue = (exists().where(RobotRun.deal_id == Deal.id, RobotRun.rule_id == RobotRule.id,
                           RobotRule.stage_id == Deal.stage_id,
                           RobotRun.fired_at >= Deal.stage_entered_at,
                           RobotRun.answer.is_(None),
                           # Two comparisons, not NOT IN: an IN list is re-rendered into the
                           # SQL on every execution, which cost more than the query itself.
                           RobotRun.status != RobotRunStatus.FAILED.value,
                           RobotRun.status != RobotRunStatus.SKIPPED.value)
            .correlate(Deal))

_card = (select(Deal.id, Deal.title, Deal.amount_minor, Deal.currency, Deal.priority,
                Deal.created_at, Deal.stage_entered_at, Deal.version, Deal.owner_id,
                Deal.stage_id, Contact.name.label("contact_name"),
                User.name.label("owner_name"), _overdue.label("overdue"))
         .select_from(Deal)
         .outerjoin(Contact, Contact.id == Deal.contact_id)
         .outerjoin(User, User.id == Deal.owner_id))


def column_card_rows(session: Session, actor: Actor, stage: Stage, *,
                     owner_id: int | None = None, after: tuple[datetime, int] | None = None,
                     limit: int = PAGE_SIZE) -> list:
    """``column_cards`` as plain rows with what a card shows (contact, owner, overdue mark):
    no ORM objects to build, which is most of a board's cost."""
    query = _column_page(_card, actor, stage, owner_id=owner_id, after=after, limit=limit)
    return list(session.exec(query))


SEARCH_LIMIT = 50
_LIKE_ESCAPE = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


def search_cards(session: Session, actor: Actor, text: str, *, region: str,
                 pipeline_id: int | None = None, limit: int = SEARCH_LIMIT) -> list:
    """Cards whose deal number, contact phone, title or contact name matches ``text``,
    newest first, among the deals the actor may see."""
    text = " ".join((text or "").split())
    if not text:
        return []
    if len(text) > 100:
        raise ValidationError("Search for at most 100 characters.", field="q")
    pattern = "%" + text.lower().translate(_LIKE_ESCAPE) + "%"
    matches = [func.lower(Deal.title).like(pattern, escape="\\"),
               func.lower(Contact.name).like(pattern, escape="\\")]
    number = text.lstrip("#").strip()
    if number.isdigit() and len(number) <= 18:
        matches.append(Deal.id == int(number))
    try:
        e164 = normalize_number(text, region=region)
    except ValidationError:
        e164 = None
    if e164:
        matches.append(Deal.contact_id.in_(select(ContactPhone.contact_id)
                                           .where(ContactPhone.e164 == e164)))
    query = _card.where(or_(*matches))
    if pipeline_id is not None:
        query = query.where(Deal.pipeline_id == pipeline_id)
    if not actor.sees_everything:
        unsorted = select(Stage.id).where(Stage.is_unsorted)
        query = query.where(or_(Deal.owner_id == actor.user_id,
                                and_(Deal.owner_id.is_(None), Deal.stage_id.in_(unsorted))))
    return list(session.exec(query.order_by(Deal.created_at.desc(), Deal.id.desc())
                             .limit(limit)))


class TotalsCache:
    """``column_totals`` kept for a few seconds when computing it was slow.

    A head's totals over a pipeline of a million deals read the whole covering index (tens of
    milliseconds); a busy board asks for them on every page load. Slow answers are reused for
    ``lifetime`` seconds (the counts lag by at most that much); fast ones, the usual case
    below a few hundred thousand deals, are never cached. ``forget`` drops a pipeline's
    entries after a change made in this process.
    """

    def __init__(self, *, lifetime: float = 10.0, slow_ms: float = 15.0,
                 clock=time.monotonic):
        self.lifetime, self.slow_ms, self.clock = lifetime, slow_ms, clock
        self._entries: dict[tuple, tuple[float, dict[int, ColumnTotal]]] = {}
        self._lock = threading.Lock()

    def totals(self, session: Session, actor: Actor, pipeline_id: int, *,
               owner_id: int | None = None) -> dict[int, ColumnTotal]:
        key = (pipeline_id, _owner_shown(actor, owner_id))
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        started = time.perf_counter()
        totals = column_totals(session, actor, pipeline_id, owner_id=owner_id)
        if (time.perf_counter() - started) * 1000 >= self.slow_ms:
            with self._lock:
                self._entries[key] = (self.clock() + self.lifetime, totals)
        return totals

    def forget(self, pipeline_id: int) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == pipeline_id]:
                del self._entries[key]
