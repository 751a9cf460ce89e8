"""``hangup``: the inbound (or outbound) channel's hangup handler. How did the call end?

Dialplan: ``Set(CHANNEL(hangup_handler_push)=pbx-crm-hangup,s,1)`` before Dial; the handler runs
``AGI(agi://127.0.0.1:4573/hangup,${UNIQUEID},${DIALSTATUS},${HANGUPCAUSE},${ANSWEREDTIME})``
on the dead channel (SET VARIABLE still works there; nothing else is needed).

After ``Queue()`` DIALSTATUS (and QUEUESTATUS) are unset in this handler, whether a member
answered or the caller gave up: the call counts as answered when an answer was recorded (the
``answered`` hook, run by Queue's gosub, or the AMI listener), never from the empty status.
"""

from pbx_crm.funnel import calls

from .registry import arg, caller_of, hook, pbx_of


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


@hook(call_key=lambda request: arg(request, 1) or request.uniqueid)
def hangup(session, request, context):
    settings = context.settings
    caller = caller_of(request, settings)
    call = calls.record_hangup(
        session, uniqueid=arg(request, 1) or request.uniqueid, dial_status=arg(request, 2),
        hangup_cause=_int_or_none(arg(request, 3)),
        answered_seconds=_int_or_none(arg(request, 4)), caller=caller,
        caller_name=request.calleridname, create_deals=settings.unknown_callers_create_deals,
        region=settings.phone_region, pbx=pbx_of(request, settings), now=context.now)
    return {"CRM_DISPOSITION": call.disposition if call else ""}
