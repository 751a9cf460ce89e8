"""How a ``FunnelReport`` is shown outside Python: tables (for the CLI and CSV export) and
server-side SVG charts (a funnel, a trend per week) for the reports page.

Pure functions over the report's dataclasses. Tables hold plain values (numbers, text), one
``Table`` per part of the report, so the CLI, the CSV export and a template show the same
columns. SVG is built with ElementTree, which escapes every stage and seller name; no
script, so the charts work with JavaScript off and are safe to inline.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ..rules.money import minor_digits
from .reports import FunnelReport, LossMap


@dataclass(frozen=True)
class Table:
    name: str  # short, for file names and --table
    title: str
    headers: list[str]
    rows: list[list]


class Approximate(float):
    """A figure read from a histogram or from daily counts (to within about 5%): shown with
    "≈" on the page and the CLI, a plain number in CSV."""

    def __str__(self) -> str:
        return f"≈{int(self) if self.is_integer() else float(self)}"

    __repr__ = __str__


class Money(int):
    """An amount in minor units of ``currency``: money in the reader's locale on the page and
    the CLI, a plain number in major units in CSV (what a spreadsheet sums)."""

    currency: str

    def __new__(cls, amount_minor: int, currency: str):
        money = super().__new__(cls, amount_minor)
        money.currency = currency
        return money

    @property
    def major(self) -> int | Decimal:
        value = Decimal(int(self)).scaleb(-minor_digits(self.currency))
        return int(value) if value == value.to_integral_value() else value


def _approx(value, approximate: bool):
    return Approximate(value) if approximate and value is not None else value


def _pct(share: float | None):
    return None if share is None else round(share * 100, 1)


def _hours(seconds: float | None):
    return None if seconds is None else round(seconds / 3600, 1)


def _days(seconds: float | None):
    return None if seconds is None else round(seconds / 86400, 1)


def _minutes(seconds: float | None):
    return None if seconds is None else round(seconds / 60, 1)


def stages_table(report: FunnelReport) -> Table:
    return Table("stages", "Stage by stage",
                 ["stage", "open deals", "open amount", "entered", "moved on", "moved back",
                  "lost", "conversion %", "loss %", "avg hours in stage",
                  "median hours in stage"],
                 [[s.name, s.open_deals, Money(s.open_amount_minor, report.currency), s.entered, s.moved_on,
                   s.moved_back, s.lost, _pct(s.conversion), _pct(s.loss_rate),
                   _hours(s.avg_seconds), _approx(_hours(s.median_seconds), s.median_approximate)]
                  for s in report.stages])


def outcomes_table(report: FunnelReport) -> Table:
    o = report.outcomes
    return Table("outcomes", "Outcomes",
                 ["created", "won", "lost", "won amount", "win rate %", "avg cycle days",
                  "median cycle days"],
                 [[o.created, o.won, o.lost, Money(o.won_amount_minor, report.currency), _pct(o.win_rate),
                   _days(o.cycle_avg_seconds),
                   _approx(_days(o.cycle_median_seconds), o.cycle_median_approximate)]])


def losses_table(losses: LossMap, name: str = "losses") -> Table:
    """The loss map, one row per (seller or team, stage), weak cells marked."""
    stage_names = dict(losses.stages)
    rows = [[row.name, stage_names[cell.stage_id], cell.moved_on, cell.lost,
             _pct(cell.loss_rate), _pct(losses.overall_cell(cell.stage_id).loss_rate),
             "weak" if cell.weak else ""]
            for row in losses.rows for cell in row.cells if cell.decided]
    return Table(name, f"Losses by {losses.by}",
                 [losses.by, "stage", "moved on", "lost", "loss %", "stage loss %", "flag"],
                 rows)


def calls_table(report: FunnelReport) -> Table:
    """Calls by stage; over a long period (counts read from the days, ``deals`` counting
    stays) also the deal-days with calls, the figure the daily counts hold exactly."""
    long = any(c.approximate for c in report.calls)
    headers = ["stage", "deals", "calls", "outbound", "missed", "calls per deal"]
    return Table("calls", "Calls by stage",
                 headers + (["deal-days with calls"] if long else []),
                 [[c.name, _approx(c.deals, c.approximate), c.calls, c.outbound, c.missed,
                   _approx(None if c.calls_per_deal is None else round(c.calls_per_deal, 2),
                           c.approximate)] + ([c.deal_days_called] if long else [])
                  for c in report.calls])


def callbacks_table(report: FunnelReport) -> Table:
    return Table("callbacks", "Missed calls and callbacks",
                 ["seller", "missed", "called back", "not called back", "avg minutes",
                  "median minutes", "within target", "on target %"],
                 [[c.seller_name, c.missed, c.called_back, c.not_called_back,
                   _minutes(c.avg_seconds), _minutes(c.median_seconds), c.within_target,
                   _pct(c.on_target)]
                  for c in report.callbacks])


def nudges_table(report: FunnelReport) -> Table:
    return Table("nudges", "Robot nudges and their answers",
                 ["seller", "stage", "nudges", "moved on", "lower priority", "snooze",
                  "unanswered"],
                 [[n.seller_name, n.stage_name, n.fired, n.moved_on, n.lower_priority,
                   n.snooze, n.unanswered] for n in report.nudges])


def tasks_table(report: FunnelReport) -> Table:
    return Table("tasks", "Open tasks by seller",
                 ["seller", "open tasks", "overdue", "most overdue hours"],
                 [[t.seller_name, t.open, t.overdue, _hours(t.longest_overdue_seconds)]
                  for t in report.tasks])


def weeks_table(report: FunnelReport) -> Table:
    return Table("weeks", "Week by week",
                 ["week of", "created", "moved on", "won", "lost"],
                 [[w.start.isoformat(), w.created, w.moved_on, w.won, w.lost]
                  for w in report.weeks])


def report_tables(report: FunnelReport) -> dict[str, Table]:
    """Every table of the report, by name, in the order the page shows them."""
    tables = [stages_table(report), outcomes_table(report), weeks_table(report),
              losses_table(report.losses)]
    if report.losses_by_team is not None:
        tables.append(losses_table(report.losses_by_team, "team_losses"))
    tables += [calls_table(report), callbacks_table(report), tasks_table(report),
               nudges_table(report)]
    return {table.name: table for table in tables}


# What makes a spreadsheet run a cell as a formula, as OWASP's "CSV Injection" page lists it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """One cell as the CSV holds it. Figures the report computes (counts, amounts,
    percentages, approximate figures) stay numbers, negative ones too. Text (a stage, seller
    or team name, a hint) may be what a user typed: one that starts like a formula, after any
    spaces, gets a leading ``'`` so a spreadsheet shows it as text instead of running it."""
    if value is None:
        return ""
    if isinstance(value, Money):
        return value.major
    if isinstance(value, Approximate):
        return int(value) if value.is_integer() else float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    text = str(value)
    return "'" + text if text.lstrip(" ").startswith(FORMULA_STARTS) else text


