"""Rebuilding the reports' daily counts from the stage history and the calls, in bulk.

``rebuild`` recounts ``report_days``, its histograms, its team rollups and the call counts
(after a seed, in the migrations that add the tables, and by ``pbx-crm report rebuild``, for
history written outside the deal services); ``ensure_zone`` recounts them once when they
count days in another zone than the company's (the start-up of the web UI and of ``pbx-crm
serve``, ``pbx-crm db upgrade``, the demo and the CLI's reports call it), so the reports
always read days of the company's zone. ``totals`` and its kin sum what the tables hold, for
the tests that compare the kept counts with a recount. The counts are kept between rebuilds
by ``pbx_crm.reporting.days``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, date
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, delete, func, insert, or_, select

from ..enums import CallDirection, StageKind
from .days import (
    CALL_KEYS, CALL_VALUES, CYCLE_KEYS, DAY_KEYS, DAY_VALUES, DURATION_BUCKETS, MISSED_VALUES,
    STAY_KEYS, TEAM_DAY_KEYS, TEAM_STAY_KEYS, ZONE_CACHE, call_days, calls, cycle_buckets,
    day_zone, days, deals, history, stages, stay_buckets, team_days, team_stay_buckets,
    zone_table,
)
from .local_days import epoch_sql, local_day_sql
from .scope import MISSED_DISPOSITIONS, stage_at_call_sql

log = logging.getLogger(__name__)
# The PostgreSQL advisory lock two processes starting at once take before recounting the
# tables in a new zone: the second then finds them recounted (any constant of our own).
ZONE_LOCK = 0x7062_7864  # "pbxd"


def _bounds(session, column, where):
    first, last = session.execute(select(func.min(column), func.max(column)).where(*where)).one()
    if first is not None and first.tzinfo is None:  # a raw SQLite connection: naive UTC
        first, last = first.replace(tzinfo=UTC), last.replace(tzinfo=UTC)
    return first, last


def rebuild(session, *, time_zone: str, pipeline_id: int | None = None) -> int:
    """Recount ``report_days`` and its histograms and call counts (one pipeline's rows, or
    all) from the stage history and the calls, in ``time_zone``; returns the number of
    ``report_days`` rows written. Changing the zone recounts them all."""
    if day_zone(session) != time_zone:
        pipeline_id = None
    written = rebuild_days(session, time_zone=time_zone, pipeline_id=pipeline_id)
    rebuild_histograms(session, time_zone=time_zone, pipeline_id=pipeline_id)
    rebuild_team_rollups(session, pipeline_id=pipeline_id)
    return written


def ensure_zone(session, time_zone: str) -> int | None:
    """Recount the daily tables in ``time_zone`` (the company's) unless they count days in
    it already: after a change of the zone, or where none was recorded. Returns the number
    of ``report_days`` rows written, None when nothing was to do; logs the recount with its
    rows and seconds. Never commits (the caller's transaction holds the recount)."""
    if day_zone(session) == time_zone:
        return None
    if _dialect(session) == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(ZONE_LOCK)))
    # Read again under the lock (SQLite: under the write lock): another process may have
    # recounted them meanwhile.
    session.info.pop(ZONE_CACHE, None)
    was = day_zone(session)
    if was == time_zone:
        return None
    started = time.monotonic()
    written = rebuild(session, time_zone=time_zone)
    log.info("recounted the reports' daily tables in %s (they counted days in %s): %d rows "
             "in %.1f s", time_zone, was or "no zone", written, time.monotonic() - started)
    return written


def _dialect(session) -> str:
    return (session.dialect if hasattr(session, "dialect")
            else session.get_bind().dialect).name


def _history_columns(session, zone: ZoneInfo, in_pipeline: list):
    """The local day, time in the stage left and creation-to-move time of a history row
    (None when the history is empty)."""
    first, last = _bounds(session, history.c.moved_at, in_pipeline)
    if first is None:
        return None
    dialect = _dialect(session)
    moved = epoch_sql(dialect, history.c.moved_at)
    day = local_day_sql(dialect, moved, zone, first, last).label("day")
    stay = func.coalesce(moved - epoch_sql(dialect, history.c.from_entered_at), 0)
    return day, stay, moved - epoch_sql(dialect, deals.c.created_at)


