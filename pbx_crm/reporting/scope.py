"""Whose figures a report shows, and the SQL every part of it shares.

``Scope`` is what the queries of one report have in common (the pipeline and its stages in
board order, the period, the seller asked for, the database's dialect), resolved by
``report_scope`` under the actor's rights; the helpers below are the few places SQLite and
PostgreSQL differ (seconds between two timestamps, medians) and the filters every part uses.
Read by ``from_days`` (the figures from the daily tables) and ``reports`` (calls, callbacks
and nudges).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property

from sqlalchemy import (
    Integer, and_, bindparam, case, cast, func, literal, literal_column, select,
)
from sqlmodel import Session

from ..enums import MISSED_DISPOSITIONS, CallDirection, StageKind
from ..errors import Phrase, ValidationError
from ..funnel import pipelines
from ..models import Call, Deal, Stage, StageHistory, User
from ..people.users import get_user_by_login
from ..rules.funnel import Actor, ensure_head
from .figures import Period
from .local_days import epoch_sql

# A missed call: the customer rang and nobody picked up (or they hung up while it rang).
NOBODY = "(nobody yet)"

history = StageHistory.__table__
deals = Deal.__table__
stages = Stage.__table__
users = User.__table__
calls = Call.__table__


# --- scope: whose figures, which stages -------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What every query of one report shares: the pipeline, its stages, the period, whose."""

    pipeline_id: int
    pipeline_name: str
    currency: str
    period: Period
    seller_id: int | None
    seller_name: str | None
    stage_list: tuple  # (id, name, position, kind, is_unsorted), board order
    dialect: str

    @property
    def work_stages(self) -> list[tuple]:
        return [s for s in self.stage_list if s[3] == StageKind.OPEN.value]

    @property
    def work_stage_ids(self) -> list[int]:
        return [s[0] for s in self.work_stages]

    @cached_property
    def positions(self) -> dict[int, int]:
        """Stage id -> its position on the board: whether a move went on or back."""
        return {s[0]: s[2] for s in self.stage_list}

    @cached_property
    def kinds(self) -> dict[int, str]:
        """Stage id -> its kind (open, won, lost)."""
        return {s[0]: s[3] for s in self.stage_list}

    def ids_of(self, kind: StageKind) -> list[int]:
        return [s[0] for s in self.stage_list if s[3] == kind.value]

    def name_of(self, stage_id: int) -> str:
        return next((s[1] for s in self.stage_list if s[0] == stage_id), f"#{stage_id}")


def report_scope(session: Session, actor: Actor, *, pipeline_id: int | None, period: Period,
                 seller_id: int | None = None, seller_login: str | None = None) -> Scope:
    """Resolve whose figures the actor gets: a seller their own, a head all or one seller's."""
    pipeline = pipelines.get_pipeline(session, pipeline_id)
    if seller_login is not None:
        seller_id = get_user_by_login(session, seller_login).id
    if not actor.sees_everything:
        if seller_id is not None and seller_id != actor.user_id:
            ensure_head(actor, Phrase("see another seller's figures"))
        seller_id = actor.user_id
    seller_name = None
    if seller_id is not None:
        seller = session.get(User, seller_id)
        if seller is None:
            raise ValidationError("No user #%(user_id)s.", user_id=seller_id, field="seller")
        seller_name = seller.name
    stage_list = tuple((s.id, s.name, s.position, s.kind, s.is_unsorted)
                       for s in pipelines.stages_of(session, pipeline.id))
    return Scope(pipeline.id, pipeline.name, pipeline.currency, period, seller_id, seller_name,
                 stage_list, session.get_bind().dialect.name)


# --- SQL helpers: the few places the two databases differ -------------------------------------


def epoch_of(scope: Scope, column):
    """Whole seconds since 1970 of a timestamp column (text on SQLite, timestamptz on PG)."""
    return epoch_sql(scope.dialect, column)


