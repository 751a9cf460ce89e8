"""The admin's command line, run in-process through ``main`` on SQLite and PostgreSQL.

Each scenario is what an admin types; the database is checked through the services afterwards.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from pbx_crm.cli import common, running
from pbx_crm.cli import main as cli
from pbx_crm.funnel import pipelines
from pbx_crm.people import users
from pbx_crm.db import transaction
from pbx_crm.models import Contact, ContactPhone
from pbx_crm.simulator.agi import FakeChannel, run_fastagi

EXAMPLE_PHONE_BOOK = Path(__file__).resolve().parent.parent / "docs" / "examples" / "phonebook.csv"


@pytest.fixture
def run(engine, pbx_crm_at):
    """pbx-crm on the test database: run("user", "list") -> (exit code, stdout, stderr)."""
    return functools.partial(pbx_crm_at, engine.url.render_as_string(hide_password=False))


@pytest.fixture
def run_fresh(tmp_path, capsys):
    """pbx-crm on an SQLite file in a data directory of its own, not migrated yet."""

    def run(*args):
        code = cli.main(["--data-dir", str(tmp_path / "data"), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def write(tmp_path, name: str, text: str, encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def add_user(run, login="ana", *more, password="s3cret-pass"):
    code, out, err = run("user", "add", login, "--name", login.title(), *more,
                         "--password-stdin", stdin=password + "\n")
    assert code == 0, err
    return out


def contact_count(engine) -> int:
    with transaction(engine, read_only=True) as session:
        return len(session.exec(select(Contact.id)).all())


# --- the database ---------------------------------------------------------------------------


def test_a_new_database_is_migrated_by_db_upgrade_and_status_follows(run_fresh):
    code, out, _ = run_fresh("db", "status")
    assert code == 0 and "not migrated" in out and "run `pbx-crm db upgrade`" in out

    code, out, _ = run_fresh("db", "upgrade")
    assert code == 0 and "is at revision" in out

    code, out, _ = run_fresh("db", "status")
    assert code == 0 and "up to date" in out
    assert run_fresh("db", "upgrade")[0] == 0  # safe to run again


def test_a_command_on_a_database_not_migrated_says_to_run_db_upgrade(run_fresh):
    code, out, err = run_fresh("user", "list")
    assert code == 1 and out == ""
    assert err.startswith("pbx-crm: ") and "run `pbx-crm db upgrade` first" in err
    assert "Traceback" not in err


def test_db_status_on_a_migrated_database(run):
    code, out, _ = run("db", "status")
    assert code == 0 and "up to date" in out


def test_db_dump_prints_the_schema_of_the_configured_database(run):
    code, out, err = run("db", "dump")
    assert code == 0, err
    assert "deals" in out and "stage_history" in out


def test_an_unreachable_database_is_one_line_without_the_password(capsys):
    code = cli.main(["--database-url", "postgresql+psycopg://crm:hunter2@127.0.0.1:1/crm",
                     "user", "list"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("pbx-crm: database ")
    assert "hunter2" not in err and "Traceback" not in err


def test_an_unusable_setting_exits_2_naming_the_flag(run):
    code, _, err = run("--phone-region", "XX", "user", "list")
    assert code == 2 and "--phone-region" in err


# --- users ----------------------------------------------------------------------------------


def test_an_admin_adds_a_seller_with_the_password_on_stdin_and_lists_them(run, engine):
    out = add_user(run, "ana", "--role", "seller", "--extension", "101", "--extension", "102",
                   "--team", "Jakarta")
    assert "ana" in out and "101, 102" in out

    code, out, _ = run("user", "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["LOGIN", "NAME", "ROLE", "EXTENSIONS", "ACTIVE"]
    assert row.split() == ["ana", "Ana", "seller", "101,", "102", "yes"]
    with transaction(engine) as session:
        assert users.authenticate(session, "ana", "s3cret-pass") is not None


def test_a_password_is_never_taken_from_the_command_line(run, engine):
    for flag in ("--password", "--passw"):  # nor as an abbreviation of --password-stdin
        code, _, err = run("user", "add", "ana", "--name", "Ana", flag, "s3cret-pass")
        assert code == 2 and "unrecognized arguments" in err
    with transaction(engine) as session:
        assert users.list_users(session) == []


def test_the_password_prompt_asks_twice_and_refuses_a_mismatch(run, engine, monkeypatch):
    answers = iter(["first-password", "other-password"])
    monkeypatch.setattr(common.getpass, "getpass", lambda prompt="": next(answers))
    code, _, err = run("user", "add", "ana", "--name", "Ana")
    assert code == 1 and "differ" in err

    answers = iter(["same-password", "same-password"])
    assert run("user", "add", "ana", "--name", "Ana")[0] == 0
    with transaction(engine) as session:
        assert users.authenticate(session, "ana", "same-password") is not None


def test_a_too_short_password_is_refused_by_the_service(run):
    code, _, err = run("user", "add", "ana", "--name", "Ana", "--password-stdin",
                       stdin="short\n")
    assert code == 1 and "at least 8 characters" in err


def test_passwd_sets_a_new_password(run, engine):
    add_user(run, "ana")
    code, out, _ = run("user", "passwd", "ana", "--password-stdin", stdin="new-password-1\n")
    assert code == 0 and "ana" in out
    with transaction(engine) as session:
        assert users.authenticate(session, "ana", "new-password-1") is not None
        assert users.authenticate(session, "ana", "s3cret-pass") is None


def test_passwd_for_an_unknown_login_fails_before_asking(run):
    code, _, err = run("user", "passwd", "nobody", "--password-stdin", stdin="")
    assert code == 1 and "nobody" in err


def test_deactivate_and_activate(run, engine):
    add_user(run, "ana")
    assert run("user", "deactivate", "ana")[0] == 0
    assert run("user", "list")[1].splitlines()[1].split()[-1] == "no"
    with transaction(engine) as session:
        assert users.authenticate(session, "ana", "s3cret-pass") is None
    assert run("user", "activate", "ana")[0] == 0
    assert run("user", "list")[1].splitlines()[1].split()[-1] == "yes"


def test_a_users_nudges_are_e_mailed_to_the_address_set_until_it_is_cleared(run, engine):
    add_user(run, "ana")
    code, out, _ = run("user", "email", "ana", "ana@toko.example")
    assert code == 0 and "ana@toko.example" in out
    with transaction(engine) as session:
        assert users.get_user_by_login(session, "ana").email == "ana@toko.example"

    code, _, err = run("user", "email", "ana", "not an address")
    assert code == 1 and "is not an e-mail address" in err
    assert run("user", "email", "ana")[0] == 1  # clearing needs saying so
    code, out, _ = run("user", "email", "ana", "--clear")
    assert code == 0 and "stay in the CRM" in out
    with transaction(engine) as session:
        assert users.get_user_by_login(session, "ana").email is None


def test_extensions_are_replaced_and_an_extension_rings_one_user_only(run):
    add_user(run, "ana", "--extension", "101")
    add_user(run, "budi", "--extension", "102")
    code, out, _ = run("user", "extensions", "ana", "103", "104")
    assert code == 0 and "103, 104" in out

    code, _, err = run("user", "extensions", "ana", "102")
    assert code == 1 and "102 already rings budi" in err

    assert run("user", "extensions", "ana")[0] == 1  # clearing needs saying so
    code, out, _ = run("user", "extensions", "ana", "--clear")
    assert code == 0 and "no extension" in out


# --- pipelines and stages -----------------------------------------------------------------


def test_an_admin_sets_up_a_pipeline_and_changes_its_stages(run, engine):
    code, out, err = run("pipeline", "add", "Sales", "--stage", "Opportunity",
                         "--stage", "Commercial proposal", "--won-stage", "Paid",
                         "--currency", "idr")
    assert code == 0, err
    assert "Sales" in out and "default" in out and "IDR" in out

    code, out, _ = run("pipeline", "list")
    lines = out.splitlines()
    assert [line.split(".", 1)[1].split("#")[0].strip() for line in lines[1:]] == \
        ["Unsorted", "Opportunity", "Commercial proposal", "Paid", "Lost"]
    assert "unsorted" in lines[1] and "won" in lines[4] and "lost" in lines[5]

    assert run("stage", "add", "Sales", "Negotiation")[0] == 0
    assert run("stage", "add", "Sales", "Lost to a rival", "--kind", "lost")[0] == 0
    with transaction(engine) as session:
        pipeline = pipelines.find_pipeline(session, "Sales")
        stages = {s.name: s for s in pipelines.stages_of(session, pipeline.id)}
    assert list(stages) == ["Unsorted", "Opportunity", "Commercial proposal", "Negotiation",
                            "Paid", "Lost", "Lost to a rival"]

    assert run("stage", "rename", str(stages["Negotiation"].id), "Negotiating")[0] == 0
    order = [stages[n].id for n in ("Unsorted", "Negotiation", "Opportunity",
                                    "Commercial proposal", "Paid", "Lost", "Lost to a rival")]
    code, out, _ = run("stage", "reorder", "Sales", *map(str, order))
    assert code == 0
    with transaction(engine) as session:
        names = [s.name for s in pipelines.stages_of(session, pipeline.id)]
    assert names == ["Unsorted", "Negotiating", "Opportunity", "Commercial proposal", "Paid",
                     "Lost", "Lost to a rival"]


def test_stage_refusals_come_from_the_services(run):
    assert run("pipeline", "add", "Sales", "--stage", "Opportunity")[0] == 0
    code, _, err = run("pipeline", "add", "Sales", "--stage", "Opportunity")
    assert code == 1 and "exists already" in err
    code, _, err = run("stage", "add", "Nope", "Negotiation")
    assert code == 1 and "Nope" in err
    code, _, err = run("stage", "reorder", "Sales", "2", "1")
    assert code == 1 and "every stage" in err
    code, _, err = run("stage", "rename", "999", "X")
    assert code == 1 and "#999" in err


def test_pipeline_list_on_an_empty_database(run):
    code, out, _ = run("pipeline", "list")
    assert code == 0 and "No pipelines yet" in out


# --- importing a phone book ---------------------------------------------------------------

GOOD_CSV = """name,phone,company,email
Agus Salim,0812-1034-5521,PT Sinar Mas,agus@sinarmas.co.id
Rina Hartono,(021) 5790 1234; 0813-2211-0098,PT Bumi Hotel,
Hendra Gunawan,+62 857-7012-3344,,
"""


def test_a_good_phone_book_imports_every_contact(run, engine, tmp_path):
    code, out, err = run("contacts", "import", write(tmp_path, "book.csv", GOOD_CSV))
    assert code == 0, err
    assert "Imported 3 contacts" in out
    with transaction(engine) as session:
        assert len(session.exec(select(Contact)).all()) == 3
        assert len(session.exec(select(ContactPhone)).all()) == 4


def test_rejected_rows_are_reported_by_line_and_nothing_is_imported(run, engine, tmp_path):
    book = write(tmp_path, "book.csv", GOOD_CSV + "Bad Number,12ab,,\n"
                                                  "No Phone,,PT Kosong,\n"
                                                  "Dewi Lestari,0822-4567-1290,,\n")
    code, out, err = run("contacts", "import", book)
    assert code == 1
    assert 'line 5: "12ab" is not a phone number' in out
    assert "line 6: no phone number" in out
    assert "2 rows of 6 rejected" in err and "nothing was imported" in err
    assert contact_count(engine) == 0

    code, out, err = run("contacts", "import", "--skip-invalid", book)
    assert code == 0, err
    assert "line 5:" in out and "line 6:" in out and "Imported 4 contacts" in out
    assert contact_count(engine) == 4


def test_line_numbers_are_the_files_own_across_blank_lines_and_quoted_breaks(run, tmp_path):
    book = write(tmp_path, "book.csv", 'name,phone,company\n'
                                       '\n'
                                       'Agus Salim,0812-1034-5521,"PT Sinar\nMas"\n'
                                       'Bad,12ab,\n')
    code, out, _ = run("contacts", "import", book)
    assert code == 1 and out.startswith('line 5: "12ab"')


def test_a_semicolon_phone_book_with_a_bom_imports(run, engine, tmp_path):
    text = ("\ufeffName;Mobile;Company\n"
            "Agus Salim;0812-1034-5521;PT Sinar Mas, Tbk\n"
            "Rina Hartono;0813-2211-0098;PT Bumi Hotel\n")
    code, out, err = run("contacts", "import", write(tmp_path, "excel.csv", text))
    assert code == 0, err
    with transaction(engine) as session:
        companies = sorted(c.company for c in session.exec(select(Contact)))
    assert companies == ["PT Bumi Hotel", "PT Sinar Mas, Tbk"]


def test_the_example_phone_book_imports_cleanly(run, engine):
    code, out, err = run("contacts", "import", str(EXAMPLE_PHONE_BOOK))
    assert code == 0, err
    rows = EXAMPLE_PHONE_BOOK.read_text(encoding="utf-8").strip().splitlines()[1:]
    assert contact_count(engine) == len(rows)


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("Agus Salim,0812-1034-5521\n", "no “name” column"),
    ("name,company\nAgus,PT X\n", "no phone column"),
    (b"name,phone\nJos\xe9,0812-1034-5521\n", "not UTF-8"),
])
def test_a_bad_file_is_refused_with_a_clear_message(run, tmp_path, content, message):
    path = tmp_path / "book.csv"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = run("contacts", "import", str(path))
    assert code == 1 and message in err and "Traceback" not in err


# --- the other commands -------------------------------------------------------------------


def test_seed_reports_what_it_wrote(run):
    code, out, err = run("seed", "--deals", "300", "--contacts", "50", "--sellers", "3",
                         "--random-seed", "7")
    assert code == 0, err
    assert "Contacts: 50" in out and "Deals: 300" in out and "seller001..seller003" in out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_answers_the_pbx_until_it_is_stopped_like_a_service(tmp_path):
    """`pbx-crm serve` from `/` on the demo data: the FastAGI hooks answer a call; SIGTERM
    stops it cleanly; it says which components are not built yet."""
    script = Path(sys.executable).parent / "pbx-crm"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_CRM_")}
    env["PBX_CRM_FASTAGI_LISTEN"] = f"127.0.0.1:{port}"
    base = [str(script), "--data-dir", str(tmp_path / "data")]
    subprocess.run([*base, "demo", "--no-serve"], cwd="/", env=env, check=True,
                   capture_output=True)
    server = subprocess.Popen([*base, "serve"], cwd="/", env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = iter(server.stdout.readline, "")
        started = [line for line in itertools.takewhile(
            lambda line: not line.startswith("Started fastagi"), lines)]
        call = FakeChannel(callerid="+62 812-3456-7890", calleridname="Budi")
        run_fastagi(("127.0.0.1", port), "incoming", ["2150001", call.linkedid], call)
        assert call.variables["CRM_STATUS"] in ("NEW", "FOUND")
        if call.variables["CRM_STATUS"] == "FOUND":
            assert call.variables["CRM_DEAL_ID"].isdigit()
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    not_built = [c.name for c in running.COMPONENTS if c.start is None]
    assert all(name in "".join(started) for name in not_built)


def test_version(capsys):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.startswith("pbx-crm 0.")


def _command_paths(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _command_paths(sub, (*prefix, name))


def test_every_command_has_help(capsys):
    paths = [(), *_command_paths(cli.build_parser())]
    assert ("user", "add") in paths and ("contacts", "import") in paths
    for path in paths:
        assert cli.main([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert out.startswith("usage: pbx-crm") and len(out.splitlines()) > 3, path


def test_a_command_group_alone_shows_its_commands(capsys):
    assert cli.main(["user"]) == 2
    assert "passwd" in capsys.readouterr().err


def test_the_installed_console_script_runs_from_anywhere(tmp_path):
    # On the default SQLite file in its data directory, from a working directory of no use.
    script = Path(sys.executable).parent / "pbx-crm"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_CRM_")}
    data_dir = str(tmp_path / "data")

    def pbx_crm(*args):
        return subprocess.run([str(script), "--data-dir", data_dir, *args], cwd="/", env=env,
                              capture_output=True, text=True, timeout=120)

    upgraded = pbx_crm("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    demo = pbx_crm("demo", "--no-serve")
    assert demo.returncode == 0, demo.stderr
    for login in ("head", "ana", "budi", "citra"):
        assert f"\n  {login} " in demo.stdout
    assert "password" in demo.stdout
