"""``pbx-crm demo``: a believable team and board, made once per database through the services."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select

from pbx_crm.cli import main as cli
from pbx_crm.cli import running
from pbx_crm.sample import demo
from pbx_crm.funnel import board, pipelines
from pbx_crm.people import users
from pbx_crm.db import transaction
from pbx_crm.reporting import days as report_days, days_rebuild
from pbx_crm.sample.demo import format_money
from pbx_crm.models import (Call, Contact, ContactPhone, Deal, StageHistory, Task, TimelineEntry,
                            User, utcnow)
from pbx_crm.rules.funnel import Actor


@pytest.fixture
def run(engine, capsys):
    url = engine.url.render_as_string(hide_password=False)

    def run(*args):
        code = cli.main(["--database-url", url, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def counts(engine) -> dict:
    with transaction(engine) as session:
        return {model.__name__: session.exec(select(func.count()).select_from(model)).one()
                for model in (User, Contact, ContactPhone, Deal, StageHistory, TimelineEntry)}


def test_the_demo_fills_every_stage_and_prints_the_board_and_logins(run, engine):
    code, out, err = run("demo", "--no-serve")
    assert code == 0, err

    with transaction(engine) as session:
        pipeline = pipelines.find_pipeline(session, demo.PIPELINE)
        stages = pipelines.stages_of(session, pipeline.id)
        all_deals = session.exec(select(Deal)).all()
        team = {user.login: (user.role, extensions)
                for user, extensions in users.list_users(session)}
        contacts = session.exec(select(Contact)).all()
    assert team == {"head": ("head", []), "ana": ("seller", ["101"]),
                    "budi": ("seller", ["102"]), "citra": ("seller", ["103"])}
    with transaction(engine) as session:  # ana's desk phone and softphone ring for 101
        assert users.devices_of_extensions(session) == {"101": ["101a", "101b"]}
    per_stage = Counter(deal.stage_id for deal in all_deals)
    assert all(per_stage[stage.id] >= 1 for stage in stages)
    unsorted = next(s for s in stages if s.is_unsorted)
    for deal in all_deals:
        if deal.stage_id == unsorted.id:
            assert deal.owner_id is None and deal.source == "call"
        else:
            assert deal.owner_id is not None
    lost = next(s for s in stages if s.kind == "lost")
    assert all(d.lost_reason for d in all_deals if d.stage_id == lost.id)
    assert 35 <= len(contacts) <= 45 and all(d.contact_id for d in all_deals)
    # Ages in stage look real: the deals were made over the past weeks, not all just now.
    created = [d.created_at for d in all_deals]
    assert max(created) - min(created) > timedelta(days=14)

    # The board: one block per stage in order, with its count and money.
    headings = [line for line in out.splitlines() if line and not line.startswith(" ")
                and ": " in line and " deal" in line]
    assert [h.split(":")[0].split(" [")[0] for h in headings] == [s.name for s in stages]
    assert "Rp " in out
    password = out.split("all with the password ")[1].split()[0]
    assert len(password) >= 12
    for login in team:
        assert f"\n  {login} " in out
    with transaction(engine) as session:
        assert users.authenticate(session, "ana", password) is not None


def test_the_callers_waiting_in_unsorted_were_missed_and_wait_for_a_call_back(run, engine):
    """A new caller nobody answered: the Unsorted card counts their calls, all missed, and
    shows the wait since the first; the deal has one open callback task, late by now, that
    counts them too. As the PBX's hooks leave a call that rings out, not a bare deal."""
    assert run("demo", "--no-serve")[0] == 0
    with transaction(engine) as session:
        pipeline = pipelines.find_pipeline(session, demo.PIPELINE)
        unsorted = next(s for s in pipelines.stages_of(session, pipeline.id) if s.is_unsorted)
        head = Actor.of(session.exec(select(User).where(User.login == "head")).one())
        cards = board.column_card_rows(session, head, unsorted)
        rang = {card.id: session.exec(select(Call).where(Call.deal_id == card.id)
                                      .order_by(Call.ringing_at)).all() for card in cards}
        callbacks = {card.id: session.exec(select(Task).where(
            Task.deal_id == card.id, Task.kind == "callback", Task.done_at.is_(None))).all()
            for card in cards}
    assert sorted(len(calls) for calls in rang.values()) == sorted(
        times for _, _, times in demo.NEW_CALLERS)  # one of them rang twice
    now = utcnow()
    for card in cards:
        calls = rang[card.id]
        assert all((call.direction, call.disposition) == ("inbound", "missed")
                   and call.ringing_at < call.ended_at < now for call in calls)
        assert (card.calls, card.missed_calls, card.waiting_since) == (
            len(calls), len(calls), calls[0].ringing_at)
        (callback,) = callbacks[card.id]
        assert (callback.missed_calls, callback.assignee_id) == (len(calls), None)
        assert callback.due_at < now  # nobody called them back yet
        assert (card.next_task_kind, card.next_task_calls) == ("callback", len(calls))


