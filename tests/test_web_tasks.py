"""The Tasks page over real HTTP, on both databases: a seller's list and a head's, the quick
add (by the deal's title, by a choice among several, by a pop's deal), done from the list,
and a deal's next task on its board card and deal card.

The team: ana and budi sell (Jakarta time), hana is the head. Ana has two deals, "Office
fit-out" and "Office move"; budi has "ERP rollout".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from factories import ADMIN, make_contact, make_deal, make_pipeline, make_user
from sqlmodel import select
from webtools import signed_in

from pbx_crm.db import transaction
from pbx_crm.funnel import tasks
from pbx_crm.models import Notification, Task
from pbx_crm.people import users

NOW = datetime.now(UTC)


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        make_user(session, "hana", role="head")
        siti = make_contact(session, name="Siti Rahmawati", phones=("+62 811-2000-3000",))
        fit_out = make_deal(session, ana, title="Office fit-out", contact_id=siti.id)
        move = make_deal(session, ana, title="Office move")
        erp = make_deal(session, budi, title="ERP rollout")
        late = tasks.add_task(session, ana, fit_out.id, title="Send the offer",
                              due_at=NOW - timedelta(hours=2))
        later = tasks.add_task(session, ana, move.id, title="Book the movers",
                               due_at=NOW + timedelta(days=3))
        tasks.add_task(session, budi, erp.id, title="Demo the ERP",
                       due_at=NOW - timedelta(hours=1))
    return {"fit_out": fit_out.id, "move": move.id, "erp": erp.id, "late": late.id,
            "later": later.id, "ana": ana, "budi": budi}


def group(page: str, name: str) -> str:
    match = re.search(rf'<section class="panel task-group" id="tasks-{name}">(.*?)</section>',
                      page, re.S)
    assert match, f"no {name} group"
    return match.group(1)


def task_row(engine, title):
    with transaction(engine, read_only=True) as session:
        return session.exec(select(Task).where(Task.title == title)).one()


def test_a_seller_sees_her_tasks_by_due_time_and_a_head_the_teams(web, crm):
    ana = signed_in(web, "ana")
    page = ana.get("/tasks")
    assert page.status == 200 and 'href="/tasks"' in page.text  # the menu item
    overdue = group(page.text, "overdue")
    assert "Send the offer" in overdue and "overdue-task" in overdue
    assert f'href="/deals/{crm["fit_out"]}"' in overdue
    assert "Book the movers" in group(page.text, "upcoming")
    assert "Demo the ERP" not in page.text

    hana = signed_in(web, "hana")
    team = hana.get("/tasks").text
    assert "Send the offer" in team and "Demo the ERP" in team
    assert "Budi · 1 overdue" in team  # the seller filter counts each one's overdue tasks
    only_budi = hana.get(f"/tasks?seller={crm['budi'].user_id}").text
    assert "Demo the ERP" in only_budi and "Send the offer" not in only_budi


def test_a_task_is_added_for_the_deal_its_title_names_due_in_the_users_time(web, crm, engine):
    ana = signed_in(web, "ana")
    answer = ana.post("/tasks", {"deal": "fit-out", "title": "Call the architect",
                                 "due": "2031-03-04", "due_time": "09:30", "next": "/tasks"})
    assert (answer.status, answer.location) == (303, web.url + "/tasks")
    task = task_row(engine, "Call the architect")
    assert task.deal_id == crm["fit_out"]
    assert task.due_at == datetime(2031, 3, 4, 2, 30, tzinfo=UTC)  # 09:30 in Jakarta

    # "Office" names two of her deals: the form asks which, keeping what she typed.
    answer = ana.post("/tasks", {"deal": "Office", "title": "Measure the rooms"})
    assert answer.status == 400 and "Several deals match; choose one." in answer.text
    assert answer.text.count('name="deal_id"') == 2
    assert 'value="Measure the rooms"' in answer.text
    answer = ana.post("/tasks", {"deal_id": str(crm["move"]), "title": "Measure the rooms"})
    assert answer.status == 303 and task_row(engine, "Measure the rooms").deal_id == crm["move"]

    # Budi's deal is not hers to add to, by its title or by its number.
    assert ana.post("/tasks", {"deal": "ERP", "title": "Snoop"}).status == 400
    assert ana.post("/tasks", {"deal_id": str(crm["erp"]), "title": "Snoop"}).status == 403
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(Task).where(Task.title == "Snoop")).all() == []


def test_a_deal_number_typed_in_full_picks_that_deal(web, crm, engine):
    """Deal #N wins over a deal that merely holds N in its title (or its phone)."""
    number = crm["fit_out"]
    with transaction(engine) as session:
        make_deal(session, crm["ana"], title=f"Room {number} upgrade")
    ana = signed_in(web, "ana")
    for typed, title in ((str(number), "Bring the samples"), (f"#{number}", "Send the plan")):
        assert ana.post("/tasks", {"deal": typed, "title": title}).status == 303
        assert task_row(engine, title).deal_id == number
    # Budi's deal, by its number, is still not hers.
    assert ana.post("/tasks", {"deal": str(crm["erp"]), "title": "Snoop"}).status == 400

