"""The AGI wire protocol against the sessions recorded from Asterisk 22.10.1.

Every recorded ``*.agi-rx.raw`` file (the exact bytes Asterisk sent) is replayed twice: through
our reader, sending the commands the recording script sent, and through the Asterisk emulator,
whose bytes must then equal the recording. The emulator is only worth testing against if it is
faithful, and the reader only worth trusting if it reads what Asterisk really sends.
"""

from __future__ import annotations

import io
import os
import re
import socket
import sys
import threading
from pathlib import Path

import pytest
from asterisk.agi import AGIHangup

from pbx_crm.telephony.agi_protocol import (
    AgiCommandError,
    AgiHangup,
    AgiProtocolError,
    AgiSession,
    check_variable_name,
    escape,
    read_request,
)
from pbx_crm.simulator.agi import (
    FakeChannel,
    fastagi_env_block,
    process_env_block,
    run_fastagi,
    run_process_agi,
)
from pbx_crm.simulator.agi_commands import _exec, parse_args

CAPTURES = Path(__file__).parent / "fixtures" / "asterisk-captures" / "raw"
RECORDINGS = sorted(CAPTURES.glob("*/*.agi-rx.raw"))
# Captures 10-16 were a second run whose recording script sent other command lists (below).
FIRST_RUN = [path for path in RECORDINGS if path.parent.name < "10"]
SECOND_RUN = [path for path in RECORDINGS if path.parent.name >= "10"]
FASTAGI_RECORDINGS = [path for path in FIRST_RUN if "-fastagi-" in path.name]
PROCESS_RECORDINGS = [path for path in FIRST_RUN if "-process-agi-" in path.name]


def key(path: Path) -> str:
    """``01-answered/02``: the scenario and the session's number in it."""
    return f"{path.parent.name}/{path.name[:2]}"


def script_of(path: Path) -> str:
    """The recording script's name: ``incoming`` in ``01-fastagi-incoming-<uniqueid>.agi-rx.raw``"""
    pattern = r"\d\d-(?:fastagi|process-agi)-(.+)-\d+\.\d+\.agi-rx\.raw"
    return re.fullmatch(pattern, path.name).group(1)


def recorded_request(name: str):
    """The request of a recorded session, by its path under ``raw/``."""
    return read_request(io.BytesIO((CAPTURES / name).read_bytes()))


# The ">>>" lines of PART A in the scenario's NN-*.txt: the recording script sent a fixed list
# per script name. One command went out with CRLF; Asterisk kept the CR as part of the name.
CRLF_COMMAND = "GET VARIABLE CRM_DEAL_ID\r"
RECORDED_COMMANDS = {
    "incoming": [
        "GET VARIABLE CALLERID(num)",
        "GET VARIABLE CALLERID(name)",
        "SET VARIABLE CRM_DEAL_ID 42",
        'SET VARIABLE CRM_CONTACT "Budi Santoso"',
        'VERBOSE "hello" 1',
        "GET FULL VARIABLE ${CALLERID(all)}",
        "GET VARIABLE CRM_DEAL_ID",
        "GET FULL VARIABLE ${CRM_CONTACT}",
        "GET VARIABLE NO_SUCH_VARIABLE",
        "GET FULL VARIABLE ${UNIQUEID} ${CHANNEL(linkedid)}",
        'GET FULL VARIABLE "${UNIQUEID} ${CHANNEL(linkedid)}"',
        "CHANNEL STATUS",
        'SET VARIABLE CRM_QUOTED "Budi \\"Bos\\" Santoso"',
        "GET VARIABLE CRM_QUOTED",
        'SET VARIABLE CRM_BACKSLASH "C:\\\\crm\\\\x"',
        "GET VARIABLE CRM_BACKSLASH",
        'SET VARIABLE CRM_PAREN "PT Maju (Jakarta)"',
        "GET VARIABLE CRM_PAREN",
        'SET VARIABLE CRM_UTF8 "Budi Śantoso ✓"',
        "GET VARIABLE CRM_UTF8",
        "SET VARIABLE CRM_UNQUOTED Budi Santoso",
        CRLF_COMMAND,
        "GET VARIABLE",
        "NO SUCH COMMAND",
    ],
    "answered": [
        "GET VARIABLE CALLERID(num)",
        "GET VARIABLE CALLERID(name)",
        "GET VARIABLE ARG1",
        "GET FULL VARIABLE ${CHANNEL(name)}",
        'GET FULL VARIABLE "${UNIQUEID} ${CHANNEL(linkedid)}"',
        "CHANNEL STATUS",
        "SET VARIABLE CRM_AGENT 101",
        'VERBOSE "hello" 1',
        "GET FULL VARIABLE ${CALLERID(all)}",
        "GET FULL VARIABLE ${CONNECTEDLINE(all)}",
    ],
    "hangup": [
        "GET VARIABLE DIALSTATUS",
        "GET VARIABLE HANGUPCAUSE",
        "GET VARIABLE CRM_DEAL_ID",
        'GET FULL VARIABLE "${CDR(disposition)} ${CDR(billsec)} ${CDR(duration)}"',
        'GET FULL VARIABLE "${UNIQUEID} ${CHANNEL(linkedid)}"',
        "SET VARIABLE CRM_LOGGED 1",
        'VERBOSE "hello" 1',
        "GET FULL VARIABLE ${CALLERID(all)}",
        "GET VARIABLE CALLERID(num)",
        "CHANNEL STATUS",
        "ANSWER",
        'STREAM FILE beep ""',
        "WAIT FOR DIGIT 100",
        "EXEC NoOp crm-after-hangup",
        "GET VARIABLE CRM_LOGGED",
    ],
    "incoming-slow": [
        "GET VARIABLE CALLERID(num)",
        "GET VARIABLE CALLERID(num)",
        "SET VARIABLE CRM_DEAL_ID 42",
        'VERBOSE "hello" 1',
        "GET FULL VARIABLE ${CALLERID(all)}",
        "CHANNEL STATUS",
        "ANSWER",
        'STREAM FILE beep ""',
        "GET VARIABLE CRM_DEAL_ID",
    ],
}

