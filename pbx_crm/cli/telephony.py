"""The commands between pbx-crm and Asterisk: ``fastagi`` and ``ami`` (run one server),
``call`` (click-to-call), ``check`` (the FastAGI server's health, for a monitor), ``dialplan``
and ``relay-path`` (the files an admin installs into Asterisk).
"""

from __future__ import annotations

from ..config import ConfigError, Settings, parse_setting
from ..db import transaction
from ..errors import CrmError
from ..people import users
from ..rules.funnel import Actor
from .common import ENGINE, NOTHING, SETTINGS, add_command, fastagi_target
from .running import start_components

# `pbx-crm check` exit codes, as monitoring plugins read them.
CHECK_OK, CHECK_WARNING, CHECK_CRITICAL = 0, 1, 2
# The files an admin takes from the installed package into Asterisk's configuration.
DIALPLAN_FILES = ("pbx-crm.conf", "manager.conf.example", "README.md")
AMI_CONNECT_WAIT = 5.0  # seconds `pbx-crm call` waits for the AMI login


def cmd_fastagi(args, settings, engine, out) -> int:
    changes = {}
    if args.listen:
        changes["fastagi_listen"] = parse_setting("fastagi_listen", args.listen, "--listen")
    if args.allow:
        changes["fastagi_allowed_peers"] = parse_setting("fastagi_allowed_peers",
                                                         ",".join(args.allow), "--allow")
    return start_components(settings.replace(**changes), engine, out, only="fastagi")


def _require_ami(settings: Settings) -> None:
    if not settings.pbx_boxes:
        raise ConfigError(
            "no AMI host configured: set ami_host (with ami_username and ami_secret) under "
            "[pbx-crm] in the config file, or PBX_CRM_AMI_HOST, PBX_CRM_AMI_USERNAME and "
            "PBX_CRM_AMI_SECRET (the AMI user in manager.conf needs "
            "`read = call,user,cdr,agent` and `write = originate,reporting`)")


def cmd_ami(args, settings, engine, out) -> int:
    _require_ami(settings)
    return start_components(settings, engine, out, only="ami")


def cmd_call(args, settings, engine, out) -> int:
    from ..telephony.ami_client import AmiClient, AmiError
    from ..telephony.click_to_call import call_contact

    _require_ami(settings)
    with transaction(engine, read_only=True) as session:
        user = users.get_user_by_login(session, args.login)
        # The seller's phone's box (their first extension's): the call goes out there.
        phone = users.first_extension(session, user.id)
    if not user.active:
        raise CrmError("%(login)s is deactivated; activate them first", login=user.login)
    try:  # no phone at all: call_contact says so, on any box
        box = settings.pbx(phone.pbx) if phone else settings.pbx_boxes[0]
    except KeyError:
        raise CrmError("%(login)s's phone %(phone)s is on a PBX the settings do not define",
                       login=user.login, phone=str(phone)) from None
    if not box.host:
        raise CrmError("%(login)s's phone %(phone)s is on PBX %(pbx)s, which has no AMI host",
                       login=user.login, phone=str(phone), pbx=box.name)
    client = AmiClient(box.host, box.port, box.username, box.secret, events="call",
                       action_timeout=AMI_CONNECT_WAIT)
    client.start()
    try:
        if not client.wait_connected(AMI_CONNECT_WAIT):
            raise CrmError("no AMI session with %(host)s:%(port)s after %(wait)g s: %(error)s",
                           host=box.host, port=box.port,
                           wait=AMI_CONNECT_WAIT, error=client.last_error or "no answer")
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


def cmd_check(args, settings, engine, out) -> int:
    from ..telephony.health import ask_health

    if args.fastagi:
        settings = settings.replace(
            fastagi_listen=parse_setting("fastagi_listen", args.fastagi, "--fastagi"))
    address = fastagi_target(settings)
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


def cmd_relay_path(args, settings, engine, out) -> int:
    from ..telephony.fastagi import relay_script_path

    print(relay_script_path(), file=out)
    return 0


def add_pbx_commands(commands) -> None:
    """fastagi, ami, call, check, dialplan, relay-path."""
    command = add_command(
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
    add_command(
        commands, "ami", cmd_ami, "run the AMI listener: screen-pops as phones ring",
        description="Follow calls on Asterisk's manager interface: pop the caller's card for "
                    "each seller whose phone rings, record who answered, close calls the "
                    "hangup hook missed. Needs ami_host, ami_username and ami_secret "
                    "(config file or PBX_CRM_AMI_*); the AMI user needs "
                    "`read = call,user,cdr,agent` and `write = originate,reporting`.")
    command = add_command(
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
    command = add_command(
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
    command = add_command(
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
    add_command(commands, "relay-path", cmd_relay_path,
                "print where the process-AGI relay script (pbx-crm.agi) is installed, to link "
                "it into Asterisk's agi-bin", needs=NOTHING)
