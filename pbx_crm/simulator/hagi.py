"""``hagi://``: several FastAGI servers behind one name, reached as Asterisk reaches them.

For ``AGI(hagi://crm.example.com/incoming,...)`` Asterisk (res_agi, ``launch_ha_netscript``)
looks up the SRV records ``_agi._tcp.crm.example.com`` at every AGI it runs and tries their
targets in order (by priority; the targets of one priority in a weighted random order), going
on to the next only when connecting fails (refused, or no answer within its 2 s connect
timeout). A session that started and then broke is not tried again elsewhere. When no target
answers the AGI fails as ``agi://`` does: ``AGISTATUS=FAILURE``.

``Hagi`` plays that for the emulator with targets of one priority and equal weight, each
lookup starting one target further along (the deterministic stand-in for the random draw: the
sessions alternate between the servers). Pass it wherever a FastAGI address goes
(``CallPlayer``, ``agi_incoming``...); ``run_agi`` runs a session at either. ``sessions``
says which target served each session and which refused it first.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .agi import FakeChannel, Transcript, run_fastagi

Address = tuple[str, int]


@dataclass(frozen=True)
class HagiSession:
    script: str
    linkedid: str
    served_by: Address | None  # None: every target refused (AGISTATUS=FAILURE)
    refused_by: tuple[Address, ...]  # tried first, in order, and refused
    at: float  # time.monotonic() when the lookup started
    seconds: float  # spent connecting to the targets that refused
    ended: float  # time.monotonic() when the session ended


class Hagi:
    """SRV targets of one priority and equal weight, as ``hagi://`` reaches them."""

    def __init__(self, targets: Sequence[Address]):
        if not targets:
            raise ValueError("hagi needs at least one target")
        self.targets = [tuple(target) for target in targets]
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self.sessions: list[HagiSession] = []

    def order(self) -> list[Address]:
        """The targets in the order one lookup tries them."""
        with self._lock:
            start = next(self._turn) % len(self.targets)
        return self.targets[start:] + self.targets[:start]

    def run(self, script_with_query: str, args: Sequence[str], channel: FakeChannel,
            **options) -> Transcript:
        started = time.monotonic()
        refused: list[Address] = []
        for target in self.order():
            tried = time.monotonic()
            transcript = run_fastagi(target, script_with_query, args, channel, **options)
            if transcript.agistatus != "FAILURE":  # connected: this target's answer stands
                self._note(script_with_query, channel, target, refused, started, tried)
                return transcript
            refused.append(target)
        self._note(script_with_query, channel, None, refused, started, time.monotonic())
        return transcript

    def _note(self, script, channel, served_by, refused, started, connected) -> None:
        session = HagiSession(script.split("?", 1)[0], channel.linkedid, served_by,
                              tuple(refused), started, connected - started, time.monotonic())
        with self._lock:
            self.sessions.append(session)


def run_agi(address: Address | Hagi, script_with_query: str, args: Sequence[str],
            channel: FakeChannel, **options) -> Transcript:
    """``AGI(agi://host:port/...)`` at one address, or ``AGI(hagi://...)`` through a
    ``Hagi``; the options are ``run_fastagi``'s."""
    if isinstance(address, Hagi):
        return address.run(script_with_query, args, channel, **options)
    return run_fastagi(address, script_with_query, args, channel, **options)
