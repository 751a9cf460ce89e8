"""Two offices, two Asterisk boxes: Jakarta and Surabaya each have an extension 101.

Ana is 101 in Jakarta, Budi is 101 in Surabaya. A call ringing 101 in Jakarta pops Ana's card
and nobody else's; Budi's click-to-call goes out on Surabaya's AMI; the hooks read the box
from the dialplan's CRM_PBX; the settings refuse 101 twice on one box, in the head's language.
The boxes are two emulated AMI servers on loopback, and a one-box config reads as before.
"""

from __future__ import annotations

from functools import partial

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from factories import make_contact, make_deal, make_pipeline, make_user
from pbx_crm import config
from pbx_crm.agi import HOOKS, registry
from pbx_crm.components import start_ami
from pbx_crm.config import ConfigError, PbxBox, Settings, load_settings
from pbx_crm.db import transaction
from pbx_crm.errors import Conflict, ValidationError
from pbx_crm.funnel import calls, events
from pbx_crm.models import Call, Event, utcnow
from pbx_crm.people import users
from pbx_crm.rules.phones import ExtensionPlan, classify_caller
from pbx_crm.simulator.ami import FakeAmiServer
from pbx_crm.simulator.ami_calls import ScenarioBuilder
from pbx_crm.telephony.agi_protocol import AgiRequest
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.click_to_call import call_contact
from pbx_crm.telephony.dispatcher import HookContext
from pbx_crm.telephony.pbx_boxes import AmiListeners, Originators
from webtools import signed_in

CALLER = "+62 812-3456-7890"
DID = "2150001"
WAIT = 5.0


# --- the settings: [pbx:<name>] sections and PBX_CRM_PBX_* variables --------------------------


