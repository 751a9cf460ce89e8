"""An admin's first hour, from the README alone: the install steps, the dialplan file, the demo.

Each scenario is what the README has an admin type, run through ``pbx_crm.cli.main.main``
(or the installed console script, from a directory of no use), on SQLite and on PostgreSQL
where a database is involved.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from factories import ADMIN, make_pipeline
from postgres_databases import new_postgres_database
from pbx_crm.cli import main as cli
from pbx_crm.cli import sample
from pbx_crm.funnel import pipelines
from pbx_crm.people import users
from pbx_crm.components import start_fastagi
from pbx_crm.config import Address, Settings
from pbx_crm.db import make_engine, transaction
from pbx_crm.models import Call, Deal
from pbx_crm.simulator.agi import FakeChannel, run_fastagi

CHECKOUT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "pbx-crm"
SELLER_STAGES = ["Unsorted", "Opportunity", "Commercial proposal", "Document coordination",
                 "Signature and payment", "Implementation", "Closing", "Won", "Lost"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def blank_url(request, tmp_path):
    """The URL of a database nobody has migrated yet, of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.sqlite3'}"
    else:
        with new_postgres_database("pbx_crm_test_blank") as engine:
            url = engine.url.render_as_string(hide_password=False)
            engine.dispose()
            yield url


def ring(address, number: str, uniqueid: str) -> dict[str, str]:
    """A caller rings the DID: the dialplan's incoming lookup; the channel's CRM_* after it."""
    channel = FakeChannel(callerid=number, uniqueid=uniqueid, linkedid=uniqueid)
    run_fastagi(address, "incoming", ["2150001", channel.linkedid], channel)
    return channel.variables


@pytest.fixture
def fastagi(tmp_path):
    """start(engine): the FastAGI component on a free port, stopped at the end."""
    running = []

    def start(engine):
        settings = Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False),
                            fastagi_listen=Address("127.0.0.1", 0), hook_budget_ms=5000)
        running.append(start_fastagi(settings, engine, replay_interval=3600))
        return running[-1]

    yield start
    for server in running:
        server.stop()


# --- a) the install steps leave a funnel the PBX can drop deals into --------------------------


def test_the_readme_install_steps_leave_a_default_pipeline_where_a_new_caller_opens_a_deal(
        blank_url, pbx_crm_at, fastagi):
    code, out, err = pbx_crm_at(blank_url, "db", "upgrade")
    assert code == 0, err
    assert "Created the default pipeline “Sales”" in out
    assert " > ".join(SELLER_STAGES) in out
    code, _, err = pbx_crm_at(blank_url, "user", "add", "boss", "--name", "Dewi (head)", "--role",
                       "head", "--password-stdin", stdin="long-secret-1\n")
    assert code == 0, err

    engine = make_engine(blank_url)
    try:
        with transaction(engine, read_only=True) as session:
            (pipeline,) = pipelines.list_pipelines(session)
            assert pipeline.is_default and pipeline.creates_deals_from_calls
            assert [s.name for s in pipelines.stages_of(session, pipeline.id)] == SELLER_STAGES
            unsorted = pipelines.unsorted_stage(session, pipeline.id)
        crm = fastagi(engine)
        answer = ring(crm.address, "+62 812-7788-9900", "1700000001.1")
        assert answer["CRM_STATUS"] == "NEW"
        assert crm.dispatcher.wait_idle(10)
        with transaction(engine, read_only=True) as session:
            call = session.exec(select(Call)).one()
            deal = session.get(Deal, call.deal_id)
            assert call.contact_id is not None
            assert (deal.stage_id, deal.owner_id, deal.source) == (unsorted.id, None, "call")
    finally:
        engine.dispose()


