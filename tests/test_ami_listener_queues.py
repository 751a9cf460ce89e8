"""Queues, transfers, two devices and click-to-call, as the recorded Asterisk calls 10-16 play
them: the CRM state a seller's day leaves behind.

Each test replays one capture byte for byte through the loopback AMI server into the real
``AmiClient`` + ``AmiListener``, and runs the AGI hooks the capture recorded, with the
environment Asterisk sent them (``raw/<capture>/NN-*.agi-rx.raw``), where they ran: the
``incoming`` lookup before the stream, the ``answered`` hook once a phone answered, the
``hangup`` handler just before the inbound leg's ``HangupHandlerRun``. Then it checks what a
seller and a head see: who owns the Unsorted deal, the call and its legs (who was rung, how
each leg ended, ring times where the queue gives them, who talked how long), the timeline,
the pops sent and withdrawn (event rows per user) and the callback task. Both databases.
"""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import pytest
from sqlmodel import select

from factories import ADMIN, make_contact, make_deal, make_pipeline, make_user, timeline_of
from pbx_crm.agi import HOOKS
from pbx_crm.config import Settings
from pbx_crm.db import transaction
from pbx_crm.enums import TaskKind
from pbx_crm.funnel import call_legs, calls, events
from pbx_crm.models import Call, Deal, Event, Task, utcnow
from pbx_crm.people import users
from pbx_crm.rules.phones import ExtensionPlan, classify_caller
from pbx_crm.telephony.agi_protocol import AgiRequest, read_env
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.ami_listener import AmiListener
from pbx_crm.telephony.dispatcher import HookContext

CAPTURES = Path(__file__).parent / "fixtures" / "asterisk-captures"
BUDI_E164 = "+6281234567890"
WAIT = 5.0


@pytest.fixture
def settings(tmp_path, engine, server):
    return Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False),
                    ami_host=server.host, ami_port=server.port, ami_username="crm",
                    ami_secret="secret")


@pytest.fixture
def sellers(engine):
    """ana 101, budi 102, citra 103, the head hana, and the Sales pipeline: login -> Actor."""
    with transaction(engine) as session:
        make_pipeline(session)
        return {login: make_user(session, login, extensions=extensions, role=role)
                for login, extensions, role in [("ana", ["101"], "seller"),
                                                ("budi", ["102"], "seller"),
                                                ("citra", ["103"], "seller"),
                                                ("hana", [], "head")]}


class Replay:
    """One capture played into a running listener, its AGI hooks run where they ran."""

    def __init__(self, engine, settings, server, name: str, **listener_options):
        self.engine, self.settings, self.server, self.name = engine, settings, server, name
        self.stream = (CAPTURES / "ami" / f"{name}.ami.raw").read_bytes()
        factory = partial(AmiClient, reconnect_delay=0.01, connect_timeout=WAIT,
                          action_timeout=WAIT)
        self.listener = AmiListener(engine, settings, client_factory=factory,
                                    **{"hangup_grace": 0, **listener_options}).start()
        assert self.listener.wait_until(lambda: self.listener.resyncs >= 1, WAIT)

    def hook(self, script: str, *, args: list[str] | None = None):
        """Run the AGI hook ``script`` with the environment the capture recorded for it;
        ``args`` in the order this project's dialplan passes them, where the capture's
        dialplan passed others."""
        raw = next((CAPTURES / "raw" / self.name).glob(f"*-fastagi-{script}-*.agi-rx.raw"))
        env = read_env(io.BytesIO(raw.read_bytes()))
        if args is not None:
            env = {key: value for key, value in env.items() if not key.startswith("agi_arg_")}
            env.update({f"agi_arg_{n}": value for n, value in enumerate(args, 1)})
        hook = "outbound" if script == "outgoing" else script
        with transaction(self.engine) as session:
            return HOOKS[hook].run(session, AgiRequest.from_env(env),
                                   HookContext(self.settings, utcnow()))

    def until_hangup_handler(self) -> None:
        """The call up to the inbound leg's hangup handler: ringing, answers, transfers."""
        self.server.replay(self.stream[:self._handler_at()])
        assert self.listener.wait_idle(WAIT)

    def rest(self) -> None:
        """The hangup handler's events and the hangups: the call ends."""
        self.server.replay(self.stream[self._handler_at():])
        assert self.listener.wait_idle(WAIT)
        assert self.listener.failures == 0

    def _handler_at(self) -> int:
        event = self.stream.index(b"Event: HangupHandlerRun\r\n")
        return self.stream.rindex(b"\r\n\r\n", 0, event) + 4

    def stop(self) -> None:
        self.listener.stop()


