"""`pbx-crm report ...`: the funnel report on the command line, as text and as CSV."""

from __future__ import annotations

import csv
import io

import pytest

from pbx_crm.cli import main as cli
from pbx_crm.db import transaction
from test_reports import build_funnel

PERIOD = ("--pipeline", "Sales", "--from", "2024-05-06", "--to", "2024-05-19")


@pytest.fixture
def run(engine, capsys):
    """The funnel of test_reports, committed; run("funnel", ...) -> (code, stdout, stderr)."""
    with transaction(engine) as session:
        funnel = build_funnel(session)
    url = engine.url.render_as_string(hide_password=False)

    def run(*args):
        code = cli.main(["--database-url", url, "report", *args])
        out, err = capsys.readouterr()
        return code, out, err

    run.funnel = funnel
    return run


def lines(text):
    return [" ".join(line.split()) for line in text.splitlines()]


def test_the_funnel_as_text_tables(run):
    code, out, err = run("funnel", *PERIOD)
    assert (code, err) == (0, "")
    shown = lines(out)
    assert shown[0] == ("Sales, 2024-05-06 to 2024-05-19 (Asia/Jakarta), all sellers; "
                        "amounts in IDR")
    # Money in major units, as written in the company's country (rupiah: 400 sen is Rp4).
    assert "Opportunity 2 Rp4 11 6 0 3 66.7 33.3 30.3 24.0" in shown
    assert "Commercial proposal 2 Rp3 6 2 1 2 50.0 50.0 68.6 48.0" in shown
    assert "Document coordination 1 Rp5 1 0 0 0 - - - -" in shown
    assert "11 1 5 Rp1 16.7 6.7 6.7" in shown  # created, won, lost, money, win %, cycle days
    assert "2024-05-13 0 1 1 1" in shown


def test_one_table_as_csv(run):
    code, out, _ = run("funnel", *PERIOD, "--csv", "--table", "weeks")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["week of", "created", "moved on", "won", "lost"],
        ["2024-05-06", "11", "8", "0", "4"], ["2024-05-13", "0", "1", "1", "1"]]
    code, out, _ = run("calls", *PERIOD, "--csv")
    assert list(csv.reader(io.StringIO(out)))[3] == [
        "Commercial proposal", "6", "5", "2", "2", "0.83"]


def test_one_sellers_loss_map(run):
    code, out, _ = run("losses", *PERIOD, "--seller", "budi")
    assert code == 0
    shown = lines(out)
    assert shown[0].endswith("Budi; amounts in IDR")
    assert "Budi Opportunity 3 0 0.0 0.0" in shown
    assert not any(line.startswith("Ana") for line in shown)
    assert "south Commercial proposal 1 1 50.0 50.0" in shown


def test_advice_names_the_deals_behind_each_hint(run):
    code, out, _ = run("advice", *PERIOD, "--csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    deal = run.funnel.deal
    assert rows == [["hint", "advice", "deals"], [
        "weak_seller",
        "Ana lost 50% of the deals decided at “Opportunity” (3 of 6); the rest of the team 0%. "
        "Go through those deals with Ana.",
        " ".join(f"#{deal[name].id}" for name in ("A6", "A5", "A4"))]]


@pytest.mark.parametrize("args, code, message", [
    (("funnel", "--from", "2024-13-01"), 2, "expected a date such as 2024-05-31"),
    (("funnel", *PERIOD, "--seller", "nobody"), 1, "nobody"),
    (("funnel", "--pipeline", "Nope"), 1, "Nope"),
    (("funnel", "--from", "2024-05-19", "--to", "2024-05-06"), 1, "end after it starts"),
    (("losses", *PERIOD, "--csv", "--table", "team_losses", "--seller", "nobody"), 1, "nobody"),
])
def test_bad_input_is_one_line_and_an_exit_code(run, args, code, message):
    got, out, err = run(*args)
    assert got == code and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("view", ["funnel", "losses", "calls", "nudges", "advice"])
def test_every_view_explains_itself(view, capsys):
    assert cli.main(["report", view, "--help"]) == 0
    assert "--seller LOGIN" in capsys.readouterr().out


def test_open_tasks_per_seller(run):
    code, out, _ = run("tasks", *PERIOD)
    assert code == 0
    assert "Open tasks by seller" in out.splitlines()
