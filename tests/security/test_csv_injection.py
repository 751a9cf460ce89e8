"""A report's CSV never hands a spreadsheet a formula.

A head named the stages of a pipeline, and a seller named themselves, the way someone
probing the CSV export would: ``=cmd|' /C calc'!A0``, ``+SUM(1,1)``, ``@SUM(1,1)``, ``-2+3``,
a name with a separator before the formula. Every report CSV (downloaded over HTTP, or
printed by ``pbx-crm report --csv``) carries those names as text a spreadsheet shows and
never runs: a leading ``'``, each text cell quoted. The figures stay plain numbers, negative
ones too.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

import pytest

from factories import at, make_pipeline, make_user, stages_by_name
from pbx_crm.cli import main as cli
from pbx_crm.funnel import deals
from pbx_crm.db import transaction
from pbx_crm.reporting.charts import Money, Table, to_csv
from webtools import signed_in

DDE = "=cmd|' /C calc'!A0"
PLUS, AT, SEPARATED = "+SUM(1,1)", "@SUM(1,1)", "Hot;=1+1"
MINUS = "-2+3"  # the seller's name
PERIOD = {"period": "custom", "from": "2024-05-06", "to": "2024-05-19"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture
def hostile(engine):
    """A pipeline whose stages and seller are named like formulas; one deal through it."""
    with transaction(engine) as session:
        pipeline = make_pipeline(session, stages=[(DDE, "open"), (PLUS, "open"), (AT, "open"),
                                                  (SEPARATED, "open"), ("Won", "won"),
                                                  ("Lost", "lost")])
        make_user(session, "hana", role="head")
        seller = make_user(session, "mallory", name=MINUS)
        stage = stages_by_name(session, pipeline)
        deal = deals.create_deal(session, seller, title="Probe", pipeline_id=pipeline.id,
                                 now=at(0))
        deals.move_deal(session, seller, deal.id, to_stage_id=stage[PLUS].id,
                        expected_version=None, now=at(60))
        deals.close_lost(session, seller, deal.id, reason="Budget", expected_version=None,
                         now=at(120))
    return {"pipeline": pipeline.id}


def cells_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def assert_no_cell_runs_as_a_formula(text: str) -> None:
    for row in cells_of(text):
        for cell in row:
            assert is_number(cell) or not cell.lstrip(" ").startswith(FORMULA_STARTS), cell


def test_every_report_csv_over_http_shows_formula_like_names_as_text(web, hostile):
    head = signed_in(web, "hana")
    query = urlencode({**PERIOD, "pipeline": hostile["pipeline"]})

    answers = {name: head.get(f"/reports/{name}.csv?{query}")
               for name in ("stages", "losses", "calls", "callbacks", "nudges",
                            "outcomes", "weeks")}

    for answer in answers.values():
        assert answer.status == 200
        assert_no_cell_runs_as_a_formula(answer.text)
    stages = [row[0] for row in cells_of(answers["stages"].text)[1:]]
    assert {"'" + DDE, "'" + PLUS, "'" + AT, SEPARATED} <= set(stages)
    losses = cells_of(answers["losses"].text)[1:]
    assert ["'" + MINUS, "'" + PLUS, "0", "1"] == losses[-1][:4]
    # The name with a separator stays one quoted cell: no cell of its own starts at "=1+1".
    assert f'"{SEPARATED}"' in answers["stages"].text


def test_the_command_lines_csv_shows_them_as_text_too(engine, hostile, capsys):
    url = engine.url.render_as_string(hide_password=False)

    code = cli.main(["--database-url", url, "report", "losses", "--pipeline", "Sales",
                     "--from", "2024-05-06", "--to", "2024-05-19", "--csv", "--table",
                     "losses"])

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert_no_cell_runs_as_a_formula(out)
    assert cells_of(out)[1:][-1][:2] == ["'" + MINUS, "'" + PLUS]


def test_figures_stay_numbers_and_negative_ones_stay_negative():
    table = Table("t", "T", ["name", "count", "amount", "change"],
                  [["-5", -5, Money(-150_000, "IDR"), -2.5], [" =1+1", 0, Money(0, "IDR"), None]])

    text = to_csv(table)

    assert text.splitlines()[1:] == ['"\'-5",-5,-1500,-2.5', '"\' =1+1",0,0,""']
