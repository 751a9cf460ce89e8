"""The daily counts behind the reports: kept by the deal services, equal to a rebuild from
the stage history, and read only in the zone they count days in.

The hand-computed funnel of test_reports is reused (its figures, read from the daily table,
are checked by hand there): its report read from the table kept move by move must equal the
same report read from the table rebuilt from scratch, and the table itself one rebuilt.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from factories import at, make_pipeline, make_unsorted_deal, make_user, stages_by_name
from sqlalchemy import delete, func, select
from test_reports import END, JAKARTA, PROPOSAL, START, build_funnel

from pbx_crm.errors import Conflict
from pbx_crm.funnel import deals
from pbx_crm.reporting import days as report_days, days_rebuild, from_days, reports
from pbx_crm.models import ReportDay, ReportDayZone

DOCUMENTS = "Document coordination"


def kept_then_rebuilt(session, time_zone=JAKARTA):
    """The table as the services kept it, then as a rebuild writes it."""
    session.flush()
    kept = days_rebuild.totals(session)
    days_rebuild.rebuild(session, time_zone=time_zone)
    return kept, days_rebuild.totals(session)


def switch_days_off(session):
    session.execute(delete(ReportDayZone))
    session.info.pop("pbx_crm.reporting.days.zone", None)


def full_report(funnel, **kw):
    return reports.funnel_report(funnel.session, funnel.hana, pipeline_id=funnel.pipeline.id,
                                 start=START, end=END, time_zone=JAKARTA, **kw)


def test_the_report_from_the_kept_days_equals_the_report_after_a_rebuild(session):
    funnel = build_funnel(session)
    assert report_days.day_zone(session) == JAKARTA
    assert session.execute(select(func.count()).select_from(ReportDay)).scalar() > 0
    # Other periods too: one day, a period starting mid-week, the whole span.
    periods = ((date(2024, 5, 7), date(2024, 5, 8)), (date(2024, 5, 1), date(2024, 6, 1)))

    def every_report():
        return [full_report(funnel), full_report(funnel, seller_id=funnel.ana.user_id)] + [
            reports.funnel_report(session, funnel.hana, pipeline_id=funnel.pipeline.id,
                                  start=start, end=end, time_zone=JAKARTA)
            for start, end in periods]

    kept = every_report()
    days_rebuild.rebuild(session, time_zone=JAKARTA)
    assert every_report() == kept


def test_the_kept_table_equals_a_rebuild_of_the_hand_computed_funnel(session):
    build_funnel(session)
    kept, rebuilt = kept_then_rebuilt(session)
    assert kept == rebuilt and rebuilt


def test_moves_owner_changes_amounts_and_a_reopen_keep_the_table_equal_to_a_rebuild(session):
    pipeline = make_pipeline(session)
    stage = stages_by_name(session, pipeline)
    head = make_user(session, "hana", role="head")
    ana, budi = make_user(session, "ana"), make_user(session, "budi")
    deal = deals.create_deal(session, ana, title="Boat", amount_minor=500, now=at(0))
    deals.move_deal(session, ana, deal.id, to_stage_id=stage[PROPOSAL].id,
                    expected_version=None, now=at(60))
    deals.assign_deal(session, head, deal.id, owner_id=budi.user_id, now=at(90))
    deals.update_deal(session, budi, deal.id, expected_version=None, amount_minor=800,
                      now=at(100))
    deals.close_won(session, budi, deal.id, expected_version=None, now=at(120))
    deals.reopen_deal(session, head, deal.id, expected_version=None, now=at(180))
    deals.close_lost(session, budi, deal.id, reason="Gone", expected_version=None, now=at(240))
    waiting = make_unsorted_deal(session, amount_minor=70, now=at(5))
    deals.take_deal(session, ana, waiting.id, now=at(30))
    other = make_unsorted_deal(session, title="Call from +62 811", amount_minor=5, now=at(6))
    deals.assign_deal(session, head, other.id, owner_id=budi.user_id, now=at(31))
    kept, rebuilt = kept_then_rebuilt(session)
    assert kept == rebuilt
    # Everything of the first deal counts for budi, its owner now, at its money now.
    budi_rows = {key: value for key, value in rebuilt.items() if key[4] == budi.user_id}
    # The deal's five moves and the other deal's two.
    assert sum(value[0] for value in budi_rows.values()) == 5 + 2
    won = [value for key, value in budi_rows.items() if key[3] == stage["Won"].id]
    assert won == [(1, 3600, 800, 120 * 60)]
    assert not [key for key in rebuilt if key[4] is None]  # nobody's deals were all taken


def test_days_are_local_days_across_the_time_zone_boundary(session):
    """17:00 UTC on 6 May is already 7 May in Jakarta (UTC+7): the move counts on the 7th."""
    make_pipeline(session)
    ana = make_user(session, "ana")
    before = deals.create_deal(session, ana, title="Before", now=at(16 * 60 + 59 - 9 * 60))
    after = deals.create_deal(session, ana, title="After", now=at(17 * 60 - 9 * 60))
    kept, rebuilt = kept_then_rebuilt(session)
    assert kept == rebuilt
    assert sorted(key[1] for key in rebuilt) == [date(2024, 5, 6), date(2024, 5, 7)]
    assert before.created_at.date() == after.created_at.date() == date(2024, 5, 6)
    # Rebuilt in another zone, both moves fall on the same local day.
    kept, rebuilt = kept_then_rebuilt(session, time_zone="Europe/London")
    assert {key[1] for key in rebuilt} == {date(2024, 5, 6)}
    assert report_days.day_zone(session) == "Europe/London"


def test_a_report_in_another_zone_is_refused_until_the_tables_count_its_days(session):
    funnel = build_funnel(session)
    zone = "America/New_York"

    def in_zone(time_zone, end=END + timedelta(days=1)):
        return reports.funnel_report(session, funnel.hana, pipeline_id=funnel.pipeline.id,
                                     start=START, end=end, time_zone=time_zone)

    jakarta = in_zone(JAKARTA)
    with pytest.raises(Conflict, match="count days in Asia/Jakarta, not in America/New_York: "
                                       "run `pbx-crm report rebuild`"):
        in_zone(zone)
    # Every figure read from the tables refuses on its own, a long period's calls too.
    period = reports.make_period(START, END + timedelta(days=60), zone)
    scope = reports.report_scope(session, funnel.hana, pipeline_id=funnel.pipeline.id,
                                 period=period)
    assert from_days.uses_histograms(scope)
    for part in (reports.stage_figures, reports.outcomes, reports.weekly_trend,
                 reports.stage_calls, lambda s, sc: reports.loss_maps(s, sc, [])):
        with pytest.raises(Conflict, match="pbx-crm report rebuild"):
            part(session, scope)

    assert days_rebuild.ensure_zone(session, zone) > 0
    # New York's days now: its report answers, and equals the one after a rebuild in it.
    in_new_york = in_zone(zone)
    assert in_new_york.period.time_zone == zone
    days_rebuild.rebuild(session, time_zone=zone)
    assert in_zone(zone) == in_new_york
    with pytest.raises(Conflict, match="count days in America/New_York, not in Asia/Jakarta"):
        in_zone(JAKARTA)
    # Back in Jakarta, the figures are those kept there before.
    assert days_rebuild.ensure_zone(session, JAKARTA) > 0
    assert in_zone(JAKARTA) == jakarta


def test_without_a_zone_nothing_is_kept(session):
    switch_days_off(session)
    make_pipeline(session)
    ana = make_user(session, "ana")
    deals.create_deal(session, ana, title="Quiet", now=at(0))
    session.flush()
    assert days_rebuild.totals(session) == {}


@pytest.mark.parametrize("zone", ["Asia/Jakarta", "Europe/Berlin"])
def test_rebuild_of_an_empty_history_writes_nothing(session, zone):
    assert days_rebuild.rebuild(session, time_zone=zone) == 0
    assert report_days.day_zone(session) == zone