DEAD = (511, None, None)
ANY = object()  # a value that depends on the call (caller, uniqueids)
# How each response must parse: (code, result, value).
EXPECTED = {
    "incoming": [
        (200, "1", ANY), (200, "1", ANY), (200, "1", None), (200, "1", None), (200, "1", None),
        (200, "1", ANY), (200, "1", "42"), (200, "1", "Budi Santoso"), (200, "0", None),
        (200, "0", None), (200, "1", ANY), (200, "4", None), (200, "1", None),
        (200, "1", 'Budi "Bos" Santoso'), (200, "1", None), (200, "1", "C:\\crm\\x"),
        (200, "1", None), (200, "1", "PT Maju (Jakarta)"), (200, "1", None),
        (200, "1", "Budi Śantoso ✓"), (520, None, None), (200, "0", None), (520, None, None),
        (510, None, None),
    ],
    "answered": [
        (200, "1", ANY), (200, "1", ANY), (200, "1", ANY), (200, "1", ANY), (200, "1", ANY),
        (200, "6", None), (200, "1", None), (200, "1", None), (200, "1", ANY), (200, "1", ANY),
    ],
    "hangup": [
        (200, ANY, ANY), (200, "1", "16"), (200, ANY, ANY), (200, "1", ANY), (200, "1", ANY),
        (200, "1", None), (200, "1", None), (200, "1", ANY), (200, "1", ANY),
        DEAD, DEAD, DEAD, DEAD, (200, "0", None), (200, "1", "1"),
    ],
    "incoming-slow": [
        (200, "1", ANY), (200, "1", ANY), (200, "1", None), (200, "1", None), (200, "1", ANY),
        DEAD, DEAD, DEAD, (200, "1", "42"),
    ],
}

ENV_KEYS = [
    "agi_request", "agi_channel", "agi_language", "agi_type", "agi_uniqueid", "agi_version",
    "agi_callerid", "agi_calleridname", "agi_callingpres", "agi_callingani2", "agi_callington",
    "agi_callingtns", "agi_dnid", "agi_rdnis", "agi_context", "agi_extension", "agi_priority",
    "agi_enhanced", "agi_accountcode", "agi_threadid",
]


def matches(actual, expected) -> bool:
    return expected is ANY or actual == expected


def env_part(raw: bytes) -> bytes:
    return raw[:raw.index(b"\n\n") + 2]


# ---------------------------------------------------------------------------------------------
# The environment block
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECORDINGS, ids=key)
def test_every_recorded_environment_block_parses_with_its_keys_in_asterisks_order(path):
    raw = path.read_bytes()
    reader = io.BytesIO(raw)
    request = read_request(reader)

    network = ["agi_network", "agi_network_script"] if "-fastagi-" in path.name else []
    count = sum(name.startswith("agi_arg_") for name in request.env)
    args = [f"agi_arg_{n}" for n in range(1, count + 1)]
    assert list(request.env) == network + ENV_KEYS + args
    assert reader.tell() == len(env_part(raw))  # the reader stops at the empty line
    assert request.uniqueid in path.name
    assert request.script == script_of(path)
    assert request.network == ("-fastagi-" in path.name)


