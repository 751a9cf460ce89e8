"""The reports page: the funnel report of a pipeline and a period, its charts, the advisor's
hints with the deals behind them, and every table as CSV.

A head sees everyone's figures and may pick one seller; a seller gets their own figures only
(``reports.report_scope`` decides). The period comes from a picker (this month, the last 30
days, this quarter, this year, or custom dates) in the company's time zone; custom dates are
both included. The SVG charts are built by ``pbx_crm.reporting.charts`` (escaped XML, no script)
and placed inline.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import bottle
from babel.dates import format_date
from markupsafe import Markup
from sqlalchemy import select

from pbx_crm.funnel import pipelines
from pbx_crm.reporting import reports
from pbx_crm.reporting.advisor import hints_with_deals
from pbx_crm.db import transaction
from pbx_crm.errors import Phrase, ValidationError
from pbx_crm.models import Deal, User
from pbx_crm.reporting.charts import Money, funnel_svg, report_tables, to_csv, trend_svg
from pbx_crm.reporting.reports import DealFilter, FunnelReport, deals_matching

from .app import WebUI, int_field, query

PERIODS = ("month", "30days", "quarter", "year", "custom")
DEFAULT_PERIOD = "month"


def gettext(message: str) -> str:
    """Marks the report tables' words for the catalogs; the page translates them when shown
    (``pbx_crm.reporting.charts`` names them in English, for the CLI and the CSV files)."""
    return message


TABLE_WORDS = (
    gettext("Stage by stage"), gettext("Outcomes"), gettext("Week by week"),
    gettext("Losses by seller"), gettext("Losses by team"), gettext("Calls by stage"),
    gettext("Missed calls and callbacks"), gettext("Robot nudges and their answers"),
    gettext("stage"), gettext("open deals"), gettext("open amount"), gettext("entered"),
    gettext("moved on"), gettext("moved back"), gettext("lost"), gettext("conversion %"),
    gettext("loss %"), gettext("avg hours in stage"), gettext("median hours in stage"),
    gettext("created"), gettext("won"), gettext("won amount"), gettext("win rate %"),
    gettext("avg cycle days"), gettext("median cycle days"), gettext("week of"),
    gettext("seller"), gettext("team"), gettext("stage loss %"), gettext("flag"),
    gettext("deals"), gettext("calls"), gettext("outbound"), gettext("missed"),
    gettext("calls per deal"), gettext("deal-days with calls"), gettext("called back"),
    gettext("not called back"),
    gettext("avg minutes"), gettext("median minutes"), gettext("within target"),
    gettext("on target %"), gettext("Open tasks by seller"), gettext("open tasks"),
    gettext("overdue"), gettext("most overdue hours"), gettext("nudges"),
    gettext("lower priority"), gettext("snooze"), gettext("unanswered"),
)


def with_unsorted_named(report: FunnelReport, name: str) -> FunnelReport:
    """The report with its Unsorted stage called ``name`` (the reader's word for it: the
    stage is stored under its English name) in every table, chart and hint."""
    unsorted = {s.stage_id for s in report.stages if s.is_unsorted}

    def named(stages):
        return [(stage_id, name if stage_id in unsorted else stage_name)
                for stage_id, stage_name in stages]

    def renamed(rows):
        return [replace(row, name=name) if row.stage_id in unsorted else row for row in rows]

    return replace(
        report, stages=renamed(report.stages), calls=renamed(report.calls),
        losses=replace(report.losses, stages=named(report.losses.stages)),
        losses_by_team=report.losses_by_team and replace(
            report.losses_by_team, stages=named(report.losses_by_team.stages)))


def period_bounds(kind: str, today: date, first: str = "", last: str = "") -> tuple[date, date]:
    """``[start, end)`` local dates for a picker choice; custom dates are both included."""
    if kind == "month":
        return today.replace(day=1), today + timedelta(days=1)
    if kind == "30days":
        return today - timedelta(days=29), today + timedelta(days=1)
    if kind == "quarter":
        return date(today.year, 3 * ((today.month - 1) // 3) + 1, 1), today + timedelta(days=1)
    if kind == "year":
        return date(today.year, 1, 1), today + timedelta(days=1)
    if kind == "custom":
        try:
            start, end = date.fromisoformat(first.strip()), date.fromisoformat(last.strip())
        except ValueError:
            raise ValidationError("Give the custom period as two dates, YYYY-MM-DD.",
                                  field="period") from None
        if end < start:
            raise ValidationError("The period must end after it starts.", field="period")
        return start, end + timedelta(days=1)
    raise ValidationError("Unknown period “%(period)s”.", period=kind[:20], field="period")


def _utc_param(values, name: str) -> datetime | None:
    text = (values.get(name) or "").strip()
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError("“%(text)s” is not a date and time.", text=text[:40],
                              field=name) from None
    if found.tzinfo is None:
        raise ValidationError("A time in a deal list carries its UTC offset.", field=name)
    return found


def register(ui: WebUI) -> None:
    app = ui.app

    def chosen():
        """The page's choices from the query string, checked."""
        values = query()
        kind = values.get("period") or DEFAULT_PERIOD
        today = datetime.now(ZoneInfo(ui.settings.time_zone)).date()
        start, end = period_bounds(kind, today, values.get("from", ""), values.get("to", ""))
        return {"pipeline_id": int_field(values, "pipeline", Phrase("pipeline"), required=False),
                "seller_id": int_field(values, "seller", Phrase("seller"), required=False),
                "period": kind, "start": start, "end": end}

    def build(session, choice):
        return reports.funnel_report(session, ui.actor, pipeline_id=choice["pipeline_id"],
                                     start=choice["start"], end=choice["end"],
                                     time_zone=ui.settings.time_zone,
                                     seller_id=choice["seller_id"],
                                     callback_target_minutes=ui.settings.callback_target_minutes)

    def query_of(choice, report) -> dict:
        params = {"pipeline": report.pipeline_id, "period": choice["period"]}
        if choice["period"] == "custom":
            params["from"] = choice["start"].isoformat()
            params["to"] = (choice["end"] - timedelta(days=1)).isoformat()
        if choice["seller_id"] is not None and ui.actor.sees_everything:
            params["seller"] = choice["seller_id"]
        return params

    @app.get("/reports", name="reports")
    def show_reports():
        choice = chosen()
        translated = ui.translations[ui.language()].gettext
        with transaction(ui.engine, read_only=True) as session:
            report = with_unsorted_named(build(session, choice), translated("Unsorted"))
            hints = [(hint, len(deal_ids))
                     for hint, deal_ids in hints_with_deals(session, ui.actor, report)]
            choices = pipelines.list_pipelines(session)
            sellers = (session.execute(select(User.id, User.name).where(User.role == "seller")
                                       .order_by(User.name)).all()
                       if ui.actor.sees_everything else [])
        params = query_of(choice, report)
        return ui.render(
            "reports.html", report=report, tables=report_tables(report), hints=hints,
            is_money=lambda cell: isinstance(cell, Money), nobody=reports.NOBODY,
            pipelines=choices, sellers=sellers, choice=choice,
            # The period's last day, included: the dates speak every language, "to" does not.
            last_day=report.period.end - timedelta(days=1),
            periods=PERIODS, params=params, query_string=urlencode(params),
            funnel_chart=Markup(funnel_svg(report, gettext=translated)),
            trend_chart=Markup(trend_svg(
                report, gettext=translated,
                week_label=lambda day: format_date(day, "d MMM", locale=ui.locale()))),
            # Table headers hold "%": translated without gettext's formatting.
            plain=translated,
            hint_link=lambda hint: "/reports/deals?" + urlencode(hint.deals.query_params()))

    @app.get("/reports/<table>.csv", name="report_csv")
    def report_csv(table):
        choice = chosen()
        with transaction(ui.engine, read_only=True) as session:
            report = build(session, choice)
        tables = report_tables(report)
        if table not in tables:
            raise ValidationError("No table “%(table)s” in this report.", table=table[:20],
                                  field="table")
        name = f"{table}-{report.period.start.isoformat()}-{report.period.end.isoformat()}.csv"
        bottle.response.content_type = "text/csv; charset=utf-8"
        bottle.response.set_header("Content-Disposition", f'attachment; filename="{name}"')
        return to_csv(tables[table])

    @app.get("/reports/deals", name="report_deals")
    def report_deals():
        values = query()
        wanted = DealFilter(
            pipeline_id=int_field(values, "pipeline", Phrase("pipeline")),
            stage_id=int_field(values, "stage", Phrase("stage")), what=values.get("what", ""),
            owner_id=int_field(values, "seller", Phrase("seller"), required=False),
            start_utc=_utc_param(values, "from"), end_utc=_utc_param(values, "to"))
        with transaction(ui.engine, read_only=True) as session:
            ids = deals_matching(session, ui.actor, wanted)
            stage = pipelines.get_stage(session, wanted.stage_id)
            found = {deal.id: deal for deal in session.execute(
                select(Deal).where(Deal.id.in_(ids))).scalars()} if ids else {}
            rows = [found[deal_id] for deal_id in ids if deal_id in found]
            owners = dict(session.execute(select(User.id, User.name)).all())
        return ui.render("report_deals.html", deals=rows, stage=stage, wanted=wanted,
                         owners=owners, limit=reports.DEAL_LIST_LIMIT)
