"""The funnel report's figures, read from the daily tables that ``days`` keeps.

Counts and sums (entered, moved on, back, lost, created, won, the weeks, the loss maps) come
from ``report_days`` (or its team rollup, ``report_team_days``); for a period longer than
``EXACT_PERIOD_DAYS`` the medians come from the daily histograms (to within a bucket, about
5%, flagged approximate) and calls by stage from ``report_call_days``, with the deals present
in a stage counted as stays (a deal back in a stage twice counts twice), flagged the same way.
Shorter periods keep exact medians, one query over the period's history rows.

This is the one path of these figures. The tables count local days in one zone, which the
start-up of the web UI, of ``pbx-crm serve`` and ``pbx-crm db upgrade`` keep the company's
(``days_rebuild.ensure_zone``); a report asked in another zone is refused
(``require_days``), never answered with days of the wrong zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import and_, func, select
from sqlmodel import Session

from ..enums import StageKind
from ..errors import Conflict
from ..funnel import stage_totals
from . import days as report_days
from .days import call_days, cycle_buckets, days, stay_buckets, team_days, team_stay_buckets
from .figures import (
    LossCell, LossMap, LossRow, Outcomes, StageCalls, StageFigures, Week, flag_weak, loss_cells,
)
from .scope import (
    NOBODY, Scope, days_since, deals, exact_medians, history, in_period, moves_in_period, owned,
    seconds_between, seller_names, users,
)

# Up to this many days a report's medians and deals per stage are exact; beyond, they are
# read from the daily histograms and counts, and flagged approximate.
EXACT_PERIOD_DAYS = 31


def require_days(session: Session, scope: Scope) -> None:
    """Refuse (``Conflict``) a report whose zone the daily tables do not count days in: a
    process started before the company's time zone changed elsewhere, or tables never built."""
    counted, asked = report_days.day_zone(session), scope.period.time_zone
    if counted == asked:
        return
    if counted is None:
        raise Conflict("The reports' daily tables are not built: run `pbx-crm report rebuild` "
                       "to count them in the company's time zone, %(asked)s.", asked=asked)
    raise Conflict("The reports' daily tables count days in %(counted)s, not in %(asked)s: run "
                   "`pbx-crm report rebuild` to recount them in the company's time zone, and "
                   "restart the processes started before it changed.",
                   counted=counted, asked=asked)


def uses_histograms(scope: Scope) -> bool:
    """Whether medians and calls come from the daily histograms and counts: a period longer
    than ``EXACT_PERIOD_DAYS``."""
    period = scope.period
    return (period.end - period.start).days > EXACT_PERIOD_DAYS


def _in_days(scope: Scope, table):
    """The table's rows of the pipeline and period; of the scope's seller when it has one
    (a table without sellers is a whole team's: read only when no seller is asked for)."""
    found = and_(table.c.pipeline_id == scope.pipeline_id, table.c.day >= scope.period.start,
                 table.c.day < scope.period.end)
    if "seller_id" not in table.c:
        assert scope.seller_id is None, "a team-wide table read for one seller"
        return found
    return and_(found, owned(scope, table.c.seller_id))


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


def _day_pairs(session: Session, scope: Scope, *key_names: str, week_of: date | None = None
               ) -> list[_Pair]:
    """The period's moves summed per stage pair (and per ``key_names`` columns, the key;
    ``week_of``: per week from that Monday, the key's last part)."""
    table = _days_table(scope, *key_names)
    keys = [table.c[name] for name in key_names]
    if week_of is not None:
        keys.append(days_since(scope, table.c.day, week_of) // 7)
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
    if scope.kinds.get(to_id) == StageKind.LOST.value:
        return _LOST
    position = scope.positions
    return _ON if position.get(to_id, 0) > position.get(from_id, 0) else _BACK


def _stay_medians(session: Session, scope: Scope) -> dict:
    """Median time in stage per stage over the period's moves out: from the daily histogram
    for a long period, else exact, one query over the history rows (the covering index)."""
    if uses_histograms(scope):
        # The whole team's: the rollup without the sellers, many times fewer rows to sum.
        table = team_stay_buckets if scope.seller_id is None else stay_buckets
        return _histogram_medians(session, scope, table, table.c.moves, table.c.stage_id)
    seconds = seconds_between(scope, history.c.moved_at, history.c.from_entered_at)
    exits = (moves_in_period(scope, history.c.from_stage_id.label("stage_id"),
                              seconds.label("seconds"))
             .where(history.c.from_stage_id.is_not(None))).subquery()
    return exact_medians(session, scope, exits, exits.c.seconds, [exits.c.stage_id])



def in_stages_now(session: Session, scope: Scope) -> dict[int, tuple[int, int]]:
    """stage -> (deals, money) in it now, the scope's: the board's kept column totals."""
    return stage_totals.column_totals(session, scope.pipeline_id, owner_id=scope.seller_id,
                                      nobodys=False)


def stage_figures(session: Session, scope: Scope) -> list[StageFigures]:
    """Per open stage: deals and money in it now; entered, moved on, back, lost and the time
    spent in it over the period."""
    require_days(session, scope)
    now = in_stages_now(session, scope)
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
    approximate = uses_histograms(scope)
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
    if uses_histograms(scope):
        return _histogram_medians(session, scope, cycle_buckets, cycle_buckets.c.wins).get(())
    won_cycles = (select(seconds_between(scope, history.c.moved_at, deals.c.created_at)
                         .label("seconds"))
                  .join(deals, deals.c.id == history.c.deal_id)
                  .where(history.c.pipeline_id == scope.pipeline_id,
                         in_period(history.c.moved_at, scope.period),
                         history.c.to_stage_id.in_(scope.ids_of(StageKind.WON)),
                         owned(scope, deals.c.owner_id)).subquery())
    return exact_medians(session, scope, won_cycles, won_cycles.c.seconds, []).get(())



def outcomes(session: Session, scope: Scope) -> Outcomes:
    """Deals created, won and lost in the period; the win rate; creation-to-win cycle."""
    require_days(session, scope)
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
                    median is not None and uses_histograms(scope))



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


