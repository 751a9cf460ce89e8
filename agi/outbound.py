"""``outbound``: a seller's phone dials out. Log the call on the deal of the dialed number.

Dialplan (the seller phones' outgoing context, before Dial):
``AGI(agi://127.0.0.1:4573/outbound,${EXTEN},${CHANNEL(linkedid)})`` and the same hangup
handler as inbound calls, which closes the call record. Sets ``CRM_DEAL_ID`` (empty when the
number belongs to no open deal).
"""

from pbx_crm import calls
from pbx_crm.call_tracker import DeviceMap
from pbx_crm.phones import classify_caller

from . import arg, hook

_devices = DeviceMap()


@hook(call_key=lambda request: request.uniqueid)
def outbound(session, request, context):
    settings = context.settings
    dialed = classify_caller(arg(request, 1) or request.extension, region=settings.phone_region,
                             extensions=settings.internal_extensions)
    call = calls.record_outbound_call(
        session, uniqueid=request.uniqueid, linkedid=arg(request, 2) or request.uniqueid,
        extension=_devices(request.channel) or request.callerid, dialed=dialed,
        now=context.now)
    return {"CRM_DEAL_ID": str(call.deal_id or "")}
