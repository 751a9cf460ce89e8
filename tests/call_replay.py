"""Replaying the recorded Asterisk calls through the real AMI reader and the call tracker.

Shared by the tracker's tests: ``capture`` reads a recorded stream byte for byte with the real
parser, ``feed_all`` feeds it to a tracker, ``summary`` gives one readable line per signal, and
``replay_through_client`` plays the bytes through the loopback AMI server and the real client.
"""

from __future__ import annotations

import queue
from pathlib import Path

from pbx_crm.simulator.ami import FakeAmiServer
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.ami_protocol import parse_stream
from pbx_crm.telephony.call_tracker import (
    Answered,
    AnswerIgnored,
    CallEnded,
    CallTracker,
    Ringing,
    StoppedRinging,
    Transferred,
)

CAPTURES = Path(__file__).parent / "fixtures" / "asterisk-captures" / "ami"
WAIT = 5.0


def capture(name: str) -> list:
    """The messages of ``ami/<name>.ami.raw``, as the real AMI reader parses its bytes."""
    return parse_stream((CAPTURES / f"{name}.ami.raw").read_bytes())[1]


def feed_all(tracker: CallTracker, messages, now: float = 0.0) -> list:
    return [signal for message in messages for signal in tracker.feed(message, now=now)]


def summary(signals) -> list[str]:
    """One readable line per signal."""
    lines = []
    for s in signals:
        if isinstance(s, Ringing):
            lines.append(f"Ringing {s.extension} from {s.caller_number!r} {s.caller_name!r}")
        elif isinstance(s, Answered):
            lines.append(f"Answered {s.extension}")
        elif isinstance(s, AnswerIgnored):
            lines.append(f"AnswerIgnored {s.extension} (owner {s.owner})")
        elif isinstance(s, StoppedRinging):
            lines.append(f"StoppedRinging {s.extension} {s.status}" + ("" if s.rang else " unrung"))
        elif isinstance(s, Transferred):
            lines.append(f"Transferred {s.from_extension} -> {s.to_extension} {s.kind}")
        elif isinstance(s, CallEnded):
            lines.append(f"CallEnded owner={s.owner} caller={s.caller_number!r} {s.reason}")
    return lines


def replay_through_client(raw: bytes, tracker: CallTracker, count: int, *,
                          events: str = "call,user,cdr") -> list:
    """The first ``count`` signals of a capture played through ``FakeAmiServer`` and an
    ``AmiClient`` logged in with ``events``; fails if any more come."""
    signals: queue.Queue = queue.Queue()
    with FakeAmiServer() as server:
        client = AmiClient(*server.address, "crm", "secret", events=events,
                           on_event=lambda m: [signals.put(s) for s in tracker.feed(m)]).start()
        try:
            assert client.wait_connected(WAIT)
            server.replay(raw)
            got = [signals.get(timeout=WAIT) for _ in range(count)]
            client.ping()  # every replayed event has been read: nothing more is coming
        finally:
            client.close()
        assert server.channels == []
    assert signals.empty()
    return got
