"""Funnel reports for a pipeline and a period: stage by stage, seller by seller, week by week.

Plain functions over a session and an ``Actor``, read-only, called by the CLI and the web page.
Every figure is an SQL aggregate (SQLAlchemy Core, the same statement on SQLite and
PostgreSQL) over the stage history, the calls and the robot runs; no deal is loaded into
Python. Python only resolves the period, names the stages and sellers, and fills the rows of
the dataclasses the page and the CLI render (``FunnelReport`` and its parts).

Definitions (the period is ``[start, end)`` in the company time zone):
- *entered*: moves into the stage in the period (creation in it included);
- *moved on*: moves out of the stage to a later stage or to a won stage; *lost*: moves out of
  it to a lost stage; *moved back*: any other move out (to an earlier stage);
- *conversion* = moved on / (moved on + lost), the share of the deals decided at the stage that
  went forward; *loss %* = lost / (moved on + lost);
- *time in stage*: from entering the stage to leaving it, over the moves out in the period;
- *win rate* = won / (won + lost) over the closings in the period; *cycle*: creation to win;
- a deal's figures count for its responsible seller (its current owner); a seller sees their
  own figures only, a head sees everyone's and may ask for one seller's.

Medians are exact for periods up to ``EXACT_PERIOD_DAYS`` days (one query over the period's
history rows). Beyond, they come from the daily histograms of ``pbx_crm.reporting.days``: to
within a bucket (about 5%), and flagged approximate (``median_approximate``,
``cycle_median_approximate``), which the page and the CLI show as "≈". Calls by stage over
such a period come from the daily call counts, with the deals present in a stage counted as
stays (a deal back in a stage twice counts twice), flagged the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    BigInteger,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlmodel import Session

from ..funnel import pipelines
from . import days as report_days
from .local_days import local_day_sql, offset_changes
from ..enums import CallDirection, Disposition, NudgeAnswer, RobotRunStatus, StageKind
from ..errors import ValidationError
from ..rules.funnel import Actor, ensure_head
from ..models import (
    Call, Deal, ReportCallDay, ReportCycleBucket, ReportDay, ReportStayBucket, ReportTeamDay,
    ReportTeamStayBucket, RobotRule, RobotRun, Stage, StageHistory, User,
)
from ..people.users import get_user_by_login

MAX_PERIOD_DAYS = 5 * 366
# Up to this many days a report's medians and deals per stage are exact; beyond, they are
# read from the daily histograms and counts, and flagged approximate.
EXACT_PERIOD_DAYS = 31
WEEK_SECONDS = 7 * 86400
# A missed call: the customer rang and nobody picked up (or they hung up while it rang).
MISSED_DISPOSITIONS = (Disposition.MISSED.value, Disposition.ABANDONED.value)
# A loss-map cell is weak when its loss % is this many points above its stage's, over at
# least this many decided deals (fewer are chance, not a pattern).
WEAK_CELL_MARGIN = 0.15
WEAK_CELL_MIN_DECIDED = 3
# The robot action that asks the deal's owner for a decision (moved on, lower priority,
# snooze): ``Action.NOTIFY_OWNER`` in pbx_crm.robots.rules. Other actions ask nobody anything.
NUDGE_ACTIONS = ("notify_owner",)
NOBODY = "(nobody yet)"
NO_TEAM = "(no team)"

history = StageHistory.__table__
deals = Deal.__table__
stages = Stage.__table__
users = User.__table__
calls = Call.__table__
runs = RobotRun.__table__
rules = RobotRule.__table__
days = ReportDay.__table__
stay_buckets = ReportStayBucket.__table__
team_stay_buckets = ReportTeamStayBucket.__table__
team_days = ReportTeamDay.__table__
cycle_buckets = ReportCycleBucket.__table__
call_days = ReportCallDay.__table__


# --- the period ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in local dates of ``time_zone``, and the same bounds as UTC instants."""

    start: date
    end: date
    time_zone: str
    start_utc: datetime
    end_utc: datetime

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()} to {(self.end - timedelta(days=1)).isoformat()}"


