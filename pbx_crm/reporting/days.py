"""The daily counts behind the funnel reports: stage moves summed per local day and seller.

``report_days`` holds, per pipeline, local day (in one time zone, kept in
``report_day_zone``), from-stage, to-stage and responsible seller, the number of moves and
the sums the reports divide (time spent in the stage left, the deals' money, creation-to-move
time). Keyed by the stage pair rather than by a "moved on / lost" label, the rows stay right
when stages are reordered: the reports classify a pair with the positions of the day they run.
A report then reads at most days x stage pairs x sellers rows instead of the period's history.

The same family holds what long periods need beyond sums: ``report_stay_buckets`` and
``report_cycle_buckets`` count the time in a stage and the creation-to-win time in fixed
log-spaced buckets of duration (``DURATION_BUCKETS``), per day and seller, so a median over a
year reads a histogram (to within a bucket, about 5%) instead of millions of history rows;
``report_team_days`` and ``report_team_stay_buckets`` are ``report_days`` and the stay
histogram summed over the sellers, what a whole team's report reads (kept by the same hooks
from the same deltas: an owner change moves counts between sellers and nets to nothing in
them, a change of money moves the team's sums too);
``report_call_days`` counts the calls on deals per day, the deal's stage when it rang and
seller, with the deals called that day in that stage (kept by ``record_call``, which the call
writer calls where a call gets its deal) and the inbound calls missed or abandoned (kept by
``record_missed_call``, which the call writer calls where such a call ends).

Kept by the deal services (``pbx_crm.funnel.deals`` calls ``record_move`` for every history row it
writes, ``deal_changed`` when a deal's owner or amount changes: a deal's figures count for
its current owner and money), rebuilt in bulk from ``stage_history`` and ``calls`` by
``pbx_crm.reporting.days_rebuild`` (after a seed, by the migrations that add the tables, by
``pbx-crm report rebuild``, and once at start-up when the company's time zone is not the one
the tables count days in: ``ensure_zone``). Rows are additive: readers always sum them, so
two rows for one key (two first moves racing on PostgreSQL) are harmless. Updates go in key
order, so two moves never wait on each other in opposite orders.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Float,
    Integer,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    select,
    update,
)

from ..config import Settings
from ..enums import CallDirection, StageKind, is_missed_inbound
from ..models import (
    Call, Deal, ReportCallDay, ReportCycleBucket, ReportDay, ReportDayZone, ReportStayBucket,
    ReportTeamDay, ReportTeamStayBucket, Stage, StageHistory,
)

# Where no zone was chosen yet (a seed before any rebuild): the company default.
DEFAULT_TIME_ZONE = Settings.time_zone

days = ReportDay.__table__
zone_table = ReportDayZone.__table__
history = StageHistory.__table__
deals = Deal.__table__
stay_buckets = ReportStayBucket.__table__
team_stay_buckets = ReportTeamStayBucket.__table__
team_days = ReportTeamDay.__table__
cycle_buckets = ReportCycleBucket.__table__
call_days = ReportCallDay.__table__
calls = Call.__table__
stages = Stage.__table__
ZONE_CACHE = "pbx_crm.reporting.days.zone"


# --- the duration buckets: the one definition of the histograms' bins ----------------------


@dataclass(frozen=True)
class DurationBuckets:
    """Log-spaced bins of a duration: bin 0 below ``floor_seconds``; bin i (1..``count``)
    from floor x ratio^(i-1) to floor x ratio^i; bin ``count`` + 1 from there up (no upper
    bound). A value's bin is found the same way in Python and in SQL (``bucket_sql``)."""

    floor_seconds: int
    ceiling_seconds: int
    ratio: float

    @property
    def count(self) -> int:
        return math.ceil(math.log(self.ceiling_seconds / self.floor_seconds)
                         / math.log(self.ratio))

    @property
    def overflow(self) -> int:
        return self.count + 1

    @property
    def overflow_seconds(self) -> float:
        return self.floor_seconds * self.ratio ** self.count

    def bucket_of(self, seconds: float) -> int:
        if seconds < self.floor_seconds:
            return 0
        if seconds >= self.overflow_seconds:
            return self.overflow
        index = math.floor(math.log(float(seconds) / self.floor_seconds) / math.log(self.ratio))
        return min(index + 1, self.overflow)

    def bounds(self, bucket: int) -> tuple[float, float | None]:
        """``[low, high)`` seconds of a bin; ``high`` None for the open-ended last one."""
        if not 0 <= bucket <= self.overflow:
            raise ValueError(f"no duration bucket {bucket}")
        if bucket == 0:
            return 0.0, float(self.floor_seconds)
        if bucket == self.overflow:
            return self.overflow_seconds, None
        return (self.floor_seconds * self.ratio ** (bucket - 1),
                self.floor_seconds * self.ratio ** bucket)

    def bucket_sql(self, seconds):
        """The bin of an integer-seconds SQL expression (``ln`` on both databases)."""
        index = cast(func.floor(func.ln(cast(seconds, Float) / float(self.floor_seconds))
                                / math.log(self.ratio)), Integer) + 1
        return case((seconds < self.floor_seconds, 0),
                    (seconds >= self.overflow_seconds, self.overflow), else_=index)

    def median(self, counts: Mapping[int, int]) -> float | None:
        """The median of the values counted per bin: the middle rank (the two middle ones
        for an even count, averaged) placed inside its bin by linear interpolation, each
        rank at the middle of its share of the bin. Off by less than a bin's width (the
        ratio) from the exact median; the last bin gives its lower bound."""
        bins = sorted((bucket, count) for bucket, count in counts.items() if count > 0)
        total = sum(count for _, count in bins)
        if not total:
            return None

        def value_at(rank: int) -> float:
            seen = 0
            for bucket, count in bins:
                if rank <= seen + count:
                    low, high = self.bounds(bucket)
                    if high is None:
                        return low
                    return low + (high - low) * (rank - seen - 0.5) / count
                seen += count
            raise AssertionError("rank beyond the total")  # unreachable: rank <= total

        return (value_at((total + 1) // 2) + value_at((total + 2) // 2)) / 2


# About 5% wide, from a minute to two years: the reports' median times in stage and cycles.
DURATION_BUCKETS = DurationBuckets(floor_seconds=60, ceiling_seconds=2 * 365 * 86400,
                                   ratio=1.05)


# --- the time zone the days are counted in ------------------------------------------------


def day_zone(session) -> str | None:
    """The zone the table counts local days in; None: not built, nothing is kept."""
    info = getattr(session, "info", None)
    if info is not None and ZONE_CACHE in info:
        return info[ZONE_CACHE]
    found = session.execute(select(zone_table.c.time_zone).where(zone_table.c.id == 1)).scalar()
    if info is not None:
        info[ZONE_CACHE] = found
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


DAY_KEYS = ("pipeline_id", "day", "from_stage_id", "to_stage_id", "seller_id")
DAY_VALUES = ("moves", "stay_seconds", "amount_minor", "cycle_seconds")
TEAM_DAY_KEYS = ("pipeline_id", "day", "from_stage_id", "to_stage_id")
STAY_KEYS = ("pipeline_id", "day", "stage_id", "seller_id", "bucket")
TEAM_STAY_KEYS = ("pipeline_id", "day", "stage_id", "bucket")
CYCLE_KEYS = ("pipeline_id", "day", "seller_id", "bucket")
CALL_KEYS = ("pipeline_id", "day", "stage_id", "seller_id")
CALL_VALUES = ("calls", "outbound", "deals_called")
MISSED_VALUES = ("missed",)


@functools.cache
def _addition(table, key_names: tuple, value_names: tuple, null_keys: frozenset):
    """The UPDATE adding deltas to one key's row of ``table``, built once per shape of key
    (which key columns are NULL) with its values bound: the deal services and the call
    recorder run it on every change and call, and building it each time cost more than
    running it. Bound names unlike the columns' (an UPDATE takes a column's name as a value
    to set): ``key_<column>``, ``add_<column>``."""
    match = and_(*[table.c[name].is_(None) if name in null_keys
                   else table.c[name] == bindparam(f"key_{name}") for name in key_names])
    # One row per key is enough: add to the lowest id of the (possible) duplicates.
    first = select(func.min(table.c.id)).where(match).scalar_subquery()
    return (update(table).where(table.c.id == first)
            .values({name: table.c[name] + bindparam(f"add_{name}") for name in value_names})
            .execution_options(synchronize_session=False))


def _apply_to(session, table, key_names: tuple, value_names: tuple, deltas: dict) -> None:
    """Add each delta to its row of ``table`` (keyed by ``key_names``), creating missing rows."""
    for key in sorted(deltas, key=_key_order):
        values = deltas[key]
        if not any(values):
            continue
        null_keys = frozenset(name for name, value in zip(key_names, key) if value is None)
        added = session.execute(
            _addition(table, key_names, value_names, null_keys),
            {**{f"key_{name}": value for name, value in zip(key_names, key)
                if value is not None},
             **{f"add_{name}": value for name, value in zip(value_names, values)}})
        if added.rowcount == 0:
            session.execute(insert(table).values(
                {**dict(zip(key_names, key)), **dict(zip(value_names, values))}))


def _without_seller(deltas: dict, seller_at: int) -> dict:
    """The deltas summed over the sellers (the key's item at ``seller_at`` dropped): a change
    of owner nets to nothing there and is skipped."""
    team: dict = {}
    for key, values in deltas.items():
        _add(team, key[:seller_at] + key[seller_at + 1:], values, 1)
    return team


def _apply_stays(session, deltas: dict) -> None:
    """Add stay-bucket deltas (keyed as ``STAY_KEYS``) to the per-seller histogram and,
    summed over the sellers, to the team's."""
    _apply_to(session, stay_buckets, STAY_KEYS, ("moves",), deltas)
    _apply_to(session, team_stay_buckets, TEAM_STAY_KEYS, ("moves",),
              _without_seller(deltas, STAY_KEYS.index("seller_id")))


def _apply(session, deltas: dict) -> None:
    """Add each delta (moves, stay, amount, cycle) to its row, creating missing rows, and
    summed over the sellers to the team's."""
    _apply_to(session, days, DAY_KEYS, DAY_VALUES, deltas)
    _apply_to(session, team_days, TEAM_DAY_KEYS, DAY_VALUES,
              _without_seller(deltas, DAY_KEYS.index("seller_id")))


def _contribution(row, *, time_zone: str, seller_id, amount_minor: int, created_at: datetime):
    """The key and the sums one history row adds to the table."""
    stay = (_epoch_seconds(row.moved_at) - _epoch_seconds(row.from_entered_at)
            if row.from_entered_at is not None else 0)
    key = (row.pipeline_id, local_day(row.moved_at, time_zone), row.from_stage_id,
           row.to_stage_id, seller_id)
    cycle = _epoch_seconds(row.moved_at) - _epoch_seconds(created_at)
    return key, (1, stay, amount_minor, cycle)


def _add(deltas: dict, key, values, sign: int) -> None:
    current = deltas.get(key, (0,) * len(values))
    deltas[key] = tuple(c + sign * v for c, v in zip(current, values))


def _bucket_keys(key, values, *, won: bool, from_stage_id, seller_id):
    """The stay-bucket and cycle-bucket keys one history row counts in (None: none)."""
    pipeline_id, day = key[0], key[1]
    _, stay, _, cycle = values
    stay_key = ((pipeline_id, day, from_stage_id, seller_id, DURATION_BUCKETS.bucket_of(stay))
                if from_stage_id is not None else None)
    cycle_key = ((pipeline_id, day, seller_id, DURATION_BUCKETS.bucket_of(cycle))
                 if won else None)
    return stay_key, cycle_key


def _won_stage_ids(session) -> set:
    return set(session.execute(select(stages.c.id)
                               .where(stages.c.kind == StageKind.WON.value)).scalars())


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
    to_stage = session.get(Stage, history_row.to_stage_id)
    stay_key, cycle_key = _bucket_keys(
        key, values, won=to_stage is not None and to_stage.kind == StageKind.WON.value,
        from_stage_id=history_row.from_stage_id, seller_id=deal.owner_id)
    if stay_key is not None:
        _apply_stays(session, {stay_key: (1,)})
    if cycle_key is not None:
        _apply_to(session, cycle_buckets, CYCLE_KEYS, ("wins",), {cycle_key: (1,)})


def _stage_at(moves: list, at: datetime):
    """The stage a deal was in at ``at``, from its history rows in order (the call that
    created a deal rang a moment before it existed: its first stage)."""
    found = moves[0].to_stage_id if moves else None
    for row in moves:
        if row.moved_at <= at:
            found = row.to_stage_id
    return found


def _call_contributions(session, deal_id: int, *, pipeline_id: int, seller_id, time_zone: str,
                        moves: list) -> dict:
    """(pipeline, day, stage, seller) -> (calls, outbound, deals called, missed) of one deal's
    calls."""
    counted: dict = {}
    for ringing_at, direction, disposition in session.execute(
            select(calls.c.ringing_at, calls.c.direction, calls.c.disposition)
            .where(calls.c.deal_id == deal_id)):
        stage_id = _stage_at(moves, ringing_at)
        if stage_id is None:
            continue
        key = (pipeline_id, local_day(ringing_at, time_zone), stage_id, seller_id)
        number, outbound, _, missed = counted.get(key, (0, 0, 1, 0))
        counted[key] = (number + 1, outbound + (direction == CallDirection.OUTBOUND.value), 1,
                        missed + is_missed_inbound(direction, disposition))
    return counted


def deal_changed(session, deal_id: int, *, owner_before, owner_after, amount_before: int,
                 amount_after: int) -> None:
    """Move a deal's counted history (and calls) from its old owner and money to the new."""
    time_zone = day_zone(session)
    if time_zone is None or (owner_before == owner_after and amount_before == amount_after):
        return
    created_at, pipeline_id = session.execute(
        select(deals.c.created_at, deals.c.pipeline_id)
        .where(deals.c.id == deal_id)).one()
    moves = session.execute(select(history).where(history.c.deal_id == deal_id)
                            .order_by(history.c.moved_at, history.c.id)).all()
    won_ids = _won_stage_ids(session) if owner_before != owner_after else set()
    deltas: dict = {}
    stay_deltas: dict = {}
    cycle_deltas: dict = {}
    for row in moves:
        for seller_id, amount, sign in ((owner_before, amount_before, -1),
                                        (owner_after, amount_after, 1)):
            key, values = _contribution(row, time_zone=time_zone, seller_id=seller_id,
                                        amount_minor=amount, created_at=created_at)
            _add(deltas, key, values, sign)
            if owner_before == owner_after:
                continue
            stay_key, cycle_key = _bucket_keys(key, values, won=row.to_stage_id in won_ids,
                                               from_stage_id=row.from_stage_id,
                                               seller_id=seller_id)
            if stay_key is not None:
                _add(stay_deltas, stay_key, (1,), sign)
            if cycle_key is not None:
                _add(cycle_deltas, cycle_key, (1,), sign)
    _apply(session, deltas)
    if owner_before == owner_after:
        return
    _apply_stays(session, stay_deltas)
    _apply_to(session, cycle_buckets, CYCLE_KEYS, ("wins",), cycle_deltas)
    call_deltas: dict = {}
    for seller_id, sign in ((owner_before, -1), (owner_after, 1)):
        for key, values in _call_contributions(session, deal_id, pipeline_id=pipeline_id,
                                               seller_id=seller_id, time_zone=time_zone,
                                               moves=moves).items():
            _add(call_deltas, key, values, sign)
    _apply_to(session, call_days, CALL_KEYS, CALL_VALUES + MISSED_VALUES, call_deltas)


def record_missed_call(session, *, deal_id: int, at: datetime) -> None:
    """Count one inbound call on ``deal_id`` that rang at ``at`` and just ended missed or
    abandoned: in the stage the deal was in when it rang, for its owner now, as a rebuild
    counts it (a call ends once: ``record_hangup`` closes it conditionally)."""
    time_zone = day_zone(session)
    if time_zone is None:
        return
    deal = session.execute(select(deals.c.pipeline_id, deals.c.owner_id)
                           .where(deals.c.id == deal_id)).first()
    if deal is None:
        return
    moves = session.execute(select(history.c.to_stage_id, history.c.moved_at)
                            .where(history.c.deal_id == deal_id)
                            .order_by(history.c.moved_at, history.c.id)).all()
    stage_id = _stage_at(moves, at)
    if stage_id is None:
        return
    key = (deal.pipeline_id, local_day(at, time_zone), stage_id, deal.owner_id)
    _apply_to(session, call_days, CALL_KEYS, MISSED_VALUES, {key: (1,)})


# ``record_calls`` runs for every call the PBX records: its reads are built once, run on the
# session's connection (the ORM layer adds only its own cost to plain rows), and serve a
# whole batch of calls at once.
_CALLED_DEALS = select(deals.c.id, deals.c.pipeline_id, deals.c.stage_id, deals.c.owner_id,
                       deals.c.stage_entered_at, deals.c.created_at,
                       select(zone_table.c.time_zone).where(zone_table.c.id == 1)
                       .scalar_subquery().label("time_zone")
                       ).where(deals.c.id.in_(bindparam("deal_ids", expanding=True)))
_CALLS_OF_THE_DAY = (
    select(calls.c.deal_id, func.count()).where(
        calls.c.deal_id.in_(bindparam("deal_ids", expanding=True)),
        calls.c.ringing_at >= bindparam("since"), calls.c.ringing_at < bindparam("day_end"),
        calls.c.id.not_in(bindparam("batch_ids", expanding=True)))
    .group_by(calls.c.deal_id))


@dataclass(frozen=True)
class CalledDeal:
    """A call just recorded on a deal, to be counted: ``call_id`` orders the calls of one
    batch (a call is not counted as the day's first behind a later call of the batch)."""

    deal_id: int
    at: datetime  # when it rang
    direction: str
    call_id: int | None = None


def record_call(session, *, deal_id: int, at: datetime, direction: str) -> None:
    """Count one call just recorded on ``deal_id`` (ringing at ``at``)."""
    record_calls(session, [CalledDeal(deal_id, at, direction)])


def record_calls(session, called: list[CalledDeal]) -> None:
    """Count calls just recorded (a batch's in the order they were inserted, ``call_id``) in
    each deal's stage and for its owner as they are now; a deal counts once per day and
    stage. A few reads and one addition per row of counts, however many calls."""
    if not called:
        return
    connection = session.connection()
    deal_ids = sorted({call.deal_id for call in called})
    found = {deal.id: deal for deal in connection.execute(_CALLED_DEALS, {"deal_ids": deal_ids})}
    windows = []
    for call in called:
        deal = found.get(call.deal_id)
        if deal is None or deal.time_zone is None:  # no zone: the tables are not built
            continue
        zone = ZoneInfo(deal.time_zone)
        day = local_day(call.at, deal.time_zone)
        day_start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
        day_end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
        # Calls of the deal this day since it entered its stage: this one alone, a new
        # deal-day. A deal still in its first stage holds the calls that rang before it was
        # created.
        entered = deal.stage_entered_at
        since = (max(day_start, entered) if entered is not None and entered > deal.created_at
                 else day_start)
        windows.append((call, deal, day, since, day_end))
    if not windows:
        return
    # The calls each deal had in each window before the batch's (usually one window for all:
    # the day, for deals in their stage since before it), one count per window.
    batch_ids = sorted(call.call_id for call in called if call.call_id is not None)
    deals_in: dict[tuple, set] = {}
    for call, _deal, _day, since, day_end in windows:
        deals_in.setdefault((since, day_end), set()).add(call.deal_id)
    before = {}
    for (since, day_end), deal_ids in deals_in.items():
        for deal_id, count in connection.execute(_CALLS_OF_THE_DAY, {
                "deal_ids": sorted(deal_ids), "since": since, "day_end": day_end,
                "batch_ids": batch_ids}):
            before[deal_id, since, day_end] = count
    deltas: dict = {}
    earlier: Counter = Counter()  # the batch's calls so far in each window, in their order
    for call, deal, day, since, day_end in sorted(windows, key=lambda w: w[0].call_id or 0):
        window = (call.deal_id, since, day_end)
        if call.call_id is not None and since <= call.at < day_end:
            earlier[window] += 1
        same_day = before.get(window, 0) + earlier[window]  # this one alone: a new deal-day
        key = (deal.pipeline_id, day, deal.stage_id, deal.owner_id)
        _add(deltas, key, (1, int(call.direction == CallDirection.OUTBOUND.value),
                           int(same_day <= 1)), 1)
    _apply_to(session, call_days, CALL_KEYS, CALL_VALUES, deltas)
