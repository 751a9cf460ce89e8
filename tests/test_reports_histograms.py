"""Long periods: medians from the daily duration histograms and calls from the daily call
counts, against the exact figures the history and the calls themselves give (the path of
periods up to ``EXACT_PERIOD_DAYS``, taken here for the long period too).

The bucket maths is checked by hand; the histogram median against the exact median of
generated durations (within the 5% a bucket is wide); the histograms and call counts kept
call by call and move by move against a rebuild; and a year-long report is flagged
approximate where (and only where) it reads them.
"""

from __future__ import annotations

import math
import random
import statistics
from datetime import UTC, date, datetime, timedelta

import pytest
from factories import make_contact, make_pipeline, make_user, stages_by_name
from sqlalchemy import delete, literal, select, union_all

from pbx_crm.funnel import calls, deals
from pbx_crm.reporting import charts as report_charts, days as report_days, days_rebuild
from pbx_crm.reporting import from_days, reports
from pbx_crm.models import Deal, User
from pbx_crm.rules.phones import ExtensionPlan, classify_caller

BUCKETS = report_days.DURATION_BUCKETS
JAKARTA = "Asia/Jakarta"
PROPOSAL, DOCUMENTS = "Commercial proposal", "Document coordination"
BASE = datetime(2024, 2, 1, 3, 0, tzinfo=UTC)
LONG = (date(2024, 2, 1), date(2024, 7, 1))  # 151 days: read from the histograms


# --- the bucket maths -------------------------------------------------------------------------


def test_the_buckets_are_five_percent_wide_from_a_minute_to_two_years():
    assert BUCKETS.count == math.ceil(math.log(2 * 365 * 86400 / 60) / math.log(1.05)) == 285
    assert BUCKETS.bounds(0) == (0.0, 60.0)
    assert BUCKETS.bounds(1) == (60.0, pytest.approx(63.0))
    assert BUCKETS.bounds(2) == (pytest.approx(63.0), pytest.approx(66.15))
    low, high = BUCKETS.bounds(BUCKETS.count)
    assert high >= 2 * 365 * 86400 > low
    assert BUCKETS.bounds(BUCKETS.overflow) == (high, None)
    for bucket in (3, 100, BUCKETS.count):
        low, high = BUCKETS.bounds(bucket)
        assert high / low == pytest.approx(1.05)
    with pytest.raises(ValueError):
        BUCKETS.bounds(BUCKETS.overflow + 1)


@pytest.mark.parametrize(("seconds", "bucket"), [
    (-5, 0), (0, 0), (59, 0), (60, 1), (62, 1), (63, 2), (66, 2), (67, 3),
    (3600, 1 + math.floor(math.log(60) / math.log(1.05))),
    (10 * 365 * 86400, 286),
])
def test_a_duration_falls_in_its_bucket(seconds, bucket):
    assert BUCKETS.bucket_of(seconds) == bucket
    if bucket:
        low, high = BUCKETS.bounds(bucket)
        assert low <= seconds and (high is None or seconds < high)


def test_the_median_is_interpolated_inside_the_middle_buckets():
    low, high = BUCKETS.bounds(10)
    # One value: the middle of its bucket. Four in one bucket: ranks 2 and 3 of 4, at
    # 1.5/4 and 2.5/4 of the width, average the middle again.
    assert BUCKETS.median({10: 1}) == pytest.approx((low + high) / 2)
    assert BUCKETS.median({10: 4}) == pytest.approx((low + high) / 2)
    # Three in bucket 10, one in 200: ranks 2 and 3 both in bucket 10, at 1.5/3 and 2.5/3.
    assert BUCKETS.median({10: 3, 200: 1}) == pytest.approx(low + (high - low) * 2 / 3)
    # Two and two, far apart: the two middle ranks sit in different buckets, averaged as the
    # exact median averages its two middle values.
    far_low, far_high = BUCKETS.bounds(200)
    expected = (low + (high - low) * 1.5 / 2 + far_low + (far_high - far_low) * 0.5 / 2) / 2
    assert BUCKETS.median({10: 2, 200: 2}) == pytest.approx(expected)
    # Zero and negative counts (an owner's rows moved away) are nothing; nothing: no median.
    assert BUCKETS.median({10: 1, 11: 0, 12: -1}) == pytest.approx((low + high) / 2)
    assert BUCKETS.median({}) is None
    # The open-ended last bucket gives its lower bound.
    assert BUCKETS.median({BUCKETS.overflow: 1}) == BUCKETS.bounds(BUCKETS.overflow)[0]