def rebuild_days(session, *, time_zone: str, pipeline_id: int | None = None) -> int:
    """Recount ``report_days`` alone (and set the zone); the rows written. The team's
    rollup is left as it is (``rebuild`` recounts it next)."""
    zone = ZoneInfo(time_zone)
    if day_zone(session) != time_zone:
        pipeline_id = None
    session.execute(delete(zone_table))
    session.execute(insert(zone_table).values(id=1, time_zone=time_zone))
    if hasattr(session, "info"):
        session.info[ZONE_CACHE] = time_zone
    wipe = delete(days)
    if pipeline_id is not None:
        wipe = wipe.where(days.c.pipeline_id == pipeline_id)
    session.execute(wipe)
    in_pipeline = [history.c.pipeline_id == pipeline_id] if pipeline_id is not None else []
    columns = _history_columns(session, zone, in_pipeline)
    if columns is None:
        return 0
    day, stay, cycle = columns
    counted = (select(history.c.pipeline_id, day, history.c.from_stage_id, history.c.to_stage_id,
                      deals.c.owner_id, func.count(), func.sum(stay),
                      func.sum(deals.c.amount_minor), func.sum(cycle))
               .select_from(history).join(deals, deals.c.id == history.c.deal_id)
               .where(*in_pipeline)
               .group_by(history.c.pipeline_id, day, history.c.from_stage_id,
                         history.c.to_stage_id, deals.c.owner_id))
    # Kept past the statement (psycopg's cursor closes with it, its count -1 otherwise).
    result = session.execute(insert(days).from_select(list(DAY_KEYS + DAY_VALUES), counted)
                             .execution_options(preserve_rowcount=True))
    return result.rowcount


def rebuild_histograms(session, *, time_zone: str, pipeline_id: int | None = None) -> None:
    """Recount the stay and cycle histograms and the call counts in ``time_zone`` (the zone
    ``report_days`` counts in: call ``rebuild``, which sets it, rather than this alone).
    The team's rollups are left as they are (``rebuild`` recounts them next): the migrations
    that add the per-seller tables run this before the team's tables exist."""
    zone = ZoneInfo(time_zone)
    for table in (stay_buckets, cycle_buckets):
        wipe = delete(table)
        if pipeline_id is not None:
            wipe = wipe.where(table.c.pipeline_id == pipeline_id)
        session.execute(wipe)
    rebuild_call_days(session, time_zone=time_zone, pipeline_id=pipeline_id)
    in_pipeline = [history.c.pipeline_id == pipeline_id] if pipeline_id is not None else []
    columns = _history_columns(session, zone, in_pipeline)
    if columns is None:
        return
    day, stay, cycle = columns
    stay_bucket = DURATION_BUCKETS.bucket_sql(stay).label("bucket")
    session.execute(insert(stay_buckets).from_select(
        list(STAY_KEYS) + ["moves"],
        select(history.c.pipeline_id, day, history.c.from_stage_id, deals.c.owner_id,
               stay_bucket, func.count())
        .select_from(history).join(deals, deals.c.id == history.c.deal_id)
        .where(history.c.from_stage_id.is_not(None), *in_pipeline)
        .group_by(history.c.pipeline_id, day, history.c.from_stage_id, deals.c.owner_id,
                  stay_bucket)))
    cycle_bucket = DURATION_BUCKETS.bucket_sql(cycle).label("bucket")
    session.execute(insert(cycle_buckets).from_select(
        list(CYCLE_KEYS) + ["wins"],
        select(history.c.pipeline_id, day, deals.c.owner_id, cycle_bucket, func.count())
        .select_from(history).join(deals, deals.c.id == history.c.deal_id)
        .join(stages, stages.c.id == history.c.to_stage_id)
        .where(stages.c.kind == StageKind.WON.value, *in_pipeline)
        .group_by(history.c.pipeline_id, day, deals.c.owner_id, cycle_bucket)))


def rebuild_team_rollups(session, *, pipeline_id: int | None = None) -> None:
    """Recount the team's rollups (one pipeline's rows, or all) from ``report_days`` and the
    per-seller stay histogram as they stand (also what the migration that adds them fills
    them with)."""
    for team, source, keys, values in (
            (team_days, days, TEAM_DAY_KEYS, DAY_VALUES),
            (team_stay_buckets, stay_buckets, TEAM_STAY_KEYS, ("moves",))):
        wipe = delete(team)
        in_pipeline = []
        if pipeline_id is not None:
            wipe = wipe.where(team.c.pipeline_id == pipeline_id)
            in_pipeline = [source.c.pipeline_id == pipeline_id]
        session.execute(wipe)
        grouping = [source.c[name] for name in keys]
        sums = [func.sum(source.c[name]) for name in values]
        session.execute(insert(team).from_select(
            list(keys + values),
            select(*grouping, *sums).where(*in_pipeline).group_by(*grouping)
            .having(or_(*[total != 0 for total in sums]))))


