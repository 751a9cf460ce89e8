"""Take docs/reports.png: the reports page on the demo data, in Debian's Chromium.

    python bench/reports_screenshot.py [--out docs/reports.png]

Seeds the demo (``pbx_crm.demo``) into a fresh SQLite file, serves the web UI on a free
loopback port, signs in as the head and captures the whole page at 1280 px wide, for this
quarter (the demo's history is its last weeks).
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

from pbx_crm.config import Settings
from pbx_crm.db import make_engine
from pbx_crm.demo import ensure_demo

CHROMIUM = "/usr/bin/chromium"


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    # The page keeps a stream open (screen pops): each request gets its own thread.
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs"
                                             / "reports.png"))
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
                page = browser.new_page(base_url=f"http://127.0.0.1:{server.server_port}",
                                        viewport={"width": 1280, "height": 900})
                page.goto("/login")
                page.fill("input[name=login]", "head")
                page.fill("input[name=password]", password)
                page.click("button[type=submit]")
                page.wait_for_url("**/board")
                page.goto("/reports?period=quarter")
                page.locator("#funnel-chart svg").wait_for()
                page.screenshot(path=args.out, full_page=True)
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
            engine.dispose()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
