"""``pbx-crm``: the admin's command line, an edge like the web routes and the AGI hooks.

``main`` parses the global options, loads the settings once, makes one engine, and hands both
to the command function. Each command parses its arguments, opens one transaction, calls one
service and prints the result; refusals from the core (``CrmError``) become one line on stderr
and exit code 1 (2 for unusable settings), never a traceback. Passwords come from a prompt or
from stdin, never from the command line, where ``ps`` and shell history would show them.

The long-running parts of the product (web UI, FastAGI server, AMI listener, robots) are
listed in ``COMPONENTS``; ``serve`` and ``demo`` start every one that is built.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import logging
import io
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from .. import __version__
from ..sample import demo
from ..funnel import pipelines
from ..people import users
from ..config import ConfigError, Settings, load_settings
from ..funnel.contacts import PHONE_COLUMNS, import_contacts
from ..db import (current_revision, head_revision, make_engine, require_schema_at_head,
                 transaction, upgrade)
from ..errors import CrmError, NotFound
from ..rules.funnel import Actor
from ..telephony.health import notify
from ..sample.seed import seed_synthetic

PROG = "pbx-crm"
ADMIN_NAME = "cli"


# --- the long-running components -----------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """A long-running part of the product. ``start(settings, engine)`` returns an object with
    ``stop()``; None means the component is not built yet."""

    name: str
    what: str
    start: Callable[[Settings, Engine], object] | None = None


def _start_fastagi(settings: Settings, engine: Engine):
    from ..components import start_fastagi

    return start_fastagi(settings, engine)


def _start_ami(settings: Settings, engine: Engine):
    from ..components import start_ami

    return start_ami(settings, engine)


def _start_robots(settings: Settings, engine: Engine):
    from ..components import start_robots

    return start_robots(settings, engine)


def _start_web(settings: Settings, engine: Engine):
    from ..web.server import start_web

    return start_web(settings, engine)


# A component that gets built replaces its line here with one that names its starter.
COMPONENTS: list[Component] = [
    Component("web", "the Kanban board in the browser", _start_web),
    Component("fastagi", "the FastAGI server Asterisk asks on every call", _start_fastagi),
    Component("ami", "the AMI listener that follows calls as they ring and end", _start_ami),
    Component("robots", "the scheduler that runs the stage robots", _start_robots),
]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C, or SIGTERM (how systemd stops a service)."""
    signal.signal(signal.SIGTERM, _interrupt)
    threading.Event().wait()


def start_components(settings: Settings, engine: Engine, out, *,
                     only: str | None = None, also: tuple[Callable[[], object], ...] = ()) -> int:
    """Start every built component (or the one named) and run until Ctrl-C; say which are
    not built yet. ``also``: starters of the caller's own parts (the demo's calls), started
    after the components and stopped before them (each returns an object with ``stop()``)."""
    chosen = [c for c in COMPONENTS if only is None or c.name == only]
    ready = [c for c in chosen if c.start is not None]
    missing = [c for c in chosen if c.start is None]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # APScheduler says "running job" and "executed successfully" at every tick; the robots log
    # what they do themselves.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up, at each check
    if missing:
        print("Not built yet:", file=out)
        for component in missing:
            print(f"  {component.name:<8} {component.what}", file=out)
    if not ready:
        print("Nothing to serve yet.", file=out)
        return 0
    # From here a SIGTERM stops cleanly, even while the components are still starting.
    signal.signal(signal.SIGTERM, _interrupt)
    running = []
    try:
        for component in ready:
            running.append(component.start(settings, engine))
            print(f"Started {component.name}: {component.what}.", file=out)
        running.extend(start() for start in also)
        notify("READY=1")  # systemd's Type=notify: started, and listening
        _wait_for_interrupt()
    except KeyboardInterrupt:
        pass
    finally:
        notify("STOPPING=1")
        for handle in reversed(running):
            handle.stop()
    return 0


# --- helpers --------------------------------------------------------------------------------


def _admin() -> Actor:
    return Actor.system(ADMIN_NAME)


def _engine(settings: Settings) -> Engine:
    try:
        return make_engine(settings.database)
    except ImportError as error:  # e.g. postgresql:// asks for psycopg2, which is not ours
        raise CrmError(f"no database driver for this URL ({error}); for PostgreSQL use "
                       "postgresql+psycopg://...") from None


def _shown_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _read_password(args) -> str:
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


def _table(headers: list[str], rows: list[list[str]], out) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip(),
              file=out)


def _find_pipeline(session, reference: str):
    """A pipeline by name, or by id when given digits that name none."""
    try:
        return pipelines.find_pipeline(session, reference)
    except NotFound:
        if reference.strip().isdigit():
            return pipelines.get_pipeline(session, int(reference))
        raise


# --- db ---------------------------------------------------------------------------------------


