"""The advisor: plain-language hints a head can act on, read off a ``FunnelReport``.

Pure functions over the report's dataclasses (no database), but for ``hints_with_deals``,
which lists each hint's deals (``reports.deals_matching``): the reports page and
``pbx-crm report advice`` both call it. Each hint names the deals it is about as a
``DealFilter`` the page links to. Four patterns:
- an empty stage right after a full one: the deals are stuck before it;
- the "lame" stage: one stage loses far more of its deals than the others;
- a seller who loses far more at one stage than the rest of the team does there;
- a draining top: fewer new deals lately than before.
The thresholds below are deliberately plain numbers, so a head can tell why a hint appeared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session

from ..people.language import Words
from ..rules.funnel import Actor
from .reports import DEAL_LIST_LIMIT, DealFilter, FunnelReport, LossCell, deals_matching

# A stage is "full" with at least this many open deals...
FULL_STAGE_MIN_DEALS = 5
# ...and the next one "almost empty" with at most this share of that.
EMPTY_STAGE_SHARE = 0.2
# The lame stage: its loss % at least this many points above the other stages' together,
# over at least this many decided deals (moved on or lost) at the stage.
LAME_STAGE_MARGIN = 0.25
LAME_STAGE_MIN_DECIDED = 5
# A seller's weak stage: loss % at least this many points above the rest of the team's at that
# stage, over at least this many of the seller's decided deals there.
SELLER_MARGIN = 0.25
SELLER_MIN_DECIDED = 3
# A draining top: over the last DRAIN_RECENT_WEEKS full weeks, new deals per week at most
# DRAIN_SHARE of the weekly average of the full weeks before (at least DRAIN_MIN_EARLIER of
# them, averaging at least DRAIN_MIN_WEEKLY new deals, so a quiet pipeline is not "draining").
DRAIN_RECENT_WEEKS = 4
DRAIN_MIN_EARLIER = 4
DRAIN_SHARE = 0.5
DRAIN_MIN_WEEKLY = 2.0

EMPTY_STAGE = "empty_stage"
LAME_STAGE = "lame_stage"
WEAK_SELLER = "weak_seller"
DRAINING_TOP = "draining_top"


@dataclass(frozen=True)
class Hint:
    """One piece of advice: its words (an English template with named values, like a
    timeline line's), so the page can say it in the reader's language."""

    kind: str
    words: Words
    deals: DealFilter  # the deals the hint is about

    @property
    def message(self) -> str:
        return self.words.english

    def translated(self, gettext: Callable[[str], str]) -> str:
        return self.words.said(gettext)


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def empty_stages(report: FunnelReport) -> list[Hint]:
    """A working stage holding almost nothing right after one holding plenty."""
    working = [s for s in report.stages if not s.is_unsorted]
    hints = []
    for earlier, later in zip(working, working[1:]):
        if (earlier.open_deals >= FULL_STAGE_MIN_DEALS
                and later.open_deals <= EMPTY_STAGE_SHARE * earlier.open_deals):
            hints.append(Hint(EMPTY_STAGE,
                              Words("Almost no deals at “%(later)s” (%(later_open)s) against "
                                    "%(earlier_open)s at “%(earlier)s”: work the deals in "
                                    "“%(earlier)s”.", later=later.name,
                                    later_open=later.open_deals, earlier=earlier.name,
                                    earlier_open=earlier.open_deals),
                              DealFilter(report.pipeline_id, earlier.stage_id,
                                         DealFilter.IN_STAGE, owner_id=report.seller_id)))
    return hints


def lame_stage(report: FunnelReport) -> list[Hint]:
    """The stage whose loss % is far above the other stages' (the worst one, if several)."""
    candidates = []
    for stage in report.stages:
        if stage.decided < LAME_STAGE_MIN_DECIDED:
            continue
        others = [s for s in report.stages if s.stage_id != stage.stage_id]
        decided = sum(s.decided for s in others)
        if not decided:
            continue
        elsewhere = sum(s.lost for s in others) / decided
        if stage.loss_rate - elsewhere >= LAME_STAGE_MARGIN:
            candidates.append((stage.loss_rate - elsewhere, stage, elsewhere))
    if not candidates:
        return []
    _, stage, elsewhere = max(candidates, key=lambda c: c[0])
    return [Hint(LAME_STAGE,
                 Words("“%(stage)s” is the lame stage: it lost %(share)s of the deals decided "
                       "there (%(lost)s of %(decided)s), the other stages %(elsewhere)s. Look "
                       "at why those deals were lost.", stage=stage.name,
                       share=_percent(stage.loss_rate), lost=stage.lost,
                       decided=stage.decided, elsewhere=_percent(elsewhere)),
                 DealFilter(report.pipeline_id, stage.stage_id, DealFilter.LOST_FROM,
                            owner_id=report.seller_id, start_utc=report.period.start_utc,
                            end_utc=report.period.end_utc))]


def weak_sellers(report: FunnelReport) -> list[Hint]:
    """Sellers losing far more at a stage than the rest of the team does there."""
    hints = []
    names = dict(report.losses.stages)
    for row in report.losses.rows:
        if row.key is None:
            continue
        for cell in row.cells:
            overall = report.losses.overall_cell(cell.stage_id)
            rest = LossCell(cell.stage_id, overall.moved_on - cell.moved_on,
                            overall.lost - cell.lost, weak=False)
            if cell.decided < SELLER_MIN_DECIDED or not rest.decided:
                continue
            if cell.loss_rate - rest.loss_rate >= SELLER_MARGIN:
                stage = names[cell.stage_id]
                hints.append(Hint(
                    WEAK_SELLER,
                    Words("%(seller)s lost %(share)s of the deals decided at “%(stage)s” "
                          "(%(lost)s of %(decided)s); the rest of the team %(rest)s. Go "
                          "through those deals with %(seller)s.", seller=row.name,
                          share=_percent(cell.loss_rate), stage=stage, lost=cell.lost,
                          decided=cell.decided, rest=_percent(rest.loss_rate)),
                    DealFilter(report.pipeline_id, cell.stage_id, DealFilter.LOST_FROM,
                               owner_id=row.key, start_utc=report.period.start_utc,
                               end_utc=report.period.end_utc)))
    return hints


def draining_top(report: FunnelReport) -> list[Hint]:
    """Fewer new deals in the last weeks than before."""
    period = report.period
    full = [w for w in report.weeks
            if w.start >= period.start and w.start + timedelta(days=7) <= period.end]
    if len(full) < DRAIN_RECENT_WEEKS + DRAIN_MIN_EARLIER:
        return []
    recent, earlier = full[-DRAIN_RECENT_WEEKS:], full[:-DRAIN_RECENT_WEEKS]
    recent_rate = sum(w.created for w in recent) / len(recent)
    earlier_rate = sum(w.created for w in earlier) / len(earlier)
    if earlier_rate < DRAIN_MIN_WEEKLY or recent_rate > DRAIN_SHARE * earlier_rate:
        return []
    top = next((s for s in report.stages if not s.is_unsorted), None)
    if top is None:
        return []
    return [Hint(DRAINING_TOP,
                 Words("The top of the funnel is draining: %(recent)s new deals a week over "
                       "the last %(weeks)s weeks, against %(earlier)s before. Go back to "
                       "prospecting.", recent=f"{recent_rate:.1f}", weeks=DRAIN_RECENT_WEEKS,
                       earlier=f"{earlier_rate:.1f}"),
                 DealFilter(report.pipeline_id, top.stage_id, DealFilter.IN_STAGE,
                            owner_id=report.seller_id))]


def advise(report: FunnelReport) -> list[Hint]:
    """Every hint the report's figures call for, the widest first."""
    return draining_top(report) + empty_stages(report) + lame_stage(report) \
        + weak_sellers(report)


def hints_with_deals(session: Session, actor: Actor, report: FunnelReport, *,
                     limit: int = DEAL_LIST_LIMIT) -> list[tuple[Hint, list[int]]]:
    """Every hint of ``advise(report)`` with the ids of its deals the actor may see, newest
    first, at most ``limit``: the page counts them, the CLI lists them."""
    return [(hint, deals_matching(session, actor, hint.deals, limit=limit))
            for hint in advise(report)]