def _zone(time_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationError(f"Unknown time zone “{str(time_zone)[:64]}”.",
                              field="time_zone") from None


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def make_period(start: date, end: date, time_zone: str) -> Period:
    """The period from ``start`` (included) to ``end`` (excluded), local dates."""
    if not isinstance(start, date) or not isinstance(end, date):
        raise ValidationError("A period is two dates.", field="period")
    if end <= start:
        raise ValidationError("The period must end after it starts.", field="period")
    if (end - start).days > MAX_PERIOD_DAYS:
        raise ValidationError("A report covers at most five years.", field="period")
    zone = _zone(time_zone)
    return Period(start, end, time_zone, _local_midnight(start, zone), _local_midnight(end, zone))


# --- what the report holds ------------------------------------------------------------------


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class StageFigures:
    stage_id: int
    name: str
    position: int
    is_unsorted: bool
    open_deals: int
    open_amount_minor: int
    entered: int
    moved_on: int
    moved_back: int
    lost: int
    avg_seconds: float | None
    median_seconds: float | None
    median_approximate: bool = False  # from the daily histogram, to within about 5%

    @property
    def decided(self) -> int:
        return self.moved_on + self.lost

    @property
    def conversion(self) -> float | None:
        return _share(self.moved_on, self.decided)

    @property
    def loss_rate(self) -> float | None:
        return _share(self.lost, self.decided)


@dataclass(frozen=True)
class Outcomes:
    created: int
    won: int
    lost: int
    won_amount_minor: int
    cycle_avg_seconds: float | None
    cycle_median_seconds: float | None
    cycle_median_approximate: bool = False  # from the daily histogram, to within about 5%

    @property
    def win_rate(self) -> float | None:
        return _share(self.won, self.won + self.lost)


@dataclass(frozen=True)
class LossCell:
    stage_id: int
    moved_on: int
    lost: int
    weak: bool

    @property
    def decided(self) -> int:
        return self.moved_on + self.lost

    @property
    def loss_rate(self) -> float | None:
        return _share(self.lost, self.decided)


@dataclass(frozen=True)
class LossRow:
    """One seller (``key`` their user id) or one team (``key`` its name) across the stages."""

    key: int | str | None
    name: str
    cells: list[LossCell]

    def cell(self, stage_id: int) -> LossCell:
        return next(cell for cell in self.cells if cell.stage_id == stage_id)


@dataclass(frozen=True)
class LossMap:
    """Stages (columns, board order) x sellers or teams (rows); ``overall`` is the team's."""

    by: str  # "seller" or "team"
    stages: list[tuple[int, str]]
    overall: list[LossCell]
    rows: list[LossRow]

    def overall_cell(self, stage_id: int) -> LossCell:
        return next(cell for cell in self.overall if cell.stage_id == stage_id)


@dataclass(frozen=True)
class StageCalls:
    stage_id: int
    name: str
    deals: int  # deals that spent time in the stage during the period
    calls: int
    outbound: int
    missed: int
    # The deals called per day, summed over the days: a deal called on three days counts 3.
    deal_days_called: int = 0
    approximate: bool = False  # ``deals`` counts stays (a deal back in the stage twice: 2)

    @property
    def calls_per_deal(self) -> float | None:
        return _share(self.calls, self.deals)


@dataclass(frozen=True)
class Callbacks:
    """Missed calls on a seller's deals and how fast the deal got a call back."""

    seller_id: int | None
    seller_name: str
    missed: int
    called_back: int
    avg_seconds: float | None
    median_seconds: float | None

    @property
    def not_called_back(self) -> int:
        return self.missed - self.called_back


@dataclass(frozen=True)
class NudgeAnswers:
    seller_id: int | None
    seller_name: str
    stage_id: int
    stage_name: str
    fired: int
    moved_on: int
    lower_priority: int
    snooze: int

    @property
    def answered(self) -> int:
        return self.moved_on + self.lower_priority + self.snooze

    @property
    def unanswered(self) -> int:
        return self.fired - self.answered


@dataclass(frozen=True)
class Week:
    start: date  # the local Monday the week starts on (the first may start before the period)
    created: int
    moved_on: int
    won: int
    lost: int


@dataclass(frozen=True)
class FunnelReport:
    """Everything the reports page and ``pbx-crm report`` show, for one pipeline and period."""

    pipeline_id: int
    pipeline_name: str
    currency: str
    period: Period
    seller_id: int | None  # None: every seller
    seller_name: str | None
    stages: list[StageFigures]
    outcomes: Outcomes
    losses: LossMap
    losses_by_team: LossMap | None  # None when no user has a team
    calls: list[StageCalls]
    callbacks: list[Callbacks]
    nudges: list[NudgeAnswers]
    weeks: list[Week] = field(default_factory=list)


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
            ensure_head(actor, "see another seller's figures")
        seller_id = actor.user_id
    seller_name = None
    if seller_id is not None:
        seller = session.get(User, seller_id)
        if seller is None:
            raise ValidationError(f"No user #{seller_id}.", field="seller")
        seller_name = seller.name
    stage_list = tuple((s.id, s.name, s.position, s.kind, s.is_unsorted)
                       for s in pipelines.stages_of(session, pipeline.id))
    return Scope(pipeline.id, pipeline.name, pipeline.currency, period, seller_id, seller_name,
                 stage_list, session.get_bind().dialect.name)


# --- SQL helpers: the few places the two databases differ -------------------------------------


def _epoch(scope: Scope, column):
    """Whole seconds since 1970 of a timestamp column (text on SQLite, timestamptz on PG)."""
    if scope.dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


def _seconds_between(scope: Scope, later, earlier):
    return _epoch(scope, later) - _epoch(scope, earlier)


def _medians(session: Session, scope: Scope, values, value, keys: list) -> dict:
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


def _in_period(column, period: Period):
    return and_(column >= period.start_utc, column < period.end_utc)


def _owned(scope: Scope, owner_column):
    return owner_column == scope.seller_id if scope.seller_id is not None else literal(True)


def _moves_in_period(scope: Scope, *columns):
    """Stage-history rows of the pipeline in the period, joined to their deal (for the
    responsible seller) only when the figures are one seller's."""
    query = select(*columns).where(history.c.pipeline_id == scope.pipeline_id,
                                   _in_period(history.c.moved_at, scope.period))
    if scope.seller_id is not None:
        query = query.join(deals, deals.c.id == history.c.deal_id).where(
            deals.c.owner_id == scope.seller_id)
    return query


_FROM, _TO = "from_stage", "to_stage"


def _sum_if(condition):
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


# --- the daily counts: moves summed per local day (pbx_crm.reporting.days) ------------------------


def _uses_days(session: Session, scope: Scope) -> bool:
    """Whether the daily table counts days in the period's zone (else: the history itself)."""
    return report_days.day_zone(session) == scope.period.time_zone


def _uses_histograms(session: Session, scope: Scope) -> bool:
    """Whether medians and calls come from the daily histograms and counts: a period longer
    than ``EXACT_PERIOD_DAYS``, with the daily tables in its zone."""
    period = scope.period
    return (period.end - period.start).days > EXACT_PERIOD_DAYS and _uses_days(session, scope)


def _in_days(scope: Scope, table):
    """The table's rows of the pipeline and period; of the scope's seller when it has one
    (a table without sellers is a whole team's: read only when no seller is asked for)."""
    found = and_(table.c.pipeline_id == scope.pipeline_id, table.c.day >= scope.period.start,
                 table.c.day < scope.period.end)
    if "seller_id" not in table.c:
        assert scope.seller_id is None, "a team-wide table read for one seller"
        return found
    return and_(found, _owned(scope, table.c.seller_id))


def _histogram_medians(session: Session, scope: Scope, table, count_column, *keys) -> dict:
    """key -> median of the durations counted per bucket in ``table`` over the period."""
    counts: dict = {}
    for *key, bucket, count in session.execute(
            select(*keys, table.c.bucket, func.sum(count_column))
            .where(_in_days(scope, table)).group_by(*keys, table.c.bucket)):
        counts.setdefault(tuple(key), {})[int(bucket)] = int(count or 0)
    medians = {key: report_days.DURATION_BUCKETS.median(bins) for key, bins in counts.items()}
    return {key: median for key, median in medians.items() if median is not None}


@dataclass(frozen=True)
class _Pair:
    """Moves from one stage to another summed over the period (``key``: the grouping)."""

    key: tuple
    from_stage_id: int | None
    to_stage_id: int
    moves: int
    stay_seconds: int
    amount_minor: int
    cycle_seconds: int


def _days_table(scope: Scope, *key_names: str):
    """The daily moves a report reads: the whole team's rollup (many times fewer rows) unless
    the figures are one seller's or grouped by seller."""
    return days if scope.seller_id is not None or "seller_id" in key_names else team_days


def _day_pairs(session: Session, scope: Scope, *key_names: str) -> list[_Pair]:
    """The period's moves summed per stage pair (and per ``key_names`` columns, the key)."""
    table = _days_table(scope, *key_names)
    keys = [table.c[name] for name in key_names]
    query = (select(*keys, table.c.from_stage_id, table.c.to_stage_id,
                    func.sum(table.c.moves), func.sum(table.c.stay_seconds),
                    func.sum(table.c.amount_minor), func.sum(table.c.cycle_seconds))
             .where(_in_days(scope, table))
             .group_by(*keys, table.c.from_stage_id, table.c.to_stage_id))
    found = []
    for row in session.execute(query):
        *key, from_id, to_id, moves, stay, amount, cycle = row
        if moves:  # a key whose moves all went to another owner sums to nothing
            found.append(_Pair(tuple(key), from_id, to_id, int(moves), int(stay or 0),
                               int(amount or 0), int(cycle or 0)))
    return found


_BACK, _ON, _LOST = 0, 1, 2


def _exit_kind(scope: Scope, from_id: int, to_id: int) -> int:
    """A move out of a stage: lost, on (to a later stage) or back, by today's positions."""
    if to_id in scope.ids_of(StageKind.LOST):
        return _LOST
    position = {s[0]: s[2] for s in scope.stage_list}
    return _ON if position.get(to_id, 0) > position.get(from_id, 0) else _BACK


def _stay_medians(session: Session, scope: Scope) -> dict:
    """Median time in stage per stage over the period's moves out: from the daily histogram
    for a long period, else exact, one query over the history rows (the covering index)."""
    if _uses_histograms(session, scope):
        # The whole team's: the rollup without the sellers, many times fewer rows to sum.
        table = team_stay_buckets if scope.seller_id is None else stay_buckets
        return _histogram_medians(session, scope, table, table.c.moves, table.c.stage_id)
    seconds = _seconds_between(scope, history.c.moved_at, history.c.from_entered_at)
    exits = (_moves_in_period(scope, history.c.from_stage_id.label("stage_id"),
                              seconds.label("seconds"))
             .where(history.c.from_stage_id.is_not(None))).subquery()
    return _medians(session, scope, exits, exits.c.seconds, [exits.c.stage_id])


# --- the parts of the report ------------------------------------------------------------------


def stage_figures(session: Session, scope: Scope) -> list[StageFigures]:
    """Per open stage: deals and money in it now; entered, moved on, back, lost and the time
    spent in it over the period."""
    now = dict(((stage_id, (count, amount)) for stage_id, count, amount in session.execute(
        select(deals.c.stage_id, func.count(), func.coalesce(func.sum(deals.c.amount_minor), 0))
        .where(deals.c.pipeline_id == scope.pipeline_id, _owned(scope, deals.c.owner_id))
        .group_by(deals.c.stage_id))))
    if _uses_days(session, scope):
        return _stage_figures_from_days(session, scope, now)
    entered = dict(session.execute(
        _moves_in_period(scope, history.c.to_stage_id, func.count())
        .group_by(history.c.to_stage_id)).all())

    from_stage, to_stage = stages.alias(_FROM), stages.alias(_TO)
    lost_ids = scope.ids_of(StageKind.LOST)
    exit_kind = case((history.c.to_stage_id.in_(lost_ids), 2),
                     (to_stage.c.position > from_stage.c.position, 1), else_=0)
    seconds = _seconds_between(scope, history.c.moved_at, history.c.from_entered_at)
    exits_query = (_moves_in_period(scope, history.c.from_stage_id.label("stage_id"),
                                    exit_kind.label("kind"), seconds.label("seconds"))
                   .join(from_stage, from_stage.c.id == history.c.from_stage_id)
                   .join(to_stage, to_stage.c.id == history.c.to_stage_id))
    exits = exits_query.subquery()
    totals = {row.stage_id: row for row in session.execute(
        select(exits.c.stage_id, _sum_if(exits.c.kind == 1).label("moved_on"),
               _sum_if(exits.c.kind == 0).label("moved_back"),
               _sum_if(exits.c.kind == 2).label("lost"),
               func.avg(exits.c.seconds).label("avg_seconds")).group_by(exits.c.stage_id))}
    medians = _medians(session, scope, exits, exits.c.seconds, [exits.c.stage_id])

    figures = []
    for stage_id, name, position, kind, is_unsorted in scope.work_stages:
        count, amount = now.get(stage_id, (0, 0))
        row = totals.get(stage_id)
        figures.append(StageFigures(
            stage_id, name, position, is_unsorted, int(count), int(amount),
            int(entered.get(stage_id, 0)), int(row.moved_on) if row else 0,
            int(row.moved_back) if row else 0, int(row.lost) if row else 0,
            float(row.avg_seconds) if row and row.avg_seconds is not None else None,
            medians.get((stage_id,))))
    return figures


def _stage_figures_from_days(session: Session, scope: Scope, now: dict) -> list[StageFigures]:
    entered, counts, stay, exits = {}, {}, {}, {}
    for pair in _day_pairs(session, scope):
        entered[pair.to_stage_id] = entered.get(pair.to_stage_id, 0) + pair.moves
        if pair.from_stage_id is None:
            continue
        stage_id, kind = pair.from_stage_id, _exit_kind(scope, pair.from_stage_id,
                                                        pair.to_stage_id)
        counts[stage_id, kind] = counts.get((stage_id, kind), 0) + pair.moves
        stay[stage_id] = stay.get(stage_id, 0) + pair.stay_seconds
        exits[stage_id] = exits.get(stage_id, 0) + pair.moves
    medians = _stay_medians(session, scope)
    approximate = _uses_histograms(session, scope)
    figures = []
    for stage_id, name, position, kind, is_unsorted in scope.work_stages:
        count, amount = now.get(stage_id, (0, 0))
        left = exits.get(stage_id, 0)
        figures.append(StageFigures(
            stage_id, name, position, is_unsorted, int(count), int(amount),
            entered.get(stage_id, 0), counts.get((stage_id, _ON), 0),
            counts.get((stage_id, _BACK), 0), counts.get((stage_id, _LOST), 0),
            stay[stage_id] / left if left else None, medians.get((stage_id,)),
            approximate and (stage_id,) in medians))
    return figures


def _won_cycle_median(session: Session, scope: Scope) -> float | None:
    if _uses_histograms(session, scope):
        return _histogram_medians(session, scope, cycle_buckets, cycle_buckets.c.wins).get(())
    won_cycles = (select(_seconds_between(scope, history.c.moved_at, deals.c.created_at)
                         .label("seconds"))
                  .join(deals, deals.c.id == history.c.deal_id)
                  .where(history.c.pipeline_id == scope.pipeline_id,
                         _in_period(history.c.moved_at, scope.period),
                         history.c.to_stage_id.in_(scope.ids_of(StageKind.WON)),
                         _owned(scope, deals.c.owner_id)).subquery())
    return _medians(session, scope, won_cycles, won_cycles.c.seconds, []).get(())


def _outcomes_from_days(session: Session, scope: Scope) -> Outcomes:
    won_ids, lost_ids = set(scope.ids_of(StageKind.WON)), set(scope.ids_of(StageKind.LOST))
    created = won = lost = won_amount = cycle = 0
    for pair in _day_pairs(session, scope):
        if pair.from_stage_id is None:
            created += pair.moves
        if pair.to_stage_id in won_ids:
            won += pair.moves
            won_amount += pair.amount_minor
            cycle += pair.cycle_seconds
        elif pair.to_stage_id in lost_ids:
            lost += pair.moves
    median = _won_cycle_median(session, scope)
    return Outcomes(created, won, lost, won_amount, cycle / won if won else None, median,
                    median is not None and _uses_histograms(session, scope))


def outcomes(session: Session, scope: Scope) -> Outcomes:
    """Deals created, won and lost in the period; the win rate; creation-to-win cycle."""
    if _uses_days(session, scope):
        return _outcomes_from_days(session, scope)
    won_ids, lost_ids = scope.ids_of(StageKind.WON), scope.ids_of(StageKind.LOST)
    is_won = history.c.to_stage_id.in_(won_ids)
    query = (select(history.c.from_stage_id, history.c.to_stage_id, history.c.moved_at,
                    deals.c.created_at, deals.c.amount_minor)
             .join(deals, deals.c.id == history.c.deal_id)
             .where(history.c.pipeline_id == scope.pipeline_id,
                    _in_period(history.c.moved_at, scope.period),
                    _owned(scope, deals.c.owner_id)))
    created = session.execute(
        _moves_in_period(scope, func.count()).where(history.c.from_stage_id.is_(None))).scalar()
    closings = query.where(history.c.to_stage_id.in_(won_ids + lost_ids)).subquery()
    cycle = _seconds_between(scope, closings.c.moved_at, closings.c.created_at)
    won_now = closings.c.to_stage_id.in_(won_ids)
    row = session.execute(select(
        _sum_if(won_now), _sum_if(~won_now),
        func.coalesce(func.sum(case((won_now, closings.c.amount_minor), else_=0)), 0),
        func.avg(case((won_now, cycle))))).one()
    won_cycles = (select(_seconds_between(scope, history.c.moved_at, deals.c.created_at)
                         .label("seconds"))
                  .join(deals, deals.c.id == history.c.deal_id)
                  .where(history.c.pipeline_id == scope.pipeline_id,
                         _in_period(history.c.moved_at, scope.period), is_won,
                         _owned(scope, deals.c.owner_id)).subquery())
    median = _medians(session, scope, won_cycles, won_cycles.c.seconds, []).get(())
    return Outcomes(int(created), int(row[0]), int(row[1]), int(row[2]),
                    float(row[3]) if row[3] is not None else None, median)


def _loss_cells(scope: Scope, counts: dict, key) -> list[LossCell]:
    return [LossCell(stage_id, *counts.get((key, stage_id), (0, 0)), weak=False)
            for stage_id, *_ in scope.work_stages]


def _flag_weak(overall: list[LossCell], cells: list[LossCell]) -> list[LossCell]:
    flagged = []
    for cell, stage in zip(cells, overall):
        weak = (cell.decided >= WEAK_CELL_MIN_DECIDED and stage.loss_rate is not None
                and cell.loss_rate - stage.loss_rate >= WEAK_CELL_MARGIN)
        flagged.append(LossCell(cell.stage_id, cell.moved_on, cell.lost, weak))
    return flagged


def loss_maps(session: Session, scope: Scope,
              figures: list[StageFigures]) -> tuple[LossMap, LossMap | None]:
    """Stages x sellers and stages x teams: what each one moved on and lost at each stage,
    against the stage's own figures (``figures``, from ``stage_figures``)."""
    if _uses_days(session, scope):
        return _loss_maps_from_days(session, scope, figures)
    from_stage, to_stage = stages.alias(_FROM), stages.alias(_TO)
    lost_ids = scope.ids_of(StageKind.LOST)
    is_lost = history.c.to_stage_id.in_(lost_ids)
    forward = and_(~is_lost, to_stage.c.position > from_stage.c.position)
    query = (select(deals.c.owner_id, history.c.from_stage_id, _sum_if(forward), _sum_if(is_lost))
             .select_from(history)
             .join(deals, deals.c.id == history.c.deal_id)
             .join(from_stage, from_stage.c.id == history.c.from_stage_id)
             .join(to_stage, to_stage.c.id == history.c.to_stage_id)
             .where(history.c.pipeline_id == scope.pipeline_id,
                    _in_period(history.c.moved_at, scope.period),
                    _owned(scope, deals.c.owner_id))
             .group_by(deals.c.owner_id, history.c.from_stage_id))
    by_seller = {(owner, stage_id): (int(on), int(lost))
                 for owner, stage_id, on, lost in session.execute(query)}
    overall = [LossCell(f.stage_id, f.moved_on, f.lost, weak=False) for f in figures]
    columns = [(stage_id, name) for stage_id, name, *_ in scope.work_stages]

    sellers = sorted({owner for owner, _ in by_seller})
    names = dict(session.execute(select(users.c.id, users.c.name)
                                 .where(users.c.id.in_([s for s in sellers if s is not None])))
                 .all())
    rows = [LossRow(owner, names.get(owner, NOBODY),
                    _flag_weak(overall, _loss_cells(scope, by_seller, owner)))
            for owner in sorted(sellers, key=lambda s: (s is None, names.get(s, "")))]
    seller_map = LossMap("seller", columns, overall, rows)

    team_query = (select(users.c.team, history.c.from_stage_id, _sum_if(forward),
                         _sum_if(is_lost))
                  .select_from(history)
                  .join(deals, deals.c.id == history.c.deal_id)
                  .join(users, users.c.id == deals.c.owner_id)
                  .join(from_stage, from_stage.c.id == history.c.from_stage_id)
                  .join(to_stage, to_stage.c.id == history.c.to_stage_id)
                  .where(history.c.pipeline_id == scope.pipeline_id,
                         _in_period(history.c.moved_at, scope.period),
                         _owned(scope, deals.c.owner_id), users.c.team.is_not(None))
                  .group_by(users.c.team, history.c.from_stage_id))
    by_team = {(team, stage_id): (int(on), int(lost))
               for team, stage_id, on, lost in session.execute(team_query)}
    if not by_team:
        return seller_map, None
    teams = sorted({team for team, _ in by_team})
    team_rows = [LossRow(team, team, _flag_weak(overall, _loss_cells(scope, by_team, team)))
                 for team in teams]
    return seller_map, LossMap("team", columns, overall, team_rows)


def _decided(session: Session, scope: Scope, *key_names: str) -> dict:
    """(key, stage) -> (moved on, lost) from the daily counts; every key with a move out."""
    decided: dict = {}
    for pair in _day_pairs(session, scope, *key_names):
        if pair.from_stage_id is None:
            continue
        cell = (pair.key[0], pair.from_stage_id)
        on, lost = decided.get(cell, (0, 0))
        kind = _exit_kind(scope, pair.from_stage_id, pair.to_stage_id)
        decided[cell] = (on + pair.moves * (kind == _ON), lost + pair.moves * (kind == _LOST))
    return decided


def _loss_maps_from_days(session: Session, scope: Scope,
                         figures: list[StageFigures]) -> tuple[LossMap, LossMap | None]:
    by_seller = _decided(session, scope, "seller_id")
    overall = [LossCell(f.stage_id, f.moved_on, f.lost, weak=False) for f in figures]
    columns = [(stage_id, name) for stage_id, name, *_ in scope.work_stages]
    sellers = {owner for owner, _ in by_seller}
    names = _seller_names(session, sellers)
    rows = [LossRow(owner, names.get(owner, NOBODY),
                    _flag_weak(overall, _loss_cells(scope, by_seller, owner)))
            for owner in sorted(sellers, key=lambda s: (s is None, names.get(s, "")))]
    seller_map = LossMap("seller", columns, overall, rows)
    teams_of = dict(session.execute(select(users.c.id, users.c.team)
                                    .where(users.c.team.is_not(None))).all())
    by_team: dict = {}
    for (owner, stage_id), (on, lost) in by_seller.items():
        team = teams_of.get(owner)
        if team is not None:
            was_on, was_lost = by_team.get((team, stage_id), (0, 0))
            by_team[team, stage_id] = (was_on + on, was_lost + lost)
    if not by_team:
        return seller_map, None
    team_rows = [LossRow(team, team, _flag_weak(overall, _loss_cells(scope, by_team, team)))
                 for team in sorted({team for team, _ in by_team})]
    return seller_map, LossMap("team", columns, overall, team_rows)


def stage_calls(session: Session, scope: Scope) -> list[StageCalls]:
    """Per open stage: the calls on deals while they sat in it, and the deals that sat in it
    during the period. A call belongs to the stage its deal was in when it rang; the call
    that created a deal (it rang a moment before the deal existed) to the first stage.
    A long period reads the daily call counts and counts stays (``_stage_calls_from_days``)."""
    if _uses_histograms(session, scope):
        return _stage_calls_from_days(session, scope)
    period = scope.period
    ringing = _epoch(scope, calls.c.ringing_at)
    local_day = local_day_sql(scope.dialect, ringing, _zone(period.time_zone),
                                           period.start_utc, period.end_utc)
    rung = (select(report_days.stage_at_call_sql().label("stage_id"), calls.c.direction,
                   calls.c.disposition, calls.c.deal_id, local_day.label("day"))
            .select_from(calls).join(deals, deals.c.id == calls.c.deal_id)
            .where(deals.c.pipeline_id == scope.pipeline_id,
                   _in_period(calls.c.ringing_at, period),
                   _owned(scope, deals.c.owner_id))).subquery()
    missed = and_(rung.c.direction == CallDirection.INBOUND.value,
                  rung.c.disposition.in_(MISSED_DISPOSITIONS))
    per_stage = {row[0]: row[1:] for row in session.execute(
        select(rung.c.stage_id, func.count(),
               _sum_if(rung.c.direction == CallDirection.OUTBOUND.value), _sum_if(missed))
        .group_by(rung.c.stage_id))}
    called = select(rung.c.stage_id, rung.c.deal_id, rung.c.day).distinct().subquery()
    deal_days = dict(session.execute(select(called.c.stage_id, func.count())
                                     .group_by(called.c.stage_id)).all())

    # The deals whose stay in a stage overlaps the period: stays that ended in it or later
    # (a move out), and stays still going (the deal's current stage).
    ended = (select(history.c.deal_id, history.c.from_stage_id.label("stage_id"))
             .select_from(history).join(deals, deals.c.id == history.c.deal_id)
             .where(history.c.pipeline_id == scope.pipeline_id,
                    history.c.from_stage_id.is_not(None),
                    history.c.moved_at >= scope.period.start_utc,
                    history.c.from_entered_at < scope.period.end_utc,
                    _owned(scope, deals.c.owner_id)))
    going = (select(deals.c.id.label("deal_id"), deals.c.stage_id)
             .where(deals.c.pipeline_id == scope.pipeline_id,
                    deals.c.stage_entered_at < scope.period.end_utc,
                    _owned(scope, deals.c.owner_id)))
    stays = union_all(ended, going).subquery()
    present = dict(session.execute(
        select(stays.c.stage_id, func.count(func.distinct(stays.c.deal_id)))
        .group_by(stays.c.stage_id)).all())

    rows = []
    for stage_id, name, *_ in scope.work_stages:
        count, outbound, missed_count = per_stage.get(stage_id, (0, 0, 0))
        rows.append(StageCalls(stage_id, name, int(present.get(stage_id, 0)), int(count),
                               int(outbound), int(missed_count),
                               int(deal_days.get(stage_id, 0))))
    return rows


def _stage_calls_from_days(session: Session, scope: Scope) -> list[StageCalls]:
    """Calls by stage over a long period: calls, outbound calls and deal-days from the daily
    call counts; missed calls (few) from the calls themselves; and the stays in each stage
    that overlap the period from the daily moves. A stay overlaps [start, end) unless it
    ended before start or began at end or later, so per stage: the deals in it now, plus
    the moves out of it from start on, minus the moves into it from end on."""
    period = scope.period
    counted = {row[0]: row[1:] for row in session.execute(
        select(call_days.c.stage_id, func.sum(call_days.c.calls),
               func.sum(call_days.c.outbound), func.sum(call_days.c.deals_called))
        .where(_in_days(scope, call_days)).group_by(call_days.c.stage_id))}
    missed_calls = (select(report_days.stage_at_call_sql().label("stage_id"))
                    .select_from(calls).join(deals, deals.c.id == calls.c.deal_id)
                    .where(deals.c.pipeline_id == scope.pipeline_id,
                           _in_period(calls.c.ringing_at, period),
                           calls.c.direction == CallDirection.INBOUND.value,
                           calls.c.disposition.in_(MISSED_DISPOSITIONS),
                           _owned(scope, deals.c.owner_id))).subquery()
    missed = dict(session.execute(select(missed_calls.c.stage_id, func.count())
                                  .group_by(missed_calls.c.stage_id)).all())
    now = dict(session.execute(
        select(deals.c.stage_id, func.count())
        .where(deals.c.pipeline_id == scope.pipeline_id, _owned(scope, deals.c.owner_id))
        .group_by(deals.c.stage_id)).all())
    moves = _days_table(scope)
    later = [moves.c.pipeline_id == scope.pipeline_id, moves.c.day >= period.start]
    if moves is days:
        later.append(_owned(scope, days.c.seller_id))
    left = dict(session.execute(select(moves.c.from_stage_id, func.sum(moves.c.moves))
                                .where(*later, moves.c.from_stage_id.is_not(None))
                                .group_by(moves.c.from_stage_id)).all())
    entered_after = dict(session.execute(select(moves.c.to_stage_id, func.sum(moves.c.moves))
                                         .where(*later, moves.c.day >= period.end)
                                         .group_by(moves.c.to_stage_id)).all())
    rows = []
    for stage_id, name, *_ in scope.work_stages:
        number, outbound, deal_days = counted.get(stage_id, (0, 0, 0))
        stays = (int(now.get(stage_id, 0)) + int(left.get(stage_id) or 0)
                 - int(entered_after.get(stage_id) or 0))
        rows.append(StageCalls(stage_id, name, max(stays, 0), int(number or 0),
                               int(outbound or 0), int(missed.get(stage_id, 0)),
                               int(deal_days or 0), approximate=True))
    return rows


def _seller_names(session: Session, ids) -> dict:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return dict(session.execute(select(users.c.id, users.c.name)
                                .where(users.c.id.in_(wanted))).all())


def callbacks(session: Session, scope: Scope) -> list[Callbacks]:
    """Per seller: missed calls on their deals in the period, and the time from each to the
    deal's next outbound or answered call."""
    later = calls.alias("later")
    called_back_at = (select(func.min(later.c.ringing_at))
                      .where(later.c.deal_id == calls.c.deal_id,
                             later.c.ringing_at > calls.c.ringing_at,
                             or_(later.c.direction == CallDirection.OUTBOUND.value,
                                 later.c.disposition == Disposition.ANSWERED.value))
                      .scalar_subquery())
    missed = (select(deals.c.owner_id, calls.c.ringing_at,
                     called_back_at.label("called_back_at"))
              .select_from(calls).join(deals, deals.c.id == calls.c.deal_id)
              .where(deals.c.pipeline_id == scope.pipeline_id,
                     _in_period(calls.c.ringing_at, scope.period),
                     calls.c.direction == CallDirection.INBOUND.value,
                     calls.c.disposition.in_(MISSED_DISPOSITIONS),
                     _owned(scope, deals.c.owner_id))).subquery()
    seconds = _seconds_between(scope, missed.c.called_back_at, missed.c.ringing_at)
    totals = session.execute(
        select(missed.c.owner_id, func.count(), func.count(missed.c.called_back_at),
               func.avg(seconds)).group_by(missed.c.owner_id)).all()
    waits = (select(missed.c.owner_id, seconds.label("seconds"))
             .where(missed.c.called_back_at.is_not(None)).subquery())
    medians = _medians(session, scope, waits, waits.c.seconds, [waits.c.owner_id])
    names = _seller_names(session, [owner for owner, *_ in totals])
    rows = [Callbacks(owner, names.get(owner, NOBODY), int(count), int(back),
                      float(avg) if avg is not None else None, medians.get((owner,)))
            for owner, count, back, avg in totals]
    return sorted(rows, key=lambda row: (row.seller_id is None, row.seller_name))


def nudges(session: Session, scope: Scope) -> list[NudgeAnswers]:
    """Per seller and stage: the robot nudges fired on their deals in the period, and how
    they were answered."""
    answer = runs.c.answer
    query = (select(deals.c.owner_id, rules.c.stage_id, func.count(),
                    _sum_if(answer == NudgeAnswer.MOVED_ON.value),
                    _sum_if(answer == NudgeAnswer.LOWER_PRIORITY.value),
                    _sum_if(answer == NudgeAnswer.SNOOZE.value))
             .select_from(runs).join(rules, rules.c.id == runs.c.rule_id)
             .join(deals, deals.c.id == runs.c.deal_id)
             .where(deals.c.pipeline_id == scope.pipeline_id,
                    _in_period(runs.c.fired_at, scope.period),
                    runs.c.status == RobotRunStatus.DONE.value,
                    rules.c.action.in_(NUDGE_ACTIONS), _owned(scope, deals.c.owner_id))
             .group_by(deals.c.owner_id, rules.c.stage_id))
    found = session.execute(query).all()
    names = _seller_names(session, [owner for owner, *_ in found])
    position = {s[0]: s[2] for s in scope.stage_list}
    rows = [NudgeAnswers(owner, names.get(owner, NOBODY), stage_id, scope.name_of(stage_id),
                         int(fired), int(on), int(lower), int(snooze))
            for owner, stage_id, fired, on, lower, snooze in found]
    return sorted(rows, key=lambda row: (row.seller_id is None, row.seller_name,
                                         position.get(row.stage_id, 0)))


# --- weeks in the company's time zone -------------------------------------------------------


def weekly_trend(session: Session, scope: Scope) -> list[Week]:
    """Per local week (Monday to Sunday) of the period: deals created, moves forward, deals
    won and lost. The week of a move is found in SQL from its UTC second plus the zone's
    offset at that second (daylight-saving changes included), so both databases agree."""
    period = scope.period
    zone = _zone(period.time_zone)
    first_monday = period.start - timedelta(days=period.start.weekday())
    if _uses_days(session, scope):
        return _weeks_from_days(session, scope, first_monday)
    base = (first_monday - date(1970, 1, 1)).days * 86400
    first_offset, changes = offset_changes(zone, period.start_utc, period.end_utc)
    second = _epoch(scope, history.c.moved_at)
    offset = (case(*[(second < at, before) for (at, _), before in
                     zip(changes, [first_offset] + [o for _, o in changes])],
                   else_=changes[-1][1]) if changes else literal(first_offset))
    week = ((second + offset - base) // WEEK_SECONDS).label("week")

    from_stage, to_stage = stages.alias(_FROM), stages.alias(_TO)
    won_ids, lost_ids = scope.ids_of(StageKind.WON), scope.ids_of(StageKind.LOST)
    to_won, to_lost = history.c.to_stage_id.in_(won_ids), history.c.to_stage_id.in_(lost_ids)
    forward = and_(~to_lost, to_stage.c.position > from_stage.c.position)
    query = (_moves_in_period(scope, week, _sum_if(history.c.from_stage_id.is_(None)),
                              _sum_if(forward), _sum_if(to_won), _sum_if(to_lost))
             .join(to_stage, to_stage.c.id == history.c.to_stage_id)
             .outerjoin(from_stage, from_stage.c.id == history.c.from_stage_id)
             .group_by(week))
    counts = {int(row[0]): row[1:] for row in session.execute(query)}
    weeks, index = [], 0
    while first_monday + timedelta(weeks=index) < period.end:
        figures = counts.get(index, (0, 0, 0, 0))
        weeks.append(Week(first_monday + timedelta(weeks=index), *map(int, figures)))
        index += 1
    return weeks


def _weeks_from_days(session: Session, scope: Scope, first_monday: date) -> list[Week]:
    won_ids, lost_ids = set(scope.ids_of(StageKind.WON)), set(scope.ids_of(StageKind.LOST))
    counts: dict = {}
    for pair in _day_pairs(session, scope, "day"):
        day = pair.key[0]
        day = day if isinstance(day, date) else date.fromisoformat(str(day))
        index = (day - first_monday).days // 7
        created, forward, won, lost = counts.get(index, (0, 0, 0, 0))
        moves = pair.moves
        if pair.from_stage_id is None:
            created += moves
        elif _exit_kind(scope, pair.from_stage_id, pair.to_stage_id) == _ON:
            forward += moves
        won += moves * (pair.to_stage_id in won_ids)
        lost += moves * (pair.to_stage_id in lost_ids)
        counts[index] = (created, forward, won, lost)
    weeks, index = [], 0
    while first_monday + timedelta(weeks=index) < scope.period.end:
        weeks.append(Week(first_monday + timedelta(weeks=index), *counts.get(index, (0, 0, 0, 0))))
        index += 1
    return weeks


# --- the whole report, and the deals behind a figure --------------------------------------------


def funnel_report(session: Session, actor: Actor, *, pipeline_id: int | None, start: date,
                  end: date, time_zone: str, seller_id: int | None = None,
                  seller_login: str | None = None) -> FunnelReport:
    """The full report of a pipeline (None: the default one) from ``start`` to ``end``
    (excluded), local dates of ``time_zone``; a head may narrow it to one seller."""
    period = make_period(start, end, time_zone)
    scope = report_scope(session, actor, pipeline_id=pipeline_id, period=period,
                         seller_id=seller_id, seller_login=seller_login)
    figures = stage_figures(session, scope)
    by_seller, by_team = loss_maps(session, scope, figures)
    return FunnelReport(scope.pipeline_id, scope.pipeline_name, scope.currency, period,
                        scope.seller_id, scope.seller_name, figures, outcomes(session, scope),
                        by_seller, by_team, stage_calls(session, scope),
                        callbacks(session, scope), nudges(session, scope),
                        weekly_trend(session, scope))


@dataclass(frozen=True)
class DealFilter:
    """The deals behind a figure, as a query the page can link to: ``in_stage`` the deals in
    a stage now; ``lost_from`` the deals lost from a stage in the period."""

    IN_STAGE = "in_stage"
    LOST_FROM = "lost_from"

    pipeline_id: int
    stage_id: int
    what: str
    owner_id: int | None = None
    start_utc: datetime | None = None
    end_utc: datetime | None = None

    def query_params(self) -> dict[str, str]:
        params = {"pipeline": str(self.pipeline_id), "stage": str(self.stage_id),
                  "what": self.what}
        if self.owner_id is not None:
            params["seller"] = str(self.owner_id)
        if self.start_utc is not None:
            params["from"] = self.start_utc.isoformat()
            params["to"] = self.end_utc.isoformat()
        return params


DEAL_LIST_LIMIT = 200


def deals_matching(session: Session, actor: Actor, wanted: DealFilter, *,
                   limit: int = DEAL_LIST_LIMIT) -> list[int]:
    """The ids of the deals behind a ``DealFilter`` the actor may see, newest first."""
    owner = wanted.owner_id
    if not actor.sees_everything:
        if owner is not None and owner != actor.user_id:
            ensure_head(actor, "see another seller's deals")
        owner = actor.user_id
    if wanted.what == DealFilter.IN_STAGE:
        query = (select(deals.c.id).where(deals.c.pipeline_id == wanted.pipeline_id,
                                          deals.c.stage_id == wanted.stage_id)
                 .order_by(deals.c.created_at.desc(), deals.c.id.desc()))
    elif wanted.what == DealFilter.LOST_FROM:
        if wanted.start_utc is None or wanted.end_utc is None:
            raise ValidationError("Deals lost from a stage need a period.", field="period")
        lost_stage = stages.alias("lost_stage")
        query = (select(deals.c.id).distinct()
                 .select_from(history).join(deals, deals.c.id == history.c.deal_id)
                 .join(lost_stage, lost_stage.c.id == history.c.to_stage_id)
                 .where(history.c.pipeline_id == wanted.pipeline_id,
                        history.c.from_stage_id == wanted.stage_id,
                        lost_stage.c.kind == StageKind.LOST.value,
                        history.c.moved_at >= wanted.start_utc,
                        history.c.moved_at < wanted.end_utc)
                 .order_by(deals.c.id.desc()))
    else:
        raise ValidationError(f"Unknown deal list “{str(wanted.what)[:20]}”.", field="what")
    if owner is not None:
        query = query.where(deals.c.owner_id == owner)
    return list(session.execute(query.limit(limit)).scalars())