def cmd_db_upgrade(args, settings, engine, out) -> int:
    new_database = current_revision(engine) is None
    upgrade(engine)
    print(f"Database {_shown_url(engine)} is at revision {current_revision(engine)}.", file=out)
    if new_database:
        # Without a pipeline a new caller's call would open no deal: a new database starts
        # with the seller funnel, which the admin renames or replaces at will.
        with transaction(engine) as session:
            pipeline = pipelines.create_default_pipeline(session, _admin(),
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
    print(f"database: {_shown_url(engine)}", file=out)
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


# --- users ------------------------------------------------------------------------------------


def cmd_user_add(args, settings, engine, out) -> int:
    password = _read_password(args)
    with transaction(engine) as session:
        user = users.create_user(session, _admin(), login=args.login, name=args.name,
                                 password=password, role=args.role,
                                 extensions=args.extension or (), team=args.team)
        extensions = users.list_users(session)
    shown = next(ext for u, ext in extensions if u.id == user.id)
    print(f"Added {user.role} {user.login} ({user.name})"
          + (f", extension {', '.join(shown)}" if shown else "") + ".", file=out)
    return 0


def cmd_user_list(args, settings, engine, out) -> int:
    with transaction(engine, read_only=True) as session:
        rows = [[user.login, user.name, user.role, ", ".join(extensions) or "-",
                 "yes" if user.active else "no"]
                for user, extensions in users.list_users(session)]
    if not rows:
        print("No users yet: add one with `pbx-crm user add`.", file=out)
        return 0
    _table(["LOGIN", "NAME", "ROLE", "EXTENSIONS", "ACTIVE"], rows, out)
    return 0


def cmd_user_passwd(args, settings, engine, out) -> int:
    with transaction(engine, read_only=True) as session:
        users.get_user_by_login(session, args.login)  # fail before asking for a password
    password = _read_password(args)
    with transaction(engine) as session:
        users.set_password(session, _admin(), args.login, password)
    print(f"Password of {args.login} changed.", file=out)
    return 0


def cmd_user_active(args, settings, engine, out) -> int:
    with transaction(engine) as session:
        user = users.set_active(session, _admin(), args.login, args.active)
    print(f"{user.login} is {'active' if user.active else 'deactivated'}.", file=out)
    return 0


def cmd_user_extensions(args, settings, engine, out) -> int:
    if bool(args.extensions) == args.clear:
        raise CrmError("give the extensions, or --clear to remove them all")
    with transaction(engine) as session:
        user = users.get_user_by_login(session, args.login)
        extensions = users.set_extensions(session, _admin(), user.id, args.extensions)
    print(f"{user.login} rings on {', '.join(extensions)}." if extensions
          else f"{user.login} has no extension now.", file=out)
    return 0


def cmd_user_email(args, settings, engine, out) -> int:
    if bool(args.address) == args.clear:
        raise CrmError("give the address, or --clear to e-mail this user nothing")
    with transaction(engine) as session:
        user = users.get_user_by_login(session, args.login)
        users.set_email(session, _admin(), user.id, None if args.clear else args.address)
    print(f"{user.login}'s nudges go to {user.email} too." if user.email
          else f"{user.login}'s nudges stay in the CRM.", file=out)
    return 0


# --- pipelines and stages ----------------------------------------------------------------


def cmd_pipeline_add(args, settings, engine, out) -> int:
    stages = [(name, "open") for name in args.stage]
    if args.won_stage:
        stages.append((args.won_stage, "won"))
    if args.lost_stage:
        stages.append((args.lost_stage, "lost"))
    with transaction(engine) as session:
        pipeline = pipelines.create_pipeline(
            session, _admin(), name=args.name, stages=stages,
            currency=args.currency or settings.currency, is_default=args.default or None)
        _print_pipeline(session, pipeline, out)
    return 0


def cmd_pipeline_list(args, settings, engine, out) -> int:
    with transaction(engine, read_only=True) as session:
        found = pipelines.list_pipelines(session)
        if not found:
            print("No pipelines yet: add one with `pbx-crm pipeline add`.", file=out)
        for i, pipeline in enumerate(found):
            if i:
                print(file=out)
            _print_pipeline(session, pipeline, out)
    return 0


def _print_pipeline(session, pipeline, out) -> None:
    marks = [pipeline.currency] + (["default"] if pipeline.is_default else [])
    print(f"{pipeline.name} (#{pipeline.id}, {', '.join(marks)})", file=out)
    for stage in pipelines.stages_of(session, pipeline.id):
        kind = "unsorted" if stage.is_unsorted else "" if stage.kind == "open" else stage.kind
        count = pipelines.stage_deal_count(session, stage.id)
        print(f"  {stage.position:>2}. {stage.name:<28} #{stage.id:<5} {kind:<9} "
              f"{count} deal{'s' if count != 1 else ''}".rstrip(), file=out)


def cmd_stage_add(args, settings, engine, out) -> int:
    with transaction(engine) as session:
        pipeline = _find_pipeline(session, args.pipeline)
        stage = pipelines.add_stage(session, _admin(), pipeline.id, name=args.name,
                                    kind=args.kind, position=args.position)
        _print_pipeline(session, pipeline, out)
    print(f"Added stage #{stage.id} “{stage.name}”.", file=out)
    return 0


def cmd_stage_rename(args, settings, engine, out) -> int:
    with transaction(engine) as session:
        before = pipelines.get_stage(session, args.stage_id).name
        stage = pipelines.rename_stage(session, _admin(), args.stage_id, args.name)
    print(f"Stage #{stage.id} “{before}” is now “{stage.name}”.", file=out)
    return 0


def cmd_stage_reorder(args, settings, engine, out) -> int:
    with transaction(engine) as session:
        pipeline = _find_pipeline(session, args.pipeline)
        pipelines.reorder_stages(session, _admin(), pipeline.id, args.stage_ids)
        _print_pipeline(session, pipeline, out)
    return 0


# --- contacts -----------------------------------------------------------------------------


def read_phone_book(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each non-empty row of a CSV phone book with a header row.

    UTF-8 (with or without the BOM spreadsheets add); the delimiter, ``,`` or ``;``, is the one
    the header row uses most. Line numbers are the file's own, so a report points at the row a
    person can find in an editor even after blank lines or quoted line breaks.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CrmError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CrmError(f"{path} is a directory, not a CSV file") from None
    except PermissionError:
        raise CrmError(f"{path}: permission denied") from None
    except UnicodeDecodeError as error:
        raise CrmError(f"{path} is not UTF-8 text (byte {error.start}); save it as "
                       "“CSV UTF-8” and try again") from None
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header, lines_read = None, 0
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for cells in reader:
            line, lines_read = lines_read + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in cells]
                continue
            rows.append((line, dict(zip(header, cells))))
    except csv.Error as error:
        raise CrmError(f"{path}, line {reader.line_num}: {error}") from None
    expected = "a header row such as: name,phone,company,email"
    if header is None:
        raise CrmError(f"{path} is empty; it needs {expected}")
    if "name" not in header:
        raise CrmError(f"{path} has no “name” column in its first row "
                       f"({', '.join(filter(None, header))[:200]}); it needs {expected}")
    if not set(PHONE_COLUMNS) & set(header):
        raise CrmError(f"{path} has no phone column (one of {', '.join(PHONE_COLUMNS)}) "
                       "in its first row")
    return rows


def cmd_contacts_import(args, settings, engine, out) -> int:
    path = Path(args.file)
    rows = read_phone_book(path)
    lines = [line for line, _ in rows]
    with tqdm(total=len(rows), unit="row", desc="Checking", file=sys.stderr,
              disable=None, leave=False) as bar:
        with transaction(engine) as session:
            # first_line=0 makes each reported "line" the row's index; mapped back below.
            report = import_contacts(session, _admin(), (row for _, row in rows),
                                     region=settings.phone_region,
                                     skip_invalid=args.skip_invalid, first_line=0,
                                     progress=bar.update)
    for index, reason in report.rejected:
        print(f"line {lines[index]}: {reason}", file=out)
    if report.rejected and not args.skip_invalid:
        count = len(report.rejected)
        raise CrmError(f"{count} row{'s' if count != 1 else ''} of {len(rows)} rejected; "
                       "nothing was imported. Fix them, or pass --skip-invalid to import the "
                       "other rows.")
    skipped = f"; skipped {len(report.rejected)} rejected row(s)" if report.rejected else ""
    print(f"Imported {report.imported} contact{'s' if report.imported != 1 else ''} "
          f"from {path}{skipped}.", file=out)
    return 0


# --- reports --------------------------------------------------------------------------------

# The tables each `report` view shows, the first being the one --csv writes by default.
REPORT_VIEWS = {"funnel": ("stages", "outcomes", "weeks"),
                "losses": ("losses", "team_losses"),
                "calls": ("calls", "callbacks"),
                "nudges": ("nudges",),
                "advice": ("advice",)}
REPORT_DEFAULT_DAYS = 30
ADVICE_DEALS_SHOWN = 20


def cmd_report(args, settings, engine, out) -> int:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from ..reporting.advisor import advise
    from ..reporting.charts import Table, report_tables, to_csv
    from ..reporting.reports import deals_matching, funnel_report

    last = args.to or datetime.now(ZoneInfo(settings.time_zone)).date()
    first = args.start or last - timedelta(days=REPORT_DEFAULT_DAYS - 1)
    with transaction(engine, read_only=True) as session:
        pipeline_id = _find_pipeline(session, args.pipeline).id if args.pipeline else None
        report = funnel_report(session, _admin(), pipeline_id=pipeline_id, start=first,
                               end=last + timedelta(days=1), time_zone=settings.time_zone,
                               seller_login=args.seller)
        tables = report_tables(report)
        if args.view == "advice":
            hints = advise(report)
            tables["advice"] = Table(
                "advice", "Advice", ["hint", "advice", "deals"],
                [[hint.kind, hint.message, " ".join(
                    f"#{deal_id}" for deal_id in deals_matching(
                        session, _admin(), hint.deals, limit=ADVICE_DEALS_SHOWN))]
                 for hint in hints])
    names = [name for name in REPORT_VIEWS[args.view] if name in tables]
    if args.csv:
        wanted = args.table or names[0]
        if wanted not in tables:
            raise CrmError(f"no table “{wanted}” here; choose one of {', '.join(names)}")
        print(to_csv(tables[wanted]), end="", file=out)
        return 0
    who = report.seller_name or "all sellers"
    print(f"{report.pipeline_name}, {report.period.label} ({report.period.time_zone}), {who}; "
          f"amounts in {report.currency} minor units", file=out)
    for name in names:
        table = tables[name]
        print(f"\n{table.title}", file=out)
        if not table.rows:
            print("  (nothing in this period)", file=out)
            continue
        _table(table.headers, [["-" if cell is None else str(cell) for cell in row]
                               for row in table.rows], out)
    return 0


def cmd_report_rebuild(args, settings, engine, out) -> int:
    from ..reporting.days import rebuild

    with transaction(engine) as session:
        rows = rebuild(session, time_zone=settings.time_zone)
    print(f"Recounted the reports' daily table in {settings.time_zone}: {rows:,} rows",
          file=out)
    return 0


def cmd_board_rebuild_totals(args, settings, engine, out) -> int:
    from ..funnel.stage_totals import rebuild

    with transaction(engine) as session:
        rows = rebuild(session)
    print(f"Recounted the board's column totals from the deals: {rows:,} rows", file=out)
    return 0


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date such as 2024-05-31, got {text!r}") \
            from None


# --- seed, demo, serve, version -------------------------------------------------------------


def cmd_seed(args, settings, engine, out) -> int:
    contacts = args.contacts if args.contacts is not None else max(1, args.deals // 5)
    with tqdm(total=contacts + args.deals, unit="row", desc="Seeding", file=sys.stderr,
              disable=None, unit_scale=True) as bar:
        report = seed_synthetic(engine, deals=args.deals, contacts=contacts,
                                sellers=args.sellers, region=settings.phone_region,
                                pipeline_name=args.pipeline, random_seed=args.random_seed,
                                currency=settings.currency, progress=bar.update)
    print(f"Pipeline “{report.pipeline_name}”"
          + (" (created)" if report.pipeline_created else ""), file=out)
    print(f"Sellers: {report.sellers} ({report.sellers_created} created)", file=out)
    if report.seller_password:
        print(f"  their password: {report.seller_password}  "
              f"(logins seller001..seller{report.sellers:03d})", file=out)
    print(f"Contacts: {report.contacts:,} with {report.phones:,} phones", file=out)
    print(f"Deals: {report.deals:,} with {report.history_rows:,} stage history rows", file=out)
    print(f"Random seed {report.random_seed}; {report.seconds:.1f} s", file=out)
    return 0


def cmd_demo(args, settings, engine, out) -> int:
    if args.fresh:
        demo.wipe_sqlite(engine)
    result = demo.ensure_demo(engine, settings)
    demo.print_demo(engine, result, out)
    if args.no_serve:
        return 0
    print(file=out)
    # No Asterisk on a demo machine: the emulator plays one, and the AMI listener follows it.
    fake_ami, settings = _start_demo_ami(settings)
    try:
        ami = f"{settings.ami_host}:{settings.ami_port}"
        print(f"PBX: the demo's Asterisk emulator serves AMI on {ami} (user "
              f"{settings.ami_username}); the AMI listener follows it.", file=out)
        calls = None
        if not args.no_calls:
            calls = _demo_calls(args, settings, engine, fake_ami, out)
            print(f"A simulated call rings every {args.calls_every:g} s (--no-calls: none).",
                  file=out)
        print("Play more calls from another terminal with:\n  "
              + _simulate_hint(args, settings, engine), file=out, flush=True)
        # The calls stop before the components, so a call in progress still hangs up.
        return start_components(settings, engine, out,
                                also=(calls.start,) if calls is not None else ())
    finally:
        fake_ami.stop()


DEMO_AMI_HOST = "127.0.0.1"


def _start_demo_ami(settings: Settings):
    """A FakeAmiServer on loopback (at ami_port when free, else any port) with an AMI user
    made up for this run, and the settings that point the AMI listener at it."""
    import secrets

    from ..simulator.ami import FakeAmiServer

    username, secret = settings.ami_username or "pbx-crm", secrets.token_urlsafe(12)
    for port in (settings.ami_port, 0):
        try:
            server = FakeAmiServer(DEMO_AMI_HOST, port, {username: secret}).start()
            break
        except OSError as error:
            failure = error
    else:
        raise CrmError(f"cannot listen on {DEMO_AMI_HOST} for the demo's AMI: {failure}")
    return server, settings.replace(ami_host=DEMO_AMI_HOST, ami_port=server.port,
                                    ami_username=username, ami_secret=secret)


def _demo_calls(args, settings, engine, fake_ami, out):
    """The demo's calls: one every --calls-every seconds from the demo's contacts and
    strangers, printed as they end; the first waits for the AMI listener to log in."""
    import random

    from ..simulator import pbx as simulator

    known, names, ring_group = _callers_and_team(engine)
    rng = random.Random()
    player = simulator.CallPlayer(_fastagi_target(settings), fake_ami, ring_group=ring_group,
                                  time_scale=args.time_scale)
    lock = threading.Lock()

    def show(played) -> None:
        with lock:
            print(played.describe(names), file=out, flush=True)

    return simulator.CallLoop(
        player, simulator.random_calls(rng, known, ring_group=ring_group), args.calls_every,
        on_played=show, ready=lambda: fake_ami.wait_until(lambda: fake_ami.clients > 0, 0.2))


def _simulate_hint(args, settings: Settings, engine: Engine) -> str:
    """The `pbx-crm simulate` command line that reaches this demo, to run as printed in
    another terminal, in any directory: this pbx-crm by its full path (an installed .venv's
    bin is seldom on PATH), and the data directory and database the demo uses, named in full.
    A database URL is printed with its password, or the line would not run as printed."""
    import os
    import shlex

    env = {"PBX_CRM_FASTAGI_LISTEN": str(settings.fastagi_listen),
           "PBX_CRM_AMI_HOST": settings.ami_host, "PBX_CRM_AMI_PORT": str(settings.ami_port),
           "PBX_CRM_AMI_USERNAME": settings.ami_username,
           "PBX_CRM_AMI_SECRET": settings.ami_secret}
    options = []
    config = args.config or os.environ.get("PBX_CRM_CONFIG")
    if config:
        options += ["--config", os.path.abspath(config)]
    options += ["--data-dir", os.path.abspath(settings.data_dir)]
    if settings.database_url:
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            url = url.set(database=os.path.abspath(url.database))
        options += ["--database-url", url.render_as_string(hide_password=False)]
    return " ".join([*(f"{name}={shlex.quote(value)}" for name, value in env.items()),
                     *map(shlex.quote, [*_own_command(), *options, "simulate", "--calls", "20",
                                        "--rate", "2"])])


def _own_command() -> list[str]:
    """How a shell in any directory runs this pbx-crm: the console script that is running (or
    the one beside this Python), by its full path; else this Python with -m."""
    import os

    running = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    for script in (running, os.path.join(os.path.dirname(sys.executable), PROG)):
        if os.path.basename(script) == PROG and os.path.isfile(script) \
                and os.access(script, os.X_OK):
            return [script]
    return [os.path.abspath(sys.executable), "-m", "pbx_crm"]


def _callers_and_team(engine: Engine):
    """From the database: the known callers' numbers (E.164), extension -> login, and the
    ring group (the active sellers' extensions, at most RING_GROUP_MAX)."""
    from sqlmodel import select

    from ..enums import Role
    from ..models import ContactPhone
    from ..simulator.pbx import RING_GROUP

    with transaction(engine, read_only=True) as session:
        numbers = list(session.exec(select(ContactPhone.e164).order_by(ContactPhone.id)
                                    .limit(KNOWN_CALLERS_MAX)))
        team = [(user.login, user.role, user.active, extensions)
                for user, extensions in users.list_users(session)]
    names = {ext: login for login, _, _, extensions in team for ext in extensions}
    sellers = sorted({ext for _, role, active, extensions in team
                      if active and role == Role.SELLER.value for ext in extensions},
                     key=lambda ext: (len(ext), ext))
    return numbers, names, tuple(sellers[:RING_GROUP_MAX]) or RING_GROUP


KNOWN_CALLERS_MAX = 5000  # numbers the simulated known callers are drawn from
RING_GROUP_MAX = 10


def _fastagi_target(settings: Settings) -> tuple[str, int]:
    """Where a local Asterisk reaches the FastAGI server (a wildcard listen means loopback)."""
    from ..telephony.health import local_address

    return local_address(settings.fastagi_listen)


def cmd_simulate(args, settings, engine, out) -> int:
    import itertools
    import random
    import time

    from ..simulator import pbx as simulator

    if args.fastagi:
        settings = settings.replace(fastagi_listen=_setting("fastagi_listen", args.fastagi,
                                                            "--fastagi"))
    known, names, ring_group = _callers_and_team(engine)
    ring_group = tuple(args.ring_group) if args.ring_group else ring_group
    target = _fastagi_target(settings)
    link = _emulator_link(settings, out)
    rng = random.Random(args.seed)
    calls = list(itertools.islice(simulator.random_calls(rng, known, ring_group=ring_group),
                                  args.calls))
    player = simulator.CallPlayer(target, link, did=args.did, ring_group=ring_group,
                                  time_scale=args.time_scale, give_up_unreachable=True)
    where = f"{target[0]}:{target[1]}"
    print(f"Playing {args.calls} call{'s' if args.calls != 1 else ''} at {args.rate:g}/s into "
          f"the FastAGI server at {where} (DID {args.did}, ring group "
          f"{', '.join(ring_group)}).", file=out, flush=True)
    width = len(str(args.calls))

    def show(index, played) -> None:
        print(f"[{index + 1:>{width}}/{args.calls}] {played.describe(names)}", file=out,
              flush=True)

    started = time.monotonic()
    try:
        played = simulator.play_at_rate(player, calls, args.rate, on_played=show)
    finally:
        if link is not None:
            link.close()
    print(simulator.summary(played, time.monotonic() - started), file=out)
    if any(not call.reached_crm for call in played):
        raise CrmError(f"no FastAGI server answered at {where}: start "
                       "`pbx-crm serve` (or `pbx-crm demo`) first, or give --fastagi HOST:PORT")
    return 0


def _emulator_link(settings: Settings, out):
    """The AMI side of `simulate`: the demo's emulator through its PbxCrmSimulate action, or
    None (said why) when there is no AMI, or it is a real Asterisk."""
    from ..simulator.pbx import EmulatorLink, NotTheEmulator

    if not settings.ami_host:
        print("No AMI configured (ami_host): playing the AGI path only, so no phone rings for "
              "the AMI listener. Use the PBX_CRM_AMI_* settings `pbx-crm demo` prints to ring "
              "its phones too.", file=out)
        return None
    link = EmulatorLink(settings.ami_host, settings.ami_port, settings.ami_username,
                        settings.ami_secret)
    try:
        link.connect()
    except NotTheEmulator as error:
        print(f"{error}; playing the AGI path only (on a real Asterisk the phones ring for "
              "real calls only).", file=out)
        return None
    except ConnectionError as error:
        print(f"{error}; playing the AGI path only.", file=out)
        return None
    print(f"AMI: the phones ring through the demo's emulator at {link.address}.", file=out)
    return link


def cmd_web(args, settings, engine, out) -> int:
    """gunicorn with gevent workers in this process (see pbx_crm.web.server)."""
    from ..web.server import serve_web, workers_for

    changes = {}
    if args.listen:
        changes["web_listen"] = _setting("web_listen", args.listen, "--listen")
    if args.workers is not None:
        changes["web_workers"] = args.workers
    settings = settings.replace(**changes)
    engine = _engine(settings)
    try:
        require_schema_at_head(engine)
    finally:
        engine.dispose()
    print(f"Web UI on http://{settings.web_listen} ({workers_for(settings)} gevent workers).",
          file=out, flush=True)
    serve_web(settings)
    return 0


def cmd_robots(args, settings, engine, out) -> int:
    return start_components(settings, engine, out, only="robots")


# --- robot rules ------------------------------------------------------------------------------


def _params(pairs: list[str] | None, flag: str) -> dict:
    """KEY=VALUE pairs as a dict; digits become numbers."""
    params = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CrmError(f"{flag} takes KEY=VALUE, got {pair!r}")
        value = value.strip()
        params[key.strip()] = int(value) if value.isdigit() else value
    return params


def cmd_robot_add(args, settings, engine, out) -> int:
    from ..robots import rules as robot_rules

    with transaction(engine) as session:
        rule = robot_rules.create_rule(session, _admin(), stage_id=args.stage_id, name=args.name,
                                       condition=args.condition,
                                       condition_params=_params(args.when, "--when"),
                                       action=args.action, action_params=_params(args.do, "--do"),
                                       active=not args.disabled)
        stage = pipelines.get_stage(session, rule.stage_id)
    print(f"Added robot #{rule.id} “{rule.name}” on {stage.name} (#{stage.id})"
          + (", disabled" if not rule.active else "") + ".", file=out)
    return 0


def _shown_params(params: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items())


def cmd_robot_list(args, settings, engine, out) -> int:
    from ..robots import rules as robot_rules

    with transaction(engine, read_only=True) as session:
        pipeline_id = _find_pipeline(session, args.pipeline).id if args.pipeline else None
        rows = [[str(rule.id), f"{stage.name} (#{stage.id})", rule.name,
                 f"{rule.condition} {_shown_params(rule.condition_params)}".strip(),
                 f"{rule.action} {_shown_params(rule.action_params)}".strip(),
                 "yes" if rule.active else "no"]
                for rule, stage in robot_rules.list_rules(session, _admin(), pipeline_id)]
    if not rows:
        print("No robots yet: add one with `pbx-crm robot add`.", file=out)
        return 0
    _table(["ID", "STAGE", "NAME", "WHEN", "DO", "ACTIVE"], rows, out)
    return 0


def cmd_robot_active(args, settings, engine, out) -> int:
    from ..robots import rules as robot_rules

    with transaction(engine) as session:
        rule = robot_rules.set_rule_active(session, _admin(), args.rule_id, args.active)
    print(f"Robot #{rule.id} “{rule.name}” is {'on' if rule.active else 'off'}.", file=out)
    return 0


def cmd_robot_delete(args, settings, engine, out) -> int:
    from ..robots import rules as robot_rules

    with transaction(engine) as session:
        name = robot_rules.get_rule(session, args.rule_id).name
        robot_rules.delete_rule(session, _admin(), args.rule_id)
    print(f"Deleted robot #{args.rule_id} “{name}” and its run history.", file=out)
    return 0


def cmd_robot_runs(args, settings, engine, out) -> int:
    from ..robots import rules as robot_rules

    with transaction(engine, read_only=True) as session:
        views = robot_rules.recent_runs(session, _admin(), limit=args.limit,
                                        failed_only=args.failed)
    if not views:
        print("No robot runs yet." if not args.failed else "No failed robot runs.", file=out)
        return 0
    rows = [[str(v.run.id), f"{v.run.fired_at:%Y-%m-%d %H:%M}", f"#{v.run.rule_id} {v.rule_name}",
             f"#{v.run.deal_id} {v.deal_title[:40]}", v.run.status,
             (v.run.answer or "").replace("_", " "), (v.run.error or "")[:60]]
            for v in views]
    _table(["RUN", "FIRED (UTC)", "ROBOT", "DEAL", "STATUS", "ANSWER", "ERROR"], rows, out)
    return 0


def cmd_serve(args, settings, engine, out) -> int:
    return start_components(settings, engine, out)


# `pbx-crm check` exit codes, as monitoring plugins read them.
CHECK_OK, CHECK_WARNING, CHECK_CRITICAL = 0, 1, 2


def cmd_check(args, settings, engine, out) -> int:
    from ..telephony.health import ask_health

    if args.fastagi:
        settings = settings.replace(
            fastagi_listen=_setting("fastagi_listen", args.fastagi, "--fastagi"))
    address = _fastagi_target(settings)
    where = f"{address[0]}:{address[1]}"
    health = ask_health(address, args.timeout)
    if not health.answered:
        print(f"CRITICAL: the FastAGI server at {where} did not answer ({health.error}): "
              "calls wait on it or go on without the CRM", file=out)
        return CHECK_CRITICAL
    answer = health.variables
    line = (f"FastAGI server at {where} answered in {health.seconds * 1000:.0f} ms; "
            f"spool: {answer.get('CRM_SPOOLED', '?')} waiting, "
            f"{answer.get('CRM_SET_ASIDE', '?')} set aside")
    if not health.database_up:
        print(f"WARNING: {line}; database {answer.get('CRM_DATABASE', '?')} for "
              f"{answer.get('CRM_DATABASE_SINCE', '?')} s "
              f"({answer.get('CRM_DATABASE_REASON', '')}): calls go on without the CRM and "
              "are spooled", file=out)
        return CHECK_WARNING
    if answer.get("CRM_SET_ASIDE", "0") != "0":
        print(f"WARNING: {line} (requests the replay could not record: see the server's log)",
              file=out)
        return CHECK_WARNING
    print(f"OK: {line}; database up", file=out)
    return CHECK_OK


def cmd_relay_path(args, settings, engine, out) -> int:
    from ..telephony.fastagi import relay_script_path

    print(relay_script_path(), file=out)
    return 0


# The files an admin takes from the installed package into Asterisk's configuration.
DIALPLAN_FILES = ("pbx-crm.conf", "manager.conf.example", "README.md")


def cmd_dialplan(args, settings, engine, out) -> int:
    """The shipped file, found through the installed package: the working directory (a
    checkout, whose pbx_crm/ has no dialplan/) plays no part."""
    from importlib import resources

    shipped = resources.files("pbx_crm.dialplan") / args.file
    if args.path:
        print(shipped, file=out)
    else:
        print(shipped.read_text(encoding="utf-8"), end="", file=out)
    return 0


def cmd_fastagi(args, settings, engine, out) -> int:
    changes = {}
    if args.listen:
        changes["fastagi_listen"] = _setting("fastagi_listen", args.listen, "--listen")
    if args.allow:
        changes["fastagi_allowed_peers"] = _setting("fastagi_allowed_peers",
                                                    ",".join(args.allow), "--allow")
    return start_components(settings.replace(**changes), engine, out, only="fastagi")


def _require_ami(settings: Settings) -> None:
    if not settings.ami_host:
        raise ConfigError(
            "no AMI host configured: set ami_host (with ami_username and ami_secret) under "
            "[pbx-crm] in the config file, or PBX_CRM_AMI_HOST, PBX_CRM_AMI_USERNAME and "
            "PBX_CRM_AMI_SECRET (the AMI user in manager.conf needs `read = call,user,cdr` and "
            "`write = originate,reporting`)")


def cmd_ami(args, settings, engine, out) -> int:
    _require_ami(settings)
    return start_components(settings, engine, out, only="ami")


AMI_CONNECT_WAIT = 5.0  # seconds `pbx-crm call` waits for the AMI login


def cmd_call(args, settings, engine, out) -> int:
    from ..telephony.ami_client import AmiClient, AmiError
    from ..telephony.click_to_call import call_contact

    _require_ami(settings)
    with transaction(engine, read_only=True) as session:
        user = users.get_user_by_login(session, args.login)
    if not user.active:
        raise CrmError(f"{user.login} is deactivated; activate them first")
    client = AmiClient(settings.ami_host, settings.ami_port, settings.ami_username,
                       settings.ami_secret, events="call", action_timeout=AMI_CONNECT_WAIT)
    client.start()
    try:
        if not client.wait_connected(AMI_CONNECT_WAIT):
            raise CrmError(f"no AMI session with {settings.ami_host}:{settings.ami_port} "
                           f"after {AMI_CONNECT_WAIT:g} s: {client.last_error or 'no answer'}")
        with transaction(engine) as session:
            placed = call_contact(session, Actor.of(user), args.deal_id, number=args.number,
                                  originate=client.originate, settings=settings)
        print(f"Ringing {user.login} on {placed.channel} (ActionID {placed.action_id}); "
              f"when it answers, Asterisk dials {placed.number} for deal #{placed.deal_id}.",
              file=out)
        if args.no_wait:
            return 0
        try:
            event = placed.result.wait(args.wait)
        except TimeoutError:
            print(f"No OriginateResponse within {args.wait:g} s.", file=out)
            return 0
        except AmiError as error:
            print(f"No outcome: {error}.", file=out)
            return 0
        if event.get("Response") == "Success":
            print(f"{placed.channel} answered; the call to {placed.number} is on its way.",
                  file=out)
        else:
            print(f"{placed.channel} did not answer (Reason {event.get('Reason')}).", file=out)
        return 0
    finally:
        client.close()


def _setting(name: str, text: str, origin: str):
    from ..config import parse_setting

    return parse_setting(name, text, origin)


def cmd_version(args, settings, engine, out) -> int:
    print(f"{PROG} {__version__}", file=out)
    return 0


# --- the parser ---------------------------------------------------------------------------


# What a command needs before it runs, each level including the ones before it.
NOTHING, SETTINGS, ENGINE, SCHEMA = range(4)


def _command(subparsers, name: str, func, help: str, *, description: str | None = None,
             needs: int = SCHEMA) -> argparse.ArgumentParser:
    """A subcommand; with ``needs=SCHEMA`` it refuses a database that is not migrated."""
    # allow_abbrev=False everywhere: otherwise "--password" would pass for "--password-stdin".
    parser = subparsers.add_parser(name, help=help, description=description or help,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   allow_abbrev=False)
    parser.set_defaults(func=func, needs=needs)
    return parser


def _group(subparsers, name: str, help: str):
    parser = subparsers.add_parser(name, help=help, description=help, allow_abbrev=False)
    parser.set_defaults(func=None, group_parser=parser)
    return parser.add_subparsers(title="commands", metavar="COMMAND")


def _positive(kind, *, zero: bool = False):
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


def _extensions(text: str) -> list[str]:
    extensions = [part.strip() for part in text.split(",") if part.strip()]
    if not extensions or not all(ext.isdigit() for ext in extensions):
        raise argparse.ArgumentTypeError(f"expected extensions such as 101,102,103, got {text!r}")
    return extensions


def _time_scale_option(parser) -> None:
    parser.add_argument("--time-scale", type=_positive(float, zero=True), default=0.1,
                        metavar="FACTOR",
                        help="real seconds per second of a simulated call: 0.1 (the default) "
                             "plays a 40 s conversation in 4 s; 1 plays calls in real time, "
                             "0 without any wait")


def _password_option(parser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true",
        help="read the password as one line from standard input instead of asking twice at "
             "the terminal (a password is never taken as an argument)")


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

    group = _group(commands, "db", "create, check and show the database schema")
    _command(group, "upgrade", cmd_db_upgrade,
             "migrate the database to the newest schema (safe to run again)", needs=ENGINE)
    _command(group, "status", cmd_db_status,
             "show the database's schema revision and the one this version needs",
             needs=ENGINE)
    _command(group, "dump", cmd_db_dump,
             "print the readable schema of the configured database", needs=ENGINE)

    group = _group(commands, "user", "add and manage the people who sign in")
    command = _command(
        group, "add", cmd_user_add, "add a seller or a head",
        description="Add a user. The password is asked twice at the terminal, or read from "
                    "stdin with --password-stdin:\n"
                    "  printf '%s\\n' \"$PW\" | pbx-crm user add ana --name 'Ana Wijaya' "
                    "--extension 101 --password-stdin")
    command.add_argument("login", help="sign-in name: lowercase letters, digits, . _ -")
    command.add_argument("--name", required=True, help="full name shown on cards and reports")
    command.add_argument("--role", choices=("seller", "head"), default="seller",
                         help="a seller works their own deals; a head sees and manages all "
                              "(default seller)")
    command.add_argument("--extension", action="append", metavar="EXT",
                         help="phone extension that rings this user; repeat for several")
    command.add_argument("--team", help="team name, for reports")
    _password_option(command)
    _command(group, "list", cmd_user_list, "list users with their roles and extensions")
    command = _command(group, "passwd", cmd_user_passwd, "set a user's password")
    command.add_argument("login", help="whose password to set")
    _password_option(command)
    for name, active, help in (
            ("deactivate", False, "stop a user from signing in (their deals stay theirs)"),
            ("activate", True, "let a deactivated user sign in again")):
        command = _command(group, name, cmd_user_active, help)
        command.add_argument("login")
        command.set_defaults(active=active)
    command = _command(group, "extensions", cmd_user_extensions,
                       "replace the extensions that ring a user")
    command.add_argument("login")
    command.add_argument("extensions", nargs="*", metavar="EXT",
                         help="the user's extensions from now on")
    command.add_argument("--clear", action="store_true",
                         help="remove all of the user's extensions")
    command = _command(group, "email", cmd_user_email,
                       "set the address a user's robot nudges are e-mailed to")
    command.add_argument("login")
    command.add_argument("address", nargs="?", help="the user's e-mail address")
    command.add_argument("--clear", action="store_true", help="e-mail this user nothing")

    group = _group(commands, "pipeline", "set up the sales funnels (boards)")
    command = _command(
        group, "add", cmd_pipeline_add, "add a pipeline with its stages",
        description="Add a pipeline. Unsorted (where calls drop new deals) comes first, then "
                    "the --stage columns in order, then the outcomes:\n"
                    "  pbx-crm pipeline add Sales --stage Opportunity "
                    "--stage 'Commercial proposal' --won-stage Won")
    command.add_argument("name", help="the pipeline's name")
    command.add_argument("--stage", action="append", required=True, metavar="NAME",
                         help="a working stage; repeat in board order")
    command.add_argument("--won-stage", metavar="NAME",
                         help="name of the won outcome (default Won)")
    command.add_argument("--lost-stage", metavar="NAME",
                         help="name of the lost outcome (default Lost)")
    command.add_argument("--currency", metavar="CODE",
                         help="three-letter currency of its amounts (default: the setting, "
                              "IDR)")
    command.add_argument("--default", action="store_true",
                         help="make it the pipeline inbound calls land in (the first one is)")
    _command(group, "list", cmd_pipeline_list,
             "list pipelines with their stages in board order, with stage ids")

    group = _group(commands, "stage", "change the stages (columns) of a pipeline")
    command = _command(group, "add", cmd_stage_add, "add a stage to a pipeline")
    command.add_argument("pipeline", help="pipeline name (or id)")
    command.add_argument("name", help="the stage's name")
    command.add_argument("--kind", choices=("open", "won", "lost"), default="open",
                         help="a working stage, or an outcome (default open)")
    command.add_argument("--position", type=int, metavar="N",
                         help="its place as `pipeline list` numbers them (Unsorted is 0); "
                              "default: after the working stages")
    command = _command(group, "rename", cmd_stage_rename, "rename a stage")
    command.add_argument("stage_id", type=int, metavar="STAGE_ID",
                         help="the stage's id, from `pipeline list`")
    command.add_argument("name", help="the new name")
    command = _command(group, "reorder", cmd_stage_reorder,
                       "put a pipeline's stages in a new order",
                       description="Put a pipeline's stages in a new order: give every stage "
                                   "id once, Unsorted first.")
    command.add_argument("pipeline", help="pipeline name (or id)")
    command.add_argument("stage_ids", type=int, nargs="+", metavar="STAGE_ID",
                         help="all stage ids of the pipeline, in the new order")

    group = _group(commands, "contacts", "bring in contacts")
    command = _command(
        group, "import", cmd_contacts_import, "import a CSV phone book",
        description="Import contacts from a CSV file (UTF-8, `,` or `;` between fields) whose "
                    "first row names the columns:\n  name, phone (or phones, mobile, "
                    "work_phone, home_phone; several numbers split by `;`), company, email\n"
                    "Every row is checked first; if any is rejected, nothing is imported "
                    "unless --skip-invalid.\nExample: docs/examples/phonebook.csv")
    command.add_argument("file", metavar="FILE.csv", help="the phone book")
    command.add_argument("--skip-invalid", action="store_true",
                         help="import the good rows and report the rejected ones")

    group = _group(commands, "report", "funnel reports for a pipeline and a period")
    for view, help in (
            ("funnel", "stage by stage: open now, entered, moved on, lost, conversion, time "
                       "in stage; win rate and cycle; week by week"),
            ("losses", "the loss map: the share lost per stage and seller (and team), weak cells "
                       "flagged"),
            ("calls", "calls per deal by stage, and missed-call callback time per seller"),
            ("nudges", "how each seller answered the robots' nudges, per stage"),
            ("advice", "plain-language hints read off the figures, with their deals")):
        command = _command(group, view, cmd_report, help,
                           description=f"{help[0].upper()}{help[1:]}. Dates are the company's "
                                       "(time_zone); --from and --to are both included.")
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
    _command(group, "rebuild", cmd_report_rebuild,
             "recount the reports' daily table from the stage history",
             description="Recount the daily counts the reports read (moves per local day, "
                         "stage and seller) from the stage history, in the company's "
                         "time_zone: after changing time_zone, or after writing history "
                         "outside the deal services.")

    group = _group(commands, "board", "the Kanban board's kept figures")
    _command(group, "rebuild-totals", cmd_board_rebuild_totals,
             "recount the board's column totals from the deals",
             description="Recount the deals and money per stage and owner the board reads "
                         "from the deals themselves: after writing deals outside the deal "
                         "services (a bulk import, a manual SQL fix).")

    command = _command(
        commands, "seed", cmd_seed, "fill the database with synthetic data for benchmarks",
        description="Add synthetic contacts and deals (spread over every stage and the past "
                    "year) to a pipeline, owned by synthetic sellers seller001... Bulk "
                    "inserts, not one service call per deal: 100k deals take seconds.")
    command.add_argument("--deals", type=int, required=True, metavar="N", help="deals to add")
    command.add_argument("--contacts", type=int, metavar="N",
                         help="contacts to add (default: deals / 5)")
    command.add_argument("--pipeline", default="Sales", metavar="NAME",
                         help="pipeline to fill, created with the seller funnel if absent "
                              "(default Sales)")
    command.add_argument("--sellers", type=int, default=10, metavar="K",
                         help="synthetic sellers owning the deals, created if absent "
                              "(default 10)")
    command.add_argument("--random-seed", type=int, metavar="S",
                         help="make the data repeatable (default: a random seed, printed)")

    command = _command(
        commands, "demo", cmd_demo, "set up demo data and start everything", needs=ENGINE,
        description="Migrate the database; fill it with demo data if it has no users yet (a "
                    "sales pipeline, a head and three sellers, Indonesian contacts, deals in "
                    "every stage); print the board and the logins; then start every built "
                    "component with an Asterisk emulator in place of a PBX: the AMI listener "
                    "follows it, and a simulated call rings every few seconds through the "
                    "real FastAGI and AMI paths (new callers, known callers ringing their "
                    "seller first, missed calls, the ring group). It prints the settings "
                    "`pbx-crm simulate` needs to play more calls into it.")
    command.add_argument("--fresh", action="store_true",
                         help="DELETE the configured SQLite database file first and start "
                              "over (stop anything using it first; refused on PostgreSQL)")
    command.add_argument("--no-serve", action="store_true",
                         help="set up and print, but start nothing")
    command.add_argument("--no-calls", action="store_true",
                         help="start everything, but play no simulated calls")
    command.add_argument("--calls-every", type=_positive(float), default=8.0,
                         metavar="SECONDS",
                         help="how often a simulated call rings (default 8)")
    _time_scale_option(command)
    command = _command(
        commands, "simulate", cmd_simulate,
        "play realistic calls into a running `serve` or `demo`, as Asterisk would",
        description="Play N simulated inbound calls into a running pbx-crm, at R calls per "
                    "second (overlapping as they last): each asks the FastAGI server "
                    "(fastagi_listen) what the dialplan asks, rings the caller's seller first "
                    "when the CRM names one, then the ring group, and hangs up with the "
                    "dialplan's hangup hook. The callers are a mix of the database's contacts, "
                    "strangers (they land in Unsorted) and withheld numbers; some calls go "
                    "unanswered. With the AMI settings `pbx-crm demo` prints, the phones also "
                    "ring through the demo's Asterisk emulator, so the AMI listener pops them:"
                    "\n  PBX_CRM_AMI_HOST=... PBX_CRM_AMI_SECRET=... pbx-crm simulate --calls 20 "
                    "--rate 2\nWithout AMI settings, or with a real Asterisk's, only the AGI path "
                    "is played: no real call is ever placed.")
    command.add_argument("--calls", type=_positive(int), default=10, metavar="N",
                         help="how many calls (default 10)")
    command.add_argument("--rate", type=_positive(float), default=1.0, metavar="R",
                         help="calls started per second (default 1)")
    command.add_argument("--seed", type=int, metavar="S",
                         help="make the calls repeatable (default: different every run)")
    _time_scale_option(command)
    command.add_argument("--did", default="2150001", metavar="NUMBER",
                         help="the number the callers dial (default 2150001)")
    command.add_argument("--ring-group", type=_extensions, metavar="EXT,EXT",
                         help="the phones of the ring group (default: the active sellers' "
                              "extensions)")
    command.add_argument("--fastagi", metavar="HOST:PORT",
                         help="the FastAGI server to call (default: fastagi_listen)")
    command = _command(
        commands, "fastagi", cmd_fastagi, "run the FastAGI server the dialplan's hooks call",
        description="Serve the AGI hooks (incoming, answered, hangup, outbound) at "
                    "agi://HOST:PORT/<hook>. FastAGI has no authentication: it listens on "
                    "loopback unless given --allow for the PBX's address. It starts even "
                    "while the database is unreachable (calls are answered UNAVAILABLE and "
                    "spooled until it answers); a wrong URL, password or schema stops it.",
        needs=ENGINE)
    command.add_argument("--listen", metavar="HOST:PORT",
                         help="address to listen on (default 127.0.0.1:4573)")
    command.add_argument("--allow", action="append", metavar="PEER",
                         help="an address or network allowed to connect; repeat for several "
                              "(required for a non-loopback --listen)")
    _command(
        commands, "ami", cmd_ami, "run the AMI listener: screen-pops as phones ring",
        description="Follow calls on Asterisk's manager interface: pop the caller's card for "
                    "each seller whose phone rings, record who answered, close calls the "
                    "hangup hook missed. Needs ami_host, ami_username and ami_secret "
                    "(config file or PBX_CRM_AMI_*); the AMI user needs `read = call,user,cdr` "
                    "and `write = originate,reporting`.")
    command = _command(
        commands, "call", cmd_call, "click-to-call from the command line (tests the AMI link)",
        description="Ring a user's phone and, when it answers, dial the deal's contact, as "
                    "the Call button does:\n  pbx-crm call 42 --as ana --number +6281234567890"
                    "\nThe call goes on the deal's timeline. Waits for Asterisk's "
                    "OriginateResponse (the phone answered or not) unless --no-wait.")
    command.add_argument("deal_id", type=int, metavar="DEAL_ID", help="the deal to call about")
    command.add_argument("--as", dest="login", required=True, metavar="LOGIN",
                         help="the user whose phone rings first (their permissions apply)")
    command.add_argument("--number", metavar="E164",
                         help="one of the contact's numbers (default: their first)")
    command.add_argument("--wait", type=float, default=40.0, metavar="SECONDS",
                         help="how long to wait for the phone to answer (default 40)")
    command.add_argument("--no-wait", action="store_true",
                         help="return once Asterisk has queued the call")
    command = _command(
        commands, "check", cmd_check, "check that the FastAGI server answers (for a monitor)",
        description="Play one AGI session against the running FastAGI server (fastagi_listen) "
                    "as Asterisk would, and say how it answered, how its database is and "
                    "what its spool holds. Exit code: 0 OK, 1 WARNING (database down or "
                    "requests set aside: calls go on without the CRM), 2 CRITICAL (no answer: "
                    "calls wait on it or are refused).",
        needs=SETTINGS)
    command.add_argument("--fastagi", metavar="HOST:PORT",
                         help="the FastAGI server to check (default: fastagi_listen)")
    command.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                         help="how long to wait for its answer (default 2)")
    command = _command(
        commands, "dialplan", cmd_dialplan,
        "print the shipped dialplan (pbx-crm.conf), or another shipped Asterisk file",
        description="Print a file pbx-crm ships for Asterisk, from the installed package "
                    "(whatever the working directory):\n"
                    "  pbx-crm dialplan > /etc/asterisk/pbx-crm.conf\n"
                    "  pbx-crm dialplan manager.conf.example   # the AMI user\n"
                    "  pbx-crm dialplan --path                 # where pbx-crm.conf is installed",
        needs=NOTHING)
    command.add_argument("file", nargs="?", default=DIALPLAN_FILES[0], choices=DIALPLAN_FILES,
                         help=f"which file (default {DIALPLAN_FILES[0]})")
    command.add_argument("--path", action="store_true",
                         help="print where the file is installed instead of its text")
    _command(commands, "relay-path", cmd_relay_path,
             "print where the process-AGI relay script (pbx-crm.agi) is installed, to link "
             "it into Asterisk's agi-bin", needs=NOTHING)
    command = _command(
        commands, "web", cmd_web, "run the web UI (the Kanban board) alone",
        description="Serve the web UI at web_listen with gunicorn, one gevent worker process "
                    "per CPU core (or --workers). Put it behind an HTTPS reverse proxy and set "
                    "web_secure_cookies; see \"Production layout\" in the README.",
        needs=SETTINGS)
    command.add_argument("--listen", metavar="HOST:PORT",
                         help="address to listen on (default web_listen, 127.0.0.1:8080)")
    command.add_argument("--workers", type=_positive(int, zero=True), metavar="N",
                         help="worker processes (default web_workers; 0: one per core)")
    group = _group(commands, "robot", "set up the stage robots and see what they did")
    command = _command(
        group, "add", cmd_robot_add, "add a robot to a stage",
        description="Add a robot: when its condition holds for a deal in the stage, it acts. "
                    "It applies to the deals already in the stage too.\n"
                    "conditions (--when settings): time_in_stage (hours=N | days=N | "
                    "business_hours=N | business_days=N), no_activity (days=N), "
                    "unsorted_not_taken (minutes=N), missed_call_not_returned (minutes=N), "
                    "amount, stage_entered, call_answered, call_missed; any of them also takes "
                    "min_amount=N and max_amount=N (minor units)\n"
                    "actions (--do settings): notify_owner (message=...), notify_heads "
                    "(message=...), create_task (title=..., due_hours=N), set_priority "
                    "(priority=low|normal|high), move_to_stage (stage=NAME | stage_id=N, "
                    "lost_reason=...), reassign (login=LOGIN), call_owner\n"
                    "  pbx-crm robot add 3 --name 'Proposal waits' --condition time_in_stage "
                    "--when business_days=2 --action notify_owner")
    command.add_argument("stage_id", type=int, metavar="STAGE_ID",
                         help="the stage's id, from `pipeline list`")
    command.add_argument("--name", required=True, help="what the robot is for, as users read it")
    command.add_argument("--condition", required=True, metavar="KIND", help="when it fires")
    command.add_argument("--when", action="append", metavar="KEY=VALUE",
                         help="a setting of the condition; repeat for several")
    command.add_argument("--action", required=True, metavar="KIND", help="what it does")
    command.add_argument("--do", action="append", metavar="KEY=VALUE",
                         help="a setting of the action; repeat for several")
    command.add_argument("--disabled", action="store_true", help="add it switched off")
    command = _command(group, "list", cmd_robot_list, "list the robots, stage by stage")
    command.add_argument("--pipeline", metavar="NAME", help="only this pipeline's (name or id)")
    for name, active, help in (("enable", True, "switch a robot on (it catches up)"),
                               ("disable", False, "switch a robot off, keeping its history")):
        command = _command(group, name, cmd_robot_active, help)
        command.add_argument("rule_id", type=int, metavar="ROBOT_ID")
        command.set_defaults(active=active)
    command = _command(group, "delete", cmd_robot_delete,
                       "delete a robot and its run history (disable it to keep the history)")
    command.add_argument("rule_id", type=int, metavar="ROBOT_ID")
    command = _command(group, "runs", cmd_robot_runs, "what the robots did lately, failures too")
    command.add_argument("--limit", type=_positive(int), default=30, metavar="N",
                         help="how many runs, newest first (default 30)")
    command.add_argument("--failed", action="store_true", help="only the failed runs")
    _command(
        commands, "robots", cmd_robots, "run the robot scheduler alone",
        description="Run the stage robots on their clock (APScheduler): a pass over every "
                    "rule each robot_pass_seconds, telephony triggers each "
                    "robot_trigger_seconds. Several may run against one PostgreSQL: no robot "
                    "fires twice.")
    _command(commands, "serve", cmd_serve,
             "start every built long-running component (web UI, FastAGI, AMI, robots)")
    _command(commands, "version", cmd_version, "print the version", needs=NOTHING)
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
            engine = _engine(settings)
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
        where = f" {_shown_url(engine)}" if engine is not None else ""
        print(f"{PROG}: database{where}: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        if engine is not None:
            engine.dispose()
