"""``pbx-crm demo``, ``simulate`` and ``seed``: sample data and simulated calls.

``demo`` fills a database with a believable team (``pbx_crm.sample.demo``) and starts every
component with the Asterisk emulator (``pbx_crm.simulator``) in place of a PBX; ``simulate``
plays calls into a running ``serve`` or ``demo``; ``seed`` writes data at scale for the
benchmarks (``pbx_crm.sample.seed``).
"""

from __future__ import annotations

import argparse
import sys
import threading

from sqlalchemy.engine import Engine
from tqdm import tqdm

from ..config import Settings, parse_setting
from ..db import transaction
from ..errors import CrmError
from ..people import users
from ..sample import demo
from ..sample.seed import seed_synthetic
from .common import ENGINE, PROG, add_command, fastagi_target, positive
from .running import start_components

DEMO_AMI_HOST = "127.0.0.1"
KNOWN_CALLERS_MAX = 5000  # numbers the simulated known callers are drawn from
RING_GROUP_MAX = 10


def cmd_seed(args, settings, engine, out) -> int:
    contacts = args.contacts if args.contacts is not None else max(1, args.deals // 5)
    with tqdm(total=contacts + args.deals, unit="row", desc="Seeding", file=sys.stderr,
              disable=None, unit_scale=True) as bar:
        report = seed_synthetic(engine, deals=args.deals, contacts=contacts,
                                sellers=args.sellers, region=settings.phone_region,
                                pipeline_name=args.pipeline, random_seed=args.random_seed,
                                currency=settings.currency, progress=bar.update,
                                time_zone=settings.time_zone)
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


# --- the demo -------------------------------------------------------------------------------


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
    from ..simulator.floor_calls import floor_calls

    known, names, ring_group = _callers_and_team(engine)
    rng = random.Random()
    player = simulator.CallPlayer(fastagi_target(settings), fake_ami, ring_group=ring_group,
                                  time_scale=args.time_scale)
    calls = floor_calls(rng, known, ring_group=ring_group, share=args.floor_calls,
                        devices=_devices(engine))
    lock = threading.Lock()

    def show(played) -> None:
        with lock:
            print(played.describe(names), file=out, flush=True)

    return simulator.CallLoop(
        player, calls, args.calls_every, on_played=show,
        ready=lambda: fake_ami.wait_until(lambda: fake_ami.clients > 0, 0.2))


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
        # The simulator plays the default box: another box's extensions (jakarta/101) stay out.
        team = [(user.login, user.role, user.active, [e for e in extensions if "/" not in e])
                for user, extensions in users.list_users(session)]
    names = {ext: login for login, _, _, extensions in team for ext in extensions}
    sellers = sorted({ext for _, role, active, extensions in team
                      if active and role == Role.SELLER.value for ext in extensions},
                     key=lambda ext: (len(ext), ext))
    return numbers, names, tuple(sellers[:RING_GROUP_MAX]) or RING_GROUP


def _devices(engine: Engine) -> dict[str, list[str]]:
    """Extension -> the devices that ring for it, for the extensions that have some."""
    from sqlmodel import select

    from ..models import UserExtension

    with transaction(engine, read_only=True) as session:
        rows = session.exec(select(UserExtension.extension, UserExtension.devices)
                            .where(UserExtension.devices.is_not(None),
                                   UserExtension.pbx.is_(None)))
        return {extension: [d for d in devices.split(",") if d] for extension, devices in rows}


# --- simulated calls into a running pbx-crm -------------------------------------------------


def cmd_simulate(args, settings, engine, out) -> int:
    import itertools
    import random
    import time

    from ..simulator import pbx as simulator
    from ..simulator.floor_calls import floor_calls

    if args.fastagi:
        settings = settings.replace(fastagi_listen=parse_setting("fastagi_listen", args.fastagi,
                                                                 "--fastagi"))
    known, names, ring_group = _callers_and_team(engine)
    ring_group = tuple(args.ring_group) if args.ring_group else ring_group
    target = fastagi_target(settings)
    link = _emulator_link(settings, out)
    rng = random.Random(args.seed)
    calls = list(itertools.islice(floor_calls(rng, known, ring_group=ring_group,
                                              share=args.floor_calls, devices=_devices(engine)),
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


# --- the parser ---------------------------------------------------------------------------


def _extensions(text: str) -> list[str]:
    extensions = [part.strip() for part in text.split(",") if part.strip()]
    if not extensions or not all(ext.isdigit() for ext in extensions):
        raise argparse.ArgumentTypeError(f"expected extensions such as 101,102,103, got {text!r}")
    return extensions


def _time_scale_option(parser) -> None:
    parser.add_argument("--time-scale", type=positive(float, zero=True), default=0.1,
                        metavar="FACTOR",
                        help="real seconds per second of a simulated call: 0.1 (the default) "
                             "plays a 40 s conversation in 4 s; 1 plays calls in real time, "
                             "0 without any wait")


def _floor_calls_option(parser) -> None:
    parser.add_argument("--floor-calls", type=_share, default=0.3, metavar="SHARE",
                        help="the share of calls that are a sales floor's other calls instead "
                             "of ring-group calls: queue calls (ringall answered, rrmemory "
                             "whose first member does not answer, abandoned in the queue), "
                             "blind and attended transfers, and a seller ringing on two "
                             "devices when one has them (default 0.3; 0: ring-group calls "
                             "only; 1: only these)")


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share from 0 to 1, got {text!r}")
    return value


def add_seed_demo_simulate(commands) -> None:
    command = add_command(
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

    command = add_command(
        commands, "demo", cmd_demo, "set up demo data and start everything", needs=ENGINE,
        description="Migrate the database; fill it with demo data if it has no users yet (a "
                    "sales pipeline, a head and three sellers, Indonesian contacts, deals in "
                    "every stage); print the board and the logins; then start every built "
                    "component with an Asterisk emulator in place of a PBX: the AMI listener "
                    "follows it, and a simulated call rings every few seconds through the "
                    "real FastAGI and AMI paths (new callers, known callers ringing their "
                    "seller first, missed calls, the ring group, queue calls, transfers, a "
                    "seller on two devices). It prints the settings "
                    "`pbx-crm simulate` needs to play more calls into it.")
    command.add_argument("--fresh", action="store_true",
                         help="DELETE the configured SQLite database file first and start "
                              "over (stop anything using it first; refused on PostgreSQL)")
    command.add_argument("--no-serve", action="store_true",
                         help="set up and print, but start nothing")
    command.add_argument("--no-calls", action="store_true",
                         help="start everything, but play no simulated calls")
    command.add_argument("--calls-every", type=positive(float), default=8.0,
                         metavar="SECONDS",
                         help="how often a simulated call rings (default 8)")
    _time_scale_option(command)
    _floor_calls_option(command)

    command = add_command(
        commands, "simulate", cmd_simulate,
        "play realistic calls into a running `serve` or `demo`, as Asterisk would",
        description="Play N simulated inbound calls into a running pbx-crm, at R calls per "
                    "second (overlapping as they last): each asks the FastAGI server "
                    "(fastagi_listen) what the dialplan asks, rings the caller's seller first "
                    "when the CRM names one, then the ring group, and hangs up with the "
                    "dialplan's hangup hook. The callers are a mix of the database's contacts, "
                    "strangers (they land in Unsorted) and withheld numbers; some calls go "
                    "unanswered; some (--floor-calls) wait in a queue, are transferred blind "
                    "or attended, or ring a seller's two devices. With the AMI settings "
                    "`pbx-crm demo` prints, the phones also "
                    "ring through the demo's Asterisk emulator, so the AMI listener pops them:"
                    "\n  PBX_CRM_AMI_HOST=... PBX_CRM_AMI_SECRET=... pbx-crm simulate --calls 20 "
                    "--rate 2\nWithout AMI settings, or with a real Asterisk's, only the AGI path "
                    "is played: no real call is ever placed.")
    command.add_argument("--calls", type=positive(int), default=10, metavar="N",
                         help="how many calls (default 10)")
    command.add_argument("--rate", type=positive(float), default=1.0, metavar="R",
                         help="calls started per second (default 1)")
    command.add_argument("--seed", type=int, metavar="S",
                         help="make the calls repeatable (default: different every run)")
    _time_scale_option(command)
    command.add_argument("--did", default="2150001", metavar="NUMBER",
                         help="the number the callers dial (default 2150001)")
    command.add_argument("--ring-group", type=_extensions, metavar="EXT,EXT",
                         help="the phones of the ring group and the queue's members "
                              "(default: the active sellers' extensions)")
    command.add_argument("--fastagi", metavar="HOST:PORT",
                         help="the FastAGI server to call (default: fastagi_listen)")
    _floor_calls_option(command)
