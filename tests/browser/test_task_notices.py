"""Tasks in the seller's browser, in a real Chromium on both databases and in both languages:
a task falling due shows a notice with a link to its deal, which stays across pages until
closed; Siti's missed calls make a callback task whose reminder names her number and calls
in the seller's language; while Siti rings, ana adds a task for the deal from the pop, sees
it added in the pop, and finds it on the Tasks page. In Indonesian none of this speaks English.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from factories import ADMIN, make_contact, make_deal, make_pipeline, make_user
from pbx_crm.db import transaction
from pbx_crm.funnel import tasks
from pbx_crm.models import utcnow
from pbx_crm.people import users
from pbx_crm.robots.task_reminders import remind_due_tasks
from pbx_crm.webui.app import load_translations

SITI = "+62 811-2000-3000"
SITI_E164 = "+6281120003000"
# The English this part adds to the page (the pop's task form, the reminder), as users read it.
ENGLISH = ["Add a task", "Task due", "Task added", "Call back", "missed call"]


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        make_user(session, "budi", extensions=["102"])
        siti = make_contact(session, name="Siti Rahmawati", phones=(SITI,))
        deal = make_deal(session, ana, title="Office fit-out", contact_id=siti.id)
    return {"ana": ana, "deal": deal}


def speaks(engine, crm, language: str):
    with transaction(engine) as session:
        users.set_language(session, ADMIN, crm["ana"].user_id, language)
    return load_translations(language)


def english_on(page) -> list[str]:
    shown = page.locator("body").inner_text() + page.evaluate(
        "Array.from(document.querySelectorAll('[title], [aria-label], [placeholder]'))"
        ".map(e => [e.title, e.getAttribute('aria-label'), e.placeholder].join(' ')).join(' ')")
    return [words for words in ENGLISH if words in shown]


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_task_falling_due_shows_a_notice_with_a_link_to_its_deal(
        open_page, crm, engine, settings, language):
    say = speaks(engine, crm, language)
    with transaction(engine) as session:
        tasks.add_task(session, crm["ana"], crm["deal"].id, title="Send the quote",
                       due_at=utcnow() + timedelta(minutes=5))
    ana = open_page("ana")
    assert remind_due_tasks(engine, settings, now=utcnow() + timedelta(minutes=6)).reminded == 1
    notice = ana.locator("#notices .notice.reminder")
    expect(notice).to_have_count(1)
    expect(notice).to_contain_text(say.gettext("Task due: %(title)s")
                                   % {"title": "Send the quote"})
    link = notice.locator("a.notice-link")
    expect(link).to_have_text(f"#{crm['deal'].id} Office fit-out")
    link.click()
    ana.wait_for_url(f"**/deals/{crm['deal'].id}")
    # Still there on the deal's page, until ana closes it; then gone for good.
    expect(ana.locator("#notices .notice.reminder")).to_have_count(1)
    if language == "id":
        assert english_on(ana) == []
    ana.locator("#notices .notice.reminder .notice-close").click()
    ana.reload()
    ana.locator("#deal-title").wait_for()
    expect(ana.locator("#notices .notice.reminder")).to_have_count(0)


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_callback_reminder_names_the_number_and_its_calls(open_page, crm, engine, settings,
                                                            pbx, language):
    say = speaks(engine, crm, language)
    for _ in range(2):
        pbx.call(pbx.trunk_call(SITI, "Siti"), answered_by=None, dialstatus="NOANSWER")
    ana = open_page("ana")
    remind_due_tasks(engine, settings, now=utcnow() + timedelta(hours=1))
    notice = ana.locator("#notices .notice.reminder")
    expect(notice).to_contain_text(say.ngettext(
        "Call back %(number)s (%(num)d missed call)",
        "Call back %(number)s (%(num)d missed calls)", 2) % {"number": SITI_E164, "num": 2})
    if language == "id":
        assert english_on(ana) == []


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_pop_adds_a_task_that_then_shows_on_the_tasks_page(open_page, crm, engine, pbx,
                                                             language):
    say = speaks(engine, crm, language)
    ana = open_page("ana")
    call = pbx.trunk_call(SITI, "Siti")
    pbx.incoming(call)
    pop = ana.locator("#screenpops .pop")
    expect(pop.locator(".pop-deal")).to_have_text("Office fit-out")
    pop.get_by_role("button", name=say.gettext("Add a task")).click()
    pop.locator("input[name=title]").fill("Send the signed offer")
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    pop.locator("input[name=due]").fill(tomorrow)
    pop.locator("input[name=due_time]").fill("10:30")
    # The call ends meanwhile: the pop waits for the form, it does not fade under the hand.
    pbx.hangup(call, "NOANSWER")
    expect(pop).to_have_attribute("data-state", "ended")
    ana.wait_for_timeout(4_500)
    expect(pop).to_have_count(1)
    if language == "id":
        assert english_on(ana) == []
    with ana.expect_response("**/tasks") as added:
        pop.get_by_role("button", name=say.gettext("Add"), exact=True).click()
    assert added.value.status == 201
    expect(pop.locator(".pop-task-answer")).to_have_text(
        say.gettext("Task added: %(title)s") % {"title": "Send the signed offer"})
    if language == "id":
        assert english_on(ana) == []

    ana.goto("/tasks")
    task = ana.locator("li.task", has_text="Send the signed offer")
    expect(task).to_have_count(1)
    expect(task.locator("a.task-deal")).to_have_text(f"#{crm['deal'].id} Office fit-out")
    expect(task.locator(".task-due")).to_contain_text(re.compile(r"10[:.]30"))
