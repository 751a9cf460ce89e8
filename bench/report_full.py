"""Benchmark: the full funnel report for one pipeline and a year, on a large pipeline.

Times ``pbx_crm.reporting.reports.funnel_report`` (every figure of the reports page: stage figures,
outcomes, loss maps by seller and team, calls, callbacks, nudges, weeks) for a head, for a
head filtering on one seller, and for a quarter; then each part alone. The baseline,
measured in the same run: one plain count of the pipeline's stage-history rows in the period
(the least any report from the history must read), so the figures read as ratios.

Every figure reads the daily tables, the one path of the product since issue 15 (the figures
from the history alone, measured with the ``--path history`` of earlier versions, stay in
docs/benchmarks.md). ``--calls-per-deal N`` adds N synthetic calls per deal after seeding
(the seeder writes none; its own database file by default), so calls by stage and callbacks
have calls to count.

    python bench/report_full.py                                    # SQLite, 100k deals
    python bench/report_full.py --deals 500000 --database-url sqlite:////tmp/r500k.sqlite3
    python bench/report_full.py --deals 1000000 \\
        --database-url postgresql+psycopg://USER:PW@127.0.0.1/pbx_crm_bench_reports
    python bench/report_full.py --calls-per-deal 3

The database is seeded on first use (``pbx_crm.sample.seed``, with detours so a deal has about five
history rows, spread over the year before 2025-01-01) and reused by later runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

from benchkit import PIPELINE, ensure_deals, timed
from sqlalchemy import func, insert, text
from sqlmodel import select

from pbx_crm.funnel import call_backs, pipelines
from pbx_crm.reporting import days as report_days, days_rebuild, reports
from pbx_crm.db import is_sqlite, make_engine, transaction
from pbx_crm.rules.funnel import Actor
from pbx_crm.models import Call, Deal, StageHistory, User

TIME_ZONE = "Asia/Jakarta"
YEAR = (date(2024, 1, 1), date(2025, 1, 1))
QUARTER = (date(2024, 10, 1), date(2025, 1, 1))
MONTH = (date(2024, 12, 1), date(2025, 1, 1))  # exact medians and deals per stage (<= 31 days)
DETOUR_RATE = 0.45  # about five history rows per deal
SEED_NOW = "2025-01-01T00:00:00+00:00"


def ensure_data(engine, deals: int, calls_per_deal: int = 0) -> None:
    report = ensure_deals(engine, deals, contacts=max(1, deals // 5), random_seed=1,
                          now=datetime.fromisoformat(SEED_NOW), detour_rate=DETOUR_RATE)
    if report is None:
        return
    print(f"seeded {report.deals:,} deals, {report.history_rows:,} history rows",
          file=sys.stderr)
    if calls_per_deal:
        add_calls(engine, calls_per_deal)
    if not is_sqlite(engine):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))  # as autovacuum would after a bulk load


def add_calls(engine, per_deal: int) -> None:
    """``per_deal`` calls on every deal: the first rang a moment before the deal was created
    (the call that created it), the others within its first 90 days (before the seed's now);
    half inbound, and 20% of all missed or abandoned. Then their call backs set and the daily
    call counts recounted."""
    rng = random.Random(7)
    end = datetime.fromisoformat(SEED_NOW)
    table = Call.__table__
    with transaction(engine) as session:
        found = session.execute(select(Deal.id, Deal.created_at, Deal.contact_id)).all()
        batch, number = [], 0
        for deal_id, created_at, contact_id in found:
            created_at = created_at if created_at.tzinfo else created_at.replace(tzinfo=end.tzinfo)
            span = max(60, min(int((end - created_at).total_seconds()), 90 * 86400))
            for index in range(per_deal):
                at = (created_at - timedelta(seconds=5) if index == 0
                      else created_at + timedelta(seconds=rng.randrange(span)))
                number += 1
                draw = rng.random()
                batch.append({"uniqueid": f"bench-{number}", "linkedid": f"bench-{number}",
                              "direction": "inbound" if rng.random() < 0.5 else "outbound",
                              "caller_raw": "", "ringing_at": at,
                              "disposition": ("answered" if draw < 0.8 else
                                              "missed" if draw < 0.95 else "abandoned"),
                              "deal_id": deal_id, "contact_id": contact_id})
            if len(batch) >= 10_000:
                session.execute(insert(table), batch)
                batch = []
        if batch:
            session.execute(insert(table), batch)
        call_backs.fill_call_backs(session)
        days_rebuild.rebuild(session, time_zone=report_days.day_zone(session)
                            or report_days.DEFAULT_TIME_ZONE)
    print(f"added {number:,} calls", file=sys.stderr)


def run(engine, repeat: int) -> tuple[list[tuple[str, list[float]]], dict]:
    with transaction(engine, read_only=True) as session:
        pipeline = pipelines.find_pipeline(session, PIPELINE)
        head = Actor.system("bench")
        seller = session.exec(select(User).where(User.role == "seller")
                              .order_by(User.id)).first()
        year = reports.make_period(*YEAR, TIME_ZONE)
        sizes = {
            "deals": session.exec(select(func.count()).select_from(Deal)).one(),
            "history": session.exec(select(func.count()).select_from(StageHistory)).one(),
            "calls": session.exec(select(func.count()).select_from(Call)).one(),
        }

        def baseline():
            return session.exec(select(func.count()).select_from(StageHistory).where(
                StageHistory.pipeline_id == pipeline.id,
                StageHistory.moved_at >= year.start_utc,
                StageHistory.moved_at < year.end_utc)).one()

        sizes["history in the year"] = baseline()

        def full(period, **kw):
            return lambda: reports.funnel_report(session, head, pipeline_id=pipeline.id,
                                                 start=period[0], end=period[1],
                                                 time_zone=TIME_ZONE, **kw)

        scope = reports.report_scope(session, head, pipeline_id=pipeline.id, period=year)
        figures = reports.stage_figures(session, scope)
        cases = [
            ("baseline: count of the year's history", baseline),
            ("full report, head, a year", full(YEAR)),
            ("full report, one seller, a year", full(YEAR, seller_id=seller.id)),
            ("full report, head, a quarter", full(QUARTER)),
            ("full report, head, a month", full(MONTH)),
            ("  part: stage figures", lambda: reports.stage_figures(session, scope)),
            ("  part: outcomes", lambda: reports.outcomes(session, scope)),
            ("  part: loss maps", lambda: reports.loss_maps(session, scope, figures)),
            ("  part: calls by stage", lambda: reports.stage_calls(session, scope)),
            ("  part: callbacks", lambda: reports.callbacks(session, scope, 30)),
            ("  part: nudges", lambda: reports.nudges(session, scope)),
            ("  part: weeks", lambda: reports.weekly_trend(session, scope)),
        ]
        return [(name, timed(function, repeat)) for name, function in cases], sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: an SQLite file in the temp directory")
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls-per-deal", type=int, default=0,
                        help="synthetic calls per deal, added when the database is seeded")
    args = parser.parse_args(argv)
    suffix = f"_{args.calls_per_deal}calls" if args.calls_per_deal else ""
    url = args.database_url or (
        f"sqlite:///{Path(tempfile.gettempdir()) / f'pbx_crm_report_{args.deals}{suffix}.sqlite3'}")
    engine = make_engine(url)
    try:
        ensure_data(engine, args.deals, args.calls_per_deal)
        results, sizes = run(engine, args.repeat)
    finally:
        engine.dispose()
    base = statistics.median(results[0][1])
    print(f"{engine.dialect.name}, {sizes['deals']:,} deals, {sizes['history']:,} history rows "
          f"({sizes['history in the year']:,} in the year), {sizes['calls']:,} calls, "
          f"{args.repeat} runs each")
    print(f"{'query':<40}{'p50 ms':>10}{'max ms':>10}{'p50 / baseline':>16}")
    for name, samples in results:
        p50 = statistics.median(samples)
        print(f"{name:<40}{p50:>10.1f}{max(samples):>10.1f}{p50 / base:>15.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