def test_upgrading_again_makes_no_second_pipeline_and_a_migrated_database_gets_none(
        blank_url, pbx_crm_at, engine):
    assert pbx_crm_at(blank_url, "db", "upgrade")[0] == 0
    code, out, _ = pbx_crm_at(blank_url, "db", "upgrade")
    assert code == 0 and "pipeline" not in out
    code, out, _ = pbx_crm_at(blank_url, "pipeline", "list")
    assert out.count("(#") == 1 and "Sales (#1, IDR, default)" in out
    # A database migrated before (the admin may have meant to set up their own): left alone.
    url = engine.url.render_as_string(hide_password=False)
    code, out, _ = pbx_crm_at(url, "db", "upgrade")
    assert code == 0 and "pipeline" not in out
    with transaction(engine, read_only=True) as session:
        assert pipelines.list_pipelines(session) == []


def test_the_demo_after_db_upgrade_fills_that_pipeline_and_shows_one_board(blank_url,
                                                                           pbx_crm_at):
    # ./dev.sh demo: `pbx-crm db upgrade`, then `pbx-crm demo`.
    assert pbx_crm_at(blank_url, "db", "upgrade")[0] == 0
    code, out, err = pbx_crm_at(blank_url, "demo", "--no-serve")
    assert code == 0, err
    assert out.count("Board of ") == 1 and "Board of “Sales” (IDR)" in out
    engine = make_engine(blank_url)
    try:
        with transaction(engine, read_only=True) as session:
            (pipeline,) = pipelines.list_pipelines(session)
            per_stage = [pipelines.stage_deal_count(session, stage.id)
                         for stage in pipelines.stages_of(session, pipeline.id)]
        assert all(per_stage), per_stage
    finally:
        engine.dispose()


def test_the_demo_beside_a_pipeline_of_the_admins_own_fills_a_default_one_of_its_own(engine,
                                                                                      pbx_crm_at):
    with transaction(engine) as session:
        make_pipeline(session, name="Sales", stages=[("Call back", "open")])
    url = engine.url.render_as_string(hide_password=False)
    code, out, err = pbx_crm_at(url, "demo", "--no-serve")
    assert code == 0, err
    assert "Board of “Sales (demo)”" in out
    with transaction(engine, read_only=True) as session:
        default = pipelines.get_pipeline(session)
        assert default.name == "Sales (demo)"
        assert pipelines.stage_deal_count(session, pipelines.unsorted_stage(
            session, default.id).id) > 0


@pytest.fixture
def incoming_log(caplog):
    """What the incoming hook logs, from a process that has said nothing yet."""
    from pbx_crm.agi import incoming

    incoming._TOLD.clear()
    caplog.set_level(logging.WARNING, logger=incoming.__name__)
    yield lambda: [r.getMessage() for r in caplog.records if r.name == incoming.__name__]
    incoming._TOLD.clear()


def test_with_no_pipeline_new_callers_are_recorded_and_the_log_says_why_once(
        engine, fastagi, incoming_log):
    crm = fastagi(engine)
    for i in range(3):
        assert ring(crm.address, f"+62 812-7788-990{i}", f"1700000010.{i}")["CRM_STATUS"] == "NEW"
    assert crm.dispatcher.wait_idle(10)
    with transaction(engine, read_only=True) as session:
        recorded = session.exec(select(Call)).all()
        assert len(recorded) == 3 and all(call.deal_id is None for call in recorded)
    (said,) = incoming_log()
    assert "recorded without a deal" in said and "there is no pipeline yet" in said
    assert "pbx-crm pipeline add" in said

    # The admin adds one: the next new caller opens a deal; a later breakage is told again.
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
    ring(crm.address, "+62 812-7788-9910", "1700000011.1")
    assert crm.dispatcher.wait_idle(10)
    with transaction(engine) as session:
        assert session.exec(select(Deal)).one().source == "call"
        pipelines.set_creates_deals_from_calls(session, ADMIN, pipeline.id, False)
    for i in range(2):
        ring(crm.address, f"+62 812-7788-992{i}", f"1700000012.{i}")
    assert crm.dispatcher.wait_idle(10)
    first, second = incoming_log()
    assert "turned off" in second and "Settings" in second


