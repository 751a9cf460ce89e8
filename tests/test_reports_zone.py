"""The reports' daily tables count the company's days: a change of ``time_zone`` is recounted
once at start-up (``db upgrade``, ``serve``, a report command), and a report asked in a zone
the tables do not count is refused with the fix, never answered with another zone's days.

The data is the hand-computed funnel of test_reports (6 to 19 May 2024, Jakarta dates).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from datetime import date
from urllib.parse import urlencode

import pytest
from sqlalchemy import delete, func, select
from test_reports import END, JAKARTA, START, build_funnel
from webtools import signed_in

from pbx_crm.cli import running
from pbx_crm.db import transaction
from pbx_crm.errors import Conflict
from pbx_crm.models import ReportDay, ReportDayZone
from pbx_crm.reporting import days as report_days, days_rebuild, reports

LONDON = "Europe/London"
PERIOD = ("--pipeline", "Sales", "--from", "2024-05-06", "--to", "2024-05-19")
RECOUNTED = re.compile(r"Recounted the reports' daily tables in (\S+): [\d,]+ rows in [\d.]+ s\.")


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def zone_of(engine) -> str | None:
    with transaction(engine, read_only=True) as session:
        return report_days.day_zone(session)


def lines(text):
    return [" ".join(line.split()) for line in text.splitlines()]


def whole_report(engine, head, pipeline_id, time_zone, start=START):
    with transaction(engine, read_only=True) as session:
        return reports.funnel_report(session, head, pipeline_id=pipeline_id, start=start,
                                     end=END, time_zone=time_zone)


def test_ensure_zone_recounts_once_in_a_new_zone_and_logs_the_rows_and_seconds(session,
                                                                               caplog):
    build_funnel(session)
    assert days_rebuild.ensure_zone(session, JAKARTA) is None  # counting Jakarta's days
    with caplog.at_level(logging.INFO, logger="pbx_crm.reporting.days_rebuild"):
        rows = days_rebuild.ensure_zone(session, LONDON)
    written = session.execute(select(func.count()).select_from(ReportDay)).scalar()
    assert rows == written > 0
    assert report_days.day_zone(session) == LONDON
    assert re.fullmatch(rf"recounted the reports' daily tables in {LONDON} \(they counted days "
                        rf"in {JAKARTA}\): {rows} rows in [\d.]+ s", caplog.messages[-1])
    assert days_rebuild.ensure_zone(session, LONDON) is None  # once


def moves_counted(session) -> tuple:
    """The daily moves and their histograms (the funnel's calls are written around the
    upkeep: not compared)."""
    histograms = days_rebuild.histogram_totals(session)
    return (days_rebuild.totals(session),
            {name: histograms[name] for name in ("stay", "team stay", "cycle")})


def test_ensure_zone_counts_a_history_written_without_a_zone(session):
    build_funnel(session)
    kept = moves_counted(session)
    session.execute(delete(ReportDayZone))  # as though written with nothing kept
    session.info.pop(report_days.ZONE_CACHE, None)
    assert days_rebuild.ensure_zone(session, JAKARTA) > 0
    assert moves_counted(session) == kept


def test_ensure_zone_on_an_empty_database_records_the_zone_for_the_upkeep(session):
    session.execute(delete(ReportDayZone))
    session.info.pop(report_days.ZONE_CACHE, None)
    assert days_rebuild.ensure_zone(session, LONDON) == 0
    assert report_days.day_zone(session) == LONDON


def test_a_report_over_tables_never_built_is_refused_naming_the_fix(session):
    funnel = build_funnel(session)
    session.execute(delete(ReportDayZone))
    session.info.pop(report_days.ZONE_CACHE, None)
    with pytest.raises(Conflict, match=r"not built: run `pbx-crm report rebuild` to count "
                                       r"them in the company's time zone, Asia/Jakarta\."):
        reports.funnel_report(session, funnel.hana, pipeline_id=funnel.pipeline.id,
                              start=START, end=END, time_zone=JAKARTA)


def test_ensure_zone_leaves_the_commit_to_its_caller(engine):
    with transaction(engine) as session:
        build_funnel(session)
    with pytest.raises(RuntimeError), transaction(engine) as session:
        assert days_rebuild.ensure_zone(session, LONDON) > 0
        raise RuntimeError("the caller's work fails after the recount")
    assert zone_of(engine) == JAKARTA


def test_a_change_of_time_zone_at_start_up_recounts_the_tables_and_the_figures_follow(
        engine, pbx_crm_at):
    url = url_of(engine)
    # A company in London: the tables kept move by move in London's days.
    with transaction(engine) as session:
        days_rebuild.ensure_zone(session, LONDON)
        funnel = build_funnel(session)
    head, pipeline_id = funnel.hana, funnel.pipeline.id
    kept_in_london = whole_report(engine, head, pipeline_id, LONDON, start=date(2024, 5, 5))
    # The hand count of test_reports in London's weeks.
    assert [(w.start, w.lost) for w in kept_in_london.weeks] == [
        (date(2024, 4, 29), 0), (date(2024, 5, 6), 5), (date(2024, 5, 13), 0)]

    # The company moves to Jakarta: the upgrade recounts the tables, once.
    code, out, err = pbx_crm_at(url, "--time-zone", JAKARTA, "db", "upgrade")
    assert code == 0, err
    assert RECOUNTED.search(out).group(1) == JAKARTA and zone_of(engine) == JAKARTA
    code, out, _ = pbx_crm_at(url, "--time-zone", JAKARTA, "db", "upgrade")
    assert code == 0 and "Recounted" not in out
    # The figures are those worked out by hand in Jakarta's days (test_reports_cli).
    code, out, err = pbx_crm_at(url, "--time-zone", JAKARTA, "report", "funnel", *PERIOD)
    assert (code, err) == (0, "")
    shown = lines(out)
    assert "Opportunity 2 Rp4 11 6 0 3 66.7 33.3 30.3 24.0" in shown
    assert "11 1 5 Rp1 16.7 6.7 6.7" in shown and "2024-05-13 0 1 1 1" in shown

    # Back to London: every figure equals the one kept there move by move.
    code, out, err = pbx_crm_at(url, "--time-zone", LONDON, "db", "upgrade")
    assert code == 0 and RECOUNTED.search(out).group(1) == LONDON, err
    assert whole_report(engine, head, pipeline_id, LONDON, start=date(2024, 5, 5)) \
        == kept_in_london


def test_a_report_command_recounts_first_and_says_so_off_the_csv(engine, pbx_crm_at):
    with transaction(engine) as session:
        build_funnel(session)
    code, out, err = pbx_crm_at(url_of(engine), "--time-zone", LONDON, "report", "funnel",
                                "--pipeline", "Sales", "--from", "2024-05-05", "--to",
                                "2024-05-19", "--csv", "--table", "weeks")
    assert code == 0 and RECOUNTED.search(err).group(1) == LONDON
    # London's weeks: B1, lost on Sunday 20:00 UTC, in the first; A1, won on Monday 01:00
    # UTC, in the second (test_reports counts Jakarta's, where both fall in the second).
    assert list(csv.reader(io.StringIO(out))) == [
        ["week of", "created", "moved on", "won", "lost"], ["2024-04-29", "0", "0", "0", "0"],
        ["2024-05-06", "11", "8", "0", "5"], ["2024-05-13", "0", "1", "1", "0"]]


class Handle:
    def stop(self):
        pass


def test_serve_recounts_the_tables_before_it_starts_anything_and_fastagi_alone_not(
        engine, pbx_crm_at, monkeypatch, caplog):
    with transaction(engine) as session:
        build_funnel(session)
    seen = []

    def start(settings, engine_):
        seen.append(zone_of(engine_))
        return Handle()

    def interrupt():
        raise KeyboardInterrupt

    monkeypatch.setattr(running, "COMPONENTS", [running.Component("web", "fake web", start),
                                                running.Component("fastagi", "fake", start)])
    monkeypatch.setattr(running, "_wait_for_interrupt", interrupt)
    url = url_of(engine)
    # The FastAGI server alone starts at once, even with the database down: no recount.
    assert pbx_crm_at(url, "--time-zone", LONDON, "fastagi")[0] == 0
    assert seen == [JAKARTA]
    with caplog.at_level(logging.INFO, logger="pbx_crm.reporting.days_rebuild"):
        assert pbx_crm_at(url, "--time-zone", LONDON, "serve")[0] == 0
    assert seen == [JAKARTA, LONDON, LONDON]
    assert f"recounted the reports' daily tables in {LONDON}" in caplog.text


def test_a_web_process_started_before_a_zone_change_refuses_reports_naming_the_fix(
        web, engine, pbx_crm_at):
    with transaction(engine) as session:
        build_funnel(session)
    head = signed_in(web, "hana")
    query = urlencode({"period": "custom", "from": "2024-05-06", "to": "2024-05-19"})
    assert head.get(f"/reports?{query}").status == 200
    # Elsewhere, the company's zone changes and an upgrade recounts the tables in London;
    # this web process still asks Jakarta's days.
    assert pbx_crm_at(url_of(engine), "--time-zone", LONDON, "db", "upgrade")[0] == 0
    for path in ("/reports", "/reports/stages.csv"):
        answer = head.get(f"{path}?{query}")
        assert answer.status == 409
        assert "pbx-crm report rebuild" in answer.text
        assert f"{LONDON}, not in {JAKARTA}" in answer.text