@pytest.fixture
def no_system_config_file(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", tmp_path / "absent.ini")


def ini(tmp_path, body: str):
    path = tmp_path / "pbx-crm.ini"
    path.write_text(body, encoding="utf-8")
    return path


def test_each_office_is_a_named_box_beside_the_default_one(tmp_path):
    path = ini(tmp_path, "[pbx-crm]\nami_host = 10.0.0.1\ndevice_suffix = @phones\n"
                         "[pbx:jakarta]\nhost = 10.0.1.5\nsecret = s1\n"
                         "[pbx:surabaya]\nhost = 10.0.2.5\nport = 5039\nusername = crm\n"
                         "device_technology = SIP\n")
    settings = load_settings(config_file=path, environ={})
    assert settings.pbx_names == ("main", "jakarta", "surabaya")
    main, jakarta, surabaya = settings.pbx_boxes
    assert (main.name, main.host, main.stored) == ("main", "10.0.0.1", None)
    assert jakarta == PbxBox("jakarta", "10.0.1.5", 5038, "pbx-crm", "s1", "PJSIP", "@phones",
                             "from-internal")
    assert (surabaya.port, surabaya.username, surabaya.device_technology,
            surabaya.stored) == (5039, "crm", "SIP", "surabaya")
    assert settings.pbx("jakarta") is jakarta and settings.pbx(None) == main


def test_the_environment_defines_a_box_or_overrides_the_files(tmp_path):
    path = ini(tmp_path, "[pbx:jakarta]\nhost = 10.0.1.5\n")
    settings = load_settings(config_file=path, environ={
        "PBX_CRM_PBX_JAKARTA_SECRET": "from-env", "PBX_CRM_PBX_SURABAYA_HOST": "10.0.2.5",
        "PBX_CRM_PBX_OFFICE_2_PORT": "5040", "PBX_CRM_PBX_OFFICE_2_HOST": "10.0.3.5"})
    assert [(b.name, b.host, b.port, b.secret) for b in settings.pbx_boxes] == [
        ("jakarta", "10.0.1.5", 5038, "from-env"), ("office_2", "10.0.3.5", 5040, ""),
        ("surabaya", "10.0.2.5", 5038, "")]


@pytest.mark.parametrize(("body", "environ", "said"), [
    ("[pbx:Jakarta!]\nhost = h\n", {}, "[pbx:Jakarta!]: 'Jakarta!' is not a PBX name"),
    ("[pbx:main]\nhost = h\n", {}, "'main' is the box of the ami_* settings"),
    ("[pbx:jakarta]\nhost = h\nhots = x\n", {}, "[pbx:jakarta]: unknown key(s) hots"),
    ("[pbx:jakarta]\nport = 5038\n", {}, "PBX 'jakarta' has no host"),
    ("[pbx:jakarta]\nhost = h\nport = 99999\n", {}, "[pbx:jakarta] port: expected a TCP port"),
    ("[pbx-crm]\nami_host = h\n[pbx:jakarta]\nhost = h\n", {},
     "PBX 'jakarta' and PBX 'main' are the same box (h:5038)"),
    ("[pbxjakarta]\nhost = h\n", {}, "unknown section(s) [pbxjakarta]"),
    ("", {"PBX_CRM_PBX_JAKARTA_HOTS": "h"}, "PBX_CRM_PBX_JAKARTA_HOTS: not a PBX setting"),
])
def test_a_bad_box_is_refused_naming_where_it_was_written(tmp_path, body, environ, said):
    with pytest.raises(ConfigError) as error:
        load_settings(config_file=ini(tmp_path, body), environ=environ)
    assert said in error.value.message


def test_a_one_box_config_reads_as_it_always_did(tmp_path, no_system_config_file):
    path = ini(tmp_path, "[pbx-crm]\nami_host = 10.0.0.1\nami_secret = s\n")
    settings = load_settings(config_file=path, environ={})
    assert settings.pbxes == () and settings.pbx_names == ("main",)
    assert [(b.name, b.host, b.secret) for b in settings.pbx_boxes] == [("main", "10.0.0.1",
                                                                        "s")]
    assert load_settings(environ={}).pbx_boxes == ()


# --- two emulated boxes and their sellers -----------------------------------------------------


@pytest.fixture
def jakarta():
    with FakeAmiServer(users={"crm": "secret"}) as server:
        yield server


@pytest.fixture
def surabaya():
    with FakeAmiServer(users={"crm": "secret"}) as server:
        # Another box, another systemname: its uniqueids are its own.
        server.scenarios = ScenarioBuilder(epoch=1795910000)
        yield server


@pytest.fixture
def settings(tmp_path, engine, jakarta, surabaya):
    """No default box's AMI; Jakarta and Surabaya, each with its AMI user."""
    boxes = tuple(PbxBox(name, server.host, server.port, "crm", "secret")
                  for name, server in (("jakarta", jakarta), ("surabaya", surabaya)))
    return Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False),
                    pbxes=boxes)


@pytest.fixture
def team(engine):
    """Ana 101 in Jakarta, Budi 101 in Surabaya, Dewi 101 on the default box, a head."""
    with transaction(engine) as session:
        make_pipeline(session)
        return {"ana": make_user(session, "ana", extensions=["jakarta/101"]),
                "budi": make_user(session, "budi", extensions=["surabaya/101"]),
                "dewi": make_user(session, "dewi", extensions=["101"]),
                "hana": make_user(session, "hana", role="head")}


@pytest.fixture
def listeners(engine, settings):
    factory = partial(AmiClient, reconnect_delay=0.01, connect_timeout=WAIT,
                      action_timeout=WAIT)
    running = AmiListeners(engine, settings, client_factory=factory, hangup_grace=0).start()
    for listener in running.listeners.values():
        assert listener.wait_until(lambda: listener.resyncs >= 1, WAIT)
    yield running
    running.stop()


def ringing_targets(engine) -> list[int | None]:
    with transaction(engine, read_only=True) as session:
        return [event.target_user_id for event in session.exec(
            select(Event).where(Event.kind == events.RINGING).order_by(Event.id))]


