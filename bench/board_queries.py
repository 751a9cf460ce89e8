"""Benchmark: the queries behind the board and the funnel totals, on a large pipeline.

Measures, through the same functions the product uses (``pbx_crm.funnel.board``):
  * a column's first page (50 newest cards), for a head and for one seller;
  * a deep "show more" page (continuing from a card far down the column);
  * a whole board's first pages (every column) as one page load would do;
  * count and money per stage, for a head and for one seller;
and, in the same run, a bare indexed lookup (one deal by primary key) as the baseline, so the
figures read as ratios that survive a noisy machine.

    python bench/board_queries.py                       # SQLite, 100k deals
    python bench/board_queries.py --database-url postgresql+psycopg://.../bench --deals 1000000

The database is seeded on first use (``pbx_crm.sample.seed``) and reused by later runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path

from benchkit import PIPELINE, ensure_deals, percentile, timed
from sqlalchemy import func, text
from sqlmodel import select

from pbx_crm.funnel import board, pipelines
from pbx_crm.db import make_engine, transaction
from pbx_crm.rules.funnel import Actor
from pbx_crm.models import Deal, User


def ensure_data(engine, deals: int) -> None:
    ensure_deals(engine, deals, contacts=max(1, deals // 2), random_seed=1)


def run(engine, repeat: int) -> list[tuple[str, list[float]]]:
    with transaction(engine, read_only=True) as session:
        pipeline = pipelines.find_pipeline(session, PIPELINE)
        stages = pipelines.stages_of(session, pipeline.id)
        head = Actor.system("bench")
        seller_user = session.exec(select(User).where(User.role == "seller")
                                   .order_by(User.id)).first()
        seller = Actor.of(seller_user)
        max_id = session.exec(select(func.max(Deal.id))).one()
        totals = board.column_totals(session, head, pipeline.id)
        busiest = max(stages, key=lambda s: totals[s.id].deals if s.id in totals else 0)
        deep = session.exec(select(Deal.created_at, Deal.id).where(Deal.stage_id == busiest.id)
                            .order_by(Deal.created_at.desc(), Deal.id.desc())
                            .offset(5000).limit(1)).first()
        ids = random.Random(7)

        def lookup():
            session.exec(select(Deal).where(Deal.id == ids.randint(1, max_id))).first()

        cases = [
            ("baseline: one deal by id", lookup),
            ("column page, head (50 newest)",
             lambda: board.column_cards(session, head, busiest)),
            ("column page, seller (50 newest)",
             lambda: board.column_cards(session, seller, busiest)),
            ("show more, 5,000 cards down",
             lambda: board.column_cards(session, head, busiest, after=tuple(deep))),
            (f"whole board, head ({len(stages)} columns)",
             lambda: [board.column_cards(session, head, s) for s in stages]),
            (f"whole board, seller ({len(stages)} columns)",
             lambda: [board.column_cards(session, seller, s) for s in stages]),
            ("totals per stage, head",
             lambda: board.column_totals(session, head, pipeline.id)),
            ("totals per stage, seller",
             lambda: board.column_totals(session, seller, pipeline.id)),
        ]
        # Every call hydrates fresh objects, as a new page load would.
        results = []
        for name, function in cases:
            def fresh(function=function):
                function()
                session.expunge_all()
            results.append((name, timed(fresh, repeat)))
        return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: an SQLite file in the temp directory")
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    url = args.database_url or \
        f"sqlite:///{Path(tempfile.gettempdir()) / f'pbx-crm-bench-{args.deals}.sqlite3'}"
    engine = make_engine(url)
    ensure_data(engine, args.deals)
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load: statistics, and the visibility map that
        # index-only scans need.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    results = run(engine, args.repeat)
    baseline = statistics.median(results[0][1])
    print(f"{engine.dialect.name}, {args.deals:,} deals, {args.repeat} runs each")
    print(f"{'query':<34} {'p50 ms':>9} {'p95 ms':>9} {'p50 / baseline':>15}")
    for name, samples in results:
        p50 = statistics.median(samples)
        print(f"{name:<34} {p50:>9.3f} {percentile(samples, 0.95):>9.3f} "
              f"{p50 / baseline:>14.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