def test_with_unknown_callers_create_deals_off_nothing_is_warned(engine, tmp_path,
                                                                incoming_log):
    # unknown_callers_create_deals = no: the admin chose it; nothing to warn about.
    settings = Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False),
                        fastagi_listen=Address("127.0.0.1", 0), hook_budget_ms=5000,
                        unknown_callers_create_deals=False)
    crm = start_fastagi(settings, engine, replay_interval=3600)
    try:
        ring(crm.address, "+62 812-7788-9930", "1700000013.1")
        assert crm.dispatcher.wait_idle(10)
    finally:
        crm.stop()
    assert incoming_log() == []


# --- b) the dialplan file, from any directory ---------------------------------------------


def pbx_crm(*args, cwd="/", env=None) -> subprocess.CompletedProcess:
    """The installed console script, as an admin runs it."""
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env or clean_env())


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PBX_CRM_")}


@pytest.mark.parametrize("cwd", ["/", str(CHECKOUT)], ids=["root", "checkout"])
def test_an_admin_prints_the_shipped_dialplan_and_its_path_from_any_directory(cwd):
    shipped = (CHECKOUT / "dialplan" / "pbx-crm.conf").read_text(encoding="utf-8")
    printed = pbx_crm("dialplan", cwd=cwd)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == shipped

    where = pbx_crm("dialplan", "--path", cwd=cwd)
    assert where.returncode == 0, where.stderr
    path = Path(where.stdout.strip())
    assert path.is_absolute() and path.name == "pbx-crm.conf"
    assert path.read_text(encoding="utf-8") == shipped

    ami_user = pbx_crm("dialplan", "manager.conf.example", cwd=cwd)
    assert ami_user.returncode == 0 and "read = call,user,cdr,agent" in ami_user.stdout


def test_the_admin_guide_finds_the_shipped_files_with_commands_that_work():
    guide = (CHECKOUT / "dialplan" / "README.md").read_text(encoding="utf-8")
    assert "importlib" not in guide and "pbx-crm dialplan > /etc/asterisk/pbx-crm.conf" in guide
    commands = [line.split("#")[0].split(">")[0].strip() for line in guide.splitlines()
                if line.strip().startswith("pbx-crm dialplan")]
    assert len(commands) >= 4
    for command in commands:
        done = pbx_crm(*shlex.split(command)[1:])
        assert done.returncode == 0 and done.stdout, (command, done.stderr)
    readme = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    assert "| `pbx-crm dialplan" in readme


# --- c) the demo's logins are in the output of the run at hand ------------------------------


def password_in(out: str) -> str:
    return out.split("with the password ")[1].split()[0]


def signs_in(engine, login: str, password: str) -> bool:
    with transaction(engine) as session:
        return users.authenticate(session, login, password) is not None


def test_running_the_demo_again_prints_a_fresh_password_for_the_demo_users(engine, pbx_crm_at):
    url = engine.url.render_as_string(hide_password=False)
    code, first, err = pbx_crm_at(url, "demo", "--no-serve")
    assert code == 0, err
    with transaction(engine) as session:
        users.create_user(session, ADMIN, login="rudi", name="Rudi", password="rudis-own-1")
    # The first run's output is gone (it crashed, say): the next run shows logins that work.
    code, again, err = pbx_crm_at(url, "demo", "--no-serve")
    assert code == 0, err
    old, new = password_in(first), password_in(again)
    assert new != old and len(new) >= 12
    assert "none was added" in again and "new password for this run" in again
    for login in ("head", "ana", "budi", "citra"):
        assert f"\n  {login} " in again
        assert signs_in(engine, login, new) and not signs_in(engine, login, old)
    # A user the demo did not make keeps their password, and the output says so.
    rudi = next(line for line in again.splitlines() if line.startswith("  rudi "))
    assert "own password" in rudi and "pbx-crm user passwd" in rudi
    assert signs_in(engine, "rudi", "rudis-own-1")


def test_the_demo_on_a_database_of_someone_elses_users_changes_no_password(engine, pbx_crm_at):
    with transaction(engine) as session:
        users.create_user(session, ADMIN, login="ana", name="Ana Real", password="anas-own-12",
                          role="head")
    code, out, err = pbx_crm_at(engine.url.render_as_string(hide_password=False), "demo",
                                "--no-serve")
    assert code == 0, err
    assert "no password was changed" in out and "`pbx-crm user passwd LOGIN`" in out
    assert "with the password" not in out
    assert signs_in(engine, "ana", "anas-own-12")