def test_a_call_ringing_101_in_jakarta_pops_anas_card_and_nobody_elses(
        engine, team, jakarta, surabaya, listeners):
    assert listeners["jakarta"].extensions == {"101"} == listeners["surabaya"].extensions
    call = jakarta.scenarios.ring_pjsip(CALLER, DID, ["101"], answer="101")
    with transaction(engine) as session:  # the incoming hook, as Jakarta's dialplan runs it
        calls.record_inbound_call(
            session, uniqueid=call.linkedid, linkedid=call.linkedid,
            caller=classify_caller(CALLER, region="ID", extensions=ExtensionPlan.parse("100-999")),
            caller_name="Budi", did=DID, create_deals=True, region="ID", pbx="jakarta")

    jakarta.replay(call.data)
    assert listeners.wait_idle(WAIT)

    ana = team["ana"].user_id
    assert ringing_targets(engine) == [None, ana]  # the heads (the hook), then Ana
    with transaction(engine, read_only=True) as session:
        answered = calls.find_call(session, call.linkedid)
        assert (answered.answered_by_id, answered.answered_exten) == (ana, "101")
    assert listeners["surabaya"].signals_handled == 0 and listeners.failures == 0

    # Then 101 rings in Surabaya (no hook ran there): Budi's card, and the heads'.
    other = surabaya.scenarios.ring_pjsip("+62 813-1111-2222", DID, ["101"],
                                          stop_after="ringing")
    surabaya.replay(other.data)
    assert listeners.wait_idle(WAIT)
    with transaction(engine, read_only=True) as session:
        popped = {event.target_user_id for event in session.exec(
            select(Event).where(Event.kind == events.RINGING, Event.linkedid == other.linkedid))}
    assert popped == {None, team["budi"].user_id}


def test_budis_click_to_call_goes_out_on_surabaya_and_anas_on_jakarta(
        engine, team, settings, jakarta, surabaya):
    with transaction(engine) as session:
        contact = make_contact(session)
        budis = make_deal(session, team["budi"], contact_id=contact.id)
        other = make_contact(session, name="Sari", phones=("+62 813-1111-2222",))
        anas = make_deal(session, team["ana"], title="ERP", contact_id=other.id)
    originate = Originators(settings)
    try:
        with transaction(engine) as session:
            placed = call_contact(session, team["budi"], budis.id, number=None,
                                  originate=originate, settings=settings)
        assert (placed.pbx, placed.channel) == ("surabaya", "PJSIP/101")
        assert len(surabaya.originates) == 1 and jakarta.originates == []
        with transaction(engine) as session:
            call_contact(session, team["ana"], anas.id, number=None, originate=originate,
                         settings=settings)
        assert len(jakarta.originates) == 1 and len(surabaya.originates) == 1
    finally:
        originate.close()
    with transaction(engine, read_only=True) as session:
        placed_by = {c.deal_id: c.answered_by_id for c in session.exec(select(Call))}
    assert placed_by == {budis.id: team["budi"].user_id, anas.id: team["ana"].user_id}


def test_budis_click_in_the_browser_rings_his_phone_through_surabaya(
        web, engine, team, jakarta, surabaya):
    with transaction(engine) as session:
        deal = make_deal(session, team["budi"], contact_id=make_contact(session).id)
    client = signed_in(web, "budi")
    assert "Call</button>" in client.get(f"/deals/{deal.id}").text
    answer = client.post(f"/deals/{deal.id}/call", {"number": CALLER})
    assert answer.status == 303
    (originate,) = surabaya.originates
    assert (originate["Channel"], originate["Exten"]) == ("PJSIP/101", "6281234567890")
    assert jakarta.originates == []

def test_start_ami_runs_one_listener_per_box(engine, settings, team):
    running = start_ami(settings, engine)
    try:
        assert isinstance(running, AmiListeners)
        assert sorted(running.listeners) == ["jakarta", "surabaya"]
    finally:
        running.stop()