@pytest.fixture
def replay(engine, settings, server):
    started = []

    def start(name: str, *, settings: Settings = settings, **options) -> Replay:
        started.append(Replay(engine, settings, server, name, **options))
        return started[-1]

    yield start
    for played in started:
        played.stop()


# --- reading back what a seller and a head see ----------------------------------------------


def pops(engine, kind: str, linkedid: str) -> list[int | None]:
    """Whose browsers got this kind of event for the call, in order (None: the heads)."""
    with transaction(engine, read_only=True) as session:
        return list(session.exec(select(Event.target_user_id).where(
            Event.kind == kind, Event.linkedid == linkedid).order_by(Event.id)))


def ended_as(engine, linkedid: str) -> list[str]:
    """How the ``call_ended`` events of the call said it ended."""
    with transaction(engine, read_only=True) as session:
        return [payload["disposition"] for payload in session.exec(select(Event.payload).where(
            Event.kind == events.CALL_ENDED, Event.linkedid == linkedid))]


def the_call(engine, uniqueid: str) -> tuple[Call, list[tuple]]:
    """The call record, and its legs as (extension, outcome, ring seconds, talk seconds)."""
    with transaction(engine, read_only=True) as session:
        call = calls.find_call(session, uniqueid)
        legs = [(leg.extension, leg.outcome, leg.ring_seconds, leg.talk_seconds)
                for leg in call_legs.legs_of(session, call.id)]
        return call, legs


def calls_of(engine, deal_id: int) -> list[Call]:
    with transaction(engine, read_only=True) as session:
        return list(session.exec(select(Call).where(Call.deal_id == deal_id)))


def owner_of(engine, deal_id: int) -> int | None:
    with transaction(engine, read_only=True) as session:
        return session.get(Deal, deal_id).owner_id


def lines_of(engine, deal_id: int) -> list[str]:
    with transaction(engine, read_only=True) as session:
        return [entry.body for entry in timeline_of(session, session.get(Deal, deal_id))]


def callbacks_of(engine, deal_id: int) -> list[Task]:
    with transaction(engine, read_only=True) as session:
        return list(session.exec(select(Task).where(Task.deal_id == deal_id,
                                                    Task.kind == TaskKind.CALLBACK.value)))


def incoming(played: Replay, *, did: str, linkedid: str) -> int:
    """The lookup, as this project's dialplan calls it (DID, linkedid): a new caller's
    Unsorted deal; returns its id."""
    variables = played.hook("incoming", args=[did, linkedid])
    assert variables["CRM_STATUS"] == calls.NEW
    return int(variables["CRM_DEAL_ID"])


# --- queues -------------------------------------------------------------------------------


def test_ringall_queue_budis_phone_answers_ana_and_citra_ring_and_get_no_missed_call(
        engine, sellers, replay):
    played = replay("10-queue-answered")
    deal_id = incoming(played, did="2150010", linkedid="1796587769.0")
    played.until_hangup_handler()
    played.hook("answered")  # Queue's gosub, on budi's leg
    # Fact 23: after Queue() the handler gets no DIALSTATUS; the answer recorded decides.
    assert played.hook("hangup") == {"CRM_DISPOSITION": "answered"}
    played.rest()

    ana, budi, citra = (sellers[login].user_id for login in ("ana", "budi", "citra"))
    linkedid = "1796587769.0"
    assert sorted(filter(None, pops(engine, events.RINGING, linkedid))) == [ana, budi, citra]
    assert pops(engine, events.STOPPED_RINGING, linkedid) == [ana, citra]  # once each
    assert budi in pops(engine, events.ANSWERED, linkedid)
    assert owner_of(engine, deal_id) == budi  # the member who connected, not the last rung
    call, legs = the_call(engine, "1796587769.1")
    assert [c.id for c in calls_of(engine, deal_id)] == [call.id]  # one call record
    assert (call.disposition, call.answered_exten, call.queue) == ("answered", "102", "sales")
    assert [leg[:2] for leg in legs] == [("101", "cancelled"), ("102", "answered"),
                                         ("103", "cancelled")]
    assert legs[1][2] == 2  # AgentConnect's RingTime
    assert callbacks_of(engine, deal_id) == []  # nobody has a call to return
    assert set(ended_as(engine, linkedid)) == {"answered"}  # no missed pop for anyone
    # The talk as the queue counted it (AgentComplete), which the hangup hook cannot know.
    assert f"Inbound call answered: {BUDI_E164}, 3 s" in lines_of(engine, deal_id)