def test_a_fastagi_request_carries_the_hook_its_query_and_the_dialplan_arguments():
    request = recorded_request("01-answered/01-fastagi-incoming-1795892488.1.agi-rx.raw")

    assert (request.script, request.query) == ("incoming", {"did": "2150001"})
    assert request.args == ("2150001", "+62 812-3456-7890")
    assert request.env["agi_request"] == "agi://127.0.0.1:4573/incoming?did=2150001"
    assert request.uniqueid == "1795892488.1"
    assert request.channel == "Local/2150001@from-trunk-00000000;2"
    assert (request.callerid, request.calleridname) == ("+62 812-3456-7890", "Budi")
    assert request.callingpres == 0
    assert (request.dnid, request.extension) == ("unknown", "2150001")
    assert request.context == "from-trunk"
    assert request.env["agi_accountcode"] == ""  # empty values are kept


def test_a_process_agi_request_takes_the_hook_from_its_first_argument():
    request = recorded_request("05-process-agi/03-process-agi-hangup-1795892526.17.agi-rx.raw")

    assert (request.script, request.query, request.network) == ("hangup", {}, False)
    assert request.args == ("1795892526.17", "ANSWER", "16")
    assert request.env["agi_request"] == "/var/lib/asterisk/agi-bin/dump.agi"


def test_an_empty_argument_and_withheld_caller_ids_come_through_verbatim():
    hangup = recorded_request(
        "07-caller-hangs-up-during-agi/02-fastagi-hangup-1795892561.29.agi-rx.raw")
    anonymous = recorded_request("06-anonymous/01-fastagi-incoming-1795892540.21.agi-rx.raw")
    nothing = recorded_request("06-anonymous/04-fastagi-incoming-1795892549.25.agi-rx.raw")

    assert hangup.args == ("1795892561.29", "", "16")  # Dial never ran: empty DIALSTATUS
    assert (anonymous.callerid, anonymous.calleridname) == ("anonymous", "Anonymous")
    assert anonymous.callingpres == 35  # presentation prohibited
    assert (nothing.callerid, nothing.calleridname) == ("unknown", "unknown")
    assert nothing.callingpres == 67  # number unavailable
    assert nothing.args == ("2150001", "")


def test_an_environment_block_with_crlf_line_endings_reads_the_same():
    path = CAPTURES / "01-answered/01-fastagi-incoming-1795892488.1.agi-rx.raw"
    raw = env_part(path.read_bytes())

    assert read_request(io.BytesIO(raw.replace(b"\n", b"\r\n"))) == read_request(io.BytesIO(raw))


@pytest.mark.parametrize("broken", [
    b"agi_network: yes\nagi_request: agi://x/incoming\n",  # EOF before the empty line
    b"agi_network: yes\nagi_request: agi://x/incoming",
    b"",
    b"GET / HTTP/1.1\r\nHost: crm\r\n\r\n",  # not Asterisk
    b"agi_network yes\n\n",
])
def test_a_broken_environment_block_is_a_protocol_error(broken):
    with pytest.raises(AgiProtocolError):
        read_request(io.BytesIO(broken))


# ---------------------------------------------------------------------------------------------
# Quoting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "quoted", "stored"), [
    ("Budi Santoso", '"Budi Santoso"', "Budi Santoso"),
    ('Budi "Bos" Santoso', '"Budi \\"Bos\\" Santoso"', 'Budi "Bos" Santoso'),
    ("C:\\crm\\x", '"C:\\\\crm\\\\x"', "C:\\crm\\x"),
    ("PT Maju (Jakarta)", '"PT Maju (Jakarta)"', "PT Maju (Jakarta)"),
    ("Budi Śantoso ✓", '"Budi Śantoso ✓"', "Budi Śantoso ✓"),
    ('x"\nEXEC System reboot', '"x\\"EXEC System reboot"', 'x"EXEC System reboot'),
    ("a\r\nb", '"ab"', "ab"),
    ("a\x00b\tc\x1bd\x7f", '"abcd"', "abcd"),
    ("", '""', ""),
    (42, '"42"', "42"),
])
def test_escape_makes_one_argument_that_asterisk_decodes_back(value, quoted, stored):
    assert escape(value) == quoted
    assert parse_args(f"SET VARIABLE CRM_X {escape(value)}") == ["SET", "VARIABLE", "CRM_X", stored]