@pytest.mark.parametrize("seed", range(5))
def test_the_histogram_median_is_within_five_percent_of_the_exact_one(seed):
    rng = random.Random(seed)
    values = [int(rng.lognormvariate(math.log(2 * 86400), 1.5)) + 60
              for _ in range(rng.randint(1, 3000))]
    counts: dict = {}
    for value in values:
        bucket = BUCKETS.bucket_of(value)
        counts[bucket] = counts.get(bucket, 0) + 1
    exact = statistics.median(values)
    assert abs(BUCKETS.median(counts) - exact) <= 0.05 * exact


def test_the_database_puts_a_duration_in_the_bucket_python_does(session):
    rng = random.Random(7)
    values = ([0, 59, 60, 61, 63, 3600, 86400, 2 * 365 * 86400, 10 * 365 * 86400]
              + [int(rng.lognormvariate(10, 3)) for _ in range(300)])
    rows = union_all(*[select(literal(value).label("seconds")) for value in values]).subquery()
    found = dict(session.execute(select(rows.c.seconds,
                                        BUCKETS.bucket_sql(rows.c.seconds))).all())
    assert found == {value: BUCKETS.bucket_of(value) for value in values}


# --- a generated funnel over months -----------------------------------------------------------


PLAN = ExtensionPlan.parse("100-199")


def caller(number):
    return classify_caller(number, region="ID", extensions=PLAN)


def generated_funnel(session, *, deal_count=40, seed=11):
    """Deals created over four months, moved on after random stays, some won or lost, a few
    handed to another seller, with calls in (answered, missed or abandoned) and out on them
    over their stays."""
    pipeline = make_pipeline(session)
    stage = stages_by_name(session, pipeline)
    head = make_user(session, "hana", role="head")
    ana = make_user(session, "ana", extensions=["101"])
    budi = make_user(session, "budi", extensions=["102"])
    rng = random.Random(seed)
    number = 0
    for index in range(deal_count):
        seller = (ana, budi)[index % 2]
        phone = f"+62 812-3456-{index:04d}"
        contact = make_contact(session, name=f"Customer {index}", phones=(phone,))
        moment = BASE + timedelta(days=rng.uniform(0, 120))
        deal = deals.create_deal(session, seller, title=f"Deal {index}", contact_id=contact.id,
                                 amount_minor=100 * (index + 1), now=moment)
        for target in (PROPOSAL, DOCUMENTS, "Won" if index % 3 else "Lost"):
            # A few calls while it sits in the stage: some the same day, some on later days.
            stay = timedelta(seconds=int(rng.lognormvariate(math.log(86400), 1.2)) + 120)
            for _ in range(rng.randint(0, 3)):
                number += 1
                rang = moment + stay * rng.uniform(0.01, 0.99)
                if rng.random() < 0.5:
                    calls.record_inbound_call(
                        session, uniqueid=f"{number}.1", linkedid=f"{number}.1",
                        caller=caller(phone), caller_name=None, did="2150001",
                        create_deals=True, region="ID", now=rang)
                    # Answered, missed or abandoned in turn, a minute later.
                    status = ("ANSWER", "NOANSWER", "CANCEL")[number % 3]
                    calls.record_hangup(session, uniqueid=f"{number}.1", dial_status=status,
                                        hangup_cause=16, answered_seconds=40,
                                        now=rang + timedelta(minutes=1))
                else:
                    calls.record_outbound_call(
                        session, uniqueid=f"{number}.1", linkedid=f"{number}.1",
                        extension=("101", "102")[index % 2], dialed=caller(phone),
                        clicked_deal_id=deal.id, now=rang)
            moment += stay
            if target == "Lost":
                deals.close_lost(session, head, deal.id, reason="Price",
                                 expected_version=None, now=moment)
            else:
                deals.move_deal(session, head, deal.id, to_stage_id=stage[target].id,
                                expected_version=None, now=moment)
            if index % 7 == 0 and target == DOCUMENTS:  # handed over before it closes
                other = budi if seller is ana else ana
                deals.assign_deal(session, head, deal.id, owner_id=other.user_id,
                                  now=moment + timedelta(minutes=5))
    session.flush()
    return pipeline, head, ana


