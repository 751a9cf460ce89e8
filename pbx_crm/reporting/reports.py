"""Funnel reports for a pipeline and a period: stage by stage, seller by seller, week by week.

Plain functions over a session and an ``Actor``, read-only, called by the CLI and the web page.
Every figure is an SQL aggregate (SQLAlchemy Core, the same statement on SQLite and
PostgreSQL) over the daily tables kept beside the stage history, the calls and the robot
runs; no deal is loaded into Python. Python only resolves the period, names the stages and
sellers, and fills the rows of the dataclasses the page and the CLI render (``FunnelReport``
and its parts).

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

Stage figures, outcomes, loss maps and weeks have one path each: ``from_days``, over the daily
tables kept by ``pbx_crm.reporting.days`` in the company's time zone (medians exact, from
the period's history rows, for periods up to ``EXACT_PERIOD_DAYS`` days; beyond, from the
daily histograms, to within a bucket, about 5%, flagged approximate, which the page and the
CLI show as "≈"). A report asked in a zone the tables do not count days in is refused with
the fix to run (``from_days.require_days``). Calls by stage read the daily call counts for any
period (the deals present in each stage exactly, from the history, up to
``EXACT_PERIOD_DAYS`` days); callbacks and nudges read the calls and the robot runs. The period and the result rows are in ``figures``; whose
figures, and the SQL every part shares, in ``scope``. Callers import all of them from here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlalchemy import and_, case, func, not_, select
from sqlmodel import Session

from ..enums import NudgeAnswer, RobotRunStatus, StageKind
from ..errors import Phrase, ValidationError
from ..models import RobotRule, RobotRun, Task, utcnow
from ..rules.funnel import Actor, ensure_head
from . import from_days
from .figures import (
    MAX_PERIOD_DAYS, WEAK_CELL_MARGIN, WEAK_CELL_MIN_DECIDED, Callbacks, FunnelReport, LossCell,
    LossMap, LossRow, NudgeAnswers, Outcomes, Period, SellerTasks, StageCalls, StageFigures, Week,
    make_period,
)
from .from_days import EXACT_PERIOD_DAYS, loss_maps, outcomes, stage_figures, weekly_trend
from .scope import (
    MISSED_DISPOSITIONS, NOBODY, Scope, calls, deals, history, in_period, missed_inbound,
    owned, report_scope, seconds_between, seller_names, stages, sum_if,
)

__all__ = [
    "DEAL_LIST_LIMIT", "EXACT_PERIOD_DAYS", "MAX_PERIOD_DAYS", "MISSED_DISPOSITIONS", "NOBODY",
    "WEAK_CELL_MARGIN", "WEAK_CELL_MIN_DECIDED", "Callbacks", "DealFilter", "FunnelReport",
    "LossCell", "LossMap", "LossRow", "NudgeAnswers", "Outcomes", "Period", "Scope",
    "SellerTasks", "seller_tasks",
    "StageCalls", "StageFigures", "Week", "callbacks", "deals_matching", "funnel_report",
    "loss_maps", "make_period", "nudges", "outcomes", "report_scope", "stage_calls",
    "stage_figures", "weekly_trend",
]

# The robot action that asks the deal's owner for a decision (moved on, lower priority,
# snooze): ``Action.NOTIFY_OWNER`` in pbx_crm.robots.rules. Other actions ask nobody anything.
NUDGE_ACTIONS = ("notify_owner",)
tasks = Task.__table__

runs = RobotRun.__table__
rules = RobotRule.__table__


# --- the parts of the report ------------------------------------------------------------------


def stage_calls(session: Session, scope: Scope) -> list[StageCalls]:
    """Per open stage: the calls on deals while they sat in it, and the deals that sat in it
    during the period. A call belongs to the stage its deal was in when it rang; the call
    that created a deal (it rang a moment before the deal existed) to the first stage. The
    calls, outbound and missed calls and deal-days come from the daily call counts, exact for
    any period (``from_days.stage_calls``); the deals in each stage are counted as stays over
    a long period, and exactly, from the history, up to ``EXACT_PERIOD_DAYS`` days."""
    counted = from_days.stage_calls(session, scope)
    if from_days.uses_histograms(scope):
        return counted
    present = _deals_present(session, scope)
    return [replace(row, deals=int(present.get(row.stage_id, 0)), approximate=False)
            for row in counted]


def _deals_present(session: Session, scope: Scope) -> dict:
    """stage -> the deals whose stay in it overlaps the period: the deals in it now that
    entered it before the period's end, plus the deals that left it from the period's start
    on (a stay begun before the end) and are not among the first. Counted apart, the open
    deals are an index count and only the period's moves out are read one by one."""
    work = scope.work_stage_ids  # not the closed deals, most of a pipeline's, in Won or Lost
    end = scope.period.end_utc
    # The stages name the pipeline: by stage and entry alone, it counts in ix_deals_stage_entered.
    present = dict(session.execute(
        select(deals.c.stage_id, func.count())
        .where(deals.c.stage_id.in_(work), deals.c.stage_entered_at < end,
               owned(scope, deals.c.owner_id))
        .group_by(deals.c.stage_id)).all())
    still_there = and_(deals.c.stage_id == history.c.from_stage_id,
                       deals.c.stage_entered_at < end)
    for stage_id, number in session.execute(
            select(history.c.from_stage_id, func.count(func.distinct(history.c.deal_id)))
            .join(deals, deals.c.id == history.c.deal_id)
            .where(history.c.pipeline_id == scope.pipeline_id,
                   history.c.from_stage_id.in_(work),
                   history.c.moved_at >= scope.period.start_utc,
                   history.c.from_entered_at < end,
                   owned(scope, deals.c.owner_id), not_(still_there))
            .group_by(history.c.from_stage_id)):
        present[stage_id] = present.get(stage_id, 0) + number
    return present