def test_the_demo_s_moves_are_counted_in_the_company_s_days(run, engine):
    code, _, err = run("--time-zone", "Europe/Berlin", "demo", "--no-serve")
    assert code == 0, err
    with transaction(engine) as session:
        assert report_days.day_zone(session) == "Europe/Berlin"
        kept = days_rebuild.totals(session)
        assert kept
        days_rebuild.rebuild(session, time_zone="Europe/Berlin")
        assert days_rebuild.totals(session) == kept


def test_each_demo_seller_has_a_day_of_tasks(run, engine):
    """One late, one due within hours, two to come, one done: the Tasks page is not empty."""
    assert run("demo", "--no-serve")[0] == 0
    with transaction(engine) as session:
        now = utcnow()
        for seller in session.exec(select(User).where(User.role == "seller")).all():
            mine = session.exec(select(Task).join(Deal, Deal.id == Task.deal_id)
                                .where(Deal.owner_id == seller.id)).all()
            open_tasks = [t for t in mine if t.done_at is None]
            assert len(open_tasks) == 4 and len(mine) == 5, seller.login
            assert sum(t.due_at < now for t in open_tasks) == 1


def test_running_the_demo_again_adds_nothing(run, engine):
    assert run("demo", "--no-serve")[0] == 0
    before = counts(engine)
    code, out, _ = run("demo", "--no-serve")
    assert code == 0 and "none was added" in out
    assert counts(engine) == before


def test_the_demo_leaves_a_database_with_users_alone(run, engine):
    with transaction(engine) as session:
        users.create_user(session, demo.ADMIN, login="boss", name="Boss", password="long-pass-1",
                          role="head")
    code, out, _ = run("demo", "--no-serve")
    assert code == 0 and "no demo data was added" in out
    assert counts(engine)["Deal"] == 0


def test_demo_alone_migrates_a_new_database(tmp_path, capsys):
    code = cli.main(["--data-dir", str(tmp_path), "demo", "--no-serve"])
    assert code == 0, capsys.readouterr().err
    assert "all with the password" in capsys.readouterr().out


def test_fresh_starts_over_on_sqlite_and_is_refused_on_postgres(run, engine):
    assert run("demo", "--no-serve")[0] == 0
    if engine.dialect.name != "sqlite":
        code, _, err = run("demo", "--fresh", "--no-serve")
        assert code == 1 and "PostgreSQL" in err
        return
    with transaction(engine) as session:
        users.create_user(session, demo.ADMIN, login="extra", name="Extra",
                          password="long-pass-1")
    engine.dispose()  # a connection left open would keep reading the deleted file
    code, out, err = run("demo", "--fresh", "--no-serve")
    assert code == 0, err
    assert "all with the password" in out
    with transaction(engine) as session:
        logins = sorted(session.exec(select(User.login)).all())
    assert logins == ["ana", "budi", "citra", "head"]


def test_a_built_component_is_started_by_serve_and_stopped_on_ctrl_c(run, monkeypatch):
    events = []

    class Handle:
        def stop(self):
            events.append("stopped")

    def start(settings, engine):
        events.append(("started", settings.phone_region))
        return Handle()

    def interrupt():
        raise KeyboardInterrupt

    monkeypatch.setattr(running, "COMPONENTS",
                        [running.Component("fake", "a fake server", start)])
    monkeypatch.setattr(running, "_wait_for_interrupt", interrupt)
    code, out, _ = run("serve")
    assert code == 0 and "Started fake" in out
    assert events == [("started", "ID"), "stopped"]


@pytest.mark.parametrize("amount_minor, currency, shown", [
    (1_250_000_000, "IDR", "Rp 12.500.000"),
    (0, "IDR", "Rp 0"),
    (99, "IDR", "Rp 1"),
    (123_456, "USD", "$1,234.56"),
    (5_000, "JPY", "JPY 5,000"),
])
def test_money_is_shown_in_major_units(amount_minor, currency, shown):
    assert format_money(amount_minor, currency) == shown