def test_histograms_and_call_counts_kept_call_by_call_equal_a_rebuild(session):
    generated_funnel(session)
    kept = days_rebuild.histogram_totals(session)
    assert all(kept.values())  # stays, wins and calls were all counted
    days_rebuild.rebuild(session, time_zone=JAKARTA)
    assert days_rebuild.histogram_totals(session) == kept
    # A deal called twice the same day in the same stage counts once among the deals called.
    assert any(calls_ > deals_called for calls_, _, deals_called in kept["calls"].values())


def exact_medians_and_calls(monkeypatch):
    """Medians from the history and calls from the calls, whatever the period's length."""
    monkeypatch.setattr(from_days, "EXACT_PERIOD_DAYS", 10 * 366)


def report(session, head, pipeline, period=LONG, **kw):
    # Open tasks (the missed calls' callbacks) counted at one moment, whenever the test runs.
    return reports.funnel_report(session, head, pipeline_id=pipeline.id, start=period[0],
                                 end=period[1], time_zone=JAKARTA, now=BASE + timedelta(days=200),
                                 **kw)


def close_to(approximate, exact):
    return approximate is not None and abs(approximate - exact) <= 0.05 * exact


@pytest.mark.parametrize("one_seller", [False, True])
def test_a_long_report_flags_its_approximations_and_they_are_close(session, one_seller,
                                                                   monkeypatch):
    pipeline, head, ana = generated_funnel(session)
    kw = {"seller_id": ana.user_id} if one_seller else {}
    long = report(session, head, pipeline, **kw)
    exact_medians_and_calls(monkeypatch)
    exact = report(session, head, pipeline, **kw)

    for approx, figures in zip(long.stages, exact.stages):
        assert (approx.entered, approx.moved_on, approx.lost) == (
            figures.entered, figures.moved_on, figures.lost)
        assert approx.median_approximate == (figures.median_seconds is not None)
        assert not figures.median_approximate
        if figures.median_seconds is not None:
            assert close_to(approx.median_seconds, figures.median_seconds)
    assert long.outcomes.cycle_median_approximate and not exact.outcomes.cycle_median_approximate
    assert close_to(long.outcomes.cycle_median_seconds, exact.outcomes.cycle_median_seconds)
    assert long.outcomes.won == exact.outcomes.won > 0

    # Calls: every count is exact; deals count stays (no deal came back to a stage here, so
    # they equal the distinct deals), flagged all the same.
    assert sum(c.calls for c in exact.calls) > 0
    for approx, figures in zip(long.calls, exact.calls):
        assert approx.approximate and not figures.approximate
        assert (approx.deals, approx.calls, approx.outbound, approx.missed,
                approx.deal_days_called) == (figures.deals, figures.calls, figures.outbound,
                                             figures.missed, figures.deal_days_called)

    # The tables mark the approximate figures with "≈" and keep CSV numeric.
    tables = report_charts.report_tables(long)
    median_cell = next(row[-1] for row in tables["stages"].rows if row[-1] is not None)
    assert str(median_cell).startswith("≈")
    assert str(tables["outcomes"].rows[0][-1]).startswith("≈")
    assert tables["calls"].headers[-1] == "deal-days with calls"
    assert "≈" not in report_charts.to_csv(tables["stages"])
    assert not any(isinstance(cell, report_charts.Approximate)
                   for table in report_charts.report_tables(exact).values()
                   for row in table.rows for cell in row)


def test_a_month_reads_the_exact_figures_and_flags_nothing(session):
    pipeline, head, _ = generated_funnel(session)
    month = (date(2024, 3, 1), date(2024, 4, 1))  # 31 days: still exact
    kept = report(session, head, pipeline, period=month)
    days_rebuild.rebuild(session, time_zone=JAKARTA)
    assert kept == report(session, head, pipeline, period=month)
    assert not any(s.median_approximate for s in kept.stages)
    assert not kept.outcomes.cycle_median_approximate
    assert not any(c.approximate for c in kept.calls)


# --- the team's stay histogram: the per-seller one summed over the sellers --------------------


def without_sellers(kept: dict, seller_at: int) -> dict:
    """Per-seller sums summed over the sellers (the key's item at ``seller_at`` dropped)."""
    summed: dict = {}
    for key, values in kept.items():
        team = key[:seller_at] + key[seller_at + 1:]
        summed[team] = tuple(a + b for a, b in zip(summed.get(team, (0,) * len(values)),
                                                   values))
    return {key: value for key, value in summed.items() if any(value)}