def callbacks(session: Session, scope: Scope, target_minutes: int) -> list[Callbacks]:
    """Per seller: missed calls on their deals in the period, the time from each to the
    deal's next outbound or answered call, and how many were called back within
    ``target_minutes``. The call back is kept on the call (``called_back_at``, by
    ``pbx_crm.funnel.call_backs``): the figures are sums and medians of the period's missed
    calls, read in one pass through the index that holds them (``ix_calls_missed_ringing``)."""
    wait = seconds_between(scope, calls.c.called_back_at, calls.c.ringing_at)
    # SQLite keeps no statistics unless ANALYZE runs, and without them it walks the deals
    # and looks up each one's calls: right for one seller's deals, not for a whole team's,
    # whose missed calls it reads by when they rang ("+ 0" keeps the deal id from leading it
    # to ix_calls_deal_ringing).
    by_deal = scope.dialect != "sqlite" or scope.seller_id is not None
    deal_of_call = calls.c.deal_id if by_deal else calls.c.deal_id + 0
    missed = (select(deals.c.owner_id, wait.label("wait"))
              .select_from(calls).join(deals, deals.c.id == deal_of_call)
              .where(deals.c.pipeline_id == scope.pipeline_id,
                     in_period(calls.c.ringing_at, scope.period, inline=True),
                     missed_inbound(),
                     owned(scope, deals.c.owner_id)))
    if scope.dialect == "postgresql":
        # Summed by the server, the medians in the same pass (percentile_cont skips the calls
        # not called back): a year's missed calls stay there.
        rows = missed.subquery()
        counted = [(owner, int(number), int(called), int(waited or 0), int(in_time),
                    float(median) if median is not None else None)
                   for owner, number, called, waited, in_time, median in session.execute(
                       select(rows.c.owner_id, func.count(), func.count(rows.c.wait),
                              func.sum(rows.c.wait), sum_if(rows.c.wait <= target_minutes * 60),
                              func.percentile_cont(0.5).within_group(rows.c.wait))
                       .group_by(rows.c.owner_id))]
    else:
        # SQLite runs in this process: the waits themselves come over in one pass.
        waits: dict = {}
        for owner, seconds in session.execute(missed):
            waits.setdefault(owner, []).append(seconds)
        counted = []
        for owner, all_waits in waits.items():
            back = [seconds for seconds in all_waits if seconds is not None]
            counted.append((owner, len(all_waits), len(back), sum(back),
                            sum(seconds <= target_minutes * 60 for seconds in back),
                            float(statistics.median(back)) if back else None))
    names = seller_names(session, [owner for owner, *_ in counted])
    found = [Callbacks(owner, names.get(owner, NOBODY), number, called,
                       waited / called if called else None, median, in_time)
             for owner, number, called, waited, in_time, median in counted]
    return sorted(found, key=lambda row: (row.seller_id is None, row.seller_name,
                                          row.seller_id or 0))


