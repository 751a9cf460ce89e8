"""The first page a browser opens, in a real Chromium: nothing it asks for is missing."""

from __future__ import annotations


def test_the_sign_in_page_loads_without_a_console_error(open_page):
    """A browser asks for the page's icon on its own (/favicon.ico when the page names
    none): a 404 there is a console error on every first visit."""
    page = open_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.goto("/login")
    page.wait_for_load_state("networkidle")
    assert page.locator("input[name=login]").is_visible()
    assert errors == []
    icon = page.request.get(page.locator("link[rel=icon]").get_attribute("href"))
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
