"""AMI framing, proven on the bytes Asterisk 22 really sent (tests/fixtures/asterisk-captures).

Each recorded stream is read back through ``AmiReader`` in awkward chunk sizes and over a real
socket; the edge cases pyst2 gets wrong (repeated ChanVariable, a value holding ": ", LF-only
lines) and header injection through ``format_action`` are checked on their own.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
from pathlib import Path

import pytest

from pbx_crm.telephony.ami_protocol import (
    AmiReader,
    ConnectionClosed,
    format_action,
    parse_message,
    parse_stream,
    split_stream,
)

CAPTURES = Path(__file__).parent / "fixtures" / "asterisk-captures" / "ami"
CAPTURE_FILES = sorted(CAPTURES.glob("*.ami.raw"))
BANNER = "Asterisk Call Manager/11.0.0"


def chunked(data: bytes, seed: int):
    """A recv() that hands out ``data`` in random small pieces, then EOF."""
    rng = random.Random(seed)
    position = 0

    def recv(size: int) -> bytes:
        nonlocal position
        piece = data[position:position + min(size, rng.randint(1, 700))]
        position += len(piece)
        return piece
    return recv


def read_all(reader: AmiReader) -> list:
    return list(reader)


def test_the_fixtures_are_the_recorded_bytes():
    """Checksums from the capture set's PART B markers, listed in the fixtures' README."""
    listed = dict(re.findall(r"\| (\S+\.ami\.raw) \|.*\| ([0-9a-f]{64}) \|",
                             (CAPTURES / "README.md").read_text()))
    assert sorted(listed) == [path.name for path in CAPTURE_FILES]
    for path in CAPTURE_FILES:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[path.name], path.name


@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda path: path.name.split(".")[0])
def test_every_recorded_stream_reads_back_message_by_message(path):
    data = path.read_bytes()
    reader = AmiReader(chunked(data, seed=len(data)))
    assert reader.read_banner() == BANNER
    messages = read_all(reader)
    # The banner has no blank line after it: every "\r\n\r\n" ends exactly one message.
    assert len(messages) == data.count(b"\r\n\r\n")
    assert messages[0].kind == "response" and messages[0]["Message"] == "Authentication accepted"
    assert messages[-1]["Response"] == "Goodbye"
    assert all(message.kind in ("event", "response") for message in messages)
    # The same messages as a whole-buffer parse, and byte-exact blocks that rebuild the stream.
    banner, blocks = split_stream(data)
    assert banner == BANNER
    assert b"".join(blocks) == data[len(BANNER) + 2:]
    assert messages == parse_stream(data)[1]


def test_a_stream_read_over_a_real_socket():
    data = (CAPTURES / "01-answered.ami.raw").read_bytes()
    server, client = socket.socketpair()
    sender = threading.Thread(target=lambda: (server.sendall(data), server.close()))
    sender.start()
    reader = AmiReader.from_socket(client)
    assert reader.read_banner() == BANNER
    events = [message for message in read_all(reader) if message.is_event]
    sender.join()
    client.close()
    assert [event["Event"] for event in events[:3]] == [
        "FullyBooted", "SuccessfulAuth", "Newchannel"]
    dial = next(event for event in events if event["Event"] == "DialBegin" and "Channel" in event)
    assert dial["DestChannel"] == "Local/101@phones-00000001;1"
    assert dial["CallerIDNum"] == "+62 812-3456-7890"
    assert dial["AccountCode"] == ""  # "AccountCode: " is an empty value, not a missing one


def test_a_value_ending_in_cr_is_kept_verbatim():
    """Scenario 01 sent one AGI command with CRLF; AGIExecStart echoes it, CR included."""
    data = (CAPTURES / "01-answered.ami.raw").read_bytes()
    assert b"Command: GET VARIABLE CRM_DEAL_ID\r\r\n" in data
    reader = AmiReader(chunked(data, seed=3))
    reader.read_banner()
    commands = [m["Command"] for m in read_all(reader) if m.get("Event") == "AGIExecStart"]
    assert "GET VARIABLE CRM_DEAL_ID\r" in commands


def test_the_banner_is_a_line_of_its_own_and_the_first_message_follows_it():
    reader = AmiReader(chunked(
        b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\n"
        b"Message: Authentication accepted\r\n\r\n", seed=1))
    assert reader.read_banner() == BANNER
    assert reader.read_message().items() == [
        ("Response", "Success"), ("ActionID", "1"), ("Message", "Authentication accepted")]
    with pytest.raises(ConnectionClosed):
        reader.read_message()


def test_repeated_headers_keep_every_value_in_order():
    message = parse_message(
        b"Event: Newchannel\r\nChannel: PJSIP/101-00000001\r\nChanVariable: CRM_DEAL_ID=42\r\n"
        b"ChanVariable: CRM_STATUS=FOUND\r\nChanVariable: CRM_DEAL_ID=43")
    assert message["ChanVariable"] == "CRM_DEAL_ID=42"
    assert message.get_all("ChanVariable") == [
        "CRM_DEAL_ID=42", "CRM_STATUS=FOUND", "CRM_DEAL_ID=43"]
    assert message.get_all("chanvariable") == message.get_all("ChanVariable")
    assert len(message) == 5


def test_a_value_keeps_everything_after_the_first_colon_and_space():
    message = parse_message(
        b"Event: VarSet\r\nValue: Set(X=a: b): c\r\nMessage:no-space\r\nEmpty: \r\n"
        b"Padded:   two spaces kept \r\nno colon here")
    assert message["Value"] == "Set(X=a: b): c"
    assert message["Message"] == "no-space"
    assert message["Empty"] == ""
    assert message["Padded"] == "  two spaces kept "
    assert message.get_all("") == ["no colon here"]


def test_lf_only_and_mixed_line_ends_are_tolerated():
    data = (b"Asterisk Call Manager/11.0.0\n"
            b"Response: Success\nActionID: a\n\n"
            b"Event: Newstate\r\nChannelState: 5\n\r\n"
            b"\r\n"  # a stray blank line between messages is not a message
            b"Event: Hangup\nUniqueid: 1795892488.0\r\n\n")
    reader = AmiReader(chunked(data, seed=7))
    assert reader.read_banner() == BANNER
    messages = read_all(reader)
    assert [message.name for message in messages] == ["Success", "Newstate", "Hangup"]
    assert messages[1]["ChannelState"] == "5"
    assert messages[2]["Uniqueid"] == "1795892488.0"


def test_kinds_and_case_insensitive_lookup():
    cdr = parse_message(b"Event: Cdr\r\nPrivilege: cdr,all\r\nUniqueID: 1795892488.3")
    assert cdr.kind == "event" and cdr.is_event and not cdr.is_response
    assert cdr["Uniqueid"] == cdr["UNIQUEID"] == "1795892488.3"
    assert "uniqueid" in cdr and "Linkedid" not in cdr
    assert cdr.get("Linkedid") is None
    with pytest.raises(KeyError, match="Linkedid"):
        cdr["Linkedid"]
    assert parse_message(b"Response: Goodbye\r\nActionID: x").kind == "response"
    assert parse_message(b"Output: something").kind == "other"


def test_format_action_writes_repeated_headers_and_the_action_id():
    data = format_action("Originate", {
        "Channel": "PJSIP/101", "Async": True, "Timeout": 30000, "CallerID": None,
        "Variable": ["CALLERID(num)=+62 812-3456-7890", "CRM_DEAL_ID=42"]}, action_id="crm-7")
    assert data == (b"Action: Originate\r\nActionID: crm-7\r\nChannel: PJSIP/101\r\n"
                    b"Async: true\r\nTimeout: 30000\r\n"
                    b"Variable: CALLERID(num)=+62 812-3456-7890\r\nVariable: CRM_DEAL_ID=42\r\n\r\n")
    pairs = format_action("Originate", [("Variable", "A=1"), ("Variable", "B=2")], "crm-8")
    assert parse_message(pairs).get_all("Variable") == ["A=1", "B=2"]
    assert format_action("Ping") == b"Action: Ping\r\n\r\n"


@pytest.mark.parametrize("value", [
    "Budi\r\nAction: Hangup", "Budi\nChannel: PJSIP/trunk", "Budi\r", "\n"])
def test_format_action_refuses_a_line_break_in_a_value(value):
    with pytest.raises(ValueError, match="CallerID.*line break.*inject"):
        format_action("Originate", {"Channel": "PJSIP/101", "CallerID": value}, "crm-9")


@pytest.mark.parametrize("key", ["Call\r\nerID", "Caller: ID", "", " CallerID"])
def test_format_action_refuses_a_bad_header_name(key):
    with pytest.raises(ValueError, match="not a valid AMI header name"):
        format_action("Originate", {key: "x"}, "crm-10")


def test_format_action_takes_name_and_action_id_only_as_arguments():
    with pytest.raises(ValueError, match="ActionID"):
        format_action("Ping", {"ActionID": "mine"})
