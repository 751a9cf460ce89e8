"""A seller with a desk phone and a softphone on one extension, on both databases.

Ana's extension 101 rings two devices, 101a (the desk phone) and 101b (the softphone), as in
capture 15. The head sets them on the settings page (or with ``pbx-crm user devices``); a
device name that already rings someone else is refused, in the head's language. When the
softphone answers, ana is the one who answered and the call keeps the device; the lookup tells
the dialplan to ring both devices, and click-to-call rings both.
"""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path

import pytest
from sqlmodel import select

from factories import ADMIN, make_contact, make_deal, make_pipeline, make_user
from pbx_crm.agi import HOOKS
from pbx_crm.components import start_fastagi
from pbx_crm.config import Address, Settings
from pbx_crm.db import transaction
from pbx_crm.errors import Conflict, NotFound, ValidationError
from pbx_crm.funnel import calls, events
from pbx_crm.funnel.deals import load_deal
from pbx_crm.models import Deal, Event, UserExtension, utcnow
from pbx_crm.people import users
from pbx_crm.simulator.agi import FakeChannel, run_fastagi
from pbx_crm.telephony.agi_protocol import AgiRequest, read_env
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.ami_listener import AmiListener
from pbx_crm.telephony.click_to_call import DEVICES_CONTEXT, call_contact
from pbx_crm.telephony.dispatcher import HookContext
from webtools import signed_in

WAIT = 5.0
DIALPLAN = Path(__file__).resolve().parents[1] / "dialplan" / "pbx-crm.conf"
# Capture 15: the inbound leg, and the Dial leg of the softphone that answered.
INBOUND = dict(name="Local/2150015@from-trunk-00000012;2", uniqueid="1796587835.37",
               linkedid="1796587835.36")
SOFTPHONE_LEG = dict(name="Local/101b@phones-00000014;1", uniqueid="1796587835.40",
                     linkedid="1796587835.36")


@pytest.fixture
def team(engine):
    """ana rings on 101, budi on 102, hana is the head; nobody has devices yet."""
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        hana = make_user(session, "hana", role="head")
    return {"ana": ana, "budi": budi, "hana": hana}


def give_ana_two_phones(engine, team) -> None:
    with transaction(engine) as session:
        users.set_devices(session, ADMIN, team["ana"].user_id, "101", ["101a", "101b"])


def devices_of(engine, extension: str) -> str | None:
    with transaction(engine, read_only=True) as session:
        return session.exec(select(UserExtension.devices)
                            .where(UserExtension.extension == extension)).one()


# --- the head sets them ----------------------------------------------------------------------


def test_the_head_gives_anas_extension_a_desk_phone_and_a_softphone_on_the_settings_page(
        web, engine, team):
    head = signed_in(web, "hana")
    ana = team["ana"].user_id
    assert head.post(f"/settings/users/{ana}/devices",
                     {"extension": "101", "devices": "101a, 101b"}).status == 303

    row = re.search(r'<form[^>]*data-extension="101".*?</form>',
                    head.get("/settings").text, re.S).group(0)
    assert 'name="devices" value="101a 101b"' in row
    assert devices_of(engine, "101") == "101a,101b"
    with transaction(engine, read_only=True) as session:
        assert users.device_extensions(session) == {"101a": "101", "101b": "101"}
        assert users.dial_devices(session, "101") == ["101a", "101b"]
        assert users.dial_devices(session, "102") == ["102"]  # budi: his extension itself

    # Emptied, the extension rings itself again.
    assert head.post(f"/settings/users/{ana}/devices",
                     {"extension": "101", "devices": ""}).status == 303
    assert devices_of(engine, "101") is None


