"""Benchmark: one robot pass over a large pipeline of open deals.

Seven robots on the seeded pipeline (``pbx_crm.sample.seed``): time in stage on four working stages
(hours and business days), no activity, an Unsorted caller not taken, a missed call not
returned, and an amount threshold. Measured, through ``pbx_crm.robots.passes.robot_pass`` as the
scheduler calls it:

  * the steady pass: one minute after the previous pass, every rule looks again at its
    window (the last ``robot_grace_minutes`` and the minute since), fires the deals that came
    due, and moves on. Repeated with the clock one minute further each time;
  * the catch-up of a rule added while deals already sit in its stage (the amount rule's
    first pass: it fires on every matching deal, in batches);

and, in the same run, the baseline: ``SELECT count(*)`` of the open deals (one read of an
index over the whole table), so the figures read as ratios on a noisy machine.

    python bench/robot_pass.py                                   # SQLite, 100k deals
    python bench/robot_pass.py --database-url postgresql+psycopg://.../pbx_crm_bench_robots \\
        --deals 1000000

The database is seeded on first use and reused; the robots' own rows are reset each run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from benchkit import PIPELINE, ensure_deals
from sqlalchemy import delete, func, text, update
from sqlmodel import select

from pbx_crm.funnel import pipelines
from pbx_crm.people import users
from pbx_crm.config import Settings
from pbx_crm.db import make_engine, transaction
from pbx_crm.enums import StageKind
from pbx_crm.rules.funnel import Actor
from pbx_crm.models import (
    AuditEntry,
    Deal,
    Notification,
    RobotRule,
    RobotRun,
    Stage,
    Task,
    TimelineEntry,
    User,
    utcnow,
)
from pbx_crm.robots import passes
from pbx_crm.robots import rules as robot_rules
from pbx_crm.rules.working_hours import WorkingClock

ADMIN = Actor.system("bench")



def reset_robots(engine) -> None:
    """Remove what earlier runs of this benchmark left: its rules, runs and their traces."""
    with transaction(engine) as session:
        session.exec(delete(TimelineEntry).where(TimelineEntry.robot_run_id.is_not(None)))
        session.exec(delete(AuditEntry).where(AuditEntry.actor == "robot"))
        for model in (Notification, Task, RobotRun, RobotRule):
            session.exec(delete(model))


def add_rules(engine) -> tuple[list[int], int]:
    """The steady rules, and the amount rule whose first pass is the catch-up."""
    with transaction(engine) as session:
        if not session.exec(select(User).where(User.login == "benchhead")).first():
            users.create_user(session, ADMIN, login="benchhead", name="Bench Head",
                              password="bench password", role="head")
        pipeline = pipelines.find_pipeline(session, PIPELINE)
        stages = {s.name: s for s in pipelines.stages_of(session, pipeline.id)}
        work = [s for s in stages.values() if s.kind == StageKind.OPEN.value
                and not s.is_unsorted]
        plan = [
            (work[0], "time_in_stage", {"hours": 72}, "notify_owner", {}),
            (work[1], "time_in_stage", {"business_days": 3}, "notify_owner", {}),
            (work[2], "time_in_stage", {"days": 7}, "create_task", {"due_hours": 24}),
            (work[3], "time_in_stage", {"business_hours": 20}, "notify_heads", {}),
            (work[1], "no_activity", {"days": 10}, "set_priority", {"priority": "low"}),
            (stages[pipelines.UNSORTED], "unsorted_not_taken", {"minutes": 30},
             "notify_heads", {}),
            (work[0], "missed_call_not_returned", {"minutes": 30}, "create_task", {}),
        ]
        steady = [robot_rules.create_rule(session, ADMIN, stage_id=stage.id, name=f"bench {i}",
                                          condition=condition, condition_params=when,
                                          action=action, action_params=do).id
                  for i, (stage, condition, when, action, do) in enumerate(plan)]
        amount = robot_rules.create_rule(session, ADMIN, stage_id=work[-1].id, name="bench amount",
                                         condition="amount", condition_params={
                                             "min_amount": 250_000_000 * 100},
                                         action="notify_owner", action_params={}).id
    return steady, amount


def set_watermarks(engine, settings: Settings, rule_ids: list[int], previous) -> None:
    """Where the pass before, at ``previous``, left each rule."""
    clock = WorkingClock.of(settings)
    with transaction(engine) as session:
        for rule in session.exec(select(RobotRule).where(RobotRule.id.in_(rule_ids))):
            cutoff = passes.due_cutoff(rule, previous, clock)
            session.exec(update(RobotRule).where(RobotRule.id == rule.id)
                         .values(checked_until=cutoff))


def count_open(engine) -> float:
    start = time.perf_counter()
    with transaction(engine, read_only=True) as session:
        session.exec(select(func.count()).select_from(Deal).join(Stage, Stage.id ==
                                                                Deal.stage_id)
                     .where(Stage.kind == StageKind.OPEN.value)).one()
    return (time.perf_counter() - start) * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: an SQLite file in the temp directory")
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    url = args.database_url or \
        f"sqlite:///{Path(tempfile.gettempdir()) / f'pbx-crm-bench-robots-{args.deals}.sqlite3'}"
    engine = make_engine(url)
    ensure_deals(engine, args.deals, contacts=max(1, args.deals // 5), random_seed=7)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    settings = Settings(database_url=url, robot_grace_minutes=60)
    reset_robots(engine)
    steady, amount = add_rules(engine)
    with transaction(engine) as session:  # the amount rule waits for its own measurement
        session.exec(update(RobotRule).where(RobotRule.id == amount).values(active=False))

    with transaction(engine, read_only=True) as session:
        open_deals = session.exec(select(func.count()).select_from(Deal).join(
            Stage, Stage.id == Deal.stage_id).where(Stage.kind == StageKind.OPEN.value)).one()
    baseline = [count_open(engine) for _ in range(args.repeat)]

    now = utcnow()
    # As the pass a minute ago left them; one pass then fires what the grace window holds
    # (the earlier passes would have), and the measured passes start from there.
    set_watermarks(engine, settings, steady, now - timedelta(minutes=1))
    warm_up = passes.robot_pass(engine, settings, now=now)
    now += timedelta(minutes=1)
    pass_ms, fired = [], 0
    for i in range(args.repeat):
        moment = now + timedelta(minutes=i)
        start = time.perf_counter()
        report = passes.robot_pass(engine, settings, now=moment)
        pass_ms.append((time.perf_counter() - start) * 1000)
        fired += report.fired

    with transaction(engine) as session:
        session.exec(update(RobotRule).where(RobotRule.id == amount).values(active=True))
    start = time.perf_counter()
    catch_up = passes.robot_pass(engine, settings, now=now + timedelta(minutes=args.repeat))
    catch_up_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    passes.robot_pass(engine, settings, now=now + timedelta(minutes=args.repeat + 1))
    after_ms = (time.perf_counter() - start) * 1000

    base = statistics.median(baseline)
    print(f"{engine.dialect.name}, {args.deals:,} deals ({open_deals:,} open), "
          f"{len(steady)} robots, {args.repeat} passes one minute apart "
          f"(after a first pass that fired {warm_up.fired} runs of the grace window)")
    print(f"{'measure':<46} {'p50 ms':>9} {'max ms':>9} {'/ baseline':>11}")
    rows = [("baseline: count(*) of open deals", baseline),
            (f"steady pass, {len(steady)} rules ({fired} runs fired in all)", pass_ms)]
    for name, samples in rows:
        p50 = statistics.median(samples)
        print(f"{name:<46} {p50:>9.1f} {max(samples):>9.1f} {p50 / base:>10.2f}x")
    print(f"{'catch-up: amount rule added, ' + str(catch_up.fired) + ' runs':<46} "
          f"{catch_up_ms:>9.1f} {'':>9} {catch_up_ms / base:>10.2f}x  "
          f"({catch_up.fired / (catch_up_ms / 1000):,.0f} runs/s)")
    print(f"{'next pass, 8 rules (amount probes its deals)':<46} {after_ms:>9.1f} "
          f"{'':>9} {after_ms / base:>10.2f}x")
    reset_robots(engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
