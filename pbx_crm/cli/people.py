"""``pbx-crm user ...``: the people who sign in, their roles, passwords, extensions and the
devices that ring for an extension.

Passwords come from a prompt or from stdin, never from the command line, where ``ps`` and
shell history would show them.
"""

from __future__ import annotations

from ..db import transaction
from ..errors import CrmError
from ..people import users
from .common import add_command, add_group, admin, print_table, read_password


def cmd_user_add(args, settings, engine, out) -> int:
    password = read_password(args)
    with transaction(engine) as session:
        user = users.create_user(session, admin(), login=args.login, name=args.name,
                                 password=password, role=args.role,
                                 extensions=args.extension or (), team=args.team,
                                 pbxes=settings.pbx_names)
        extensions = users.list_users(session)
    shown = next(ext for u, ext in extensions if u.id == user.id)
    print(f"Added {user.role} {user.login} ({user.name})"
          + (f", extension {', '.join(shown)}" if shown else "") + ".", file=out)
    return 0


def cmd_user_list(args, settings, engine, out) -> int:
    with transaction(engine, read_only=True) as session:
        devices = users.devices_of_extensions(session)
        rows = [[user.login, user.name, user.role,
                 ", ".join(_with_devices(e, devices) for e in extensions) or "-",
                 "yes" if user.active else "no"]
                for user, extensions in users.list_users(session)]
    if not rows:
        print("No users yet: add one with `pbx-crm user add`.", file=out)
        return 0
    print_table(["LOGIN", "NAME", "ROLE", "EXTENSIONS", "ACTIVE"], rows, out)
    return 0


def cmd_user_passwd(args, settings, engine, out) -> int:
    with transaction(engine, read_only=True) as session:
        users.get_user_by_login(session, args.login)  # fail before asking for a password
    password = read_password(args)
    with transaction(engine) as session:
        users.set_password(session, admin(), args.login, password)
    print(f"Password of {args.login} changed.", file=out)
    return 0


def cmd_user_active(args, settings, engine, out) -> int:
    with transaction(engine) as session:
        user = users.set_active(session, admin(), args.login, args.active)
    print(f"{user.login} is {'active' if user.active else 'deactivated'}.", file=out)
    return 0


def cmd_user_extensions(args, settings, engine, out) -> int:
    if bool(args.extensions) == args.clear:
        raise CrmError("give the extensions, or --clear to remove them all")
    with transaction(engine) as session:
        user = users.get_user_by_login(session, args.login)
        extensions = users.set_extensions(session, admin(), user.id, args.extensions,
                                          pbxes=settings.pbx_names)
    print(f"{user.login} rings on {', '.join(extensions)}." if extensions
          else f"{user.login} has no extension now.", file=out)
    return 0


def _with_devices(extension: str, devices: dict[str, list[str]]) -> str:
    """``101`` or, when it rings devices of its own, ``101(101a+101b)``: one word."""
    return f"{extension}({'+'.join(devices[extension])})" if devices.get(extension) \
        else extension


def cmd_user_devices(args, settings, engine, out) -> int:
    if bool(args.devices) == args.clear:
        raise CrmError("give the devices, or --clear to ring the extension itself")
    with transaction(engine) as session:
        user = users.get_user_by_login(session, args.login)
        devices = users.set_devices(session, admin(), user.id, args.extension, args.devices)
    print(f"Extension {args.extension} rings {', '.join(devices)}." if devices
          else f"Extension {args.extension} rings itself.", file=out)
    return 0


def cmd_user_email(args, settings, engine, out) -> int:
    if bool(args.address) == args.clear:
        raise CrmError("give the address, or --clear to e-mail this user nothing")
    with transaction(engine) as session:
        user = users.get_user_by_login(session, args.login)
        users.set_email(session, admin(), user.id, None if args.clear else args.address)
    print(f"{user.login}'s nudges go to {user.email} too." if user.email
          else f"{user.login}'s nudges stay in the CRM.", file=out)
    return 0


def _password_option(parser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true",
        help="read the password as one line from standard input instead of asking twice at "
             "the terminal (a password is never taken as an argument)")


def add_user(commands) -> None:
    group = add_group(commands, "user", "add and manage the people who sign in")
    command = add_command(
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
                         help="phone extension that rings this user (BOX/EXT on another PBX "
                              "than the default one, e.g. jakarta/101); repeat for several")
    command.add_argument("--team", help="team name, for reports")
    _password_option(command)
    add_command(group, "list", cmd_user_list, "list users with their roles and extensions")
    command = add_command(group, "passwd", cmd_user_passwd, "set a user's password")
    command.add_argument("login", help="whose password to set")
    _password_option(command)
    for name, active, help in (
            ("deactivate", False, "stop a user from signing in (their deals stay theirs)"),
            ("activate", True, "let a deactivated user sign in again")):
        command = add_command(group, name, cmd_user_active, help)
        command.add_argument("login")
        command.set_defaults(active=active)
    command = add_command(group, "extensions", cmd_user_extensions,
                          "replace the extensions that ring a user")
    command.add_argument("login")
    command.add_argument("extensions", nargs="*", metavar="EXT",
                         help="the user's extensions from now on (BOX/EXT on another PBX "
                              "than the default one, e.g. jakarta/101)")
    command.add_argument("--clear", action="store_true",
                         help="remove all of the user's extensions")
    command = add_command(group, "devices", cmd_user_devices,
                          "set the devices that ring for one of a user's extensions "
                          "(a desk phone and a softphone)")
    command.add_argument("login")
    command.add_argument("extension", help="one of the user's extensions (BOX/EXT on "
                                            "another PBX than the default one)")
    command.add_argument("devices", nargs="*", metavar="DEVICE",
                         help="endpoint names (or Local exten names) that ring for it, "
                              "e.g. 101a 101b")
    command.add_argument("--clear", action="store_true",
                         help="ring the extension itself again")
    command = add_command(group, "email", cmd_user_email,
                          "set the address a user's robot nudges are e-mailed to")
    command.add_argument("login")
    command.add_argument("address", nargs="?", help="the user's e-mail address")
    command.add_argument("--clear", action="store_true", help="e-mail this user nothing")