def test_the_caller_gives_up_in_the_queue_a_missed_call_with_its_hold_time(
        engine, sellers, replay):
    played = replay("11-queue-abandoned")
    deal_id = incoming(played, did="2150010", linkedid="1796587779.8")
    played.until_hangup_handler()
    assert played.hook("hangup") == {"CRM_DISPOSITION": "abandoned"}
    played.rest()

    linkedid = "1796587779.8"
    ana, budi, citra = (sellers[login].user_id for login in ("ana", "budi", "citra"))
    assert pops(engine, events.STOPPED_RINGING, linkedid) == [ana, budi, citra]
    call, legs = the_call(engine, "1796587779.9")
    assert (call.disposition, call.queue, call.hold_seconds) == ("abandoned", "sales", 6)
    assert [leg[:2] for leg in legs] == [("101", "cancelled"), ("102", "cancelled"),
                                         ("103", "cancelled")]
    assert owner_of(engine, deal_id) is None  # still Unsorted
    [callback] = callbacks_of(engine, deal_id)  # one task for the deal, not one per member
    assert (callback.done_at, callback.assignee_id, callback.missed_calls) == (None, None, 1)
    assert (f"Inbound call abandoned: {BUDI_E164}, after 6 s in the queue"
            in lines_of(engine, deal_id))


def test_without_the_hangup_hook_the_listener_closes_the_abandoned_queue_call_the_same(
        engine, sellers, replay):
    played = replay("11-queue-abandoned")
    deal_id = incoming(played, did="2150010", linkedid="1796587779.8")
    played.until_hangup_handler()
    played.rest()  # the hangup hook never reached the CRM
    call, _legs = the_call(engine, "1796587779.9")
    assert (call.disposition, call.hold_seconds) == ("abandoned", 6)
    assert [task.missed_calls for task in callbacks_of(engine, deal_id)] == [1]
    assert (f"Inbound call abandoned: {BUDI_E164}, after 6 s in the queue"
            in lines_of(engine, deal_id))


def test_rrmemory_ana_does_not_answer_budi_does_and_owns_the_deal(engine, sellers, replay):
    played = replay("12-queue-rrmemory-ringnoanswer")
    deal_id = incoming(played, did="2150012", linkedid="1796587789.16")
    played.until_hangup_handler()
    played.hook("answered")
    assert played.hook("hangup") == {"CRM_DISPOSITION": "answered"}
    played.rest()

    linkedid = "1796587789.16"
    assert pops(engine, events.STOPPED_RINGING, linkedid) == [sellers["ana"].user_id]
    assert owner_of(engine, deal_id) == sellers["budi"].user_id
    call, legs = the_call(engine, "1796587789.17")
    assert (call.disposition, call.answered_exten, call.queue) == ("answered", "102",
                                                                   "sales-rr")
    assert [leg[:3] for leg in legs][0] == ("101", "noanswer", 3.0)  # RingTime: 3000 ms
    assert [leg[:2] for leg in legs][1:] == [("102", "answered")]
    assert legs[1][3] == 3  # budi talked 3 s
    assert callbacks_of(engine, deal_id) == []


# --- transfers ----------------------------------------------------------------------------


