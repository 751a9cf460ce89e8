"""What a funnel report holds: its period, and the figures of each part as plain dataclasses.

``Period`` (local dates and their UTC bounds) and the rows the reports page, the CLI, the
charts and the advisor read (``StageFigures``, ``Outcomes``, ``LossMap``, ``StageCalls``,
``Callbacks``, ``NudgeAnswers``, ``Week``, all in a ``FunnelReport``); and the one rule the loss
maps add to their counts, which cell is weak. No database here: ``reports`` fills them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ValidationError

MAX_PERIOD_DAYS = 5 * 366
# A loss-map cell is weak when its loss % is this many points above its stage's, over at
# least this many decided deals (fewer are chance, not a pattern).
WEAK_CELL_MARGIN = 0.15
WEAK_CELL_MIN_DECIDED = 3


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

    @property
    def span(self) -> str:
        """The first and last day with a dash between, read alike in every language (the
        charts' titles, which the reader's catalog words around it)."""
        return f"{self.start.isoformat()} – {(self.end - timedelta(days=1)).isoformat()}"


def zone_of(time_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationError("Unknown time zone “%(zone)s”.", zone=str(time_zone)[:64],
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
    zone = zone_of(time_zone)
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
    # Called back within the report's callback target (``FunnelReport.callback_target_minutes``).
    within_target: int = 0

    @property
    def not_called_back(self) -> int:
        return self.missed - self.called_back

    @property
    def on_target(self) -> float | None:
        """The share of missed calls called back within the target (the others, called back
        later or not at all, missed it)."""
        return _share(self.within_target, self.missed)


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
class SellerTasks:
    """A seller's open tasks on the pipeline's deals as the report is read (tasks have no
    period: what is late is late now), the overdue ones apart."""

    seller_id: int
    seller_name: str
    open: int
    overdue: int
    longest_overdue_seconds: float | None  # how late the latest of them is


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
    callback_target_minutes: int | None = None
    tasks: list[SellerTasks] = field(default_factory=list)


def loss_cells(stage_ids: list[int], counts: dict, key) -> list[LossCell]:
    """One row's cells, one per stage of ``stage_ids``, from (key, stage) -> (moved on, lost)."""
    return [LossCell(stage_id, *counts.get((key, stage_id), (0, 0)), weak=False)
            for stage_id in stage_ids]


def flag_weak(overall: list[LossCell], cells: list[LossCell]) -> list[LossCell]:
    flagged = []
    for cell, stage in zip(cells, overall):
        weak = (cell.decided >= WEAK_CELL_MIN_DECIDED and stage.loss_rate is not None
                and cell.loss_rate - stage.loss_rate >= WEAK_CELL_MARGIN)
        flagged.append(LossCell(cell.stage_id, cell.moved_on, cell.lost, weak))
    return flagged

