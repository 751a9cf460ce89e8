"""The advisor's hints, on funnels crafted to show (or not show) each pattern.

Pure: the reports are built here as dataclasses, no database involved.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pbx_crm.reporting import advisor
from pbx_crm.reporting.reports import (
    DealFilter, FunnelReport, LossCell, LossMap, LossRow, Outcomes, StageFigures, Week,
    make_period,
)

NAMES = ["Unsorted", "Opportunity", "Commercial proposal", "Document coordination",
         "Signature and payment"]
PERIOD = make_period(date(2024, 1, 1), date(2024, 3, 4), "Asia/Jakarta")  # nine full weeks


def stage(i, open_deals=0, moved_on=0, lost=0):
    return StageFigures(i, NAMES[i], i, i == 0, open_deals, 0, moved_on + lost, moved_on, 0,
                        lost, None, None)


def craft(stages, sellers=None, created_per_week=None, seller_id=None) -> FunnelReport:
    """A report with these stages; ``sellers``: name -> [(moved_on, lost)] per stage."""
    overall = [LossCell(s.stage_id, s.moved_on, s.lost, False) for s in stages]
    rows = [LossRow(n + 10, name, [LossCell(i, on, lost, False)
                                   for i, (on, lost) in enumerate(cells)])
            for n, (name, cells) in enumerate((sellers or {}).items())]
    losses = LossMap("seller", [(s.stage_id, s.name) for s in stages], overall, rows)
    weeks = [Week(PERIOD.start + timedelta(weeks=i), created, 0, 0, 0)
             for i, created in enumerate(created_per_week or [5] * 9)]
    return FunnelReport(1, "Sales", "IDR", PERIOD, seller_id, None, stages,
                        Outcomes(0, 0, 0, 0, None, None), losses, None, [], [], [], weeks)


def kinds(report):
    return [hint.kind for hint in advisor.advise(report)]


def test_a_healthy_funnel_gets_no_hints():
    report = craft([stage(0, 2), stage(1, 10, 8, 2), stage(2, 6, 5, 1), stage(3, 4, 3, 1),
                    stage(4, 3, 2, 1)])
    assert advisor.advise(report) == []


def test_an_empty_stage_after_a_full_one_points_at_the_full_one():
    report = craft([stage(0), stage(1, 8), stage(2, 6), stage(3, 12), stage(4, 1)],
                   seller_id=7)
    [hint] = advisor.advise(report)
    assert hint.kind == advisor.EMPTY_STAGE
    assert hint.message == ("Almost no deals at “Signature and payment” (1) against 12 at "
                            "“Document coordination”: work the deals in “Document "
                            "coordination”.")
    assert hint.deals == DealFilter(1, 3, DealFilter.IN_STAGE, owner_id=7)


def test_a_small_stage_before_an_empty_one_is_not_called_full():
    report = craft([stage(0), stage(1, 4), stage(2, 0), stage(3, 0), stage(4, 0)])
    assert kinds(report) == []


def test_the_lame_stage_is_the_one_losing_far_more_than_the_others():
    # Proposal loses 6 of 10; the other stages 2 of 20 together.
    report = craft([stage(0, 0, 5, 0), stage(1, 3, 8, 1), stage(2, 3, 4, 6),
                    stage(3, 2, 3, 1), stage(4, 2, 2, 0)])
    [hint] = advisor.advise(report)
    assert hint.kind == advisor.LAME_STAGE
    assert "“Commercial proposal” is the lame stage: it lost 60%" in hint.message
    assert "(6 of 10), the other stages 10%" in hint.message
    assert hint.deals == DealFilter(1, 2, DealFilter.LOST_FROM, start_utc=PERIOD.start_utc,
                                    end_utc=PERIOD.end_utc)


def test_a_high_loss_over_few_deals_is_not_a_lame_stage():
    report = craft([stage(0, 0, 5, 0), stage(1, 3, 8, 1), stage(2, 3, 1, 3),
                    stage(3, 2, 3, 1)])
    assert kinds(report) == []


def test_a_seller_far_worse_than_the_rest_of_the_team_at_one_stage():
    # At the proposal Budi lost 4 of 5, Ana and Citra 1 of 8 between them.
    report = craft([stage(0), stage(1, 3, 12, 3), stage(2, 3, 8, 5), stage(3, 2, 5, 1)],
                   sellers={"Ana": [(0, 0), (6, 1), (4, 0), (4, 0)],
                            "Budi": [(0, 0), (3, 1), (1, 4), (0, 1)],
                            "Citra": [(0, 0), (3, 1), (3, 1), (1, 0)]})
    hints = [h for h in advisor.advise(report) if h.kind == advisor.WEAK_SELLER]
    assert [h.message for h in hints] == [
        "Budi lost 80% of the deals decided at “Commercial proposal” (4 of 5); the rest of "
        "the team 12%. Go through those deals with Budi."]
    assert hints[0].deals == DealFilter(1, 2, DealFilter.LOST_FROM, owner_id=11,
                                        start_utc=PERIOD.start_utc, end_utc=PERIOD.end_utc)


def test_a_seller_alone_in_the_report_is_not_compared_with_nobody():
    report = craft([stage(0), stage(1, 3, 1, 4)], sellers={"Ana": [(0, 0), (1, 4)]})
    assert advisor.WEAK_SELLER not in kinds(report)


@pytest.mark.parametrize("created, draining", [
    ([10, 12, 11, 9, 10, 3, 4, 2, 3], True),
    ([10, 12, 11, 9, 10, 6, 5, 6, 5], False),   # slower, not halved
    ([1, 1, 1, 1, 1, 0, 0, 0, 0], False),       # a quiet pipeline is not draining
    ([12, 11, 10, 3, 4, 2, 3], False),          # too few earlier weeks to compare with
])
def test_a_draining_top_of_the_funnel(created, draining):
    report = craft([stage(0), stage(1, 3)], created_per_week=created)
    hints = [h for h in advisor.advise(report) if h.kind == advisor.DRAINING_TOP]
    assert bool(hints) == draining
    if draining:
        assert hints[0].message == ("The top of the funnel is draining: 3.0 new deals a week "
                                    "over the last 4 weeks, against 10.4 before. Go back to "
                                    "prospecting.")
        assert hints[0].deals == DealFilter(1, 1, DealFilter.IN_STAGE)


def test_a_partial_last_week_does_not_look_like_a_drain():
    # Nine full weeks and a tenth of a single day (the period ends on its Tuesday).
    period = make_period(date(2024, 1, 1), date(2024, 3, 5), "Asia/Jakarta")
    report = craft([stage(0), stage(1, 3)], created_per_week=[10] * 9 + [1])
    report = FunnelReport(**{**report.__dict__, "period": period})
    assert advisor.DRAINING_TOP not in kinds(report)