def _transferred_call(engine, sellers, replay, name: str, *, did: str, linkedid: str,
                      inbound: str) -> tuple[int, Call, list[tuple]]:
    played = replay(name)
    deal_id = incoming(played, did=did, linkedid=linkedid)
    played.until_hangup_handler()
    played.hook("answered")  # Dial's U(), on ana's leg: she answered first
    assert played.hook("hangup") == {"CRM_DISPOSITION": "answered"}
    played.rest()
    call, legs = the_call(engine, inbound)
    return deal_id, call, legs


def test_ana_hands_the_caller_to_budi_blind_the_pop_moves_the_timeline_says_so_talk_split(
        engine, sellers, replay):
    deal_id, call, legs = _transferred_call(
        engine, sellers, replay, "13-blind-transfer", did="2150013",
        linkedid="1796587804.22", inbound="1796587804.23")

    ana, budi = sellers["ana"].user_id, sellers["budi"].user_id
    linkedid = "1796587804.22"
    ended = pops(engine, events.CALL_ENDED, linkedid)
    assert ended[0] == ana  # ana's card ends when she hands the caller over
    assert budi in pops(engine, events.RINGING, linkedid)
    answered = pops(engine, events.ANSWERED, linkedid)
    assert answered[-2:] == [None, budi]  # the heads and budi see budi on the call
    assert owner_of(engine, deal_id) == budi  # the Unsorted deal goes to who has the caller
    lines = lines_of(engine, deal_id)
    assert "Call transferred from Ana to Budi" in lines
    assert lines.index("Taken by Ana") < lines.index("Call transferred from Ana to Budi")
    assert [leg[:2] for leg in legs] == [("101", "answered"), ("102", "answered")]
    # Each talked. (The inbound leg's CDRs come after its Hangup here, so the tracker's clock
    # times the two parts: no time passes in a replay. 14 shows the CDR's split.)
    assert all(leg[3] is not None for leg in legs)
    assert call.disposition == "answered"


def test_attended_transfer_ana_consults_budi_then_leaves_him_the_caller(
        engine, sellers, replay):
    deal_id, call, legs = _transferred_call(
        engine, sellers, replay, "14-attended-transfer", did="2150014",
        linkedid="1796587818.28", inbound="1796587818.29")

    ana, budi = sellers["ana"].user_id, sellers["budi"].user_id
    linkedid = "1796587818.28"
    assert pops(engine, events.CALL_ENDED, linkedid)[0] == ana
    assert pops(engine, events.ANSWERED, linkedid)[-2:] == [None, budi]
    assert owner_of(engine, deal_id) == budi
    assert "Call transferred from Ana to Budi" in lines_of(engine, deal_id)
    assert [leg[:2] for leg in legs] == [("101", "answered"), ("102", "answered")]
    assert [leg[3] for leg in legs] == [2, 8]  # the CDR's two segments: ana 2 s, budi 8 s
    assert call.disposition == "answered"


def citras_customer_calls(engine, sellers, replay, **options) -> int:
    """citra's customer calls; ana answers and hands him to budi. Returns citra's deal."""
    with transaction(engine) as session:
        deal = make_deal(session, sellers["citra"], contact_id=make_contact(session).id)
    played = replay("13-blind-transfer", **options)
    variables = played.hook("incoming", args=["2150013", "1796587804.22"])
    assert (variables["CRM_STATUS"], variables["CRM_DEAL_ID"]) == (calls.FOUND, str(deal.id))
    played.until_hangup_handler()
    played.hook("answered")
    played.hook("hangup")
    played.rest()
    return deal.id


def test_a_deal_with_an_owner_keeps_it_through_a_transfer(engine, sellers, replay):
    deal_id = citras_customer_calls(engine, sellers, replay)
    assert owner_of(engine, deal_id) == sellers["citra"].user_id
    assert "Call transferred from Ana to Budi" in lines_of(engine, deal_id)


def test_with_transfers_move_owner_the_deal_goes_to_the_seller_who_has_the_caller(
        engine, sellers, replay, settings):
    deal_id = citras_customer_calls(engine, sellers, replay,
                                    settings=settings.replace(transfers_move_owner=True))
    assert owner_of(engine, deal_id) == sellers["budi"].user_id
    assert "Assigned to Budi" in lines_of(engine, deal_id)


