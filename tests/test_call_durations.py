"""Calls shown as they were: the talk a call's timeline shows is the one the PBX counted, and a
call ends when its last channel went, not when the CRM got round to writing it.

The AMI listener closes a call the hangup hook did not close after a grace (``hangup_grace``,
5 s by default). Capture 01 is a real Asterisk 22 call: ext 101 rings 2 s, answers and talks
3.5 s (``ANSWEREDTIME_MS`` 3501), and the CDR bills 3 s; the CRM once showed it as "8 s", the
grace included. A click-to-call whose route runs no hook is closed by the listener the same
way, from the seller's channel. Real sockets on loopback, both databases; the listener is
stopped to write the endings still in their grace, so no test waits the grace out.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from factories import make_contact, make_deal, make_pipeline, make_user, timeline_of
from pbx_crm.config import Settings
from pbx_crm.db import transaction
from pbx_crm.enums import TimelineKind
from pbx_crm.funnel import calls
from pbx_crm.models import Deal, utcnow
from pbx_crm.rules.phones import ExtensionPlan, classify_caller
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.ami_listener import AmiListener
from pbx_crm.telephony.ami_protocol import format_message
from pbx_crm.telephony.click_to_call import call_contact

CAPTURES = Path(__file__).parent / "fixtures" / "asterisk-captures" / "ami"
BUDI = "+62 812-3456-7890"
BUDI_E164 = "+6281234567890"
WAIT = 5.0
GRACE = 60.0  # never waited out here: stop() writes the endings still waiting


@pytest.fixture
def settings(tmp_path, engine, server):
    return Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False),
                    ami_host=server.host, ami_port=server.port, ami_username="crm",
                    ami_secret="secret")


@pytest.fixture
def listener(engine, settings):
    factory = partial(AmiClient, reconnect_delay=0.01, connect_timeout=WAIT,
                      action_timeout=WAIT)
    listener = AmiListener(engine, settings, client_factory=factory, hangup_grace=GRACE)
    listener.start()
    assert listener.wait_until(lambda: listener.resyncs >= 1, WAIT)
    yield listener
    listener.stop()


@pytest.fixture
def ana(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        return make_user(session, "ana", extensions=["101"])


def call_entries(engine, deal_id: int):
    with transaction(engine, read_only=True) as session:
        deal = session.get(Deal, deal_id)
        return [entry for entry in timeline_of(session, deal)
                if entry.kind == TimelineKind.CALL.value and entry.call_id is not None]


def test_a_call_the_hangup_hook_missed_shows_the_talk_the_pbx_billed_without_the_grace(
        engine, ana, server, listener):
    with transaction(engine) as session:  # what the incoming hook recorded before Dial
        lookup = calls.record_inbound_call(
            session, uniqueid="1795892488.1", linkedid="1795892488.0",
            caller=classify_caller(BUDI, region="ID", extensions=ExtensionPlan.parse("100-999")),
            caller_name="Budi", did="2150001", create_deals=True, region="ID")

    server.replay((CAPTURES / "01-answered.ami.raw").read_bytes())
    assert listener.wait_idle(WAIT)
    hung_up = utcnow()  # every channel is gone; the grace has only begun
    listener.stop()  # the call's end, waiting out its grace, is written now

    with transaction(engine, read_only=True) as session:
        call = calls.find_call(session, "1795892488.1")
    assert call.disposition == "answered"
    assert call.answered_at <= call.ended_at <= hung_up  # not when the grace ran out
    [entry] = call_entries(engine, lookup.deal_id)
    assert entry.data["talk_seconds"] == 3  # the CDR's BillableSeconds, not 3 + 5
    assert entry.body == f"Inbound call answered: {BUDI_E164}, 3 s"


def seller_calls_out(channel_id: str, *, dial_status: str, billed: int | None) -> bytes:
    """What Asterisk sends for a click-to-call whose route runs no CRM hook: the seller's
    channel (its uniqueid the Originate's ChannelId) answers, dials the trunk, hangs up."""
    phone = [("Channel", "PJSIP/101-0000000a"), ("Uniqueid", channel_id),
             ("Linkedid", channel_id)]
    trunk = [("Channel", "PJSIP/trunk-0000000b"), ("Uniqueid", "1795892600.11"),
             ("Linkedid", channel_id)]
    dest = [("DestChannel", "PJSIP/trunk-0000000b"), ("DestUniqueid", "1795892600.11")]
    events = [
        ("Newchannel", phone + [("ChannelState", "0"), ("CallerIDNum", "101")]),
        ("Newstate", phone + [("ChannelState", "6")]),
        ("Newchannel", trunk + [("ChannelState", "0"), ("CallerIDNum", "101")]),
        ("DialBegin", phone + [("ChannelState", "6")] + dest + [("DialString", "6281234567890")]),
        ("DialEnd", phone + [("ChannelState", "6")] + dest + [("DialStatus", dial_status)]),
        ("Hangup", trunk + [("Cause", "16")]),
    ]
    if billed is not None:
        events.append(("Cdr", [("Channel", "PJSIP/101-0000000a"),
                               ("DestinationChannel", "PJSIP/trunk-0000000b"),
                               ("Disposition", "ANSWERED"), ("BillableSeconds", str(billed)),
                               ("UniqueID", channel_id)]))
    events.append(("Hangup", phone + [("Cause", "16")]))
    return b"".join(format_message([("Event", name), ("Privilege", "cdr,all" if name == "Cdr"
                                                      else "call,all"), *fields])
                    for name, fields in events)


@pytest.mark.parametrize("dial_status, billed, disposition, body", [
    ("ANSWER", 42, "answered", f"Outbound call answered: {BUDI_E164}, 42 s"),
    ("BUSY", None, "busy", f"Outbound call busy: {BUDI_E164}"),
])
def test_a_click_to_call_no_hook_closed_ends_with_the_seller_s_channel(
        engine, ana, server, listener, settings, dial_status, billed, disposition, body):
    with transaction(engine) as session:
        contact = make_contact(session, phones=(BUDI,))
        deal = make_deal(session, ana, contact_id=contact.id)
    with AmiClient(*server.address, "crm", "secret", connect_timeout=WAIT,
                   action_timeout=WAIT) as client:
        assert client.wait_connected(WAIT)
        with transaction(engine) as session:
            placed = call_contact(session, ana, deal.id, number=None,
                                  originate=client.originate, settings=settings)

    server.replay(seller_calls_out(placed.channel_id, dial_status=dial_status, billed=billed))
    assert listener.wait_idle(WAIT)
    hung_up = utcnow()
    listener.stop()

    with transaction(engine, read_only=True) as session:
        call = calls.find_call(session, placed.channel_id)
    assert (call.direction, call.disposition) == ("outbound", disposition)
    assert call.ended_at <= hung_up
    [entry] = call_entries(engine, deal.id)
    assert entry.body == body