# --- the hooks read the box from the dialplan's CRM_PBX ----------------------------------------


def answered_hook(engine, settings, uniqueid: str, query: str):
    env = {"agi_network": "yes", "agi_network_script": f"answered{query}",
           "agi_channel": "PJSIP/101-00000003", "agi_uniqueid": "1795892488.3",
           "agi_arg_1": uniqueid}
    with transaction(engine) as session:
        HOOKS["answered"].run(session, AgiRequest.from_env(env), HookContext(settings, utcnow()))
    with transaction(engine, read_only=True) as session:
        return calls.find_call(session, uniqueid).answered_by_id


@pytest.mark.parametrize(("query", "who"), [
    ("?pbx=surabaya", "budi"), ("?pbx=jakarta", "ana"), ("?pbx=", "dewi"), ("", "dewi")])
def test_the_answered_hook_reads_101_as_the_seller_on_the_calls_box(
        engine, settings, team, query, who):
    with transaction(engine) as session:
        calls.record_inbound_call(
            session, uniqueid="1795892488.2", linkedid="1795892488.2",
            caller=classify_caller(CALLER, region="ID", extensions=ExtensionPlan.parse("100-999")),
            caller_name="Budi", did=DID, create_deals=True, region="ID")
    assert answered_hook(engine, settings, "1795892488.2", query) == team[who].user_id


def test_a_crm_pbx_the_settings_do_not_know_is_logged_and_matches_nobody(
        engine, settings, team, caplog, monkeypatch):
    monkeypatch.setattr(registry, "_UNKNOWN_PBXES", set())  # said once per process
    with transaction(engine) as session:
        calls.record_inbound_call(
            session, uniqueid="1795892488.2", linkedid="1795892488.2",
            caller=classify_caller(CALLER, region="ID", extensions=ExtensionPlan.parse("100-999")),
            caller_name="Budi", did=DID, create_deals=True, region="ID")
    assert answered_hook(engine, settings, "1795892488.2", "?pbx=bandung") is None
    assert "CRM_PBX=bandung, a box the settings do not define" in caplog.text

def test_the_owner_rings_first_only_on_a_box_where_they_have_a_phone(engine, settings, team):
    with transaction(engine) as session:
        make_deal(session, team["budi"], contact_id=make_contact(session).id)
    caller = classify_caller(CALLER, region="ID", extensions=ExtensionPlan.parse("100-999"))
    with transaction(engine, read_only=True) as session:
        found = {pbx: calls.lookup_caller(session, uniqueid=f"x.{pbx}", caller=caller,
                                          create_deals=True, pbx=pbx).owner_extension
                 for pbx in ("surabaya", "jakarta", None)}
    assert found == {"surabaya": "101", "jakarta": "", None: ""}


# --- the settings: an extension is a box and a number -----------------------------------------


def test_101_repeats_across_boxes_but_never_twice_on_one(engine, team):
    names = ("main", "jakarta", "surabaya")
    with transaction(engine) as session:
        citra = make_user(session, "citra")
        with pytest.raises(Conflict) as taken:
            users.set_extensions(session, team["hana"], citra.user_id, ["jakarta/101"],
                                 pbxes=names)
        assert taken.value.message == "Extension jakarta/101 already rings ana."
        with pytest.raises(ValidationError) as unknown:
            users.set_extensions(session, team["hana"], citra.user_id, ["bandung/101"],
                                 pbxes=names)
        assert unknown.value.message == ("“bandung/101”: there is no PBX called bandung; the "
                                         "PBXes are main, jakarta, surabaya.")
        assert users.set_extensions(session, team["hana"], citra.user_id,
                                    ["Jakarta/102", "main/103"], pbxes=names) == [
            "jakarta/102", "103"]
        listed = dict((user.login, extensions) for user, extensions in
                      users.list_users(session))
    assert listed["ana"] == ["jakarta/101"] and listed["dewi"] == ["101"]
    assert listed["citra"] == ["103", "jakarta/102"]