def test_escape_matches_what_the_recording_sent_and_asterisk_stored():
    sent = RECORDED_COMMANDS["incoming"]
    assert "SET VARIABLE CRM_QUOTED " + escape('Budi "Bos" Santoso') in sent
    assert "SET VARIABLE CRM_BACKSLASH " + escape("C:\\crm\\x") in sent


@pytest.mark.parametrize("value", ["x" * 2048, '"' * 2048, "\\" * 2048, "Ś" * 2048, "a\\" * 1024])
def test_a_two_kilobyte_value_is_cut_to_a_safe_single_argument(value):
    quoted = escape(value)
    line = f"SET VARIABLE CRM_CONTACT {quoted}\n".encode()

    assert len(quoted.encode()) <= 1024 + 2
    assert len(line) < 2047  # Asterisk's command buffer: a longer line runs its tail as a command
    argv = parse_args(line.decode()[:-1])
    assert len(argv) == 4 and value.startswith(argv[3]) and len(argv[3]) >= 500


@pytest.mark.parametrize("name", ["CRM_DEAL_ID", "CALLERID(name)", "_X1", "CDR(userfield)"])
def test_a_channel_variable_name_is_accepted(name):
    assert check_variable_name(name) == name


@pytest.mark.parametrize("name", ["", "1X", "CRM X", "X\nEXEC", 'A"B', "A=B", "X" * 81, None])
def test_a_name_that_could_break_the_command_is_refused_before_anything_is_sent(name):
    session = AgiSession(io.BytesIO(b"200 result=1\n"), io.BytesIO())
    with pytest.raises(ValueError):
        session.set_variable(name, "value")
    assert session.writer.getvalue() == b""


# ---------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------


def session_over(answers: bytes) -> AgiSession:
    return AgiSession(io.BytesIO(answers), io.BytesIO())


def test_a_value_holding_parentheses_is_read_to_the_last_one():
    session = session_over(
        b"200 result=1 (PT Maju (Jakarta))\n200 result=1 ((x))\n200 result=1 ()\n")

    assert session.get_variable("CRM_PAREN") == "PT Maju (Jakarta)"
    assert session.get_full_variable("${X}") == "(x)"
    assert session.get_variable("CALLERID(num)") == ""  # set, but empty
    assert session.writer.getvalue() == (
        b"GET VARIABLE CRM_PAREN\nGET FULL VARIABLE \"${X}\"\nGET VARIABLE CALLERID(num)\n")


def test_an_unset_variable_is_none():
    assert session_over(b"200 result=0\n").get_variable("NO_SUCH_VARIABLE") is None


def test_510_511_and_520_are_responses_not_exceptions():
    session = session_over(
        b"510 Invalid or unknown command\n"
        b"511 Command Not Permitted on a dead channel or intercept routine\n"
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b"Returns <literal>0</literal> if not set.\n"
        b"Example return code: 200 result=1 (testvariable)\n"
        b"520 End of proper usage.\n"
        b"520 Invalid command syntax.  Proper usage not available.\n"
        b"200 result=1\n"
    )

    unknown = session.command("NO SUCH COMMAND")
    dead = session.command("ANSWER")
    usage = session.command("GET VARIABLE")
    single_usage = session.command("FOO BAR")
    after = session.command("VERBOSE \"x\" 1")

    assert (unknown.code, unknown.result, unknown.value) == (510, None, None)
    assert dead.code == 511
    assert dead.lines == ("511 Command Not Permitted on a dead channel or intercept routine",)
    assert (usage.code, len(usage.lines), usage.lines[-1]) == (520, 4, "520 End of proper usage.")
    assert single_usage.code == 520 and len(single_usage.lines) == 1
    assert (after.code, after.result, after.ok) == (200, "1", True)


def test_a_helper_that_gets_an_error_response_raises_it():
    with pytest.raises(AgiCommandError) as raised:
        session_over(b"510 Invalid or unknown command\n").get_variable("X")
    assert raised.value.response.code == 510


def test_the_inline_hangup_line_is_skipped_and_remembered():
    session = session_over(b"200 result=1 (a)\nHANGUP\n200 result=1\nHANGUP\n")

    assert session.get_variable("A") == "a" and not session.hung_up
    assert session.set_variable("CRM_DEAL_ID", 42).ok
    assert session.hung_up


