"""``answered``: run by Dial's ``U()`` option on the leg that answered. Who picked up?

Dialplan: ``Dial(...,U(pbx-crm-answered^${UNIQUEID}))`` with the subroutine running
``AGI(agi://127.0.0.1:4573/answered,${ARG1})``. On this leg CALLERID is the DID, not the
caller, so the inbound call is named by its uniqueid (ARG1) and the seller by this channel's
device (``PJSIP/101-...`` or ``Local/101@...``): an extension, or one of an extension's
devices (``Local/101b@phones-...;1``, a softphone of 101), which ``calls.record_answer`` reads
as its seller and keeps on the call. The seller becomes the owner of an Unsorted deal. The
bridge waits for this hook: it sets nothing, so the session is one round trip. With several
PBXes the query names the box (``answered?pbx=${CRM_PBX}``), and the extension is that box's.
"""

from pbx_crm.funnel import calls
from pbx_crm.telephony.call_tracker import DeviceMap

from .registry import arg, hook, pbx_of

_devices = DeviceMap()


@hook(call_key=lambda request: arg(request, 1) or request.uniqueid)
def answered(session, request, context):
    extension = _devices(request.channel)
    if extension:
        calls.record_answer(session, uniqueid=arg(request, 1) or request.uniqueid,
                            extension=extension, pbx=pbx_of(request, context.settings),
                            now=context.now)
    return {}
