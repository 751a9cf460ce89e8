"""Take the README's screenshots on the demo data, in Debian's Chromium.

    python docs/screenshots.py [--out docs/]

Seeds the demo (``pbx_crm.sample.demo``) into a fresh SQLite file, serves the web UI on a free
loopback port and captures, 1280 px wide: ``board.png`` (a seller's board), ``deal.png`` (a
deal card), ``pop.png`` (the seller's board as a known customer rings: the call is recorded by
the same service the FastAGI ``incoming`` hook calls, and the pop arrives through the push
stream), ``tasks.png`` (the seller's Tasks page), ``contact.png`` (the caller's contact page)
and ``reports.png`` (the head's reports page for this quarter).
"""

from __future__ import annotations

import argparse
import socketserver
import tempfile
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pbx_crm.webui import create_app
from playwright.sync_api import sync_playwright

from pbx_crm.funnel import calls
from pbx_crm.config import Settings
from pbx_crm.db import make_engine, transaction
from pbx_crm.sample.demo import ensure_demo
from pbx_crm.models import Contact, ContactPhone, Deal, User
from pbx_crm.rules.phones import classify_caller
from sqlmodel import select

CHROMIUM = "/usr/bin/chromium"


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    # The page keeps a stream open (screen pops): each request gets its own thread.
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


def sign_in(browser, base_url: str, login: str, password: str):
    page = browser.new_page(base_url=base_url, viewport={"width": 1280, "height": 860})
    page.goto("/login")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/board")
    return page


def a_deal_of(engine, login: str) -> int:
    """The seller's most valuable open deal whose contact has a phone."""
    with transaction(engine, read_only=True) as session:
        return session.exec(
            select(Deal.id).join(User, User.id == Deal.owner_id)
            .join(ContactPhone, ContactPhone.contact_id == Deal.contact_id)
            .where(User.login == login, Deal.closed_at.is_(None))
            .order_by(Deal.amount_minor.desc())).first()


def ring(engine, settings: Settings, deal_id: int) -> None:
    """The deal's customer calls: recorded as the ``incoming`` hook records a call."""
    with transaction(engine) as session:
        deal = session.get(Deal, deal_id)
        number = session.exec(select(ContactPhone.e164).where(
            ContactPhone.contact_id == deal.contact_id)).first()
        name = session.get(Contact, deal.contact_id).name
        calls.record_inbound_call(
            session, uniqueid="1795900000.1", linkedid="1795900000.1",
            caller=classify_caller(number, region=settings.phone_region,
                                   extensions=settings.internal_extensions), caller_name=name,
            did="2150001", create_deals=True, region=settings.phone_region)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent),
                        help="the folder to write the PNG files to")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder))
        engine = make_engine(f"sqlite:///{Path(folder) / 'demo.sqlite3'}")
        password = ensure_demo(engine, settings).password
        server = make_server("127.0.0.1", 0, create_app(settings, engine),
                             server_class=_ThreadingServer, handler_class=_Quiet)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                     args=["--no-sandbox"])
                base_url = f"http://127.0.0.1:{server.server_port}"
                out = Path(args.out)
                seller = sign_in(browser, base_url, "ana", password)
                seller.goto("/board")
                seller.screenshot(path=str(out / "board.png"))
                deal_id = a_deal_of(engine, "ana")
                seller.goto(f"/deals/{deal_id}")
                seller.screenshot(path=str(out / "deal.png"), full_page=True)
                seller.click("#contact-link")
                seller.wait_for_url("**/contacts/*")
                seller.screenshot(path=str(out / "contact.png"), full_page=True)
                seller.goto("/tasks")
                seller.screenshot(path=str(out / "tasks.png"), full_page=True)
                seller.goto("/board")
                ring(engine, settings, deal_id)
                seller.locator("#screenpops .pop").first.wait_for()
                seller.screenshot(path=str(out / "pop.png"))
                head = sign_in(browser, base_url, "head", password)
                head.goto("/reports?period=quarter")
                head.locator("#funnel-chart svg").wait_for()
                head.screenshot(path=str(out / "reports.png"), full_page=True)
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
            engine.dispose()
    print(f"wrote board.png, deal.png, pop.png, tasks.png, contact.png and reports.png in "
          f"{args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