def days_since(scope: Scope, day_column, first: date):
    """Whole days from ``first`` to a date column (text on SQLite, date on PG)."""
    if scope.dialect == "sqlite":
        return cast(func.julianday(day_column) - func.julianday(first.isoformat()), Integer)
    return day_column - first


def seconds_between(scope: Scope, later, earlier):
    return epoch_of(scope, later) - epoch_of(scope, earlier)


def exact_medians(session: Session, scope: Scope, values, value, keys: list) -> dict:
    """Median of ``value`` per ``keys`` over the subquery ``values``: PostgreSQL's
    percentile_cont; on SQLite (no median) the middle row(s) picked by a window function."""
    if scope.dialect == "postgresql":
        query = select(*keys, func.percentile_cont(0.5).within_group(value)).group_by(*keys)
    else:
        partition = keys or None
        ranked = select(*keys, value.label("value"),
                        func.row_number().over(partition_by=partition, order_by=value)
                        .label("rank"),
                        func.count().over(partition_by=partition).label("size")).subquery()
        rank, size, middle = ranked.c.rank, ranked.c.size, ranked.c.value
        ranked_keys = [ranked.c[key.name] for key in keys]
        # Integer division: the middle row for an odd count, the two middle ones for even.
        query = (select(*ranked_keys, func.avg(middle))
                 .where(rank >= (size + 1) // 2, rank <= (size + 2) // 2).group_by(*ranked_keys))
    # Without keys an empty set still gives one row, holding NULL: no median then.
    return {tuple(row[:-1]): float(row[-1]) for row in session.execute(query)
            if row[-1] is not None}


def in_period(column, period: Period, *, inline: bool = False):
    """``column`` in the period. ``inline``: the bounds written into the statement, so that
    PostgreSQL plans it for them every time; a statement run often is prepared (psycopg), and
    its generic plan, guessing the rows of any period, reads a year's rows one by one."""
    if not inline:
        return and_(column >= period.start_utc, column < period.end_utc)
    start, end = (bindparam(None, at, type_=column.type, literal_execute=True)
                  for at in (period.start_utc, period.end_utc))
    return and_(column >= start, column < end)


def owned(scope: Scope, owner_column):
    return owner_column == scope.seller_id if scope.seller_id is not None else literal(True)


def moves_in_period(scope: Scope, *columns):
    """Stage-history rows of the pipeline in the period, joined to their deal (for the
    responsible seller) only when the figures are one seller's."""
    query = select(*columns).where(history.c.pipeline_id == scope.pipeline_id,
                                   in_period(history.c.moved_at, scope.period))
    if scope.seller_id is not None:
        query = query.join(deals, deals.c.id == history.c.deal_id).where(
            deals.c.owner_id == scope.seller_id)
    return query


def missed_inbound():
    """Inbound calls missed or abandoned, written with literals as the partial indexes on them
    are (``ix_calls_missed_*``): SQLite uses such an index only for a condition it can see
    implies the index's."""
    return and_(calls.c.direction == literal_column(f"'{CallDirection.INBOUND.value}'"),
                calls.c.disposition.in_([literal_column(f"'{value}'")
                                         for value in MISSED_DISPOSITIONS]))


def sum_if(condition):
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

def seller_names(session: Session, ids) -> dict:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return dict(session.execute(select(users.c.id, users.c.name)
                                .where(users.c.id.in_(wanted))).all())


def stage_at_call_sql():
    """The stage a call's deal was in when it rang (the last move before the call), or for
    the call that created the deal (it rang a moment before) the stage it was created in."""
    at_call, created = history.alias("at_call"), history.alias("created")
    return func.coalesce(
        select(at_call.c.to_stage_id)
        .where(at_call.c.deal_id == calls.c.deal_id, at_call.c.moved_at <= calls.c.ringing_at)
        .order_by(at_call.c.moved_at.desc(), at_call.c.id.desc()).limit(1).scalar_subquery(),
        select(created.c.to_stage_id)
        .where(created.c.deal_id == calls.c.deal_id, created.c.from_stage_id.is_(None))
        .order_by(created.c.id).limit(1).scalar_subquery())
