"""Calls Dial() makes: one seller on two devices, blind and attended transfers, and a
click-to-call whose customer does not answer (captures 13, 14, 15 and 16).

The phones are ``Local/<device>@phones`` legs, as in the captures. What the CRM has to follow is
kept: Dial rings every device of a seller at once and, when one answers, cancels the other
(one ``DialEnd CANCEL``, cause 26) before Dial's ``U()`` hook runs on the answering leg; a
blind transfer sends ``BlindTransfer`` (transferer, transferee, ``Extension``) and the caller's
channel then dials the new extension itself; an attended transfer puts the caller on hold,
consults the target through a ``Local/<ext>@internal`` helper channel that Asterisk creates,
and when the transferer hangs up merges the bridges and sends ``AttendedTransfer`` naming that
helper, not the phone; every leg made after a transfer keeps the call's Linkedid. A
click-to-call rings the seller's phone first (the Originate), then dials the customer from it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .ami_calls import ScenarioBuilder, _Channel
from .call_writer import RINGING, UP, CallWriter, LocalLeg, ShapedCall, bridge_fields

INTERNAL = "internal"  # the context transfers dial extensions in (BlindTransfer/Atxfer Context)


def two_devices(builder: ScenarioBuilder, caller: str, did: str,
                devices: Sequence[str] = ("101a", "101b"), answer: str = "101b", *,
                caller_name: str = "", ring_seconds: float = 2.0, talk_seconds: int = 3,
                inbound: tuple[str, str] | None = None) -> ShapedCall:
    """One Dial ringing ``devices`` (a seller's desk phone and softphone), ``answer`` picking
    up. Phases: ``"ringing"``, ``"answered"`` (the answered hook), ``"talk"``, ``"hangup"``
    (the hangup hook), ``"gone"``."""
    if answer not in devices:
        raise ValueError(f"answer={answer!r} is not one of {list(devices)}")
    w = CallWriter(builder, caller=caller, caller_name=caller_name, did=did)
    w.trunk_leg(inbound)
    legs = _dial(w, w.inbound, devices)
    w.phase("ringing", wait=ring_seconds)
    winner = legs[answer]
    bridge = _answer(w, w.inbound, winner, [leg for d, leg in legs.items() if d != answer])
    w.phase("talk", wait=talk_seconds)
    _phone_hangs_up(w, winner, bridge)
    w.handler_runs()
    w.phase("hangup", hook="hangup")
    for device, leg in legs.items():
        w.inbound_cdr(leg.one, "ANSWERED" if leg is winner else "NO ANSWER",
                      talk_seconds if leg is winner else 0)
    w.inbound_gone()
    w.phase("gone")
    return w.finish({device: leg.one for device, leg in legs.items()},
                    answered_leg=(winner.one.name, winner.one.uniqueid), answered_by=answer,
                    dialstatus="ANSWER", answered_time=talk_seconds)


def blind_transfer(builder: ScenarioBuilder, caller: str, did: str, seller: str = "101",
                   to: str = "102", *, caller_name: str = "", ring_seconds: float = 2.0,
                   talk_seconds: int = 2, target_ring_seconds: float = 2.0,
                   target_talk_seconds: int = 3,
                   inbound: tuple[str, str] | None = None) -> ShapedCall:
    """``seller`` answers, talks ``talk_seconds``, then transfers the caller blind to ``to``
    (AMI BlindTransfer, or the phone's transfer key), who answers and talks. Phases:
    ``"ringing"``, ``"answered"`` (hook), ``"talk"``, ``"transferred"`` (``to`` rings),
    ``"talk-2"``, ``"hangup"`` (hook), ``"gone"``."""
    w = CallWriter(builder, caller=caller, caller_name=caller_name, did=did)
    w.trunk_leg(inbound)
    first = _dial(w, w.inbound, [seller])[seller]
    w.phase("ringing", wait=ring_seconds)
    bridge = _answer(w, w.inbound, first, [])
    w.phase("talk", wait=talk_seconds)

    w.event("Unhold", first.one)
    w.script.event("BlindTransfer", [("Result", "Success")], first.one.snapshot("Transferer"),
                   w.inbound.snapshot("Transferee"), bridge_fields(bridge, 2),
                   [("IsExternal", "Yes"), ("Context", INTERNAL), ("Extension", to)])
    w.bridge("BridgeLeave", bridge, first.one, 1)
    w.event("HangupRequest", first.two, ("Cause", "16"))
    w.hangup(first.one, "16")
    w.bridge("BridgeLeave", bridge, w.inbound, 0)
    w.bridge_destroy(bridge)
    w.cdr(first.two, "ANSWERED", billsec=talk_seconds)
    # The caller's own channel runs [internal] <to>: a Dial of its own.
    second = _dial(w, w.inbound, [to])[to]
    w.hangup(first.two, "16", request="SoftHangupRequest")
    w.phase("transferred", wait=target_ring_seconds)
    w.state(second.two, UP)
    w.state(second.one, UP)
    w.dial("DialEnd", w.inbound, second.one, ("DialStatus", "ANSWER"))
    bridge = w.bridge_create()
    w.bridge("BridgeEnter", bridge, second.one, 1)
    w.bridge("BridgeEnter", bridge, w.inbound, 2)
    w.phase("talk-2", wait=target_talk_seconds)
    _phone_hangs_up(w, second, bridge)
    w.handler_runs()
    w.phase("hangup", hook="hangup")
    w.inbound_cdr(first.one, "ANSWERED", talk_seconds)
    w.inbound_cdr(second.one, "ANSWERED", target_talk_seconds, destination=to)
    w.inbound_gone()
    w.phase("gone")
    return w.finish({seller: first.one, to: second.one},
                    answered_leg=(first.one.name, first.one.uniqueid), answered_by=seller,
                    dialstatus="ANSWER", answered_time=target_talk_seconds,
                    transfer=("blind", seller, to))


def attended_transfer(builder: ScenarioBuilder, caller: str, did: str, seller: str = "101",
                      to: str = "102", *, caller_name: str = "", ring_seconds: float = 2.0,
                      talk_seconds: int = 2, target_ring_seconds: float = 2.0,
                      consult_seconds: int = 2, target_talk_seconds: int = 4,
                      inbound: tuple[str, str] | None = None) -> ShapedCall:
    """``seller`` answers, puts the caller on hold and calls ``to`` (features.conf atxfer,
    Dial option t), talks to them, then hangs up: the caller is now with ``to``. Phases:
    ``"ringing"``, ``"answered"`` (hook), ``"talk"``, ``"consulting"`` (``to`` rings),
    ``"consultation"``, ``"transferred"``, ``"hangup"`` (hook), ``"gone"``."""
    w = CallWriter(builder, caller=caller, caller_name=caller_name, did=did)
    w.trunk_leg(inbound)
    first = _dial(w, w.inbound, [seller])[seller]
    w.phase("ringing", wait=ring_seconds)
    original = _answer(w, w.inbound, first, [])
    w.phase("talk", wait=talk_seconds)

    # The atxfer code, then the number: DTMF on the seller's leg; the caller hears music.
    digits = ["*", "2", *to]
    for digit in digits[:2]:
        _dtmf(w, first.one, digit)
    w.event("Hold", first.one)
    w.event("MusicOnHoldStart", w.inbound, ("Class", "default"))
    for digit in digits[2:]:
        _dtmf(w, first.one, digit)
    helper = _helper(w, to)
    consult = w.bridge_create()
    w.caller_id(helper.two)
    w.script.event("LocalBridge", helper.one.snapshot("LocalOne"),
                   helper.two.snapshot("LocalTwo"),
                   [("Context", INTERNAL), ("Exten", to), ("LocalOptimization", "Yes")])
    target = _dial(w, helper.two, [to], ring=False)[to]
    w.state(target.one, RINGING)
    w.event("NewConnectedLine", helper.one)
    w.bridge("BridgeEnter", consult, helper.one, 1)
    w.bridge("BridgeLeave", original, first.one, 1)
    w.bridge("BridgeEnter", consult, first.one, 2)
    w.event("NewConnectedLine", first.one)
    w.state(helper.one, RINGING)
    w.dial("DialState", None, helper.one, ("DialStatus", "RINGING"))
    w.dial("DialState", helper.two, target.one, ("DialStatus", "RINGING"))
    w.phase("consulting", wait=target_ring_seconds)

    w.state(target.two, UP)
    w.state(target.one, UP)
    w.dial("DialEnd", helper.two, target.one, ("DialStatus", "ANSWER"))
    w.state(helper.two, UP)
    far = w.bridge_create()
    w.state(helper.one, UP)
    w.dial("DialEnd", None, helper.one, ("DialStatus", "ANSWER"))
    w.bridge("BridgeEnter", far, target.one, 1)
    w.bridge("BridgeEnter", far, helper.two, 2)
    w.phase("consultation", wait=consult_seconds)

    # The seller hangs up: that completes the transfer.
    w.hangup(first.two, "16", request="SoftHangupRequest")
    w.event("HangupRequest", first.one, ("Cause", "16"))
    w.caller_id(first.two)
    w.bridge("BridgeLeave", consult, first.one, 1)
    w.cdr(first.two, "ANSWERED", billsec=talk_seconds + consult_seconds)
    w.script.event("BridgeMerge", bridge_fields(original, 1, "To"),
                   bridge_fields(consult, 1, "From"))
    w.bridge("BridgeLeave", consult, helper.one, 0)
    w.event("MusicOnHoldStop", w.inbound)
    w.bridge("BridgeEnter", original, helper.one, 2)
    w.script.event(
        "AttendedTransfer", [("Result", "Success")], first.one.snapshot("OrigTransferer"),
        bridge_fields(original, 2, "Orig"), first.one.snapshot("SecondTransferer"),
        bridge_fields(consult, 0, "Second"), w.inbound.snapshot("Transferee"),
        helper.one.snapshot("TransferTarget"),
        [("IsExternal", "No"), ("DestType", "Bridge"), ("DestBridgeUniqueid", original)])
    w.bridge_destroy(consult)
    w.hangup(first.one, "16")
    w.event("NewConnectedLine", w.inbound)
    w.cdr(first.one, "ANSWERED", billsec=talk_seconds + consult_seconds)
    w.event("NewConnectedLine", helper.one)
    w.event("NewConnectedLine", target.one)
    w.caller_id(target.two)
    w.phase("transferred", wait=target_talk_seconds)

    # The target hangs up: their phone, the helper's halves, the caller.
    w.event("SoftHangupRequest", target.two, ("Cause", "16"))
    w.event("HangupRequest", target.one, ("Cause", "16"))
    w.hangup(target.two, "16")
    w.cdr(target.two, "ANSWERED", billsec=consult_seconds + target_talk_seconds)
    w.caller_id(helper.two)
    w.bridge("BridgeLeave", far, target.one, 1)
    w.hangup(target.one, "16")
    w.bridge("BridgeLeave", far, helper.two, 0)
    w.event("SoftHangupRequest", helper.two, ("Cause", "16"))
    w.event("HangupRequest", helper.one, ("Cause", "16"))
    w.hangup(helper.two, "16")
    w.bridge_destroy(far)
    w.cdr(helper.two, "ANSWERED", billsec=consult_seconds + target_talk_seconds)
    w.bridge("BridgeLeave", original, helper.one, 1)
    w.hangup(helper.one, "16")
    w.bridge("BridgeLeave", original, w.inbound, 0)
    w.bridge_destroy(original)
    w.handler_runs()
    w.phase("hangup", hook="hangup")
    w.cdr(helper.one, "ANSWERED", billsec=target_talk_seconds)
    # The caller's leg bills the seller up to the hold, then the helper channel (the target).
    w.inbound_cdr(first.one, "ANSWERED", talk_seconds)
    w.inbound_cdr(helper.one, "ANSWERED",
                  round(target_ring_seconds) + consult_seconds + target_talk_seconds)
    talked = talk_seconds + round(target_ring_seconds) + consult_seconds + target_talk_seconds
    w.inbound_gone(cdrs_first=True)
    w.phase("gone")
    return w.finish({seller: first.one, to: target.one},
                    answered_leg=(first.one.name, first.one.uniqueid), answered_by=seller,
                    dialstatus="ANSWER", answered_time=talked,
                    transfer=("attended", seller, to))


def click_to_call_unanswered(builder: ScenarioBuilder, seller: str, number: str, *,
                             seller_name: str = "", seller_ring_seconds: float = 2.0,
                             customer_timeout: int = 10, pstn: str = "pstn") -> ShapedCall:
    """The CRM's Originate rings ``seller``'s phone; once they answer, their channel dials
    ``number``, which rings ``customer_timeout`` seconds and gives up (NOANSWER). The seller's
    channel (the call's first: its Uniqueid is the Linkedid) carries the hangup handler.
    Phases: ``"ringing"``, ``"answered"`` (the outbound hook), ``"dialling"``, ``"hangup"``
    (the hangup hook), ``"gone"``."""
    w = CallWriter(builder, caller=number, caller_name=seller_name, did=number)
    phone = w.local_leg(seller)
    w.linkedid = phone.one.uniqueid
    w.inbound = phone.one
    w.dial("DialBegin", None, phone.one, ("DialString", f"{seller}@{phone.one.context}"))
    w.state(phone.one, RINGING)
    w.dial("DialState", None, phone.one, ("DialStatus", "RINGING"))
    w.phase("ringing", wait=seller_ring_seconds)
    w.state(phone.two, UP)
    w.state(phone.one, UP)
    w.dial("DialEnd", None, phone.one, ("DialStatus", "ANSWER"))
    w.event("HangupHandlerPush", phone.one, ("Handler", "pbx-crm-hangup,s,1"),
            privilege="dialplan,all")
    w.phase("answered", hook="outbound")
    customer = _dial(w, phone.one, [number], context=pstn)[number]
    w.phase("dialling", wait=customer_timeout)
    w.dial("DialEnd", phone.one, customer.one, ("DialStatus", "NOANSWER"))
    w.event("HangupRequest", customer.two, ("Cause", "0"))
    w.hangup(customer.one, "0")
    w.cdr(customer.two, "FAILED")
    w.hangup(customer.two, "0", request="SoftHangupRequest")
    w.handler_runs()
    w.phase("hangup", hook="hangup")
    w.cdr(phone.one, "NO ANSWER", billsec=customer_timeout, dest_channel=customer.one.name)
    w.event("HangupRequest", phone.two, ("Cause", "16"))
    w.cdr(phone.one, "ANSWERED")
    w.hangup(phone.one, "16")
    w.cdr(phone.two, "ANSWERED", billsec=customer_timeout)
    w.hangup(phone.two, "16", request="SoftHangupRequest")
    w.phase("gone")
    return w.finish({seller: phone.one, number: customer.one}, answered_by=seller,
                    dialstatus="NOANSWER", answered_time=None)


# --- the pieces -------------------------------------------------------------------------------


def _dial(w: CallWriter, caller: _Channel, devices: Sequence[str], *, context: str = "phones",
          ring: bool = True) -> dict[str, LocalLeg]:
    """``Dial(Local/<device>@<context>&...)`` on ``caller``: each device's Local leg and
    DialBegin, then (``ring``) each phone ringing."""
    legs = {}
    for device in devices:
        leg = legs[device] = w.local_leg(device, context)
        w.dial("DialBegin", caller, leg.one, ("DialString", f"{device}@{context}"))
    if ring:
        for leg in legs.values():
            w.state(leg.one, RINGING)
            w.dial("DialState", caller, leg.one, ("DialStatus", "RINGING"))
    return legs


def _answer(w: CallWriter, caller: _Channel, winner: LocalLeg,
            others: Sequence[LocalLeg]) -> str:
    """``winner`` picks up: Dial cancels the other devices, runs its ``U()`` hook on the
    winner (phase ``"answered"``), then bridges it with the caller. Returns the bridge."""
    w.state(winner.two, UP)
    w.state(winner.one, UP)
    for leg in others:
        w.dial("DialEnd", caller, leg.one, ("DialStatus", "CANCEL"))
        w.event("HangupRequest", leg.two, ("Cause", "26"))
        w.cdr(leg.two, "NO ANSWER")
        w.hangup(leg.one, "26")
        w.hangup(leg.two, "26", request="SoftHangupRequest")
    w.phase("answered", hook="answered")
    w.dial("DialEnd", caller, winner.one, ("DialStatus", "ANSWER"))
    w.state(caller, UP)
    bridge = w.bridge_create()
    w.bridge("BridgeEnter", bridge, winner.one, 1)
    w.bridge("BridgeEnter", bridge, caller, 2)
    return bridge


def _phone_hangs_up(w: CallWriter, leg: LocalLeg, bridge: str) -> None:
    """The phone that talked hangs up: its half, its leg, the caller leaves the bridge."""
    w.event("SoftHangupRequest", leg.two, ("Cause", "16"))
    w.event("HangupRequest", leg.one, ("Cause", "16"))
    w.hangup(leg.two, "16")
    w.cdr(leg.two, "ANSWERED")
    w.bridge("BridgeLeave", bridge, leg.one, 1)
    w.hangup(leg.one, "16")
    w.bridge("BridgeLeave", bridge, w.inbound, 0)
    w.bridge_destroy(bridge)


def _dtmf(w: CallWriter, channel: _Channel, digit: str) -> None:
    w.event("DTMFEnd", channel, ("Digit", digit), ("DurationMs", 0), ("Direction", "Received"))


def _helper(w: CallWriter, to: str) -> LocalLeg:
    """The ``Local/<to>@internal`` channel Asterisk creates for an attended transfer: its
    ``;1`` half joins the consultation bridge, its ``;2`` half dials ``to``."""
    suffix = w.builder.next_suffix()
    one = _Channel(f"Local/{to}@{INTERNAL}-{suffix};1", w.builder.next_uniqueid(), w.linkedid,
                   "0", INTERNAL, to)
    two = _Channel(f"Local/{to}@{INTERNAL}-{suffix};2", w.builder.next_uniqueid(), w.linkedid,
                   "4", INTERNAL, to)
    w.event("Newchannel", one)
    w.event("Newchannel", two)
    return LocalLeg(to, one, two)