def test_plain_variables_go_in_one_mset_and_a_name_in_its_own_set_variable():
    session = session_over(b"200 result=0\n200 result=1\n")
    sent = session.set_variables({"CRM_STATUS": "FOUND", "CRM_DEAL_ID": 42, "CRM_CONTACT_ID": 7,
                                  "CRM_CALLER_NAME": 'Budi "Bos", Santoso',
                                  "CRM_OWNER_EXTEN": "", "CRM_NOTHING": None})

    assert session.writer.getvalue().decode().splitlines() == [
        "EXEC MSet CRM_STATUS=FOUND,CRM_DEAL_ID=42,CRM_CONTACT_ID=7",
        'SET VARIABLE CRM_CALLER_NAME "Budi \\"Bos\\", Santoso"']  # empty ones: not sent
    assert [names for names, _response in sent] == [
        "CRM_STATUS,CRM_DEAL_ID,CRM_CONTACT_ID", "CRM_CALLER_NAME"]


def test_a_name_of_letters_and_spaces_goes_in_the_mset_quoted():
    channel = FakeChannel(uniqueid="1795892488.1")
    session = session_over(b"200 result=0\n")
    session.set_variables({"CRM_STATUS": "FOUND", "CRM_CALLER_NAME": "Siti Rahmawati",
                           "CRM_NOTE": "Ñoño Pérez"})

    command = session.writer.getvalue().decode().rstrip("\n")
    assert command == 'EXEC MSet "CRM_STATUS=FOUND,CRM_CALLER_NAME=Siti Rahmawati,' \
                      'CRM_NOTE=Ñoño Pérez"'
    _exec(channel, parse_args(command))  # as Asterisk parses the line, then MSet its data
    assert [channel.read(n) for n in ("CRM_STATUS", "CRM_CALLER_NAME", "CRM_NOTE")] == [
        "FOUND", "Siti Rahmawati", "Ñoño Pérez"]


def test_one_plain_variable_or_a_function_is_set_on_its_own():
    session = session_over(b"200 result=1\n200 result=1\n")
    session.set_variables({"CRM_STATUS": "NEW", "CALLERID(name)": "Budi"})
    assert session.writer.getvalue().decode().splitlines() == [
        'SET VARIABLE CRM_STATUS "NEW"', 'SET VARIABLE CALLERID(name) "Budi"']


def test_where_mset_is_refused_each_variable_is_set_on_its_own():
    session = session_over(b"200 result=-2\n200 result=1\n200 result=1\n")  # no such app
    sent = session.set_variables({"CRM_STATUS": "FOUND", "CRM_DEAL_ID": "42"})
    assert session.writer.getvalue().decode().splitlines() == [
        "EXEC MSet CRM_STATUS=FOUND,CRM_DEAL_ID=42",
        'SET VARIABLE CRM_STATUS "FOUND"', 'SET VARIABLE CRM_DEAL_ID "42"']
    assert [response.result for _names, response in sent] == ["-2", "1", "1"]


def test_a_variable_that_cannot_be_sent_stops_the_set_before_anything_is_sent():
    session = session_over(b"200 result=0\n")
    with pytest.raises(ValueError):
        session.set_variables({"CRM_STATUS": "FOUND", "CRM_DEAL_ID": "1", "BAD NAME": "x"})
    assert session.writer.getvalue() == b""


def test_the_emulator_sets_what_mset_names():
    channel = FakeChannel(uniqueid="1795892488.1")
    assert _exec(channel, ("EXEC", "MSet", "CRM_STATUS=FOUND,CRM_DEAL_ID=42,junk")) == \
        "200 result=0"
    assert (channel.read("CRM_STATUS"), channel.read("CRM_DEAL_ID")) == ("FOUND", "42")


def test_a_response_with_a_crlf_ending_is_tolerated():
    response = session_over(b"200 result=1 (x)\r\n").command("GET VARIABLE X")
    assert (response.value, response.lines) == ("x", ("200 result=1 (x)",))


@pytest.mark.parametrize("answers", [b"", b"HANGUP\n", b"520-Invalid command syntax.\nusage\n"])
def test_eof_while_waiting_for_a_response_is_a_hangup(answers):
    with pytest.raises(AgiHangup) as raised:
        session_over(answers).command("GET VARIABLE X")
    assert isinstance(raised.value, AGIHangup)  # code written against pyst2 catches it too


