"""The reports page over real HTTP, on both databases: who sees which figures, the period
picker's checks, the advisor's deal lists and the CSV downloads.

The data is the hand-computed funnel of test_reports (6 to 19 May 2024, Jakarta dates).
"""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import urlencode

import pytest
from test_reports import build_funnel
from webtools import Client, signed_in

from pbx_crm.db import transaction
from pbx_crm.people import users
from pbx_crm.rules.funnel import Actor

PERIOD = {"period": "custom", "from": "2024-05-06", "to": "2024-05-19"}


@pytest.fixture
def funnel(engine):
    with transaction(engine) as session:
        built = build_funnel(session)
        return {"pipeline": built.pipeline.id, "ana": built.ana.user_id,
                "budi": built.budi.user_id, "stage": {n: s.id for n, s in built.stage.items()}}




def page(client, **params):
    return client.get("/reports?" + urlencode({**PERIOD, **params}))


def csv_rows(answer):
    return list(csv.reader(io.StringIO(answer.text)))


def test_a_head_sees_everyone_s_figures_charts_and_advice(web, funnel):
    head = signed_in(web, "hana")
    answer = page(head, pipeline=funnel["pipeline"])
    assert answer.status == 200
    text = answer.text
    assert "2024-05-06 – 2024-05-19 (Asia/Jakarta)" in text and "all sellers" in text
    assert 'id="funnel-chart"><svg' in text and 'id="trend-chart"><svg' in text
    assert "<script" not in text.split('id="charts"')[1].split("</section>")[0]
    for name in ("stages", "outcomes", "weeks", "losses", "team_losses", "calls",
                 "callbacks", "tasks", "nudges"):
        assert f'id="table-{name}"' in text and f"/reports/{name}.csv?" in text
    # Both sellers appear in the loss map, and the head may pick one of them.
    assert "Ana" in text and "Budi" in text and 'name="seller"' in text
    assert 'href="/reports"' in text and 'aria-current="page">Reports' in text


def test_the_missed_calls_of_no_seller_are_named_in_the_reader_s_language(web, funnel):
    head = signed_in(web, "hana")
    assert head.post("/settings/language", {"language": "id"}).status == 303
    table = page(head).text.split('id="table-callbacks"')[1].split("</section>")[0]
    assert "<td>(belum ada)</td>" in table and "nobody" not in table

def test_a_head_narrows_to_one_seller_and_a_seller_sees_only_their_own(web, funnel):
    head = signed_in(web, "hana")
    ana_only = csv_rows(head.get(f"/reports/losses.csv?{urlencode({**PERIOD, 'seller': funnel['ana']})}"))
    assert {row[0] for row in ana_only[1:]} == {"Ana"}

    ana = signed_in(web, "ana")
    own = page(ana)
    assert own.status == 200 and 'name="seller"' not in own.text
    everyone = csv_rows(ana.get("/reports/losses.csv?" + urlencode(PERIOD)))
    assert {row[0] for row in everyone[1:]} == {"Ana"}
    # Asking for budi's figures is refused, on the page and in the CSV.
    assert page(ana, seller=funnel["budi"]).status == 403
    assert ana.get("/reports/stages.csv?" + urlencode({**PERIOD, "seller": funnel["budi"]})
                   ).status == 403


def test_csv_downloads_carry_the_tables_rows(web, funnel):
    head = signed_in(web, "hana")
    answer = head.get("/reports/stages.csv?" + urlencode(PERIOD))
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="stages-2024-05-06-2024-05-20.csv"' == \
        answer.headers["Content-Disposition"]
    rows = csv_rows(answer)
    assert rows[0][:4] == ["stage", "open deals", "open amount", "entered"]
    by_stage = {row[0]: row for row in rows[1:]}
    assert by_stage["Opportunity"][3] == "11"  # entered: the hand count of test_reports
    weeks = csv_rows(head.get("/reports/weeks.csv?" + urlencode(PERIOD)))
    assert [row[0] for row in weeks[1:]] == ["2024-05-06", "2024-05-13"]
    assert head.get("/reports/nothing.csv?" + urlencode(PERIOD)).status == 400


@pytest.mark.parametrize("params, message", [
    ({"period": "fortnight"}, "Unknown period"),
    ({"period": "custom", "from": "2024-05-20", "to": "2024-05-01"}, "must end after"),
    ({"period": "custom", "from": "May", "to": "2024-05-01"}, "two dates"),
    ({"period": "custom", "from": "2010-01-01", "to": "2024-05-01"}, "at most five years"),
    ({"period": "month", "pipeline": "x1"}, "not a valid pipeline"),
])
def test_bad_periods_are_refused_with_a_reason(web, funnel, params, message):
    answer = signed_in(web, "hana").get("/reports?" + urlencode(params))
    assert answer.status == 400 and message in answer.text


