"""Click-to-call: a seller rings a deal's contact, through a real AMI client and the loopback
AMI server, on both databases.

The service is called as the web route and ``pbx-crm call`` call it: one transaction, the
``originate`` of a connected client. What Asterisk received is read from the server's record of
the Originate actions; what the CRM wrote, from the deal's timeline and the audit log.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from factories import audit_of, make_contact, make_deal, make_pipeline, make_user, timeline_of
from pbx_crm.cli import main as cli
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.click_to_call import ClickToCallFailed, call_contact
from pbx_crm.agi import HOOKS
from pbx_crm.config import ConfigError, Settings, load_settings
from pbx_crm.funnel import calls
from pbx_crm.models import Call, utcnow
from pbx_crm.reporting.reports import funnel_report
from pbx_crm.telephony.agi_protocol import AgiRequest
from pbx_crm.telephony.dispatcher import HookContext
from pbx_crm.db import transaction
from pbx_crm.enums import TimelineKind
from pbx_crm.errors import Forbidden, ValidationError

WAIT = 5.0
BUDI_E164 = "+6281234567890"
BUDI_OFFICE = "+62215550123"


@pytest.fixture
def settings(tmp_path, engine):
    return Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False))


@pytest.fixture
def client(server):
    with AmiClient(*server.address, "crm", "secret", reconnect_delay=0.01,
                   connect_timeout=WAIT, action_timeout=WAIT) as client:
        assert client.wait_connected(WAIT)
        yield client


@pytest.fixture
def crm(engine):
    """ana (ext 101) with a deal for Budi (two numbers) and one without a contact; budi
    (ext 102); olga, a head without an extension."""
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        olga = make_user(session, "olga", role="head")  # may work every deal, has no phone
        contact = make_contact(session, phones=("+62 812-3456-7890", "021 555 0123"))
        deal = make_deal(session, ana, contact_id=contact.id)
        bare = make_deal(session, ana, title="Walk-in, no contact yet")
    return {"ana": ana, "budi": budi, "olga": olga, "deal": deal, "bare": bare}


def calls_on_timeline(engine, deal) -> list[str]:
    with transaction(engine, read_only=True) as session:
        return [entry.body for entry in timeline_of(session, deal)
                if entry.kind == TimelineKind.CALL.value]


def test_ana_calls_her_deals_contact(engine, crm, server, client, settings):
    deal = crm["deal"]
    with transaction(engine) as session:
        placed = call_contact(session, crm["ana"], deal.id, number=None,
                              originate=client.originate, settings=settings)

    [action] = server.originates
    assert action["Channel"] == "PJSIP/101" and action["Async"] == "true"
    assert (action["Exten"], action["Context"]) == ("6281234567890", "from-internal")
    assert action.get_all("Variable") == [f"CRM_DEAL_ID={deal.id}"]
    assert action["ChannelId"] == placed.channel_id and action["ActionID"] == placed.action_id
    assert action["CallerID"] == f'"Budi Santoso {BUDI_E164}" <101>'
    assert (placed.number, placed.extension) == (BUDI_E164, "101")
    assert placed.result.answered(WAIT)  # the seller's phone picked up
    assert calls_on_timeline(engine, deal) == [f"Calling {BUDI_E164} from ext 101"]
    with transaction(engine, read_only=True) as session:
        [entry] = [a for a in audit_of(session, "deal", deal.id) if a.action == "click_to_call"]
    assert entry.actor == "ana" and entry.changes["number"] == BUDI_E164


def test_the_call_is_recorded_on_the_deal_and_counts_as_outbound_in_the_report(
        engine, crm, server, client, settings):
    """Whatever route the Originate takes in the dialplan (the demo's emulator runs none), the
    call is the CRM's from the click: on the deal, under the channel's uniqueid, and in the
    report's outbound calls."""
    deal = crm["deal"]
    with transaction(engine) as session:
        placed = call_contact(session, crm["ana"], deal.id, number=None,
                              originate=client.originate, settings=settings)
    with transaction(engine, read_only=True) as session:
        call = calls.find_call(session, placed.channel_id)
        assert (call.direction, call.deal_id, call.linkedid) == ("outbound", deal.id,
                                                                  placed.channel_id)
        assert (call.caller_e164, call.answered_exten) == (BUDI_E164, "101")
        today = datetime.now(ZoneInfo(settings.time_zone)).date()
        report = funnel_report(session, crm["olga"], pipeline_id=None, start=today,
                               end=today + timedelta(days=1), time_zone=settings.time_zone)
    assert sum(stage.outbound for stage in report.calls) == 1

    # The dialplan's outbound hook, when the route runs it, finds the call recorded.
    request = AgiRequest.from_env({
        "agi_network": "yes", "agi_network_script": "outbound", "agi_uniqueid": placed.channel_id,
        "agi_channel": "PJSIP/101-0000000a", "agi_callerid": "101", "agi_arg_1": placed.dialed,
        "agi_arg_2": placed.channel_id, "agi_arg_3": str(deal.id)})
    with transaction(engine) as session:
        answer = HOOKS["outbound"].run(session, request, HookContext(settings, utcnow()))
    assert answer == {"CRM_DEAL_ID": str(deal.id)}
    with transaction(engine, read_only=True) as session:
        assert len(session.exec(select(Call)).all()) == 1


def test_the_device_suffix_setting_names_the_sellers_phone_as_the_dialplan_does(
        engine, crm, server, client, tmp_path):
    """CRM_DEVICE_TECH=Local and CRM_DEVICE_SUFFIX=@phones in the dialplan: the same two
    settings here, and the Originate rings Local/101@phones."""
    settings = load_settings(environ={
        "PBX_CRM_DATA_DIR": str(tmp_path), "PBX_CRM_DEVICE_TECHNOLOGY": "Local",
        "PBX_CRM_DEVICE_SUFFIX": "@phones",
        "PBX_CRM_DATABASE_URL": engine.url.render_as_string(False)})
    with transaction(engine) as session:
        placed = call_contact(session, crm["ana"], crm["deal"].id, number=None,
                              originate=client.originate, settings=settings)
    [action] = server.originates
    assert action["Channel"] == placed.channel == "Local/101@phones"
    assert placed.result.answered(WAIT)


@pytest.mark.parametrize("suffix", ["@phones x", "@phones\r\nAction: Logoff", "&PJSIP/102"])
def test_a_device_suffix_that_is_not_one_is_refused_at_start(tmp_path, suffix):
    with pytest.raises(ConfigError, match="PBX_CRM_DEVICE_SUFFIX"):
        load_settings(environ={"PBX_CRM_DATA_DIR": str(tmp_path),
                               "PBX_CRM_DEVICE_SUFFIX": suffix})


def test_the_number_given_must_be_one_of_the_contacts(engine, crm, server, client, settings):
    deal = crm["deal"]
    with transaction(engine) as session:
        placed = call_contact(session, crm["ana"], deal.id, number="021-555-0123",
                              originate=client.originate, settings=settings)
    assert placed.number == BUDI_OFFICE and server.originates[0]["Exten"] == "62215550123"

    with (pytest.raises(ValidationError, match="is not a number of Budi Santoso"),
          transaction(engine) as session):
        call_contact(session, crm["ana"], deal.id, number="+62 811 000 0000",
                     originate=client.originate, settings=settings)
    assert len(server.originates) == 1


@pytest.mark.parametrize("who, which, refusal, message", [
    ("budi", "deal", Forbidden, "belongs to another seller"),
    ("ana", "bare", ValidationError, "has no contact to call"),
    ("olga", "deal", ValidationError, "no phone extension"),
])
def test_refusals_ring_nobody_and_write_nothing(engine, crm, server, client, settings,
                                                who, which, refusal, message):
    with (pytest.raises(refusal, match=message),
          transaction(engine) as session):
        call_contact(session, crm[who], crm[which].id, number=None,
                     originate=client.originate, settings=settings)
    assert server.originates == []
    assert calls_on_timeline(engine, crm[which]) == []


def test_with_the_pbx_away_the_seller_gets_a_clear_error_and_nothing_is_written(
        engine, crm, server, client, settings):
    server.stop()  # Asterisk is down: the session is lost, before or during the Originate
    with (pytest.raises(ClickToCallFailed, match="not reachable"),
          transaction(engine) as session):
        call_contact(session, crm["ana"], crm["deal"].id, number=None,
                     originate=client.originate, settings=settings)
    assert calls_on_timeline(engine, crm["deal"]) == []


def test_an_originate_asterisk_does_not_confirm_in_time_fails_cleanly(
        engine, crm, server, settings):
    hold = server.hold_next("Originate")
    with AmiClient(*server.address, "crm", "secret", action_timeout=0.3) as slow:
        assert slow.wait_connected(WAIT)
        with (pytest.raises(ClickToCallFailed, match="may still ring"),
              transaction(engine) as session):
            call_contact(session, crm["ana"], crm["deal"].id, number=None,
                         originate=slow.originate, settings=settings)
        hold.release()
    assert calls_on_timeline(engine, crm["deal"]) == []


# --- pbx-crm call ----------------------------------------------------------------------------


def test_pbx_crm_call_rings_the_users_phone_end_to_end(engine, crm, server, monkeypatch,
                                                       capsys):
    monkeypatch.setenv("PBX_CRM_AMI_HOST", server.host)
    monkeypatch.setenv("PBX_CRM_AMI_PORT", str(server.port))
    monkeypatch.setenv("PBX_CRM_AMI_USERNAME", "crm")
    monkeypatch.setenv("PBX_CRM_AMI_SECRET", "secret")
    url = engine.url.render_as_string(hide_password=False)
    deal = crm["deal"]

    code = cli.main(["--database-url", url, "call", str(deal.id), "--as", "ana",
                     "--number", BUDI_OFFICE])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "PJSIP/101" in out and BUDI_OFFICE in out and "answered" in out
    [action] = server.originates
    assert action["Exten"] == "62215550123" and action["Channel"] == "PJSIP/101"
    assert calls_on_timeline(engine, deal) == [f"Calling {BUDI_OFFICE} from ext 101"]

    code = cli.main(["--database-url", url, "call", str(deal.id), "--as", "budi"])
    _, err = capsys.readouterr()
    assert code == 1 and "belongs to another seller" in err
    assert len(server.originates) == 1


@pytest.mark.parametrize("command", [["ami"], ["call", "1", "--as", "ana"]])
def test_ami_commands_refuse_clearly_without_an_ami_host(engine, command, capsys):
    url = engine.url.render_as_string(hide_password=False)
    code = cli.main(["--database-url", url, *command])
    _, err = capsys.readouterr()
    assert code == 2 and "no AMI host configured" in err and "PBX_CRM_AMI_HOST" in err