def test_a_line_that_is_not_a_response_is_a_protocol_error():
    with pytest.raises(AgiProtocolError):
        session_over(b"hello\n").command("NOOP")


@pytest.mark.parametrize(
    "command", ["GET VARIABLE X\nEXEC System reboot", "NOOP\r", "NOOP \0", "VERBOSE " + "x" * 2100]
)
def test_a_command_that_asterisk_would_split_or_cut_is_refused(command):
    session = session_over(b"200 result=0\n")
    with pytest.raises(ValueError):
        session.command(command)
    assert session.writer.getvalue() == b""


def test_finish_half_closes_and_reads_the_trailing_hangup_which_is_no_call_hangup():
    ours, asterisk = socket.socketpair()
    received = []

    def play_asterisk():
        with asterisk:
            while chunk := asterisk.recv(4096):
                received.append(chunk)
            asterisk.sendall(b"HANGUP\n")  # what Asterisk always writes after the script's EOF

    peer = threading.Thread(target=play_asterisk)
    peer.start()
    session = AgiSession.over_socket(ours)
    session.send_line("NOOP")
    session.finish(timeout=5)
    peer.join(timeout=5)
    session.close()
    ours.close()

    assert b"".join(received) == b"NOOP\n"
    assert not peer.is_alive() and not session.hung_up


# ---------------------------------------------------------------------------------------------
# Replaying the recordings through our reader
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FIRST_RUN, ids=key)
def test_each_recorded_session_reads_back_response_for_response(path):
    raw = path.read_bytes()
    reader = io.BytesIO(raw)
    request = read_request(reader)
    session = AgiSession(reader, io.BytesIO())
    commands = RECORDED_COMMANDS[request.script]

    responses = []
    for n, command in enumerate(commands):
        if command == CRLF_COMMAND:
            session.writer.write(command.encode() + b"\n")
            responses.append(session.read_response())
        else:
            responses.append(session.command(command))
        if request.script == "incoming-slow" and request.network:
            assert session.hung_up == (n >= 1)  # the HANGUP came during the 4 s stall

    expected = EXPECTED[request.script]
    for command, response, (code, result, value) in zip(commands, responses, expected):
        assert response.code == code, command
        assert matches(response.result, result) and matches(response.value, value), command
    assert session.writer.getvalue() == "".join(c + "\n" for c in commands).encode()
    # What is left is the end-of-script HANGUP for FastAGI; nothing for process AGI.
    assert reader.read() == (b"HANGUP\n" if request.network else b"")


# The second run's fixed lists (PART A of 10-16): queue members, transfers, click-to-call.
SECOND_RUN_COMMANDS = {
    "incoming": [
        "GET VARIABLE CALLERID(num)", "GET VARIABLE CALLERID(name)", "SET VARIABLE CRM_DEAL_ID 42",
        'GET FULL VARIABLE "${UNIQUEID} ${CHANNEL(linkedid)}"', "CHANNEL STATUS",
    ],
    "answered": [
        "GET VARIABLE ARG1", "GET FULL VARIABLE ${CHANNEL(name)}",
        'GET FULL VARIABLE "${UNIQUEID} ${CHANNEL(linkedid)}"',
        "GET FULL VARIABLE ${CALLERID(all)}", "GET FULL VARIABLE ${CONNECTEDLINE(all)}",
        "GET VARIABLE MEMBERINTERFACE",
        "GET VARIABLE MEMBERNAME", "CHANNEL STATUS",
    ],
    "hangup": [
        "GET VARIABLE DIALSTATUS", "GET VARIABLE HANGUPCAUSE", "GET VARIABLE DIALEDPEERNAME",
        "GET VARIABLE QUEUESTATUS", "GET VARIABLE MEMBERINTERFACE", "GET VARIABLE MEMBERNAME",
        "GET VARIABLE BLINDTRANSFER", "GET VARIABLE ATTENDEDTRANSFER", "GET VARIABLE CRM_DEAL_ID",
        'GET FULL VARIABLE "${CDR(disposition)} ${CDR(billsec)} ${CDR(duration)}"',
        'GET FULL VARIABLE "${UNIQUEID} ${CHANNEL(linkedid)}"',
        "GET FULL VARIABLE ${CALLERID(all)}", "GET FULL VARIABLE ${CONNECTEDLINE(all)}",
    ],
    "outgoing": [
        "GET VARIABLE CALLERID(num)", "GET FULL VARIABLE ${CALLERID(all)}",
        "GET FULL VARIABLE ${CONNECTEDLINE(all)}", "SET VARIABLE CRM_DEAL_ID 42",
        'GET FULL VARIABLE "${UNIQUEID} ${CHANNEL(linkedid)}"', "CHANNEL STATUS",
    ],
}


