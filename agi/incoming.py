"""``incoming``: an inbound call, before Dial. Who is calling, and whose deal is it?

Dialplan: ``AGI(agi://127.0.0.1:4573/incoming,${EXTEN},${CHANNEL(linkedid)})``; the caller
number, name and presentation come from the AGI environment. Sets ``CRM_STATUS`` (FOUND, NEW,
ANONYMOUS, INTERNAL, CONFLICT; UNAVAILABLE comes from the dispatcher), ``CRM_DEAL_ID``,
``CRM_CONTACT_ID``, ``CRM_CALLER_NAME``, ``CRM_OWNER_EXTEN`` and ``CRM_OWNER_DIAL`` (empty when
unknown: the dialplan then keeps the trunk's name and rings the normal group).
``CRM_OWNER_DIAL`` rings all the devices of a seller with several (a desk phone and a
softphone: ``PJSIP/101a&PJSIP/101b``); for a seller with one it stays empty, and the dialplan
dials the extension's device as it always did.

``answer_incoming`` reads the answer, which goes out once the request is on disk;
``incoming`` then records the call (and makes a new caller's contact and Unsorted deal, and
sends the screen-pop) with what it found. A call that could open no deal (no pipeline yet,
say) is still recorded; the log says why, and what to do, once until a call opens a deal
again.
"""

import logging

from pbx_crm.funnel import calls, pipelines
from pbx_crm.rules.phones import CallerKind
from pbx_crm.telephony.click_to_call import dial_string

from .registry import arg, caller_of, hook, pbx_of

log = logging.getLogger(__name__)

# The reasons logged already by this process: once each, not once a call.
_TOLD: set[str] = set()


def _variables(lookup: calls.CallerLookup, settings, pbx: str | None) -> dict[str, str]:
    devices = list(lookup.owner_devices)
    return {"CRM_STATUS": lookup.status,
            "CRM_DEAL_ID": str(lookup.deal_id or ""),
            "CRM_CONTACT_ID": str(lookup.contact_id or ""),
            "CRM_CALLER_NAME": lookup.caller_name,
            "CRM_OWNER_EXTEN": lookup.owner_extension,
            "CRM_OWNER_DIAL": dial_string(_box(settings, pbx), devices)
            if lookup.owner_extension and devices else ""}


def _box(settings, pbx: str | None):
    """The box's device settings (a box the settings do not know: the default's)."""
    try:
        return settings.pbx(pbx)
    except KeyError:
        return settings


def answer_incoming(connection, request, context):
    settings = context.settings
    caller = caller_of(request, settings)
    pbx = pbx_of(request, settings)
    lookup = calls.lookup_caller(connection, uniqueid=request.uniqueid, caller=caller,
                                 create_deals=settings.unknown_callers_create_deals, pbx=pbx)
    context.memo.update(caller=caller, lookup=lookup)  # what the recording need not redo
    return _variables(lookup, settings, pbx)


def _linkedid(request) -> str:
    return arg(request, 2) or request.uniqueid


def _did(request) -> str:
    return arg(request, 1) or request.query.get("did") or request.dnid


@hook(call_key=lambda request: request.uniqueid, answer=answer_incoming)
def incoming(session, request, context):
    settings = context.settings
    caller = context.memo.get("caller") or caller_of(request, settings)
    pbx = pbx_of(request, settings)
    lookup = calls.record_inbound_call(
        session, uniqueid=request.uniqueid, linkedid=_linkedid(request),
        caller=caller, caller_name=request.calleridname, did=_did(request),
        create_deals=settings.unknown_callers_create_deals, region=settings.phone_region,
        now=context.now, looked_up=context.memo.get("lookup"), pbx=pbx)
    if settings.unknown_callers_create_deals and caller.kind is CallerKind.NUMBER:
        _say_why_no_deal(session, lookup)
    return _variables(lookup, settings, pbx)


def _say_why_no_deal(session, lookup: calls.CallerLookup) -> None:
    """Log once why a caller who should have an open deal now has none."""
    if lookup.deal_id is not None:
        _TOLD.clear()  # it works again: a later breakage is worth a line of its own
        return
    if lookup.status not in (calls.NEW, calls.FOUND):
        return  # a shared number (CONFLICT) opens no deal on purpose
    reason = pipelines.why_calls_open_no_deals(session)
    if reason is not None and reason not in _TOLD:
        _TOLD.add(reason)
        log.warning("calls from new numbers are recorded without a deal: %s. (Said once; the "
                    "calls recorded meanwhile keep no deal, the callers' next calls open one.)",
                    reason)
