"""Click-to-call: a seller rings a deal's contact from the CRM.

This module owns one service, ``call_contact``: check that the seller may work the deal, pick
the contact's number and the seller's extension, and ask Asterisk (AMI ``Originate``, async) to
ring the seller's phone first and, when it answers, to dial the contact. The web route and
``pbx-crm call`` call it with the ``originate`` of a connected ``AmiClient``, so the service
holds no connection of its own and tests pass the client they built. With several PBXes,
``originate`` maps each box's name to its session's ``originate`` (``pbx_boxes.Originators``)
and the call goes out on the box the seller's phone is on: their first extension's.

Choices, kept in one place:

* The number goes to the dialplan as E.164 digits without the ``+`` (``6281234567890``), the
  one form that is unambiguous and that every dialplan can match (``_X.``); the outbound route
  adds the trunk's prefix. Not configurable yet (it would need a setting).
* The seller's phone shows the contact's name and number in the caller-ID *name*; the caller-ID
  *number* is the seller's own extension, so the dialplan sees the call as one the seller
  dialed (FreePBX picks the outbound caller ID by that number) and the contact never gets their
  own number presented back.
* The seller's phone is ``<device_technology>/<extension><device_suffix>`` (``PJSIP/101``, or
  ``Local/101@phones`` with the suffix ``@phones``), as the dialplan's ``CRM_DEVICE_TECH`` and
  ``CRM_DEVICE_SUFFIX`` name it, with the settings of the seller's box.
* A seller whose extension rings several devices (a desk phone and a softphone, see
  ``people.users.set_devices``) is rung on all of them, as an inbound call rings them: the
  Originate's channel is ``Local/<extension>@pbx-crm-devices/n``, a context of the shipped
  dialplan that dials ``CRM_SELLER_DIAL`` (``PJSIP/101a&PJSIP/101b``, passed as a channel
  variable). ``/n`` keeps the Local channel in the call, so the hangup handler the outbound
  route pushes on it runs when the call ends, not when Asterisk optimises the channel away.
* ``ChannelId`` is chosen here (``crm-<deal>-<random>``) and ``CRM_DEAL_ID`` goes along as a
  channel variable, so the outbound and hangup hooks can tie the call to this deal.
* The call is recorded here, as an outbound call on the deal under that ChannelId (the seller's
  channel's uniqueid and linkedid), and so counted in the reports' outbound calls whether or
  not the route the Originate takes runs ``[pbx-crm-outbound]``: when it does, the ``outbound``
  hook finds the call recorded and the hangup hook closes it; when it does not, the AMI listener
  closes it when the seller's channel goes.
* A refused or unanswered Originate raises ``ClickToCallFailed`` and writes nothing (the
  caller's transaction rolls back): the seller sees the message at once, and a call that never
  started is not a deal event. A successful one writes the call, a timeline entry and an
  audit row.
* The session stays open while Asterisk answers the Originate (milliseconds; at most the
  client's action timeout), so with SQLite the write lock is held that long: give the client a
  short ``action_timeout``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlmodel import Session

from .ami_client import AmiActionError, AmiError, AmiNotConnected, AmiTimeout, OriginateResult
from ..config import DEFAULT_PBX, PbxBox, Settings
from ..funnel import calls
from ..funnel.contacts import phones_of
from ..funnel.deals import load_deal
from ..enums import TimelineKind
from ..errors import CrmError, ValidationError
from ..rules.funnel import Actor, ensure_can_change_deal
from ..funnel.journal import audit, timeline
from ..models import Contact
from ..people import users
from ..people.language import Words
from ..rules.phones import classify_caller, normalize_number

# Quotes, angle brackets and backslashes would end or escape the caller-ID name; control
# characters (CR/LF) would end the AMI header.
_NOT_IN_CALLER_NAME = re.compile(r'["<>\\\x00-\x1f\x7f]')
CALLER_NAME_LIMIT = 40
# The shipped dialplan's context that rings all of a seller's devices (dialplan/pbx-crm.conf).
DEVICES_CONTEXT = "pbx-crm-devices"


class ClickToCallFailed(CrmError):
    """Asterisk did not take the call: AMI down, the action refused or not answered in time.

    ``reason`` says which (``unreachable``, ``timeout``, ``refused``, ``failed``), so that an
    edge can say it in the user's language; ``extension`` is the seller's phone."""

    status = 502

    def __init__(self, message: str, /, *, reason: str = "failed", extension: str = "",
                 detail: str = ""):
        # The template may name the phone (``%(extension)s``) and Asterisk's words
        # (``%(reason)s``).
        super().__init__(message, extension=extension, reason=detail)
        self.reason, self.extension, self.detail = reason, extension, detail


@dataclass(frozen=True)
class ClickToCall:
    """What the UI shows after the click: the seller's phone is about to ring."""

    action_id: str
    deal_id: int
    contact_id: int
    number: str  # E.164, as stored
    dialed: str  # what the dialplan got as Exten
    extension: str  # the seller's phone
    channel: str
    channel_id: str
    pbx: str = DEFAULT_PBX  # the box the call went out on
    # The Originate's outcome (a Future): the seller's phone answered or not.
    result: OriginateResult | None = field(default=None, compare=False, repr=False)


Originate = Callable[..., OriginateResult]


