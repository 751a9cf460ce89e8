"""The Tasks page in a real Chromium, on both databases and in both languages: Siti rings
ana's deal twice while ana is away (two calls played through the real FastAGI component),
ana opens Tasks from the menu, finds one "Call back" task counting both calls, due today
or soon after, and marks it done from the list. In Indonesian no English text of the Tasks
module is left on the page (its strings, read from the templates, checked against the page).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from playwright.sync_api import expect

from factories import ADMIN, make_contact, make_deal, make_pipeline, make_user
from pbx_crm.db import transaction
from pbx_crm.people import users
from pbx_crm.webui.app import load_translations

SITI = "+62 811-2000-3000"
SITI_E164 = "+6281120003000"
TEMPLATES = Path(__file__).resolve().parents[2] / "webui" / "templates"


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        make_user(session, "budi", extensions=["102"])
        siti = make_contact(session, name="Siti Rahmawati", phones=(SITI,))
        deal = make_deal(session, ana, title="Office fit-out", contact_id=siti.id)
    return {"ana": ana, "deal": deal}


def english_of_the_tasks_module(language: str) -> list[str]:
    """The English words of the Tasks page that its ``language`` does not share, as babel
    extracts them from its templates: each message cut at its placeholders, the pieces long
    enough to be words, less those its translation keeps (a number format, a name)."""
    catalog = load_translations(language)
    pieces = set()
    for template in ("tasks.html", "_task.html"):
        for _, message, _, _ in extract_from_file(
                "jinja2", TEMPLATES / template,
                keywords={"_": None, "gettext": None, "ngettext": (1, 2)},
                options={"extensions": "jinja2.ext.i18n"}):
            if isinstance(message, tuple):
                texts, translated = message, catalog.ngettext(*message, 1)
            else:
                texts, translated = (message,), catalog.gettext(message)
            for text in texts:
                pieces |= {piece.strip() for piece in re.split(r"%\(\w+\)[sd]", text)
                           if piece.strip() not in translated}
    return sorted(piece for piece in pieces if len(piece) >= 4)


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_missed_calls_callback_is_on_the_tasks_page_and_done_from_it(
        open_page, crm, engine, pbx, language):
    with transaction(engine) as session:
        users.set_language(session, ADMIN, crm["ana"].user_id, language)
    say = load_translations(language)
    for _ in range(2):
        pbx.call(pbx.trunk_call(SITI, "Siti"), answered_by=None, dialstatus="NOANSWER")

    ana = open_page("ana")
    ana.click("#menu-tasks")
    ana.wait_for_url("**/tasks")
    callback = ana.locator("li.task", has_text=SITI_E164)
    expect(callback).to_have_count(1)
    expect(callback.locator(".task-title")).to_have_text(say.ngettext(
        "Call back %(number)s (%(num)d missed call)",
        "Call back %(number)s (%(num)d missed calls)", 2) % {"number": SITI_E164, "num": 2})
    expect(callback.locator("a.task-deal")).to_have_text(f"#{crm['deal'].id} Office fit-out")
    # Due a quarter of an hour after the first call: later today, or early tomorrow.
    assert ana.locator("#tasks-today li.task, #tasks-upcoming li.task").count() == 1

    callback.get_by_role("button", name=say.gettext("Done")).click()
    done = ana.locator("#tasks-done li.task", has_text=SITI_E164)
    expect(done).to_have_count(1)
    expect(ana.locator("#tasks-today li.task, #tasks-upcoming li.task")).to_have_count(0)
    expect(done.locator(".task-due")).to_contain_text(say.gettext("done %(time)s")
                                                      .split("%")[0].strip())

    if language == "id":
        shown = ana.locator("header.top nav").inner_text() + ana.locator("main").inner_text()
        strings = english_of_the_tasks_module(language)
        assert len(strings) > 20 and "Overdue" in strings
        assert [words for words in strings if words in shown] == []
        assert "Tugas" in shown and "Telepon balik" in shown


def test_when_several_deals_match_each_choice_is_one_line_with_its_radio(open_page, crm,
                                                                          engine):
    with transaction(engine) as session:
        make_deal(session, crm["ana"], title="Office move")
    ana = open_page("ana")
    ana.goto("/tasks")
    ana.fill("#task-add input[name=deal]", "Office")
    ana.fill("#task-add input[name=title]", "Measure the rooms")
    ana.click("#task-add button[type=submit]")
    choices = ana.locator(".task-deal-choices label")
    expect(choices).to_have_count(2)
    for choice in choices.all():
        radio = choice.locator("input[type=radio]").bounding_box()
        line = choice.bounding_box()
        assert line["height"] < 2 * radio["height"] + 8, "the radio sits beside its deal"
        assert radio["x"] - line["x"] < 10, "the radio opens the line"
    choices.filter(has_text="Office move").locator("input").check()
    ana.click("#task-add button[type=submit]")
    expect(ana.locator("li.task", has_text="Measure the rooms")).to_have_count(1)
