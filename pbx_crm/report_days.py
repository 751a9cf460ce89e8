"""The daily counts behind the funnel reports: stage moves summed per local day and seller.

``report_days`` holds, per pipeline, local day (in one time zone, kept in
``report_day_zone``), from-stage, to-stage and responsible seller, the number of moves and
the sums the reports divide (time spent in the stage left, the deals' money, creation-to-move
time). Keyed by the stage pair rather than by a "moved on / lost" label, the rows stay right
when stages are reordered: the reports classify a pair with the positions of the day they run.
A report then reads at most days x stage pairs x sellers rows instead of the period's history.

Kept by the deal services (``pbx_crm.deals`` calls ``record_move`` for every history row it
writes, ``deal_changed`` when a deal's owner or amount changes: a deal's figures count for
its current owner and money), rebuilt in bulk from ``stage_history`` by ``rebuild`` (after a
seed, by the migration that adds the table, and by ``pbx-crm report rebuild``). Rows are
additive: readers always sum them, so two rows for one key (two first moves racing on
PostgreSQL) are harmless. Updates go in key order, so two moves never wait on each other in
opposite orders.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Integer,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)

from .config import Settings
from .models import Deal, ReportDay, ReportDayZone, StageHistory

# Where no zone was chosen yet (a seed before any rebuild): the company default.
DEFAULT_TIME_ZONE = Settings.time_zone

days = ReportDay.__table__
zone_table = ReportDayZone.__table__
history = StageHistory.__table__
deals = Deal.__table__
_ZONE_CACHE = "pbx_crm.report_days.zone"
_EPOCH_DAY = date(1970, 1, 1)


# --- the time zone the days are counted in ------------------------------------------------


def day_zone(session) -> str | None:
    """The zone the table counts local days in; None: not built, nothing is kept."""
    info = getattr(session, "info", None)
    if info is not None and _ZONE_CACHE in info:
        return info[_ZONE_CACHE]
    found = session.execute(select(zone_table.c.time_zone).where(zone_table.c.id == 1)).scalar()
    if info is not None:
        info[_ZONE_CACHE] = found
    return found


def _epoch_seconds(at: datetime) -> int:
    # Whole seconds, truncated as SQLite's strftime('%s') and PostgreSQL's floor(epoch) do.
    return int(at.astimezone(UTC).replace(microsecond=0).timestamp())


def local_day(at: datetime, time_zone: str) -> date:
    return at.astimezone(ZoneInfo(time_zone)).date()


# --- incremental upkeep, called by the deal services ----------------------------------------


def _key_order(key):
    # None sorts first; keys are (pipeline, day, from, to, seller).
    return tuple((value is not None, value) for value in key)


def _apply(session, deltas: dict) -> None:
    """Add each delta (moves, stay, amount, cycle) to its row, creating missing rows."""
    for key in sorted(deltas, key=_key_order):
        moves, stay, amount, cycle = deltas[key]
        if not (moves or stay or amount or cycle):
            continue
        pipeline_id, day, from_stage_id, to_stage_id, seller_id = key
        match = and_(days.c.pipeline_id == pipeline_id, days.c.day == day,
                     days.c.from_stage_id.is_(None) if from_stage_id is None
                     else days.c.from_stage_id == from_stage_id,
                     days.c.to_stage_id == to_stage_id,
                     days.c.seller_id.is_(None) if seller_id is None
                     else days.c.seller_id == seller_id)
        # One row per key is enough: add to the lowest id of the (possible) duplicates.
        first = select(func.min(days.c.id)).where(match).scalar_subquery()
        done = session.execute(update(days).where(days.c.id == first).values(
            moves=days.c.moves + moves, stay_seconds=days.c.stay_seconds + stay,
            amount_minor=days.c.amount_minor + amount,
            cycle_seconds=days.c.cycle_seconds + cycle)
            .execution_options(synchronize_session=False))
        if done.rowcount == 0:
            session.execute(insert(days).values(
                pipeline_id=pipeline_id, day=day, from_stage_id=from_stage_id,
                to_stage_id=to_stage_id, seller_id=seller_id, moves=moves, stay_seconds=stay,
                amount_minor=amount, cycle_seconds=cycle))


def _contribution(row, *, time_zone: str, seller_id, amount_minor: int, created_at: datetime):
    """The key and the sums one history row adds to the table."""
    stay = (_epoch_seconds(row.moved_at) - _epoch_seconds(row.from_entered_at)
            if row.from_entered_at is not None else 0)
    key = (row.pipeline_id, local_day(row.moved_at, time_zone), row.from_stage_id,
           row.to_stage_id, seller_id)
    cycle = _epoch_seconds(row.moved_at) - _epoch_seconds(created_at)
    return key, (1, stay, amount_minor, cycle)


def _add(deltas: dict, key, values, sign: int) -> None:
    current = deltas.get(key, (0, 0, 0, 0))
    deltas[key] = tuple(c + sign * v for c, v in zip(current, values))


def record_move(session, deal: Deal, history_row: StageHistory) -> None:
    """Count one new stage-history row of ``deal`` (as the deal is now: owner, amount)."""
    time_zone = day_zone(session)
    if time_zone is None:
        return
    deltas: dict = {}
    key, values = _contribution(history_row, time_zone=time_zone, seller_id=deal.owner_id,
                                amount_minor=deal.amount_minor, created_at=deal.created_at)
    _add(deltas, key, values, 1)
    _apply(session, deltas)


def deal_changed(session, deal_id: int, *, owner_before, owner_after, amount_before: int,
                 amount_after: int) -> None:
    """Move a deal's counted history from its old owner and money to the new ones."""
    time_zone = day_zone(session)
    if time_zone is None or (owner_before == owner_after and amount_before == amount_after):
        return
    created_at = session.execute(select(deals.c.created_at)
                                 .where(deals.c.id == deal_id)).scalar_one()
    deltas: dict = {}
    for row in session.execute(select(history).where(history.c.deal_id == deal_id)):
        key, values = _contribution(row, time_zone=time_zone, seller_id=owner_before,
                                    amount_minor=amount_before, created_at=created_at)
        _add(deltas, key, values, -1)
        key, values = _contribution(row, time_zone=time_zone, seller_id=owner_after,
                                    amount_minor=amount_after, created_at=created_at)
        _add(deltas, key, values, 1)
    _apply(session, deltas)