def seller_tasks(session: Session, scope: Scope, now: datetime) -> list[SellerTasks]:
    """Per seller: the open tasks on their deals of the pipeline and how many are past due,
    the most overdue seller first."""
    late = tasks.c.due_at < now
    # Summed per deal first, from the open tasks (``ix_tasks_open``): far fewer than the
    # pipeline's deals, which a join the other way round would walk.
    per_deal = (select(tasks.c.deal_id, func.count().label("open"),
                       func.count(case((late, 1))).label("overdue"),
                       func.min(case((late, tasks.c.due_at))).label("oldest"))
                .where(tasks.c.done_at.is_(None)).group_by(tasks.c.deal_id).subquery())
    rows = session.execute(
        select(deals.c.owner_id, func.sum(per_deal.c.open), func.sum(per_deal.c.overdue),
               func.min(per_deal.c.oldest, type_=tasks.c.due_at.type))
        .select_from(per_deal.join(deals, deals.c.id == per_deal.c.deal_id))
        .where(deals.c.pipeline_id == scope.pipeline_id, deals.c.owner_id.is_not(None),
               owned(scope, deals.c.owner_id))
        .group_by(deals.c.owner_id)).all()
    names = seller_names(session, [owner for owner, *_ in rows])
    found = [SellerTasks(owner, names.get(owner, NOBODY), int(count), int(overdue),
                         (now - oldest).total_seconds() if oldest is not None else None)
             for owner, count, overdue, oldest in rows]
    return sorted(found, key=lambda row: (-row.overdue, row.seller_name))


def nudges(session: Session, scope: Scope) -> list[NudgeAnswers]:
    """Per seller and stage: the robot nudges fired on their deals in the period, and how
    they were answered."""
    answer = runs.c.answer
    # Summed per deal and rule first, from the period's runs (``ix_robot_runs_fired``): far
    # fewer than the pipeline's deals, which a join the other way round would walk.
    per_deal = (select(runs.c.deal_id, runs.c.rule_id, func.count().label("fired"),
                       sum_if(answer == NudgeAnswer.MOVED_ON.value).label("moved_on"),
                       sum_if(answer == NudgeAnswer.LOWER_PRIORITY.value).label("lower"),
                       sum_if(answer == NudgeAnswer.SNOOZE.value).label("snooze"))
                .where(in_period(runs.c.fired_at, scope.period),
                       runs.c.status == RobotRunStatus.DONE.value)
                .group_by(runs.c.deal_id, runs.c.rule_id).subquery())
    query = (select(deals.c.owner_id, rules.c.stage_id, func.sum(per_deal.c.fired),
                    func.sum(per_deal.c.moved_on), func.sum(per_deal.c.lower),
                    func.sum(per_deal.c.snooze))
             .select_from(per_deal).join(rules, rules.c.id == per_deal.c.rule_id)
             .join(deals, deals.c.id == per_deal.c.deal_id)
             .where(deals.c.pipeline_id == scope.pipeline_id,
                    rules.c.action.in_(NUDGE_ACTIONS), owned(scope, deals.c.owner_id))
             .group_by(deals.c.owner_id, rules.c.stage_id))
    found = session.execute(query).all()
    names = seller_names(session, [owner for owner, *_ in found])
    position = scope.positions
    rows = [NudgeAnswers(owner, names.get(owner, NOBODY), stage_id, scope.name_of(stage_id),
                         int(fired), int(on), int(lower), int(snooze))
            for owner, stage_id, fired, on, lower, snooze in found]
    return sorted(rows, key=lambda row: (row.seller_id is None, row.seller_name,
                                         position.get(row.stage_id, 0)))




# --- the whole report, and the deals behind a figure --------------------------------------------


def funnel_report(session: Session, actor: Actor, *, pipeline_id: int | None, start: date,
                  end: date, time_zone: str, seller_id: int | None = None,
                  seller_login: str | None = None,
                  callback_target_minutes: int = 30,
                  now: datetime | None = None) -> FunnelReport:
    """The full report of a pipeline (None: the default one) from ``start`` to ``end``
    (excluded), local dates of ``time_zone``; a head may narrow it to one seller. Callbacks
    are measured against ``callback_target_minutes`` (the setting); open tasks are counted
    as they stand ``now``."""
    period = make_period(start, end, time_zone)
    scope = report_scope(session, actor, pipeline_id=pipeline_id, period=period,
                         seller_id=seller_id, seller_login=seller_login)
    figures = stage_figures(session, scope)
    by_seller, by_team = loss_maps(session, scope, figures)
    return FunnelReport(scope.pipeline_id, scope.pipeline_name, scope.currency, period,
                        scope.seller_id, scope.seller_name, figures, outcomes(session, scope),
                        by_seller, by_team, stage_calls(session, scope),
                        callbacks(session, scope, callback_target_minutes),
                        nudges(session, scope), weekly_trend(session, scope),
                        callback_target_minutes,
                        seller_tasks(session, scope, now or utcnow()))


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
            ensure_head(actor, Phrase("see another seller's deals"))
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
        raise ValidationError("Unknown deal list “%(what)s”.", what=str(wanted.what)[:20],
                              field="what")
    if owner is not None:
        query = query.where(deals.c.owner_id == owner)
    return list(session.execute(query.limit(limit)).scalars())