def test_a_device_that_rings_someone_else_is_refused_and_nothing_changes(web, engine, team):
    give_ana_two_phones(engine, team)
    head = signed_in(web, "hana")
    budi = team["budi"].user_id

    taken = head.post(f"/settings/users/{budi}/devices",
                      {"extension": "102", "devices": "102a 101b"})
    assert taken.status == 409
    assert "Device 101b already rings ana on extension 101." in taken.text
    anas_number = head.post(f"/settings/users/{budi}/devices",
                            {"extension": "102", "devices": "101"})
    assert anas_number.status == 409
    assert "“101” is an extension of ana: a device needs a name of its own." in anas_number.text
    for name in ("101b@phones", "PJSIP/102a", "102 a;b"):
        badly_named = head.post(f"/settings/users/{budi}/devices",
                                {"extension": "102", "devices": name})
        assert badly_named.status == 400 and "is not a device name" in badly_named.text
    not_his = head.post(f"/settings/users/{budi}/devices",
                        {"extension": "101", "devices": "102a"})
    assert not_his.status == 404 and "This user has no extension 101." in not_his.text
    assert devices_of(engine, "102") is None

    # A seller may not set devices, even their own.
    assert signed_in(web, "ana").post(f"/settings/users/{team['ana'].user_id}/devices",
                                      {"extension": "101", "devices": "101c"}).status == 403
    assert devices_of(engine, "101") == "101a,101b"


def test_a_head_reading_indonesian_is_refused_in_indonesian(web, engine, team):
    give_ana_two_phones(engine, team)
    with transaction(engine) as session:
        users.set_language(session, ADMIN, team["hana"].user_id, "id")
    refused = signed_in(web, "hana").post(f"/settings/users/{team['budi'].user_id}/devices",
                                          {"extension": "102", "devices": "101a"})
    assert refused.status == 409
    assert "Perangkat 101a sudah berdering untuk ana di ekstensi 101." in refused.text


def test_an_extension_keeps_its_devices_and_a_device_is_no_one_elses_extension(engine, team):
    with transaction(engine) as session:
        users.set_devices(session, ADMIN, team["ana"].user_id, "101", ["101a", "201"])
    with transaction(engine) as session:
        users.set_extensions(session, ADMIN, team["ana"].user_id, ["101", "103"])
    assert devices_of(engine, "101") == "101a,201"
    with pytest.raises(Conflict, match="Extension 201 already rings ana"), \
            transaction(engine) as session:
        users.set_extensions(session, ADMIN, team["budi"].user_id, ["102", "201"])
    with pytest.raises(NotFound), transaction(engine) as session:
        users.set_devices(session, ADMIN, team["budi"].user_id, "103", ["103a"])
    with pytest.raises(ValidationError), transaction(engine) as session:
        users.set_devices(session, ADMIN, team["budi"].user_id, "102", ["x" * 41])


def test_a_deactivated_sellers_devices_answer_for_nobody(engine, team):
    give_ana_two_phones(engine, team)
    with transaction(engine) as session:
        users.set_active(session, ADMIN, "ana", False)
    with transaction(engine, read_only=True) as session:
        assert users.device_extensions(session) == {}


def test_an_admin_sets_devices_with_the_cli(engine, team, pbx_crm_at):
    run = functools.partial(pbx_crm_at, engine.url.render_as_string(hide_password=False))
    code, out, _ = run("user", "devices", "ana", "101", "101a", "101b")
    assert code == 0 and "Extension 101 rings 101a, 101b." in out
    code, out, _ = run("user", "list")
    assert "101(101a+101b)" in out.split()

    code, _, err = run("user", "devices", "budi", "102", "101b")
    assert code == 1 and "101b already rings ana" in err
    assert run("user", "devices", "ana", "101")[0] == 1  # clearing needs saying so
    code, out, _ = run("user", "devices", "ana", "101", "--clear")
    assert code == 0 and "rings itself" in out
    assert devices_of(engine, "101") is None


# --- calls ------------------------------------------------------------------------------------


@pytest.fixture
def fastagi(engine, tmp_path):
    """The FastAGI component, on a test box whose phones are Local/<device>@phones."""
    settings = Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False),
                        fastagi_listen=Address("127.0.0.1", 0), hook_budget_ms=5000,
                        device_technology="Local", device_suffix="@phones")
    running = start_fastagi(settings, engine, replay_interval=3600)
    try:
        yield running
    finally:
        running.stop()