# --- rebuilding from the stage history --------------------------------------------------------


def _offset_changes(zone: ZoneInfo, start: datetime, end: datetime) -> tuple[int, list]:
    from .reports import (
        _offset_changes as changes,  # one implementation of the zone walk
    )

    return changes(zone, start, end)


def _epoch_sql(dialect: str, column):
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


def _local_day_sql(dialect: str, second, zone: ZoneInfo, first: datetime, last: datetime):
    """The local date of an epoch second, with the zone's offsets over [first, last]."""
    first_offset, changes = _offset_changes(zone, first, last + timedelta(days=1))
    offset = (case(*[(second < at, before) for (at, _), before in
                     zip(changes, [first_offset] + [o for _, o in changes])],
                   else_=changes[-1][1]) if changes else literal(first_offset))
    # Integer division floors for the non-negative seconds of any real move.
    day_number = (second + offset) // 86400
    if dialect == "sqlite":
        return func.date(day_number * 86400, "unixepoch")
    return literal(_EPOCH_DAY) + cast(day_number, Integer)


def rebuild(session, *, time_zone: str, pipeline_id: int | None = None) -> int:
    """Recount ``report_days`` (one pipeline's rows, or all) from the stage history, in
    ``time_zone``; returns the number of rows written. Changing the zone recounts them all."""
    zone = ZoneInfo(time_zone)
    if day_zone(session) != time_zone:
        pipeline_id = None
    session.execute(delete(zone_table))
    session.execute(insert(zone_table).values(id=1, time_zone=time_zone))
    if hasattr(session, "info"):
        session.info[_ZONE_CACHE] = time_zone
    wipe = delete(days)
    if pipeline_id is not None:
        wipe = wipe.where(days.c.pipeline_id == pipeline_id)
    session.execute(wipe)
    bounds = select(func.min(history.c.moved_at), func.max(history.c.moved_at))
    if pipeline_id is not None:
        bounds = bounds.where(history.c.pipeline_id == pipeline_id)
    first, last = session.execute(bounds).one()
    if first is None:
        return 0
    if first.tzinfo is None:  # a raw SQLite connection hands back naive UTC
        first, last = first.replace(tzinfo=UTC), last.replace(tzinfo=UTC)
    dialect = (session.dialect if hasattr(session, "dialect")
               else session.get_bind().dialect).name
    moved = _epoch_sql(dialect, history.c.moved_at)
    day = _local_day_sql(dialect, moved, zone, first, last).label("day")
    stay = func.coalesce(moved - _epoch_sql(dialect, history.c.from_entered_at), 0)
    counted = (select(history.c.pipeline_id, day, history.c.from_stage_id, history.c.to_stage_id,
                      deals.c.owner_id, func.count(), func.sum(stay),
                      func.sum(deals.c.amount_minor),
                      func.sum(moved - _epoch_sql(dialect, deals.c.created_at)))
               .select_from(history).join(deals, deals.c.id == history.c.deal_id)
               .group_by(history.c.pipeline_id, day, history.c.from_stage_id,
                         history.c.to_stage_id, deals.c.owner_id))
    if pipeline_id is not None:
        counted = counted.where(history.c.pipeline_id == pipeline_id)
    result = session.execute(insert(days).from_select(
        ["pipeline_id", "day", "from_stage_id", "to_stage_id", "seller_id", "moves",
         "stay_seconds", "amount_minor", "cycle_seconds"], counted))
    return result.rowcount


def totals(session, *, pipeline_id: int | None = None) -> dict:
    """Every key's summed figures (duplicates and zero rows folded): what tests compare."""
    query = (select(days.c.pipeline_id, days.c.day, days.c.from_stage_id, days.c.to_stage_id,
                    days.c.seller_id, days.c.moves, days.c.stay_seconds, days.c.amount_minor,
                    days.c.cycle_seconds))
    if pipeline_id is not None:
        query = query.where(days.c.pipeline_id == pipeline_id)
    summed: dict = defaultdict(lambda: (0, 0, 0, 0))
    for row in session.execute(query):
        day = row.day if isinstance(row.day, date) else date.fromisoformat(str(row.day))
        key = (row.pipeline_id, day, row.from_stage_id, row.to_stage_id, row.seller_id)
        summed[key] = tuple(a + int(b) for a, b in zip(summed[key], row[5:]))
    return {key: value for key, value in summed.items() if any(value)}