def test_the_database_keeps_one_seller_per_box_and_extension(engine, team):
    with pytest.raises(IntegrityError):
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO user_extensions (user_id, extension, pbx) "
                                    "VALUES (:user, '101', 'jakarta')"),
                               {"user": team["dewi"].user_id})


def test_devices_are_named_per_box(engine, team):
    with transaction(engine) as session:
        assert users.set_devices(session, team["hana"], team["ana"].user_id, "jakarta/101",
                                 ["101a", "101b"]) == ["101a", "101b"]
        # Surabaya's 101 may have a softphone of the same name: another box, another phone.
        users.set_devices(session, team["hana"], team["budi"].user_id, "surabaya/101",
                          ["101b"])
        assert users.device_extensions(session, "jakarta") == {"101a": "101", "101b": "101"}
        assert users.dial_devices(session, "101", "surabaya") == ["101b"]
        assert users.dial_devices(session, "101") == ["101"]
        assert users.devices_of_extensions(session) == {"jakarta/101": ["101a", "101b"],
                                                        "surabaya/101": ["101b"]}


@pytest.mark.parametrize(("language", "said"), [
    ("en", "Extension surabaya/101 already rings budi."),
    ("id", "Ekstensi surabaya/101 sudah berdering untuk budi."),
])
def test_the_settings_page_refuses_a_second_101_in_surabaya_in_the_heads_language(
        web, engine, team, language, said):
    with transaction(engine) as session:
        users.set_language(session, team["hana"], team["hana"].user_id, language)
    client = signed_in(web, "hana")
    page = client.get("/settings")
    assert "jakarta/101" in page.text and 'id="pbx-hint"' in page.text
    answer = client.post(f"/settings/users/{team['dewi'].user_id}/extensions",
                         {"extensions": "101 surabaya/101"})
    assert answer.status == 409 and said in answer.text
    unknown = client.post(f"/settings/users/{team['dewi'].user_id}/extensions",
                          {"extensions": "bandung/7"})
    assert unknown.status == 400 and ("bandung" in unknown.text)


def test_pbx_crm_user_extensions_sets_the_box_and_refuses_one_not_configured(
        engine, team, pbx_crm_at, monkeypatch, no_system_config_file):
    monkeypatch.setenv("PBX_CRM_PBX_JAKARTA_HOST", "10.0.1.5")
    url = engine.url.render_as_string(False)
    code, out, _ = pbx_crm_at(url, "user", "extensions", "dewi", "101", "jakarta/102")
    assert (code, out.strip()) == (0, "dewi rings on 101, jakarta/102.")
    code, _, err = pbx_crm_at(url, "user", "extensions", "dewi", "surabaya/101")
    assert code != 0
    assert "“surabaya/101”: there is no PBX called surabaya; the PBXes are main, jakarta." in err
    code, _, err = pbx_crm_at(url, "user", "extensions", "dewi", "jakarta/101")
    assert code != 0 and "Extension jakarta/101 already rings ana." in err


def test_pbx_crm_call_rings_budi_through_surabaya(
        engine, team, jakarta, surabaya, pbx_crm_at, monkeypatch, no_system_config_file):
    for name, server in (("JAKARTA", jakarta), ("SURABAYA", surabaya)):
        for key, value in (("HOST", server.host), ("PORT", str(server.port)),
                           ("USERNAME", "crm"), ("SECRET", "secret")):
            monkeypatch.setenv(f"PBX_CRM_PBX_{name}_{key}", value)
    with transaction(engine) as session:
        deal = make_deal(session, team["budi"], contact_id=make_contact(session).id)
    code, out, err = pbx_crm_at(engine.url.render_as_string(False), "call", str(deal.id),
                                "--as", "budi", "--no-wait")
    assert code == 0, err
    assert out.startswith("Ringing budi on PJSIP/101")
    assert len(surabaya.originates) == 1 and jakarta.originates == []