def ring(fastagi, caller: str) -> FakeChannel:
    """An inbound call reaches the lookup, as [pbx-crm-route] asks."""
    inbound = FakeChannel(**INBOUND, callerid=caller, calleridname="Budi",
                          context="pbx-crm-route", extension="s")
    assert run_fastagi(fastagi.address, "incoming", ["2150015", INBOUND["linkedid"]],
                       inbound).agistatus == "SUCCESS"
    return inbound


def test_the_softphone_answers_a_new_caller_and_ana_takes_the_deal(engine, team, fastagi):
    give_ana_two_phones(engine, team)
    ring(fastagi, "+62 812-3456-7890")

    # Dial's U() runs the answered hook on 101b's leg: the device, not the extension.
    leg = FakeChannel(**SOFTPHONE_LEG, callerid="2150015", up=True,
                      context="pbx-crm-answered", extension="s")
    assert run_fastagi(fastagi.address, "answered", [INBOUND["uniqueid"]],
                       leg).agistatus == "SUCCESS"

    with transaction(engine, read_only=True) as session:
        call = calls.find_call(session, INBOUND["uniqueid"])
        assert (call.answered_exten, call.answered_device, call.answered_by_id) == (
            "101", "101b", team["ana"].user_id)
        deal, _stage = load_deal(session, call.deal_id)
        assert deal.owner_id == team["ana"].user_id


def test_a_seller_on_one_device_answers_as_before(engine, team, fastagi):
    ring(fastagi, "+62 812-3456-7890")
    leg = FakeChannel(name="PJSIP/102-00000003", uniqueid="1796587835.40",
                      linkedid=INBOUND["linkedid"], callerid="2150015", up=True,
                      context="pbx-crm-answered", extension="s")
    run_fastagi(fastagi.address, "answered", [INBOUND["uniqueid"]], leg)
    with transaction(engine, read_only=True) as session:
        call = calls.find_call(session, INBOUND["uniqueid"])
        assert (call.answered_exten, call.answered_device) == ("102", None)


def test_the_lookup_tells_the_dialplan_to_ring_both_of_anas_devices(engine, team, fastagi):
    give_ana_two_phones(engine, team)
    with transaction(engine) as session:
        contact = make_contact(session, phones=("+62 812-3456-7890",))
        make_deal(session, team["ana"], contact_id=contact.id)
        other = make_contact(session, name="Sari", phones=("+62 813-1111-2222",))
        make_deal(session, team["budi"], contact_id=other.id)

    anas_caller = ring(fastagi, "+62 812-3456-7890")
    assert anas_caller.variables["CRM_OWNER_EXTEN"] == "101"
    assert anas_caller.variables["CRM_OWNER_DIAL"] == "Local/101a@phones&Local/101b@phones"

    # Budi has one phone: no Dial string, the dialplan dials his extension's device.
    budis_caller = FakeChannel(name="Local/2150015@from-trunk-00000020;2",
                               uniqueid="1796587900.2", linkedid="1796587900.1",
                               callerid="+62 813-1111-2222", context="pbx-crm-route",
                               extension="s")
    run_fastagi(fastagi.address, "incoming", ["2150015", "1796587900.1"], budis_caller)
    assert budis_caller.variables["CRM_OWNER_EXTEN"] == "102"
    assert "CRM_OWNER_DIAL" not in budis_caller.variables


@pytest.fixture
def ami(server):
    with AmiClient(*server.address, "crm", "secret", reconnect_delay=0.01,
                   connect_timeout=WAIT, action_timeout=WAIT) as client:
        assert client.wait_connected(WAIT)
        yield client