def rebuild_call_days(session, *, time_zone: str, pipeline_id: int | None = None) -> None:
    """Recount the call counts alone (one pipeline's rows, or all) in ``time_zone``, the zone
    the tables count days in (also what the migration adding the missed calls runs)."""
    wipe = delete(call_days)
    if pipeline_id is not None:
        wipe = wipe.where(call_days.c.pipeline_id == pipeline_id)
    session.execute(wipe)
    _rebuild_calls(session, _dialect(session), ZoneInfo(time_zone), pipeline_id)


def _rebuild_calls(session, dialect: str, zone: ZoneInfo, pipeline_id: int | None) -> None:
    in_pipeline = [deals.c.pipeline_id == pipeline_id] if pipeline_id is not None else []
    on_deals = (calls.c.deal_id.in_(select(deals.c.id).where(*in_pipeline)) if in_pipeline
                else calls.c.deal_id.is_not(None))
    first, last = _bounds(session, calls.c.ringing_at, [on_deals])
    if first is None:
        return
    ringing = epoch_sql(dialect, calls.c.ringing_at)
    rung = (select(deals.c.pipeline_id, local_day_sql(dialect, ringing, zone, first, last)
                   .label("day"), stage_at_call_sql().label("stage_id"),
                   deals.c.owner_id.label("seller_id"), calls.c.deal_id, calls.c.direction,
                   calls.c.disposition)
            .select_from(calls).join(deals, deals.c.id == calls.c.deal_id)
            .where(*in_pipeline)).subquery()
    keys = [rung.c.pipeline_id, rung.c.day, rung.c.stage_id, rung.c.seller_id]
    outbound = func.sum(case((rung.c.direction == CallDirection.OUTBOUND.value, 1), else_=0))
    missed = func.sum(case((and_(rung.c.direction == CallDirection.INBOUND.value,
                                 rung.c.disposition.in_(MISSED_DISPOSITIONS)), 1), else_=0))
    session.execute(insert(call_days).from_select(
        list(CALL_KEYS + CALL_VALUES + MISSED_VALUES),
        select(*keys, func.count(), outbound, func.count(func.distinct(rung.c.deal_id)), missed)
        .where(rung.c.stage_id.is_not(None)).group_by(*keys)))


def _summed(session, table, key_names, value_names, pipeline_id) -> dict:
    query = select(*[table.c[name] for name in key_names + value_names])
    if pipeline_id is not None:
        query = query.where(table.c.pipeline_id == pipeline_id)
    width = len(value_names)
    summed: dict = defaultdict(lambda: (0,) * width)
    for row in session.execute(query):
        key = tuple(date.fromisoformat(str(value)) if name == "day"
                    and not isinstance(value, date) else value
                    for name, value in zip(key_names, row))
        summed[key] = tuple(a + int(b) for a, b in zip(summed[key], row[len(key_names):]))
    return {key: value for key, value in summed.items() if any(value)}


def histogram_totals(session, *, pipeline_id: int | None = None) -> dict:
    """The histograms and call counts (the missed calls apart), every key summed (what tests
    compare to a rebuild)."""
    return {"stay": _summed(session, stay_buckets, STAY_KEYS, ("moves",), pipeline_id),
            "team stay": _summed(session, team_stay_buckets, TEAM_STAY_KEYS, ("moves",),
                                 pipeline_id),
            "cycle": _summed(session, cycle_buckets, CYCLE_KEYS, ("wins",), pipeline_id),
            "calls": _summed(session, call_days, CALL_KEYS, CALL_VALUES, pipeline_id),
            "missed calls": _summed(session, call_days, CALL_KEYS, MISSED_VALUES, pipeline_id)}


def team_totals(session, *, pipeline_id: int | None = None) -> dict:
    """The team's ``report_days`` rollup, every key summed (what tests compare)."""
    return _summed(session, team_days, TEAM_DAY_KEYS, DAY_VALUES, pipeline_id)


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