def loss_maps(session: Session, scope: Scope,
              figures: list[StageFigures]) -> tuple[LossMap, LossMap | None]:
    """Stages x sellers and stages x teams: what each one moved on and lost at each stage,
    against the stage's own figures (``figures``, from ``stage_figures``)."""
    require_days(session, scope)
    by_seller = _decided(session, scope, "seller_id")
    overall = [LossCell(f.stage_id, f.moved_on, f.lost, weak=False) for f in figures]
    columns = [(stage_id, name) for stage_id, name, *_ in scope.work_stages]
    sellers = {owner for owner, _ in by_seller}
    names = seller_names(session, sellers)
    rows = [LossRow(owner, names.get(owner, NOBODY),
                    flag_weak(overall, loss_cells(scope.work_stage_ids, by_seller, owner)))
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
    team_rows = [LossRow(team, team,
                         flag_weak(overall, loss_cells(scope.work_stage_ids, by_team, team)))
                 for team in sorted({team for team, _ in by_team})]
    return seller_map, LossMap("team", columns, overall, team_rows)



def stage_calls(session: Session, scope: Scope) -> list[StageCalls]:
    """Calls by stage over a long period: calls, outbound and missed calls and deal-days from
    the daily call counts, and the stays in each stage that overlap the period from the daily
    moves. A stay overlaps [start, end) unless it ended before start or began at end or
    later, so per stage: the deals in it now, plus the moves out of it from start on, minus
    the moves into it from end on."""
    require_days(session, scope)
    period = scope.period
    counted = {row[0]: row[1:] for row in session.execute(
        select(call_days.c.stage_id, func.sum(call_days.c.calls),
               func.sum(call_days.c.outbound), func.sum(call_days.c.missed),
               func.sum(call_days.c.deals_called))
        .where(_in_days(scope, call_days)).group_by(call_days.c.stage_id))}
    now = {stage_id: count for stage_id, (count, _) in in_stages_now(session, scope).items()}
    moves = _days_table(scope)
    later = [moves.c.pipeline_id == scope.pipeline_id, moves.c.day >= period.start]
    if moves is days:
        later.append(owned(scope, days.c.seller_id))
    left = dict(session.execute(select(moves.c.from_stage_id, func.sum(moves.c.moves))
                                .where(*later, moves.c.from_stage_id.is_not(None))
                                .group_by(moves.c.from_stage_id)).all())
    entered_after = dict(session.execute(select(moves.c.to_stage_id, func.sum(moves.c.moves))
                                         .where(*later, moves.c.day >= period.end)
                                         .group_by(moves.c.to_stage_id)).all())
    rows = []
    for stage_id, name, *_ in scope.work_stages:
        number, outbound, missed, deal_days = counted.get(stage_id, (0, 0, 0, 0))
        stays = (int(now.get(stage_id, 0)) + int(left.get(stage_id) or 0)
                 - int(entered_after.get(stage_id) or 0))
        rows.append(StageCalls(stage_id, name, max(stays, 0), int(number or 0),
                               int(outbound or 0), int(missed or 0),
                               int(deal_days or 0), approximate=True))
    return rows



def weekly_trend(session: Session, scope: Scope) -> list[Week]:
    """Per local week (Monday to Sunday) of the period: deals created, moves forward, deals
    won and lost, summed from the local days of the daily table."""
    require_days(session, scope)
    first_monday = scope.period.start - timedelta(days=scope.period.start.weekday())
    won_ids, lost_ids = set(scope.ids_of(StageKind.WON)), set(scope.ids_of(StageKind.LOST))
    counts: dict = {}
    for pair in _day_pairs(session, scope, week_of=first_monday):
        index = int(pair.key[0])
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

