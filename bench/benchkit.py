"""What the benchmarks share: seeding a database once, timing a call, reading percentiles,
the CPU of other processes.

Each benchmark script runs as ``python bench/<name>.py`` (this folder is then first on the
import path) and imports from here.
"""

from __future__ import annotations

import os
import sys
import time

from sqlalchemy import func
from sqlmodel import select

from pbx_crm.db import transaction, upgrade
from pbx_crm.models import Deal
from pbx_crm.sample.seed import seed_synthetic

PIPELINE = "Bench"


def timed(function, repeat: int) -> list[float]:
    """Milliseconds per call, ``repeat`` calls after one warm-up."""
    function()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ensure_deals(engine, deals: int, *, contacts: int, random_seed: int,
                 pipeline_name: str = PIPELINE, **seed_options):
    """Migrate, and seed ``deals`` synthetic deals (and ``contacts`` contacts, 20 sellers) in
    the ``pipeline_name`` pipeline unless the database holds them already (seeding a million
    takes minutes: later runs reuse them). Returns the seed's report, or None when nothing was
    seeded."""
    upgrade(engine)
    with transaction(engine, read_only=True) as session:
        present = session.exec(select(func.count()).select_from(Deal)).one()
    if present >= deals:
        return None
    if present:
        sys.exit(f"the database holds {present} deals, fewer than {deals}: use an empty one")
    print(f"seeding {deals:,} deals and {contacts:,} contacts (once; later runs reuse them)...",
          file=sys.stderr)
    start = time.perf_counter()
    report = seed_synthetic(engine, deals=deals, contacts=contacts, sellers=20, region="ID",
                            pipeline_name=pipeline_name, random_seed=random_seed,
                            **seed_options)
    print(f"seeded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return report


# --- CPU of processes of this machine (Linux /proc), for benchmarks of several processes -----

_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process ``pid`` used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of every core since boot, from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:8]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / _TICK, sum(values) / _TICK
