"""The report as tables, CSV and SVG: what a head downloads and sees, names escaped."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import date, timedelta

from pbx_crm.reporting import charts as report_charts
from pbx_crm.reporting.reports import (
    Callbacks, FunnelReport, LossCell, LossMap, LossRow, NudgeAnswers, Outcomes, StageCalls,
    StageFigures, Week, make_period,
)

SVG = "{http://www.w3.org/2000/svg}"
NASTY = 'Proposal <script>alert("x")</script> & co'
PERIOD = make_period(date(2024, 5, 6), date(2024, 5, 20), "Asia/Jakarta")


def crafted() -> FunnelReport:
    stages = [StageFigures(1, "Opportunity", 1, False, 4, 900, 10, 6, 0, 2, 7200.0, 3600.0),
              StageFigures(2, NASTY, 2, False, 2, 300, 6, 3, 1, 2, None, None)]
    overall = [LossCell(1, 6, 2, False), LossCell(2, 3, 2, False)]
    losses = LossMap("seller", [(1, "Opportunity"), (2, NASTY)], overall,
                     [LossRow(7, "Ana <b>", [LossCell(1, 3, 2, True), LossCell(2, 0, 0, False)])])
    return FunnelReport(
        1, "Sales", "IDR", PERIOD, None, None, stages,
        Outcomes(11, 1, 5, 100, 576000.0, 576000.0), losses, None,
        [StageCalls(1, "Opportunity", 11, 2, 1, 1), StageCalls(2, NASTY, 0, 0, 0, 0)],
        [Callbacks(7, "Ana <b>", 2, 1, 5400.0, 5400.0, 1)],
        [NudgeAnswers(7, "Ana <b>", 2, NASTY, 3, 1, 0, 1)],
        [Week(PERIOD.start, 11, 8, 0, 4), Week(PERIOD.start + timedelta(weeks=1), 0, 1, 1, 1)])


def read_csv(text):
    return list(csv.reader(io.StringIO(text)))


def test_every_table_exports_as_csv_with_its_figures():
    tables = report_charts.report_tables(crafted())
    assert list(tables) == ["stages", "outcomes", "weeks", "losses", "calls", "callbacks",
                            "tasks", "nudges"]
    stages = read_csv(report_charts.to_csv(tables["stages"]))
    assert stages[0][:4] == ["stage", "open deals", "open amount", "entered"]
    # Money in major units, what a spreadsheet sums (900 sen of rupiah: 9).
    assert stages[1] == ["Opportunity", "4", "9", "10", "6", "0", "2", "75.0", "25.0",
                         "2.0", "1.0"]
    # A stage with no moves out has no time in stage: empty cells, not zeros.
    assert stages[2][0] == NASTY and stages[2][-2:] == ["", ""]
    assert read_csv(report_charts.to_csv(tables["outcomes"]))[1] == [
        "11", "1", "5", "1", "16.7", "6.7", "6.7"]
    # The loss map lists the cells with decided deals, the weak one flagged.
    assert read_csv(report_charts.to_csv(tables["losses"]))[1:] == [
        ["Ana <b>", "Opportunity", "3", "2", "40.0", "25.0", "weak"]]
    assert read_csv(report_charts.to_csv(tables["calls"]))[1] == [
        "Opportunity", "11", "2", "1", "1", "0.18"]
    assert read_csv(report_charts.to_csv(tables["callbacks"]))[1] == [
        "Ana <b>", "2", "1", "1", "90.0", "90.0", "1", "50.0"]
    assert read_csv(report_charts.to_csv(tables["nudges"]))[1] == [
        "Ana <b>", NASTY, "3", "1", "0", "1", "1"]
    assert read_csv(report_charts.to_csv(tables["weeks"]))[1:] == [
        ["2024-05-06", "11", "8", "0", "4"], ["2024-05-13", "0", "1", "1", "1"]]


def test_the_funnel_chart_is_svg_with_one_bar_per_stage_and_names_escaped():
    svg = report_charts.funnel_svg(crafted())
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    bars = root.findall(f"{SVG}rect")
    assert len(bars) == 2
    widths = [float(bar.get("width")) for bar in bars]
    assert widths[0] > widths[1] == widths[0] * 6 / 10  # as wide as the deals that entered
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert NASTY in labels and {"10 · 75% on", "6 · 60% on"} <= set(labels)


def test_the_trend_chart_draws_a_line_per_series_with_a_point_per_week():
    root = ET.fromstring(report_charts.trend_svg(crafted()))
    lines = root.findall(f"{SVG}polyline")
    assert [line.find(f"{SVG}title").text for line in lines] == ["created", "won", "lost"]
    assert all(len(line.get("points").split()) == 2 for line in lines)
    assert not root.findall(f".//{SVG}script")


def test_money_in_csv_is_in_major_units_cents_kept_where_there_are_some():
    table = report_charts.Table("t", "T", ["amount"], [[report_charts.Money(150_050, "USD")],
                                                       [report_charts.Money(1_200, "JPY")]])
    assert read_csv(report_charts.to_csv(table))[1:] == [["1500.50"], ["1200"]]


def test_a_charts_title_names_its_period_alike_in_every_language():
    from pbx_crm.webui.app import load_translations

    indonesian = load_translations("id").gettext
    for chart in (report_charts.funnel_svg, report_charts.trend_svg):
        root = ET.fromstring(chart(crafted(), gettext=indonesian))
        title = root.find(f"{SVG}title").text
        assert "2024-05-06 – 2024-05-19" in title and " to " not in title, title
