"""The reports page in a real Chromium, on both databases: a head picks a custom period,
sees the funnel drawn inline, and follows an advisor's hint to the deals it is about."""

from __future__ import annotations

from test_reports import build_funnel

from pbx_crm.db import transaction
from pbx_crm.people import users


def test_the_head_sees_the_funnel_and_a_hint_leads_to_its_deals(open_page, engine):
    with transaction(engine) as session:
        build_funnel(session)
    page = open_page("hana")
    page.click("header nav >> text=Reports")
    page.wait_for_url("**/reports")
    page.select_option("select[name=period]", "custom")
    page.fill("input[name=from]", "2024-05-06")
    page.fill("input[name=to]", "2024-05-19")
    page.click("#report-filters button[type=submit]")
    page.wait_for_url("**/reports?*period=custom*")
    assert "2024-05-06 – 2024-05-19" in page.locator("#report-scope").inner_text()

    funnel = page.locator("#funnel-chart svg")
    assert funnel.is_visible() and funnel.bounding_box()["width"] > 100
    assert "Opportunity" in funnel.inner_html()
    opportunity = page.locator("#table-stages tbody tr", has_text="Opportunity")
    assert opportunity.locator("td").nth(3).inner_text() == "11"  # entered

    hint = page.locator("#advice li").first
    hint.locator("a.hint-deals").click()
    page.wait_for_url("**/reports/deals?*")
    deal_links = page.locator("#report-deals a[href^='/deals/']")
    assert deal_links.count() >= 1
    deal_links.first.click()
    page.wait_for_url("**/deals/*")


def test_the_charts_load_without_a_policy_error_and_every_label_fits(open_page, engine):
    """The charts take their font and size from the stylesheet (the Content-Security-Policy
    refuses inline styles): no console error, each label inside its chart, and in Indonesian
    the charts speak Indonesian."""
    with transaction(engine) as session:
        hana = build_funnel(session).hana
        users.set_language(session, hana, hana.user_id, "id")
    page = open_page("hana")
    errors = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/reports?period=custom&from=2024-05-06&to=2024-05-19")

    for chart in ("#funnel-chart svg", "#trend-chart svg"):
        svg = page.locator(chart)
        box = svg.bounding_box()
        assert svg.evaluate("e => getComputedStyle(e).fontSize") == "12px"
        for label in svg.locator("text").all():
            inner = label.bounding_box()
            assert box["x"] - 1 <= inner["x"] and inner["x"] + inner["width"] <= \
                box["x"] + box["width"] + 1, label.inner_text()
    assert errors == []
    trend = page.locator("#trend-chart svg")
    assert trend.locator("title").first.text_content().startswith("Per minggu")
    assert "Mei" in trend.inner_html()  # the week labels in the user's locale


def test_on_a_phone_each_table_keeps_its_headers_and_scrolls_sideways(open_page, engine):
    """At 390 px a report row stays a row under its headers; the table scrolls, the page
    does not."""
    with transaction(engine) as session:
        build_funnel(session)
    page = open_page("hana", viewport={"width": 390, "height": 844})
    page.goto("/reports?period=custom&from=2024-05-06&to=2024-05-19")
    table = page.locator("#table-stages table")
    assert table.locator("thead th").first.is_visible()
    row = table.locator("tbody tr", has_text="Opportunity")
    tops = {round(cell.bounding_box()["y"]) for cell in row.locator("td").all()}
    assert len(tops) == 1, "the row's cells stand side by side"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_on_a_phone_the_charts_scroll_rather_than_shrink_their_labels(open_page, engine):
    """A chart is drawn 640 units wide with 12-unit labels: on a 390 px screen it keeps at
    least 10 px labels and scrolls inside its panel."""
    with transaction(engine) as session:
        build_funnel(session)
    page = open_page("hana", viewport={"width": 390, "height": 844})
    page.goto("/reports?period=custom&from=2024-05-06&to=2024-05-19")
    for chart in ("#funnel-chart svg", "#trend-chart svg"):
        scale = page.locator(chart).evaluate(
            "svg => svg.getBoundingClientRect().width / svg.viewBox.baseVal.width")
        assert 12 * scale >= 10, f"{chart} labels are {12 * scale:.1f} px"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
