"""What every command group of the CLI shares: how a command is declared, who acts, the
engine, the password prompt, the plain-text table, and the argument types.

The command group modules (``database``, ``people``, ``funnel`` ...) and ``main`` import from
here; this module imports none of them.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from sqlalchemy.engine import Engine

from ..config import Settings
from ..db import make_engine, transaction
from ..errors import CrmError, NotFound
from ..funnel import pipelines
from ..rules.funnel import Actor

PROG = "pbx-crm"
ADMIN_NAME = "cli"

# What a command needs before it runs, each level including the ones before it.
NOTHING, SETTINGS, ENGINE, SCHEMA = range(4)


def admin() -> Actor:
    """Who acts when the admin types a command: the system actor "cli"."""
    return Actor.system(ADMIN_NAME)


def open_engine(settings: Settings) -> Engine:
    try:
        return make_engine(settings.database)
    except ImportError as error:  # e.g. postgresql:// asks for psycopg2, which is not ours
        raise CrmError(f"no database driver for this URL ({error}); for PostgreSQL use "
                       "postgresql+psycopg://...") from None


def ensure_report_zone(settings: Settings, engine: Engine, out=None) -> int | None:
    """Recount the reports' daily tables in the company's ``time_zone`` when they count days
    in another (``days_rebuild.ensure_zone``, which logs it), in a transaction of its own;
    say so on ``out`` when given. What the starts of the processes that serve reports or
    write deals, ``db upgrade`` and the report commands run first."""
    from ..reporting.days_rebuild import ensure_zone

    started = time.monotonic()
    with transaction(engine) as session:
        rows = ensure_zone(session, settings.time_zone)
    if rows is not None and out is not None:
        print(f"Recounted the reports' daily tables in {settings.time_zone}: {rows:,} rows in "
              f"{time.monotonic() - started:.1f} s.", file=out, flush=True)
    return rows


def shown_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def read_password(args) -> str:
    """One line from stdin with --password-stdin, otherwise asked twice at the terminal."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise CrmError("no password on stdin")
        return password
    try:
        password = getpass.getpass("Password: ")
        again = getpass.getpass("Password again: ")
    except EOFError:
        raise CrmError("no password given (use --password-stdin to pipe one in)") from None
    if password != again:
        raise CrmError("the two passwords differ")
    return password


def print_table(headers: list[str], rows: list[list[str]], out) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip(),
              file=out)


def find_pipeline(session, reference: str):
    """A pipeline by name, or by id when given digits that name none."""
    try:
        return pipelines.find_pipeline(session, reference)
    except NotFound:
        if reference.strip().isdigit():
            return pipelines.get_pipeline(session, int(reference))
        raise


def fastagi_target(settings: Settings) -> tuple[str, int]:
    """Where a local Asterisk reaches the FastAGI server (a wildcard listen means loopback)."""
    from ..telephony.health import local_address

    return local_address(settings.fastagi_listen)


# --- declaring commands ---------------------------------------------------------------------


def add_command(subparsers, name: str, func, help: str, *, description: str | None = None,
                needs: int = SCHEMA) -> argparse.ArgumentParser:
    """A subcommand; with ``needs=SCHEMA`` it refuses a database that is not migrated."""
    # allow_abbrev=False everywhere: otherwise "--password" would pass for "--password-stdin".
    parser = subparsers.add_parser(name, help=help, description=description or help,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   allow_abbrev=False)
    parser.set_defaults(func=func, needs=needs)
    return parser


def add_group(subparsers, name: str, help: str):
    """A command of commands (``pbx-crm user ...``); alone, it prints its help."""
    parser = subparsers.add_parser(name, help=help, description=help, allow_abbrev=False)
    parser.set_defaults(func=None, group_parser=parser)
    return parser.add_subparsers(title="commands", metavar="COMMAND")


def positive(kind, *, zero: bool = False):
    """An argument type: a positive number of ``kind`` (non-negative with ``zero``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not (value >= 0 if zero else value > 0):
            raise argparse.ArgumentTypeError(
                f"expected a {'non-negative' if zero else 'positive'} number, got {text!r}")
        return value
    return parse