def to_csv(table: Table) -> str:
    """The table as CSV text (header row first; an empty cell for a figure with no value).

    Every text cell is quoted, so a separator or quote inside a name never starts a cell of
    its own (where a formula could begin); numbers are not, so spreadsheets read them as
    numbers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([csv_cell(header) for header in table.headers])
    writer.writerows([[csv_cell(cell) for cell in row] for row in table.rows])
    return out.getvalue()


# --- SVG ------------------------------------------------------------------------------------

SVG_NS = "http://www.w3.org/2000/svg"
SERIES = (("created", "#3b82f6"), ("won", "#16a34a"), ("lost", "#dc2626"))


def _english(text: str) -> str:
    return text


def _week_label(day: date) -> str:
    return day.strftime("%d %b")


def _svg(width: int, height: int, title: str) -> ET.Element:
    """A chart scaled by the page's stylesheet (``.chart svg``: its font and width); no
    inline style, which the Content-Security-Policy would refuse."""
    root = ET.Element("svg", {"xmlns": SVG_NS, "viewBox": f"0 0 {width} {height}",
                              "role": "img", "class": "chart-svg"})
    ET.SubElement(root, "title").text = title
    return root


def _text(parent, x, y, content, anchor="start", **attributes) -> None:
    element = ET.SubElement(parent, "text", {"x": f"{x:.1f}", "y": f"{y:.1f}",
                                             "text-anchor": anchor, **attributes})
    element.text = content


def funnel_svg(report: FunnelReport, *, width: int = 640, bar_height: int = 28,
               gettext: Callable[[str], str] = _english) -> str:
    """The funnel: one centred bar per stage, as wide as the deals that entered it in the
    period, labelled with the count and the conversion to the next stage. ``gettext``
    translates the chart's own words (the page passes the user's catalog)."""
    _ = gettext
    rows = report.stages
    height = bar_height * len(rows) + 40
    root = _svg(width, height, _("Funnel of %(pipeline)s, %(period)s")
                % {"pipeline": report.pipeline_name, "period": report.period.span})
    label_width, most = 190, max((s.entered for s in rows), default=0) or 1
    room = width - label_width - 10
    for i, stage in enumerate(rows):
        y = 10 + i * bar_height
        bar = max(2.0, room * stage.entered / most)
        x = label_width + (room - bar) / 2
        _text(root, label_width - 8, y + bar_height * 0.62, stage.name, anchor="end")
        rect = ET.SubElement(root, "rect", {"x": f"{x:.1f}", "y": str(y + 3),
                                            "width": f"{bar:.1f}",
                                            "height": str(bar_height - 6), "fill": "#3b82f6"})
        ET.SubElement(rect, "title").text = (
            _("%(stage)s: %(entered)s entered, %(open)s open now")
            % {"stage": stage.name, "entered": stage.entered, "open": stage.open_deals})
        conversion = ("" if stage.conversion is None else " · " + _("%(share)s%% on")
                      % {"share": f"{stage.conversion * 100:.0f}"})
        _text(root, label_width + room / 2, y + bar_height * 0.62,
              f"{stage.entered}{conversion}", anchor="middle", fill="#111")
    _text(root, 10, height - 10, _("deals that entered each stage · share moved on"))
    return ET.tostring(root, encoding="unicode")


def trend_svg(report: FunnelReport, *, width: int = 640, height: int = 240,
              gettext: Callable[[str], str] = _english,
              week_label: Callable[[date], str] = _week_label) -> str:
    """New, won and lost deals per week, as three lines; ``week_label`` names a week's first
    day under the axis (the page passes one in the user's locale)."""
    _ = gettext
    weeks = report.weeks
    root = _svg(width, height, _("Week by week, %(pipeline)s, %(period)s")
                % {"pipeline": report.pipeline_name, "period": report.period.span})
    # Room on the right for the last week's label, centred under its point.
    left, right, top, bottom = 40, 30, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max((max(w.created, w.won, w.lost) for w in weeks), default=0) or 1
    step = plot_w / max(1, len(weeks) - 1)

    def point(i, value):
        return left + i * step, top + plot_h * (1 - value / most)

    ET.SubElement(root, "line", {"x1": str(left), "y1": str(top + plot_h),
                                 "x2": str(left + plot_w), "y2": str(top + plot_h),
                                 "stroke": "#999"})
    _text(root, left - 4, top + 4, str(most), anchor="end")
    _text(root, left - 4, top + plot_h + 4, "0", anchor="end")
    every = max(1, len(weeks) // 8)
    for i, week in enumerate(weeks):
        if i % every == 0:
            x, _y = point(i, 0)
            _text(root, x, top + plot_h + 16, week_label(week.start), anchor="middle")
    names = {"created": _("created"), "won": _("won"), "lost": _("lost")}
    for n, (series, colour) in enumerate(SERIES):
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in
                          (point(i, getattr(w, series)) for i, w in enumerate(weeks)))
        line = ET.SubElement(root, "polyline", {"points": points, "fill": "none",
                                                "stroke": colour, "stroke-width": "2"})
        ET.SubElement(line, "title").text = names[series]
        _text(root, left + n * 90, height - 6, f"■ {names[series]}", fill=colour)
    return ET.tostring(root, encoding="unicode")
