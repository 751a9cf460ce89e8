"""``outbound``: a seller's phone dials out. Log the call on the deal of the dialed number.

Dialplan (the seller phones' outgoing context, before Dial):
``AGI(agi://127.0.0.1:4573/outbound,${EXTEN},${CHANNEL(linkedid)},${CRM_DEAL_ID})`` and the
same hangup handler as inbound calls, which closes the call record. ``CRM_DEAL_ID`` is set on
the channel by click-to-call: the call then lands on the deal the seller clicked; otherwise on
the open deal of the dialed number. Sets ``CRM_DEAL_ID`` (empty when there is none).
"""

from pbx_crm.funnel import calls
from pbx_crm.telephony.call_tracker import DeviceMap
from pbx_crm.rules.phones import classify_caller

from .registry import arg, hook, pbx_of

_devices = DeviceMap()


@hook(call_key=lambda request: request.uniqueid)
def outbound(session, request, context):
    settings = context.settings
    dialed = classify_caller(arg(request, 1) or request.extension, region=settings.phone_region,
                             extensions=settings.internal_extensions)
    call = calls.record_outbound_call(
        session, uniqueid=request.uniqueid, linkedid=arg(request, 2) or request.uniqueid,
        extension=_devices(request.channel) or request.callerid, dialed=dialed,
        clicked_deal_id=int(arg(request, 3)) if arg(request, 3).isdigit() else None,
        pbx=pbx_of(request, settings), now=context.now)
    return {"CRM_DEAL_ID": str(call.deal_id or "")}