@pytest.mark.parametrize("path", SECOND_RUN, ids=key)
def test_each_queue_transfer_and_callback_session_reads_back_as_recorded(path):
    reader = io.BytesIO(path.read_bytes())
    request = read_request(reader)
    session = AgiSession(reader, io.BytesIO())

    commands = SECOND_RUN_COMMANDS[request.script]
    responses = {command: session.command(command) for command in commands}

    assert {response.code for response in responses.values()} == {200}
    assert reader.read() == b"HANGUP\n"
    if request.script == "hangup" and "queue" in path.parent.name:
        # fact 23: a queue call leaves DIALSTATUS and QUEUESTATUS unset, answered or abandoned
        assert responses["GET VARIABLE DIALSTATUS"].value is None
        assert responses["GET VARIABLE QUEUESTATUS"].value is None


def test_the_call_dependent_values_read_as_recorded():
    path = CAPTURES / "06-anonymous/05-fastagi-answered-1795892549.26.agi-rx.raw"
    reader = io.BytesIO(path.read_bytes())
    read_request(reader)
    session = AgiSession(reader, io.BytesIO())

    assert session.get_variable("CALLERID(num)") == "2150001"
    assert session.get_variable("CALLERID(name)") == ""  # the environment said "unknown"
    assert session.get_variable("ARG1") == "1795892549.25"


# ---------------------------------------------------------------------------------------------
# Replaying the recordings through the emulator: it must send the very same bytes
# ---------------------------------------------------------------------------------------------

# What each recorded call carried that its AGI environment does not show (PART A of the
# scenario's NN-*.txt): the caller as the answering leg's connected line, and on the hangup
# handler's channel the CDR and whether the lookup AGI had set CRM_DEAL_ID.
CONNECTED_LINE = {
    "01-answered/02": '"Budi" <+62 812-3456-7890>',
    "05-process-agi/02": '"Budi" <+62 812-3456-7890>',
    "06-anonymous/02": '"Anonymous" <anonymous>',
    "06-anonymous/05": '"" <>',
    "08-originate-callerid-header/02": '"Budi" <+6281234567890>',
    "09-fastagi-unreachable/01": '"Budi" <+62 812-3456-7890>',
}
CDR = {
    "01-answered/03": "ANSWERED 3 5",
    "02-missed/02": "FAILED 0 0",
    "03-caller-abandons/02": "NO ANSWER 0 1",
    "04-busy/02": "FAILED 0 0",
    "05-process-agi/03": "ANSWERED 2 6",
    "06-anonymous/03": "ANSWERED 3 5",
    "06-anonymous/06": "ANSWERED 3 5",
    "07-caller-hangs-up-during-agi/02": "FAILED 0 4",
    "07-caller-hangs-up-during-agi/04": "FAILED 0 4",
    "08-originate-callerid-header/03": "ANSWERED 3 5",
    "09-fastagi-unreachable/02": "ANSWERED 3 5",
}
LOOKUP_NEVER_RAN = {"09-fastagi-unreachable/02"}


def recorded_channel(path: Path) -> tuple[FakeChannel, object]:
    """The channel of a recorded session, in the state it was in when the AGI started."""
    request = read_request(io.BytesIO(path.read_bytes()))
    env = request.env
    inbound = request.args[0] if request.script in ("answered", "hangup") else request.uniqueid
    # The far-end ;1 Local leg was created just before the inbound leg (README: how the calls
    # were made), so the call's linkedid is the inbound uniqueid's counter minus one.
    epoch, counter = inbound.rsplit(".", 1)
    channel = FakeChannel(
        name=env["agi_channel"], uniqueid=request.uniqueid, linkedid=f"{epoch}.{int(counter) - 1}",
        callerid=None if env["agi_callerid"] == "unknown" else env["agi_callerid"],
        calleridname=None if env["agi_calleridname"] == "unknown" else env["agi_calleridname"],
        callingpres=int(env["agi_callingpres"]), context=env["agi_context"],
        extension=env["agi_extension"], priority=env["agi_priority"], type=env["agi_type"],
        language=env["agi_language"], dnid=env["agi_dnid"], rdnis=env["agi_rdnis"],
        accountcode=env["agi_accountcode"], threadid=env["agi_threadid"],
        up=request.script == "answered", dead=request.script == "hangup",
    )
    if request.script == "answered":
        channel.variables.update({"ARG1": inbound, "CONNECTEDLINE(all)": CONNECTED_LINE[key(path)]})
    if request.script == "hangup":
        _, dialstatus, cause = request.args
        if dialstatus:
            channel.variables["DIALSTATUS"] = dialstatus
        channel.variables["HANGUPCAUSE"] = cause
        if key(path) not in LOOKUP_NEVER_RAN:
            channel.variables["CRM_DEAL_ID"] = "42"
        disposition, billsec, duration = CDR[key(path)].rsplit(" ", 2)
        channel.variables["CDR(disposition)"] = disposition
        channel.variables["CDR(billsec)"] = billsec
        channel.variables["CDR(duration)"] = duration
    return channel, request