# --- d) the simulate line the demo prints runs as printed -------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_as_printed(line: str, cwd: str = "/") -> subprocess.CompletedProcess:
    """What a shell does with the line: its NAME=VALUE words go to the command's environment
    (on top of a shell that has no PBX_CRM_* of its own), the rest is the command."""
    words = shlex.split(line)
    env = clean_env()
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_printed_simulate_line_plays_calls_into_the_running_demo_from_another_directory(
        tmp_path):
    # The demo started as `./dev.sh demo` starts it, but with a data directory given relative
    # to where it was started; the line is then typed in a second terminal, in `/`.
    (tmp_path / "here").mkdir()
    env = clean_env()
    env.update(PYTHONUNBUFFERED="1", PBX_CRM_FASTAGI_LISTEN=f"127.0.0.1:{free_port()}",
               PBX_CRM_AMI_PORT=str(free_port()), PBX_CRM_WEB_LISTEN=f"127.0.0.1:{free_port()}")
    demo = subprocess.Popen([str(SCRIPT), "--data-dir", "data", "demo", "--no-calls"],
                            cwd=tmp_path / "here", env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        lines = iter(demo.stdout.readline, "")
        for line in lines:
            if line.startswith("Play more calls"):
                break
        printed = next(lines).strip()
        for line in lines:  # the line is printed before the FastAGI server and AMI start
            if line.startswith("Started robots"):
                break
        assert shlex.split(printed)[5] == str(SCRIPT)  # by its full path
        assert str(tmp_path / "here" / "data") in printed

        # As printed, with the pace of a test added at the end (the last value counts).
        played = run_as_printed(printed + " --calls 4 --rate 20 --time-scale 0")
        assert played.returncode == 0, played.stdout + played.stderr
        assert "AMI: the phones ring through the demo's emulator" in played.stdout
        assert played.stdout.strip().splitlines()[-1].startswith("4 calls in ")
        assert "UNAVAILABLE 0;" in played.stdout
    finally:
        demo.send_signal(signal.SIGTERM)
        _, err = demo.communicate(timeout=60)
    assert demo.returncode == 0 and "Traceback" not in err, err


def test_the_printed_line_names_the_demos_database_in_full_on_either_database(engine, pbx_crm_at,
                                                                               tmp_path):
    """On PostgreSQL the line carries the URL, password and all; against a FastAGI server and
    an AMI emulator started the way the demo starts them, it plays its calls."""
    url = engine.url.render_as_string(hide_password=False)
    assert pbx_crm_at(url, "demo", "--no-serve")[0] == 0
    with transaction(engine, read_only=True) as session:
        before = len(session.exec(select(Call)).all())  # the demo's callers nobody answered
    args = cli.build_parser().parse_args(["--database-url", url, "demo"])
    settings = Settings(data_dir=tmp_path / "data", database_url=url,
                        fastagi_listen=Address("127.0.0.1", free_port()), hook_budget_ms=5000)
    fake_ami, settings = sample._start_demo_ami(settings)
    crm = start_fastagi(settings, engine, replay_interval=3600)
    try:
        printed = sample._simulate_hint(args, settings, engine)
        words = shlex.split(printed)
        assert words[words.index("--database-url") + 1] == url
        assert words[words.index("--data-dir") + 1] == str(tmp_path / "data")
        # As printed, then a quicker pace of this test's own (the last option given wins).
        played = run_as_printed(printed + " --calls 5 --rate 10 --time-scale 0")
        assert played.returncode == 0, played.stdout + played.stderr
        assert "UNAVAILABLE 0;" in played.stdout
        assert crm.dispatcher.wait_idle(30)
    finally:
        crm.stop()
        fake_ami.stop()
    with transaction(engine, read_only=True) as session:
        assert len(session.exec(select(Call)).all()) == before + 5
