"""Asterisk's side of the AGI commands: its parser, and the answers the captures show.

``execute(channel, line)`` answers one command line as Asterisk 22.10.1 does: the command
parser with Asterisk's quoting (res_agi.c ``parse_args``), ``200 result=...``, ``510`` for an
unknown command, ``511`` on a dead channel, the multi-line ``520`` usage block. The
conversations of ``pbx_crm.simulator.agi`` call it for every line a script sends.

Emulated commands: ANSWER, CHANNEL STATUS, EXEC (NoOp, Set, MSet), GET VARIABLE, GET FULL
VARIABLE, HANGUP, NOOP, SET VARIABLE, STREAM FILE, VERBOSE, WAIT FOR DIGIT; any other answers
``510``. The usage texts of SET VARIABLE and GET VARIABLE are the recorded ones; the others
are stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .agi import FakeChannel

MAX_ARGS = 128  # res_agi.c
GET_VARIABLE_BYTES = 1023  # GET VARIABLE copies the value into char tempstr[1024]
DEAD_CHANNEL = "511 Command Not Permitted on a dead channel or intercept routine"
UNKNOWN_COMMAND = "510 Invalid or unknown command"


def parse_args(line: str) -> list[str]:
    """Split a command line as res_agi.c ``parse_args`` does.

    Spaces and tabs separate words unless quoted or escaped; ``"`` toggles quoting anywhere in a
    word; a backslash makes the next character literal (``\\"`` and ``\\\\`` in particular), inside
    quotes or not. Words past MAX_ARGS - 1 are dropped.
    """
    argv: list[list[str]] = []
    quoted = escaped = False
    between_words = True
    for char in line:
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and between_words:
                argv.append([])
                between_words = False
            continue
        if char in " \t" and not quoted and not escaped:
            between_words = True
            continue
        if char == "\\" and not escaped:
            escaped = True
            continue
        if between_words:
            if len(argv) >= MAX_ARGS - 1:
                continue
            argv.append([])
            between_words = False
        argv[-1].append(char)
        escaped = False
    return ["".join(word) for word in argv]


_USAGE = {
    ("set", "variable"): ["Sets a variable to the current channel."],
    ("get", "variable"): [
        (
            "Returns <literal>0</literal> if <replaceable>variablename</replaceable> is not set. "
            "Returns <literal>1</literal> if <replaceable>variablename</replaceable> is set and "
            "returns the variable in parentheses."
        ),
        "Example return code: 200 result=1 (testvariable)",
    ],
}


def _usage(words: tuple[str, ...]) -> str:
    text = _USAGE.get(words, [f"Usage: {' '.join(words).upper()} (not recorded; stand-in text)"])
    return "\n".join(
        ["520-Invalid command syntax.  Proper usage follows:", *text, "520 End of proper usage."]
    )


def _answer(ch: FakeChannel, argv):
    if len(argv) != 1:
        return None
    ch.up = True
    return "200 result=0"


def _channel_status(ch: FakeChannel, argv):
    if len(argv) not in (2, 3):
        return None
    if len(argv) == 3 and argv[2] != ch.name:
        return "200 result=-1"
    return f"200 result={6 if ch.up else 4}"


def mset_pairs(data: str) -> dict[str, str]:
    """What ``MSet(name1=value1,name2=value2)`` sets, for the plain values the CRM sends it:
    pairs split on commas, each on its first '='; a pair without '=' is skipped (Asterisk
    logs a warning)."""
    pairs = {}
    for pair in data.split(","):
        name, equals, value = pair.partition("=")
        if equals:
            pairs[name] = value
    return pairs


def _exec(ch: FakeChannel, argv):
    if len(argv) < 2:
        return None
    app, data = argv[1].lower(), argv[2] if len(argv) > 2 else ""
    if app == "noop":
        return "200 result=0"
    if app == "set" and "=" in data:
        name, value = data.split("=", 1)
        ch.write(name, value)
        return "200 result=0"
    if app == "mset":
        for name, value in mset_pairs(data).items():
            ch.write(name, value)
        return "200 result=0"
    return "200 result=-2"


def _get_full_variable(ch: FakeChannel, argv):
    if len(argv) not in (4, 5):
        return None
    if len(argv) == 5 and argv[4] != ch.name:
        return "200 result=0"  # the fifth word names a channel: unquoted spaces end up here
    return f"200 result=1 ({ch.substitute(argv[3])})"


def _get_variable(ch: FakeChannel, argv):
    if len(argv) != 3:
        return None
    value = ch.read(argv[2])
    if value is None:
        return "200 result=0"
    value = value.encode("utf-8")[:GET_VARIABLE_BYTES].decode("utf-8", "ignore")
    return f"200 result=1 ({value})"


def _hangup(ch: FakeChannel, argv):
    if len(argv) not in (1, 2):
        return None
    if len(argv) == 2 and argv[1] != ch.name:
        return "200 result=-1"
    ch.hangup()
    return "200 result=1"


def _set_variable(ch: FakeChannel, argv):
    if len(argv) != 4:
        return None
    ch.write(argv[2], argv[3])
    return "200 result=1"


def _verbose(ch: FakeChannel, argv):
    return "200 result=1" if len(argv) in (2, 3) else None


def _stream_file(ch: FakeChannel, argv):
    return "200 result=0 endpos=0" if 4 <= len(argv) <= 6 else None


def _wait_for_digit(ch: FakeChannel, argv):
    return "200 result=0" if len(argv) == 4 else None


# (words, allowed on a dead channel, handler): the dead flags are res_agi.c's.
_COMMANDS: list[tuple[tuple[str, ...], bool, Callable]] = [
    (("answer",), False, _answer),
    (("channel", "status"), False, _channel_status),
    (("exec",), True, _exec),
    (("get", "full", "variable"), True, _get_full_variable),
    (("get", "variable"), True, _get_variable),
    (("hangup",), False, _hangup),
    (("noop",), True, lambda ch, argv: "200 result=0"),
    (("set", "variable"), True, _set_variable),
    (("stream", "file"), False, _stream_file),
    (("verbose",), True, _verbose),
    (("wait", "for", "digit"), False, _wait_for_digit),
]


def execute(channel: FakeChannel, line: str) -> str:
    """Asterisk's answer to one command line (LF already stripped), without the final LF."""
    argv = parse_args(line)
    lowered = [word.lower() for word in argv]
    for words, dead_ok, handler in _COMMANDS:
        if tuple(lowered[: len(words)]) == words:
            if channel.dead and not dead_ok:
                return DEAD_CHANNEL
            response = handler(channel, argv)
            return _usage(words) if response is None else response
    return UNKNOWN_COMMAND
