"""``pbx-crm``: the admin's command line, an edge like the web routes and the AGI hooks.

``main`` parses the global options, loads the settings once, makes one engine, and hands both
to the command function. Each command parses its arguments, opens one transaction, calls one
service and prints the result; refusals from the core (``CrmError``) become one line on stderr
and exit code 1 (2 for unusable settings), never a traceback. Passwords come from a prompt or
from stdin, never from the command line, where ``ps`` and shell history would show them.

``build_parser`` assembles the command groups, each declared by its own module (see the
package's docstring).
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import SQLAlchemyError

from ..config import ConfigError, load_settings
from ..db import require_schema_at_head
from ..errors import CrmError
from . import database, funnel, people, reports, robots, running, sample, telephony
from .common import ENGINE, PROG, SCHEMA, SETTINGS, open_engine, shown_url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        description="Administer pbx-crm, the Kanban sales funnel of an Asterisk PBX.",
        epilog="Settings come from defaults < the config file < PBX_CRM_* environment "
               "variables < these options.\nStart with `pbx-crm demo` to see it with sample "
               "data, or `pbx-crm db upgrade` for a real database.")
    options = parser.add_argument_group("settings (given before the command)")
    options.add_argument("--config", metavar="FILE",
                         help="config file (default /etc/pbx-crm/pbx-crm.ini or "
                              "$PBX_CRM_CONFIG)")
    options.add_argument("--database-url", metavar="URL",
                         help="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db "
                              "(default: an SQLite file in the data directory)")
    options.add_argument("--data-dir", metavar="DIR",
                         help="where the SQLite database and other files live "
                              "(default ~/.local/share/pbx-crm)")
    options.add_argument("--phone-region", metavar="CC",
                         help="country whose local numbers callers and phone books use, "
                              "e.g. ID (default ID)")
    options.add_argument("--time-zone", metavar="TZ",
                         help="IANA time zone shown to users, e.g. Asia/Jakarta")
    parser.set_defaults(func=None, group_parser=parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    # In the order `pbx-crm --help` lists them.
    database.add_db(commands)
    people.add_user(commands)
    funnel.add_pipeline_stage_contacts(commands)
    reports.add_report(commands)
    funnel.add_board(commands)
    sample.add_seed_demo_simulate(commands)
    telephony.add_pbx_commands(commands)
    running.add_web(commands)
    robots.add_robot_and_robots(commands)
    running.add_serve(commands)
    database.add_version(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (0 ok, 1 refused or failed, 2 bad usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has printed
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.func is None:
        args.group_parser.print_help(sys.stderr)
        return 2
    settings = engine = None
    try:
        if args.needs >= SETTINGS:
            settings = load_settings(config_file=args.config, overrides={
                "database_url": args.database_url, "data_dir": args.data_dir,
                "phone_region": args.phone_region, "time_zone": args.time_zone})
        if args.needs >= ENGINE:
            engine = open_engine(settings)
        if args.needs >= SCHEMA:
            require_schema_at_head(engine)
        return args.func(args, settings, engine, sys.stdout)
    except ConfigError as error:
        print(f"{PROG}: {error.message}", file=sys.stderr)
        return 2
    except CrmError as error:
        print(f"{PROG}: {error.message}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        # An unreachable server, a locked file, a schema changed by hand: one line, no trace.
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        where = f" {shown_url(engine)}" if engine is not None else ""
        print(f"{PROG}: database{where}: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        if engine is not None:
            engine.dispose()