def team_rollups(session):
    """The team's rollups as kept, and as the per-seller tables sum them."""
    kept = days_rebuild.histogram_totals(session)
    return ((days_rebuild.team_totals(session), kept["team stay"]),
            (without_sellers(days_rebuild.totals(session), 4), without_sellers(kept["stay"], 3)))


def test_the_team_rollups_kept_move_by_move_equal_a_rebuild(session):
    pipeline, head, ana = generated_funnel(session)
    kept, summed = team_rollups(session)
    assert kept == summed and all(kept)

    # Reopened, handed to the other seller, moved on and re-priced after the handover.
    budi = session.execute(select(User.id).where(User.login == "budi")).scalar_one()
    stage = stages_by_name(session, pipeline)
    at = BASE + timedelta(days=130)
    owned = session.execute(select(Deal.id, Deal.owner_id).where(Deal.pipeline_id == pipeline.id)
                            .order_by(Deal.id).limit(6)).all()
    for deal_id, _ in owned:
        deals.reopen_deal(session, head, deal_id, expected_version=None, now=at)
    reopened = days_rebuild.histogram_totals(session)
    sellers_before, team_before = reopened["stay"], team_rollups(session)[0]
    for deal_id, owner_id in owned:
        deals.assign_deal(session, head, deal_id,
                          owner_id=budi if owner_id == ana.user_id else ana.user_id,
                          now=at + timedelta(hours=1))
    # An owner change moves counts between sellers and leaves the team's sums as they are.
    assert days_rebuild.histogram_totals(session)["stay"] != sellers_before
    assert team_rollups(session)[0] == team_before
    deal = deals.create_deal(session, ana, title="Late deal", amount_minor=500, now=at)
    deals.move_deal(session, head, deal.id, to_stage_id=stage[PROPOSAL].id,
                    expected_version=None, now=at + timedelta(hours=5))
    deals.assign_deal(session, head, deal.id, owner_id=budi, now=at + timedelta(hours=6))
    deals.move_deal(session, head, deal.id, to_stage_id=stage[DOCUMENTS].id,
                    expected_version=None, now=at + timedelta(days=3))
    deals.update_deal(session, head, owned[1][0], expected_version=None, amount_minor=123_456,
                      now=at + timedelta(days=4))
    session.flush()
    kept, summed = team_rollups(session)
    assert kept == summed
    assert kept[0] != team_before[0]  # the new deal's moves and the new price count
    assert sum(v for (v,) in kept[1].values()) == sum(v for (v,) in team_before[1].values()) + 2

    days_rebuild.rebuild(session, time_zone=JAKARTA)
    assert team_rollups(session)[0] == kept
    # Filled from the per-seller tables alone (as the migration adding them does), the same.
    session.execute(delete(report_days.team_days))
    session.execute(delete(report_days.team_stay_buckets))
    days_rebuild.rebuild_team_rollups(session)
    assert team_rollups(session)[0] == kept


def test_a_whole_teams_report_reads_the_team_rollups_and_is_unchanged_by_them(
        session, monkeypatch):
    pipeline, head, ana = generated_funnel(session)
    with_team = report(session, head, pipeline)
    one_seller = report(session, head, pipeline, seller_id=ana.user_id)
    assert any(s.median_approximate for s in with_team.stages)

    month = (date(2024, 3, 1), date(2024, 4, 1))
    month_with_team = report(session, head, pipeline, period=month)

    # The same reports summing the per-seller tables instead: identical, every figure.
    with monkeypatch.context() as patched:
        patched.setattr(from_days, "team_stay_buckets", from_days.stay_buckets)
        patched.setattr(from_days, "team_days", from_days.days)
        assert report(session, head, pipeline) == with_team
        assert report(session, head, pipeline, period=month) == month_with_team

    # The team's report reads the team rollups; one seller's does not.
    session.execute(delete(report_days.team_stay_buckets))
    session.execute(delete(report_days.team_days))
    emptied = report(session, head, pipeline)
    assert all(s.median_seconds is None and not s.entered for s in emptied.stages)
    assert report(session, head, pipeline, seller_id=ana.user_id) == one_seller