def call_contact(session: Session, actor: Actor, deal_id: int, *, number: str | None,
                 originate: Originate | Mapping[str, Originate],
                 settings: Settings) -> ClickToCall:
    """Ring ``actor``'s phone, then dial the deal's contact at ``number`` (one of the
    contact's phones; default: their first). ``originate``: one session's, or each box's by
    name."""
    deal, stage = load_deal(session, deal_id)
    ensure_can_change_deal(actor, deal, stage)
    contact = session.get(Contact, deal.contact_id) if deal.contact_id else None
    if contact is None:
        raise ValidationError("Deal #%(deal_id)s has no contact to call; add one first.",
                              deal_id=deal.id, field="contact")
    phones = [phone.e164 for phone in phones_of(session, contact.id)]
    if not phones:
        raise ValidationError("%(name)s has no phone number to call.", name=contact.name,
                              field="phone")
    if number is None:
        e164 = phones[0]
    else:
        e164 = normalize_number(number, region=settings.phone_region)
        if e164 not in phones:
            raise ValidationError("%(number)s is not a number of %(name)s (%(numbers)s).",
                                  number=e164, name=contact.name, numbers=", ".join(phones),
                                  field="phone")
    phone = _extension_of(session, actor)
    extension, box = phone.number, _box_of(settings, phone)
    devices = users.dial_devices(session, extension, phone.pbx)
    channel = device_of(box, extension)
    variables = {"CRM_DEAL_ID": str(deal.id)}
    if devices != [extension]:
        channel = f"Local/{extension}@{DEVICES_CONTEXT}/n"
        variables["CRM_SELLER_DIAL"] = dial_string(box, devices)
    dialed = e164.lstrip("+")
    channel_id = f"crm-{deal.id}-{secrets.token_hex(6)}"
    name = _NOT_IN_CALLER_NAME.sub("", contact.name).strip()
    shown = f"{name[:CALLER_NAME_LIMIT - len(e164) - 1].rstrip()} {e164}".strip()
    if isinstance(originate, Mapping):
        originate = _originate_on(originate, box, phone)
    try:
        result = originate(channel=channel, exten=dialed, context=box.originate_context,
                           caller_id=f'"{shown}" <{extension}>',
                           variables=variables, channel_id=channel_id)
    except AmiError as error:
        raise _failure(error, extension) from error
    calls.record_outbound_call(
        session, uniqueid=channel_id, linkedid=channel_id, extension=extension,
        dialed=classify_caller(e164, region=settings.phone_region,
                               extensions=settings.internal_extensions),
        clicked_deal_id=deal.id, pbx=phone.pbx)
    timeline(session, actor, deal.id, TimelineKind.CALL,
             say=Words("Calling %(number)s from ext %(extension)s", number=e164,
                       extension=extension),
             data={"click_to_call": True, "number": e164, "extension": extension,
                   "action_id": result.action_id, "channel_id": channel_id})
    audit(session, actor, "deal", deal.id, "click_to_call",
          {"number": e164, "extension": extension, "action_id": result.action_id,
           "channel_id": channel_id})
    return ClickToCall(action_id=result.action_id, deal_id=deal.id, contact_id=contact.id,
                       number=e164, dialed=dialed, extension=extension, channel=channel,
                       channel_id=channel_id, pbx=box.name, result=result)


def device_of(settings: Settings | PbxBox, extension: str) -> str:
    """The seller's phone as Originate's ``Channel`` names it, by the settings of its box."""
    return f"{settings.device_technology}/{extension}{settings.device_suffix}"


def dial_string(settings: Settings | PbxBox, devices: list[str]) -> str:
    """Dial's string for ringing all of ``devices`` at once: ``PJSIP/101a&PJSIP/101b``."""
    return "&".join(device_of(settings, device) for device in devices)


def _extension_of(session: Session, actor: Actor) -> users.Extension:
    extension = users.first_extension(session, actor.user_id)
    if extension is None:
        raise ValidationError("%(name)s has no phone extension to ring; ask a head to set "
                              "one.", name=actor.name, field="extension")
    return extension


def _box_of(settings: Settings, phone: users.Extension) -> PbxBox:
    try:
        return settings.pbx(phone.pbx)
    except KeyError:
        raise _no_box(phone) from None


def _originate_on(originate: Mapping[str, Originate], box: PbxBox,
                  phone: users.Extension) -> Originate:
    try:
        return originate[box.name]
    except KeyError:  # a box with no AMI host
        raise _no_box(phone) from None


def _no_box(phone: users.Extension) -> ValidationError:
    return ValidationError("Your phone (ext %(extension)s) is on a PBX the CRM cannot reach "
                           "for click-to-call; ask an administrator.", extension=str(phone),
                           field="extension")


def _failure(error: AmiError, extension: str) -> ClickToCallFailed:
    if isinstance(error, AmiTimeout):
        return ClickToCallFailed("The phone system did not confirm the call in time; your phone "
                                 "(ext %(extension)s) may still ring.", reason="timeout",
                                 extension=extension)
    if isinstance(error, AmiNotConnected):
        return ClickToCallFailed("The phone system is not reachable right now; try again in a "
                                 "minute.", reason="unreachable", extension=extension)
    if isinstance(error, AmiActionError):
        detail = str((error.response.get("Message") if error.response is not None else None)
                     or error)
        return ClickToCallFailed("The phone system refused the call: %(reason)s.",
                                 reason="refused", extension=extension, detail=detail)
    return ClickToCallFailed("The call could not be placed: %(reason)s.", reason="failed",
                             extension=extension, detail=str(error))