def test_a_pop_adds_a_task_for_its_deal_and_reads_json(web, crm, engine):
    ana = signed_in(web, "ana")
    answer, body = ana.post_json("/tasks", {"deal_id": str(crm["fit_out"]),
                                            "title": "Send the brochure"})
    assert answer.status == 201 and body["ok"] is True
    assert (body["task"]["deal_id"], body["task"]["due_at"]) == (crm["fit_out"], None)
    answer, body = ana.post_json("/tasks", {"deal_id": str(crm["fit_out"]), "title": " "})
    assert (answer.status, body) == (400, {"error": "A task needs a title."})
    # A pop's form goes back to the page it was on, never to another site.
    page = ana.post("/tasks", {"deal_id": str(crm["fit_out"]), "title": "Call again",
                               "next": "//evil.example/"})
    assert page.location == web.url + "/tasks"
    assert ana.post("/tasks", {"deal_id": str(crm["fit_out"]), "title": "x"},
                    csrf=False).status == 403


def test_a_task_is_done_from_the_list_once(web, crm, engine):
    ana = signed_in(web, "ana")
    answer = ana.post(f"/tasks/{crm['late']}/done", {"next": "/tasks"})
    assert answer.status == 303
    assert task_row(engine, "Send the offer").done_at is not None
    page = ana.get("/tasks").text
    assert "Send the offer" in group(page, "done") and "Send the offer" not in group(
        page, "overdue")
    assert ana.post("/settings/language", {"language": "id"}).status == 303
    again = ana.post(f"/tasks/{crm['late']}/done")
    assert again.status == 409 and "Tugas ini sudah selesai." in again.text
    budi = signed_in(web, "budi")
    assert budi.post(f"/tasks/{crm['later']}/done").status == 403
    assert task_row(engine, "Book the movers").done_at is None


def test_the_board_card_and_the_deal_card_show_the_next_task(web, crm):
    ana = signed_in(web, "ana")
    board = ana.get("/board").text
    card = re.search(rf'<li class="card[^"]*"[^>]*id="deal-{crm["fit_out"]}">(.*?)</li>',
                     board, re.S).group(1)
    assert re.search(r'class="next-task overdue-task">Send the offer · <time>', card)
    card = re.search(rf'<li class="card[^"]*"[^>]*id="deal-{crm["move"]}">(.*?)</li>',
                     board, re.S).group(1)
    assert '<div class="next-task">Book the movers' in card
    deal = ana.get(f"/deals/{crm['fit_out']}").text
    assert re.search(r'class="next-task overdue-task" id="next-task">Next task: Send the offer',
                     deal)


def test_a_reminder_reads_in_the_users_language(web, crm, engine, settings):
    from pbx_crm.robots import task_reminders

    with transaction(engine) as session:
        users.set_email(session, ADMIN, crm["ana"].user_id, None)
    assert task_reminders.remind_due_tasks(engine, settings).reminded == 2
    ana = signed_in(web, "ana")
    assert ana.post("/settings/language", {"language": "id"}).status == 303
    page = ana.get("/notifications").text
    assert "Tugas jatuh tempo: Send the offer" in page and "Task due" not in page
    with transaction(engine, read_only=True) as session:
        assert {n.user_id for n in session.exec(select(Notification))} == {
            crm["ana"].user_id, crm["budi"].user_id}
