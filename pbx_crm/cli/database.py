"""``pbx-crm db upgrade|status|dump`` and ``pbx-crm version``: the schema and the build.

A new database gets the seller funnel on its first upgrade, so the first call opens a deal;
every upgrade leaves the reports' daily tables counting days in the company's time zone.
"""

from __future__ import annotations

from .. import __version__
from ..db import current_revision, head_revision, transaction, upgrade
from ..errors import CrmError
from ..funnel import pipelines
from .common import (
    ENGINE, NOTHING, PROG, add_command, add_group, admin, ensure_report_zone, shown_url,
)


def cmd_db_upgrade(args, settings, engine, out) -> int:
    new_database = current_revision(engine) is None
    upgrade(engine)
    print(f"Database {shown_url(engine)} is at revision {current_revision(engine)}.", file=out)
    # The reports' daily tables count days in the company's time zone (a new database's are
    # in the default one; the time zone may have changed since the last upgrade).
    ensure_report_zone(settings, engine, out)
    if new_database:
        # Without a pipeline a new caller's call would open no deal: a new database starts
        # with the seller funnel, which the admin renames or replaces at will.
        with transaction(engine) as session:
            pipeline = pipelines.create_default_pipeline(session, admin(),
                                                         currency=settings.currency)
            if pipeline is not None:
                stages = [stage.name for stage in pipelines.stages_of(session, pipeline.id)]
                print(f"Created the default pipeline “{pipeline.name}”, where calls from new "
                      f"numbers open their deals: {' > '.join(stages)}.\nChange it with "
                      "`pbx-crm stage rename/add/reorder`, or add your own with `pbx-crm "
                      "pipeline add NAME ... --default`.", file=out)
    return 0


def cmd_db_status(args, settings, engine, out) -> int:
    current, head = current_revision(engine), head_revision()
    print(f"database: {shown_url(engine)}", file=out)
    print(f"current:  {current or '(not migrated)'}", file=out)
    print(f"head:     {head}", file=out)
    print("up to date" if current == head else "behind: run `pbx-crm db upgrade`", file=out)
    return 0


def cmd_db_dump(args, settings, engine, out) -> int:
    try:
        from ..schema_dump import dump_schema
    except ImportError:
        raise CrmError("this build has no schema dump (pbx_crm.schema_dump is missing)") \
            from None
    dump = dump_schema(engine)
    print(dump, end="" if dump.endswith("\n") else "\n", file=out)
    return 0


def cmd_version(args, settings, engine, out) -> int:
    print(f"{PROG} {__version__}", file=out)
    return 0


def add_db(commands) -> None:
    group = add_group(commands, "db", "create, check and show the database schema")
    add_command(group, "upgrade", cmd_db_upgrade,
                "migrate the database to the newest schema (safe to run again)", needs=ENGINE)
    add_command(group, "status", cmd_db_status,
                "show the database's schema revision and the one this version needs",
                needs=ENGINE)
    add_command(group, "dump", cmd_db_dump,
                "print the readable schema of the configured database", needs=ENGINE)


def add_version(commands) -> None:
    add_command(commands, "version", cmd_version, "print the version", needs=NOTHING)