def play_recording_script(listener: socket.socket, commands: list[str]) -> None:
    """The recording's FastAGI side: send the fixed command list, then half-close."""
    conn, _ = listener.accept()
    with conn:
        session = AgiSession.over_socket(conn)
        read_request(session.reader)
        for command in commands:
            if command == CRLF_COMMAND:
                session.writer.write(command.encode() + b"\n")
                session.writer.flush()
                session.read_response()
            else:
                session.command(command)
        session.finish(timeout=5)
        session.close()


@pytest.mark.parametrize("path", FASTAGI_RECORDINGS, ids=key)
def test_the_emulator_answers_a_fastagi_session_byte_for_byte_as_asterisk_did(path):
    channel, request = recorded_channel(path)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        commands = RECORDED_COMMANDS[request.script]
        script = threading.Thread(target=play_recording_script, args=(listener, commands))
        script.start()
        transcript = run_fastagi(
            ("127.0.0.1", port), request.env["agi_network_script"], request.args, channel,
            hangup_after_commands=1 if request.script == "incoming-slow" else None,
        )
        script.join(timeout=5)

    recorded = path.read_bytes().replace(b"127.0.0.1:4573/", f"127.0.0.1:{port}/".encode())
    assert transcript.wire == recorded
    assert transcript.agistatus == ("HANGUP" if request.script == "incoming-slow" else "SUCCESS")


RECORDING_SCRIPT = """#!{python}
import os, re, signal, sys
signal.signal(signal.SIGHUP, signal.SIG_IGN)
stdin = sys.stdin.buffer
while stdin.readline() not in (b"\\n", b""):
    pass
with open(os.environ["RECORDED_COMMANDS"], encoding="utf-8", newline="") as listing:
    commands = listing.read().split("\\n\\x00")
for command in commands:
    os.write(1, command.encode() + b"\\n")
    line = stdin.readline()
    while line[3:4] == b"-":
        line = stdin.readline()
"""


@pytest.mark.parametrize("path", PROCESS_RECORDINGS, ids=key)
def test_the_emulator_answers_a_process_agi_session_byte_for_byte_as_asterisk_did(path, tmp_path):
    channel, request = recorded_channel(path)
    script = tmp_path / "dump.agi"
    script.write_text(RECORDING_SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    commands = tmp_path / "commands"
    commands.write_text("\n\x00".join(RECORDED_COMMANDS[request.script]), encoding="utf-8")

    transcript = run_process_agi(script, request.script, request.args, channel,
                                 env={"RECORDED_COMMANDS": str(commands)},
                                 hangup_after=1 if request.script == "incoming-slow" else None)

    recorded = path.read_bytes().replace(b"/var/lib/asterisk/agi-bin/dump.agi", os.fsencode(script))
    assert transcript.wire == recorded, transcript.stderr
    assert transcript.returncode == 0
    # 07(B): SIGHUP, and no HANGUP line (the recorded bytes above have none)
    assert transcript.hangup_notified == (request.script == "incoming-slow")


@pytest.mark.parametrize("path", FIRST_RUN, ids=key)
def test_the_emulators_environment_block_is_the_recorded_one(path):
    channel, request = recorded_channel(path)
    recorded = env_part(path.read_bytes())
    if request.network:
        address = ("127.0.0.1", 4573)
        ours = fastagi_env_block(channel, address, request.env["agi_network_script"], request.args)
    else:
        script_path = request.env["agi_request"]
        ours = process_env_block(channel, script_path, [request.script, *request.args])

    assert list(read_request(io.BytesIO(ours)).env) == list(request.env)
    assert ours == recorded