def test_click_to_call_rings_both_of_anas_devices(engine, team, server, ami, settings):
    give_ana_two_phones(engine, team)
    with transaction(engine) as session:
        contact = make_contact(session, phones=("+62 812-3456-7890",))
        deal = make_deal(session, team["ana"], contact_id=contact.id)
    with transaction(engine) as session:
        placed = call_contact(session, team["ana"], deal.id, number=None,
                              originate=ami.originate, settings=settings)

    [action] = server.originates
    assert action["Channel"] == f"Local/101@{DEVICES_CONTEXT}/n" == placed.channel
    assert action.get_all("Variable") == [f"CRM_DEAL_ID={deal.id}",
                                          "CRM_SELLER_DIAL=PJSIP/101a&PJSIP/101b"]
    assert (action["Exten"], action["Context"]) == ("6281234567890", "from-internal")
    assert placed.extension == "101"
    # The shipped dialplan has the context, and it dials what the CRM passes.
    text = DIALPLAN.read_text(encoding="utf-8")
    context = text.split(f"[{DEVICES_CONTEXT}]\n", 1)[1]
    assert context.splitlines()[0].endswith(",1,Dial(${CRM_SELLER_DIAL})")

    # Budi, on one phone, is rung on it as ever.
    with transaction(engine) as session:
        contact = make_contact(session, name="Sari", phones=("+62 813-1111-2222",))
        deal = make_deal(session, team["budi"], contact_id=contact.id)
        call_contact(session, team["budi"], deal.id, number=None, originate=ami.originate,
                     settings=settings)
    assert server.originates[1]["Channel"] == "PJSIP/102"
    assert server.originates[1].get_all("Variable") == [f"CRM_DEAL_ID={deal.id}"]



# --- the AMI listener reads either device as ana ------------------------------------------------

CAPTURE = Path(__file__).parent / "fixtures" / "asterisk-captures"
TWO_DEVICES = "15-ring-group-two-devices-one-extension"


def run_captured_hook(engine, settings, script: str, args: list[str]) -> dict:
    """The AGI hook with the environment capture 15 recorded for it, and this project's
    dialplan's arguments."""
    raw = next((CAPTURE / "raw" / TWO_DEVICES).glob(f"*-fastagi-{script}-*.agi-rx.raw"))
    env = {key: value for key, value in read_env(io.BytesIO(raw.read_bytes())).items()
           if not key.startswith("agi_arg_")}
    env.update({f"agi_arg_{n}": value for n, value in enumerate(args, 1)})
    with transaction(engine) as session:
        return HOOKS[script].run(session, AgiRequest.from_env(env),
                                 HookContext(settings, utcnow()))


def pops_for(engine, kind: str) -> list[int | None]:
    with transaction(engine, read_only=True) as session:
        return list(session.exec(select(Event.target_user_id).where(
            Event.kind == kind, Event.linkedid == INBOUND["linkedid"]).order_by(Event.id)))


def test_the_listener_pops_ana_once_for_both_ringing_devices_and_records_the_softphone(
        engine, team, server, tmp_path):
    """Capture 15 without the answered hook: what the AMI stream alone tells."""
    give_ana_two_phones(engine, team)
    settings = Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False),
                        ami_host=server.host, ami_port=server.port, ami_username="crm",
                        ami_secret="secret")
    listener = AmiListener(engine, settings, hangup_grace=0, client_factory=functools.partial(
        AmiClient, reconnect_delay=0.01, connect_timeout=WAIT, action_timeout=WAIT)).start()
    try:
        assert listener.wait_until(lambda: listener.resyncs >= 1, WAIT)
        new = run_captured_hook(engine, settings, "incoming", ["2150015", INBOUND["linkedid"]])
        assert new["CRM_STATUS"] == calls.NEW
        server.replay((CAPTURE / "ami" / f"{TWO_DEVICES}.ami.raw").read_bytes())
        assert listener.wait_idle(WAIT) and listener.failures == 0
    finally:
        listener.stop()

    ana = team["ana"].user_id
    assert pops_for(engine, events.RINGING).count(ana) == 1
    assert ana not in pops_for(engine, events.STOPPED_RINGING)
    with transaction(engine, read_only=True) as session:
        call = calls.find_call(session, INBOUND["uniqueid"])
        assert (call.answered_exten, call.answered_device, call.answered_by_id) == (
            "101", "101b", ana)
        assert session.get(Deal, int(new["CRM_DEAL_ID"])).owner_id == ana