def test_the_preset_periods_all_answer(web, funnel):
    head = signed_in(web, "hana")
    for kind in ("month", "30days", "quarter", "year"):
        assert head.get(f"/reports?period={kind}").status == 200


def test_a_hint_links_to_its_deals_and_a_seller_cannot_list_another_s(web, funnel):
    head = signed_in(web, "hana")
    text = page(head).text
    links = re.findall(r'href="(/reports/deals\?[^"]+)"', text)
    assert links, "the hand-computed funnel gives the advisor something to say"
    listed = head.get(links[0].replace("&amp;", "&"))
    assert listed.status == 200 and 'id="report-deals"' in listed.text
    assert re.search(r'href="/deals/\d+"', listed.text)

    lost_from = {"pipeline": funnel["pipeline"], "stage": funnel["stage"]["Opportunity"],
                 "what": "lost_from", "from": "2024-05-05T17:00:00+00:00",
                 "to": "2024-05-19T17:00:00+00:00"}
    ana = signed_in(web, "ana")
    assert ana.get("/reports/deals?" + urlencode({**lost_from, "seller": funnel["budi"]})
                   ).status == 403
    own = ana.get("/reports/deals?" + urlencode(lost_from))
    assert own.status == 200 and len(re.findall(r'href="/deals/\d+"', own.text)) == 3  # A4-A6
    assert ana.get("/reports/deals?" + urlencode({**lost_from, "what": "odd"})).status == 400
    assert ana.get("/reports/deals?" + urlencode({**lost_from, "from": "yesterday"})
                   ).status == 400


def test_the_page_needs_a_signed_in_user(web, funnel):
    assert Client(web.url).get("/reports").status == 303


def loss_grid_rows(html: str, table: str) -> dict[str, list[tuple[str, str]]]:
    """The loss grid of ``#table-<table>``: row name -> [(cell class, cell text)]."""
    section = html.split(f'id="table-{table}"')[1].split("</section>")[0]
    grid = section.split('class="loss-grid"')[1].split("</table>")[0]
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", grid, re.S)[1:]:  # the header row first
        name = re.search(r'<th scope="row">(.*?)</th>', row).group(1)
        rows[name] = [(cls, " ".join(re.sub(r"<[^>]+>", " ", text).split()))
                      for cls, text in re.findall(r'<td class="([^"]+)"[^>]*>(.*?)</td>', row,
                                                  re.S)]
    return rows


def test_the_loss_map_is_a_grid_of_stages_by_seller_shaded_by_loss(web, funnel):
    html = page(signed_in(web, "hana"), pipeline=funnel["pipeline"]).text
    header = html.split('id="table-losses"')[1].split("</thead>")[0]
    assert re.findall(r'<th scope="col">(.*?)</th>', header)[:4] == [
        "seller", "Unsorted", "Opportunity", "Commercial proposal"]
    rows = loss_grid_rows(html, "losses")
    assert list(rows) == ["Ana", "Budi", "Whole team"]
    # Ana loses 3 of 6 at Opportunity, the team a third: shaded 2 of 4 and flagged weak.
    assert rows["Ana"][1] == ("loss-2 weak", "50% weak 3/6")
    assert rows["Budi"][1] == ("loss-0", "0% 0/3")
    assert rows["Whole team"][1] == ("loss-1", "33% 3/9")
    assert rows["Ana"][0] == ("loss-0", "0% 0/1")  # Unsorted: taken, none lost


def test_the_callback_report_shows_the_target_sellers_are_measured_against(web, funnel):
    html = page(signed_in(web, "hana"), pipeline=funnel["pipeline"]).text
    section = html.split('id="table-callbacks"')[1].split("</section>")[0]
    assert "Target: every missed call called back within 30 minutes." in section
    assert "<th scope=\"col\">on target %</th>" in section


def test_an_indonesian_head_reads_the_advice_and_the_unsorted_stage_in_indonesian(web, engine,
                                                                                    funnel):
    with transaction(engine) as session:
        hana = users.get_user_by_login(session, "hana")
        users.set_language(session, Actor.of(hana), hana.id, "id")
    html = page(signed_in(web, "hana"), pipeline=funnel["pipeline"]).text
    advice = html.split('id="advice"')[1].split("</section>")[0]
    assert "Ana gagal pada 50% kesepakatan yang diputuskan di “Opportunity” (3 dari 6)" \
        in advice
    assert "Go through" not in advice
    stages = html.split('id="table-stages"')[1].split("</section>")[0]
    assert "<td>Belum Disortir</td>" in stages and "Unsorted" not in stages
