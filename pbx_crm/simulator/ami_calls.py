"""Synthesized PJSIP calls: AMI event streams in the shapes the recorded captures show.

``ScenarioBuilder`` writes calls as Asterisk 22 reports them: a ``PJSIP/trunk-...`` inbound leg
whose Uniqueid is the Linkedid, one ``PJSIP/<ext>-...`` leg per phone, ring groups, busy
phones, no answer, the caller giving up, two phones answering at once, queue members as
``Local/<ext>@from-queue-...;1`` legs. ``pbx_crm.simulator.ami.FakeAmiServer`` plays them to
its clients; the tests also feed them to the call tracker directly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pbx_crm.telephony.ami_protocol import format_message

STATE_DESC = {"0": "Down", "4": "Ring", "5": "Ringing", "6": "Up", "7": "Busy"}
# The channel snapshot every channel event carries, in Asterisk 22's order.
SNAPSHOT_FIELDS = ("Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
                   "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context",
                   "Exten", "Priority", "Uniqueid", "Linkedid")


@dataclass
class _Channel:
    name: str
    uniqueid: str
    linkedid: str
    state: str
    context: str
    exten: str
    cid_num: str = "<unknown>"
    cid_name: str = "<unknown>"
    cl_num: str = "<unknown>"
    cl_name: str = "<unknown>"
    priority: str = "1"

    def snapshot(self, prefix: str = "") -> list[tuple[str, str]]:
        values = (self.name, self.state, STATE_DESC[self.state], self.cid_num, self.cid_name,
                  self.cl_num, self.cl_name, "en", "", self.context, self.exten, self.priority,
                  self.uniqueid, self.linkedid)
        return [(prefix + key, value) for key, value in zip(SNAPSHOT_FIELDS, values)]


@dataclass
class SyntheticCall:
    """A synthesized call, cut into phases: ``"ringing"`` (up to every phone ringing),
    ``"answer"`` (up to the bridge), ``"end"`` (the hangups); a call nobody answers has no
    ``"answer"`` phase. ``data`` is what to play now (every phase, or up to ``stop_after``),
    ``rest`` what comes after it."""

    linkedid: str
    phases: dict[str, bytes]
    stop_after: str | None = None
    legs: dict[str, str] = field(default_factory=dict)  # extension -> its phone leg's Uniqueid
    trunk: str = ""  # the inbound leg's channel name (its Uniqueid is the linkedid)
    channels: dict[str, str] = field(default_factory=dict)  # extension -> its phone leg's name

    def _split(self) -> int:
        names = list(self.phases)
        return names.index(self.stop_after) + 1 if self.stop_after in names else len(names)

    @property
    def data(self) -> bytes:
        return b"".join(list(self.phases.values())[:self._split()])

    @property
    def rest(self) -> bytes:
        return b"".join(list(self.phases.values())[self._split():])


class _Script:
    def __init__(self):
        self.parts: list[bytes] = []
        self.phases: dict[str, bytes] = {}

    def event(self, name: str, *groups: Iterable[tuple[str, object]],
              privilege: str = "call,all") -> None:
        pairs = [("Event", name), ("Privilege", privilege)]
        for group in groups:
            pairs.extend(group)
        self.parts.append(format_message(pairs))

    def channel_event(self, name: str, channel: _Channel, *extra: tuple[str, object]) -> None:
        self.event(name, channel.snapshot(), extra)

    def dial_event(self, name: str, caller: _Channel, dest: _Channel, *extra) -> None:
        self.event(name, caller.snapshot(), dest.snapshot("Dest"), extra)

    def end_phase(self, name: str) -> None:
        self.phases[name] = b"".join(self.parts)
        self.parts = []


class ScenarioBuilder:
    """Writes realistic AMI event sequences for inbound PJSIP calls.

    The shapes follow the recorded Asterisk 22 calls (see tests/fixtures/asterisk-captures):
    ``Newchannel``, ``DialBegin`` with the dialed leg as ``Dest*``, ``Newstate`` 5 and
    ``DialState RINGING``, ``DialEnd`` with ANSWER / CANCEL / NOANSWER / BUSY, bridge events,
    ``Hangup`` last. The dialed phone leg shows the DID as its caller number and the real
    caller as its connected line, as Dial sets it. Ids grow from one builder to the next call,
    from ``first_id`` (a player that must not reuse another run's uniqueids starts elsewhere).
    ``time_scale``: real seconds per simulated second of the player that plays the calls; the
    durations the events report (talk, hold, ring, billable seconds) are the played ones.
    """

    def __init__(self, epoch: int = 1795900000, trunk: str = "trunk", *, first_id: int = 0,
                 time_scale: float = 1.0):
        self.epoch = epoch
        self.trunk = trunk
        self.time_scale = time_scale
        self._uniqueids = itertools.count(first_id)
        self._suffixes = itertools.count(1)

    def played(self, simulated: float) -> int:
        """A duration as Asterisk reports it, in whole units (it truncates its counts): the
        time a ``simulated`` one takes to play, so the CRM's clock and the report agree."""
        # A product can fall just short of a whole number (100 * 0.29 is 28.999...).
        return int(simulated * self.time_scale + 1e-6)

    def _uniqueid(self) -> str:
        return f"{self.epoch}.{next(self._uniqueids)}"

    def _suffix(self) -> str:
        return f"{next(self._suffixes):08x}"

    # For the writers of other call shapes (pbx_crm.simulator.call_writer): the same ids.
    next_uniqueid, next_suffix = _uniqueid, _suffix

    def new_inbound(self) -> tuple[str, str]:
        """(channel name, uniqueid) of a new inbound trunk leg, for ``ring_pjsip(inbound=...)``:
        Asterisk creates that leg, and runs the lookup on it, before anything is dialed."""
        return f"PJSIP/{self.trunk}-{self._suffix()}", self._uniqueid()

    def ring_pjsip(
        self,
        caller: str,
        did: str,
        extensions: Sequence[str],
        answer: str | None = None,
        *,
        caller_name: str = "",
        busy: Sequence[str] = (),
        also_answer: Sequence[str] = (),
        abandon: bool = False,
        queue: bool = False,
        stop_after: str | None = None,
        inbound: tuple[str, str] | None = None,
        tried_first: Sequence[str] = (),
    ) -> SyntheticCall:
        """An inbound call from ``caller`` to ``did`` ringing ``extensions`` together.

        ``answer``: the extension that picks up (None: nobody; the Dial times out with
        NOANSWER, or the caller gives up first with ``abandon=True``: CANCEL). ``busy``:
        extensions that answer BUSY at once and never ring. ``also_answer``: extensions whose
        ANSWER arrives right after the winner's (two pick-ups "at once"). ``queue``: members are
        reached through ``Local/<ext>@from-queue-...;1`` legs whose ``;2`` half dials the phone.
        ``stop_after="ringing"`` or ``"answer"`` leaves the call there (``data``); the events
        after it are in ``call.rest``, each phase in ``call.phases``. An empty ``caller`` is a
        call without caller ID (``<unknown>``).

        ``inbound``: the trunk leg's (channel name, uniqueid) from ``new_inbound()``.
        ``tried_first``: phones a Dial of their own rang before this one, unanswered (the
        dialplan's owner-first ring): they ring in a ``"first"`` phase, then end NOANSWER and
        hang up as the group's Dial begins.
        """
        if answer is not None and (answer not in extensions or answer in busy):
            raise ValueError(f"answer={answer!r} must be a dialed extension that is not busy")
        if stop_after not in (None, "ringing", "answer"):
            raise ValueError(f"stop_after={stop_after!r}: use 'ringing', 'answer' or None")
        script = _Script()
        trunk_name, linkedid = inbound or self.new_inbound()
        number = caller or "<unknown>"
        name = caller_name or "<unknown>"
        trunk = _Channel(trunk_name, linkedid, linkedid, "4", "from-pstn", did, cid_num=number,
                         cid_name=name)
        script.channel_event("Newchannel", trunk)
        if tried_first:
            self._ring_unanswered_first(script, trunk, did, tried_first, name, number)

        # Each extension: the leg the trunk dials (the phone itself, or a queue's Local ;1),
        # and in queue mode the hop from the Local ;2 half to the phone.
        hops: dict[str, list[tuple[_Channel, _Channel]]] = {}
        phones: dict[str, _Channel] = {}
        for ext in extensions:
            phone = _Channel(f"PJSIP/{ext}-{self._suffix()}", self._uniqueid(), linkedid, "0",
                             "from-internal", ext, cid_num=did, cid_name=name, cl_num=number,
                             cl_name=name)
            phones[ext] = phone
            if queue:
                suffix = self._suffix()
                one = _Channel(f"Local/{ext}@from-queue-{suffix};1", self._uniqueid(), linkedid,
                               "0", "from-queue", ext, cid_num=did, cid_name=name,
                               cl_num=number, cl_name=name)
                two = _Channel(f"Local/{ext}@from-queue-{suffix};2", self._uniqueid(), linkedid,
                               "4", "from-queue", ext, cid_num=number, cid_name=name,
                               cl_num=did, cl_name=name)
                script.channel_event("Newchannel", one)
                script.channel_event("Newchannel", two)
                hops[ext] = [(trunk, one), (two, phone)]
            else:
                hops[ext] = [(trunk, phone)]
        for ext in extensions:
            for caller_leg, dest in hops[ext]:
                if dest is phones[ext]:
                    script.channel_event("Newchannel", dest)
                script.dial_event("DialBegin", caller_leg, dest, ("DialString", ext))

        ringing = [ext for ext in extensions if ext not in busy]
        for ext in busy:
            phone = phones[ext]
            phone.state = "7"
            script.channel_event("Newstate", phone)
            for caller_leg, dest in reversed(hops[ext]):
                script.dial_event("DialEnd", caller_leg, dest, ("DialStatus", "BUSY"))
            self._hangup(script, [dest for _, dest in hops[ext]] + self._halves(hops[ext]),
                         "17", "User busy")
        for ext in ringing:
            for caller_leg, dest in reversed(hops[ext]):
                dest.state = "5"
                script.channel_event("Newstate", dest)
                script.dial_event("DialState", caller_leg, dest, ("DialStatus", "RINGING"))
        script.end_phase("ringing")
        if not ringing:
            self._hangup(script, [trunk], "16", "Normal Clearing")
            script.end_phase("end")
            return self._finish(script, linkedid, phones, stop_after, trunk.name)

        if answer is not None:
            winners = [answer] + [ext for ext in also_answer if ext != answer and ext in ringing]
            for ext in winners:
                for caller_leg, dest in reversed(hops[ext]):
                    dest.state = "6"
                    script.channel_event("Newstate", dest)
                    script.dial_event("DialEnd", caller_leg, dest, ("DialStatus", "ANSWER"))
            losers = [ext for ext in ringing if ext not in winners]
            for ext in losers:
                for caller_leg, dest in reversed(hops[ext]):
                    script.dial_event("DialEnd", caller_leg, dest, ("DialStatus", "CANCEL"))
                self._hangup(script, [dest for _, dest in hops[ext]] + self._halves(hops[ext]),
                             "26", "Answered elsewhere")
            for ext in winners[1:]:  # the late pick-up is hung up by Asterisk
                self._hangup(script, [dest for _, dest in hops[ext]] + self._halves(hops[ext]),
                             "26", "Answered elsewhere")
            trunk.state = "6"
            script.channel_event("Newstate", trunk)
            bridge = f"{linkedid.replace('.', '')}-bridge"
            bridge_fields = [("BridgeUniqueid", bridge), ("BridgeType", "basic"),
                             ("BridgeTechnology", "simple_bridge")]
            script.event("BridgeCreate", bridge_fields, [("BridgeNumChannels", "0")])
            first_hop = hops[answer][0][1]
            script.event("BridgeEnter", bridge_fields, [("BridgeNumChannels", "1")],
                         first_hop.snapshot())
            script.event("BridgeEnter", bridge_fields, [("BridgeNumChannels", "2")],
                         trunk.snapshot())
            script.end_phase("answer")
            self._hangup(script, [dest for _, dest in reversed(hops[answer])]
                         + self._halves(hops[answer]) + [trunk], "16", "Normal Clearing")
        else:
            status = "CANCEL" if abandon else "NOANSWER"
            if abandon:
                script.channel_event("HangupRequest", trunk, ("Cause", "16"))
            for ext in ringing:
                for caller_leg, dest in reversed(hops[ext]):
                    script.dial_event("DialEnd", caller_leg, dest, ("DialStatus", status))
                self._hangup(script, [dest for _, dest in hops[ext]] + self._halves(hops[ext]),
                             "16" if abandon else "0", "Normal Clearing" if abandon else "Unknown")
            self._hangup(script, [trunk], "16", "Normal Clearing")
        script.event("Cdr", [
            ("AccountCode", ""), ("Source", caller), ("Destination", did),
            ("DestinationContext", "from-pstn"), ("CallerID", f'"{caller_name}" <{caller}>'),
            ("Channel", trunk.name), ("Disposition", "ANSWERED" if answer else "NO ANSWER"),
            ("UniqueID", linkedid)], privilege="cdr,all")
        script.end_phase("end")
        return self._finish(script, linkedid, phones, stop_after, trunk.name)

    def _ring_unanswered_first(self, script: _Script, trunk: _Channel, did: str,
                               extensions: Sequence[str], name: str, number: str) -> None:
        """A Dial of its own to ``extensions`` that rings (phase ``"first"``), then times out:
        its DialEnd NOANSWER and hangups open the next phase."""
        phones = [_Channel(f"PJSIP/{ext}-{self._suffix()}", self._uniqueid(), trunk.linkedid, "0",
                           "from-internal", ext, cid_num=did, cid_name=name, cl_num=number,
                           cl_name=name) for ext in extensions]
        for ext, phone in zip(extensions, phones):
            script.channel_event("Newchannel", phone)
            script.dial_event("DialBegin", trunk, phone, ("DialString", ext))
        for phone in phones:
            phone.state = "5"
            script.channel_event("Newstate", phone)
            script.dial_event("DialState", trunk, phone, ("DialStatus", "RINGING"))
        script.end_phase("first")
        for phone in phones:
            script.dial_event("DialEnd", trunk, phone, ("DialStatus", "NOANSWER"))
        self._hangup(script, phones, "0", "Unknown")

    @staticmethod
    def _halves(hops: list[tuple[_Channel, _Channel]]) -> list[_Channel]:
        """The Local ;2 halves (queue mode): they go with their ;1."""
        return [caller_leg for caller_leg, _ in hops[1:]]

    @staticmethod
    def _hangup(script: _Script, channels: list[_Channel], cause: str, text: str) -> None:
        for channel in channels:
            script.channel_event("Hangup", channel, ("Cause", cause), ("Cause-txt", text))

    @staticmethod
    def _finish(script: _Script, linkedid: str, phones: dict[str, _Channel],
                stop_after: str | None, trunk: str = "") -> SyntheticCall:
        return SyntheticCall(linkedid, script.phases, stop_after,
                             {ext: phone.uniqueid for ext, phone in phones.items()}, trunk,
                             {ext: phone.name for ext, phone in phones.items()})


def ring_pjsip(caller: str, did: str, extensions: Sequence[str], answer: str | None = None,
               **options) -> SyntheticCall:
    """One synthesized call from a fresh ``ScenarioBuilder`` (ids start at its epoch)."""
    return ScenarioBuilder().ring_pjsip(caller, did, extensions, answer, **options)
