"""``pbx-crm report funnel|losses|calls|nudges|advice`` and ``report rebuild``: the funnel
reports of a pipeline and a period as text tables or CSV, and recounting their daily table.

The reports read the daily tables in the company's time zone: a report command first
recounts them when they count days in another (``common.ensure_report_zone``, said on
stderr, off the CSV's way).
"""

from __future__ import annotations

import argparse
import sys

from ..db import transaction
from ..errors import CrmError
from .common import (
    add_command, add_group, admin, ensure_report_zone, find_pipeline, print_table,
)

# The tables each `report` view shows, the first being the one --csv writes by default.
REPORT_VIEWS = {"funnel": ("stages", "outcomes", "weeks"),
                "losses": ("losses", "team_losses"),
                "calls": ("calls", "callbacks"),
                "tasks": ("tasks",),
                "nudges": ("nudges",),
                "advice": ("advice",)}
REPORT_DEFAULT_DAYS = 30
ADVICE_DEALS_SHOWN = 20


def cmd_report(args, settings, engine, out) -> int:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from ..reporting.advisor import hints_with_deals
    from ..reporting.charts import Money, Table, report_tables, to_csv
    from ..rules.money import format_money, locale_for
    from ..reporting.reports import funnel_report

    last = args.to or datetime.now(ZoneInfo(settings.time_zone)).date()
    first = args.start or last - timedelta(days=REPORT_DEFAULT_DAYS - 1)
    ensure_report_zone(settings, engine, sys.stderr)
    with transaction(engine, read_only=True) as session:
        pipeline_id = find_pipeline(session, args.pipeline).id if args.pipeline else None
        report = funnel_report(session, admin(), pipeline_id=pipeline_id, start=first,
                               end=last + timedelta(days=1), time_zone=settings.time_zone,
                               seller_login=args.seller,
                               callback_target_minutes=settings.callback_target_minutes)
        tables = report_tables(report)
        if args.view == "advice":
            hints = hints_with_deals(session, admin(), report, limit=ADVICE_DEALS_SHOWN)
            tables["advice"] = Table(
                "advice", "Advice", ["hint", "advice", "deals"],
                [[hint.kind, hint.message, " ".join(f"#{deal_id}" for deal_id in deal_ids)]
                 for hint, deal_ids in hints])
    names = [name for name in REPORT_VIEWS[args.view] if name in tables]
    if args.csv:
        wanted = args.table or names[0]
        if wanted not in tables:
            raise CrmError(f"no table “{wanted}” here; choose one of {', '.join(names)}")
        print(to_csv(tables[wanted]), end="", file=out)
        return 0
    who = report.seller_name or "all sellers"
    print(f"{report.pipeline_name}, {report.period.label} ({report.period.time_zone}), {who}; "
          f"amounts in {report.currency}", file=out)
    locale = locale_for("en", settings.phone_region)

    def shown(cell) -> str:
        if cell is None:
            return "-"
        return format_money(cell, cell.currency, locale=locale) if isinstance(cell, Money) \
            else str(cell)

    for name in names:
        table = tables[name]
        print(f"\n{table.title}", file=out)
        if name == "callbacks":
            print(f"  target: called back within {report.callback_target_minutes} minutes",
                  file=out)
        if not table.rows:
            print("  (nothing in this period)", file=out)
            continue
        print_table(table.headers, [[shown(cell) for cell in row] for row in table.rows], out)
    return 0


def cmd_report_rebuild(args, settings, engine, out) -> int:
    from ..funnel.call_backs import fill_call_backs
    from ..reporting.days_rebuild import rebuild

    with transaction(engine) as session:
        fill_call_backs(session)
        rows = rebuild(session, time_zone=settings.time_zone)
    print(f"Recounted the reports' daily table in {settings.time_zone}: {rows:,} rows; "
          "the calls' call backs set again", file=out)
    return 0


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date such as 2024-05-31, got {text!r}") \
            from None


def add_report(commands) -> None:
    group = add_group(commands, "report", "funnel reports for a pipeline and a period")
    for view, help in (
            ("funnel", "stage by stage: open now, entered, moved on, lost, conversion, time "
                       "in stage; win rate and cycle; week by week"),
            ("losses", "the loss map: the share lost per stage and seller (and team), weak cells "
                       "flagged"),
            ("calls", "calls per deal by stage, and missed-call callback time per seller"),
            ("tasks", "open tasks per seller on the pipeline's deals, the overdue ones apart "
                      "(as they stand now)"),
            ("nudges", "how each seller answered the robots' nudges, per stage"),
            ("advice", "plain-language hints read off the figures, with their deals")):
        command = add_command(group, view, cmd_report, help,
                              description=f"{help[0].upper()}{help[1:]}. Dates are the "
                                          "company's (time_zone); --from and --to are both "
                                          "included.")
        command.set_defaults(view=view)
        command.add_argument("--pipeline", metavar="NAME",
                             help="pipeline name (or id); default: the default pipeline")
        command.add_argument("--from", dest="start", type=_date, metavar="YYYY-MM-DD",
                             help=f"first day (default: {REPORT_DEFAULT_DAYS} days before "
                                  "--to)")
        command.add_argument("--to", type=_date, metavar="YYYY-MM-DD",
                             help="last day, included (default: today)")
        command.add_argument("--seller", metavar="LOGIN", help="one seller's figures only")
        command.add_argument("--csv", action="store_true",
                             help="write one table as CSV instead of the text tables")
        command.add_argument("--table", choices=REPORT_VIEWS[view],
                             help=f"with --csv: which table (default {REPORT_VIEWS[view][0]})")
    add_command(group, "rebuild", cmd_report_rebuild,
                "recount the reports' daily table from the stage history and the calls",
                description="Recount the daily counts the reports read (moves per local day, "
                            "stage and seller; the calls, missed calls among them) from the "
                            "stage history and the calls, in the company's time_zone, and "
                            "set each call's call back again: after writing history or calls "
                            "outside the services. (A "
                            "change of time_zone is recounted by the next `pbx-crm web`, "
                            "`serve` or `db upgrade`, or report command.)")