# --- two devices, one seller ---------------------------------------------------------------


def test_two_devices_ana_has_a_desk_phone_and_a_softphone_one_pop_the_softphone_answers(
        engine, sellers, replay):
    with transaction(engine) as session:
        users.set_devices(session, ADMIN, sellers["ana"].user_id, "101", ["101a", "101b"])
    played = replay("15-ring-group-two-devices-one-extension")
    deal_id = incoming(played, did="2150015", linkedid="1796587835.36")
    played.until_hangup_handler()
    played.hook("answered")  # on the softphone's leg, Local/101b@phones-...;1
    assert played.hook("hangup") == {"CRM_DISPOSITION": "answered"}
    played.rest()

    ana, linkedid = sellers["ana"].user_id, "1796587835.36"
    assert pops(engine, events.RINGING, linkedid) == [None, ana]  # one pop for both phones
    assert pops(engine, events.STOPPED_RINGING, linkedid) == []  # the desk phone is hers too
    assert owner_of(engine, deal_id) == ana
    call, legs = the_call(engine, "1796587835.37")
    assert (call.answered_exten, call.answered_device) == ("101", "101b")
    assert [leg[:2] for leg in legs] == [("101", "answered")]
    with transaction(engine, read_only=True) as session:
        assert [leg.device for leg in call_legs.legs_of(session, call.id)] == ["101b"]


# --- click-to-call ------------------------------------------------------------------------


def test_click_to_call_customer_does_not_answer_missed_outbound_task_stays_open(
        engine, sellers, replay):
    """ana returns Budi's missed call from his deal; her phone answers, Budi's never does."""
    with transaction(engine) as session:
        missed = calls.record_inbound_call(
            session, uniqueid="1796587000.1", linkedid="1796587000.1",
            caller=classify_caller("081234567890", region="ID",
                                   extensions=ExtensionPlan.parse("100-999")),
            caller_name="Budi", did="2150001", create_deals=True, region="ID")
        calls.record_hangup(session, uniqueid="1796587000.1", dial_status="NOANSWER",
                            hangup_cause=16)
        deal_id = missed.deal_id
        # What click-to-call records as the Originate is queued (its ChannelId: the uniqueid).
        calls.record_outbound_call(
            session, uniqueid="1796587845.42", linkedid="1796587845.42", extension="101",
            dialed=classify_caller("081234567890", region="ID",
                                   extensions=ExtensionPlan.parse("100-999")),
            clicked_deal_id=deal_id)
    [callback] = callbacks_of(engine, deal_id)
    played = replay("16-callback-outbound-noanswer")
    assert played.hook("outgoing", args=["081234567890", "1796587845.42", str(deal_id)]) == {
        "CRM_DEAL_ID": str(deal_id)}
    played.until_hangup_handler()
    assert played.hook("hangup") == {"CRM_DISPOSITION": "missed"}
    played.rest()

    call, _legs = the_call(engine, "1796587845.42")
    assert (call.direction, call.disposition, call.answered_at) == ("outbound", "missed", None)
    assert [task.done_at for task in callbacks_of(engine, deal_id)] == [None]
    assert callbacks_of(engine, deal_id)[0].id == callback.id
    assert f"Outbound call missed: {BUDI_E164}" in lines_of(engine, deal_id)
    assert pops(engine, events.ANSWERED, "1796587845.42") == []


def test_click_to_call_no_hangup_hook_the_listener_closes_it_missed(engine, sellers, replay):
    with transaction(engine) as session:
        deal = make_deal(session, sellers["ana"], contact_id=make_contact(session).id)
        calls.record_outbound_call(
            session, uniqueid="1796587845.42", linkedid="1796587845.42", extension="101",
            dialed=classify_caller("081234567890", region="ID",
                                   extensions=ExtensionPlan.parse("100-999")),
            clicked_deal_id=deal.id)
    played = replay("16-callback-outbound-noanswer")
    played.until_hangup_handler()
    played.rest()
    call, _legs = the_call(engine, "1796587845.42")
    assert (call.disposition, call.answered_at) == ("missed", None)
