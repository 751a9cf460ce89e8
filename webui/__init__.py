"""The web UI (Bottle + Jinja2), installed as ``pbx_crm.webui``.

``create_app(settings, engine)`` builds the WSGI application; ``pbx_crm.web.server`` serves it
(``pbx-crm web``). Routes are grouped by area in the ``routes_*`` modules; ``app`` holds the
plumbing every route shares (sign-in, CSRF, the one ownership check of deal routes).
"""

from __future__ import annotations

from pathlib import Path

import bottle

from .app import WebUI

STATIC_ROOT = Path(__file__).resolve().parent / "static"


def create_ui(settings, engine, **options) -> WebUI:
    from . import routes_auth, routes_board, routes_contacts, routes_deals, \
        routes_notifications, routes_reports, routes_robots, routes_settings, routes_stream
    from . import routes_tasks

    ui = WebUI(settings, engine, **options)
    for module in (routes_auth, routes_board, routes_deals, routes_contacts, routes_settings,
                   routes_notifications, routes_robots, routes_stream, routes_reports,
                   routes_tasks):
        module.register(ui)

    @ui.app.get("/static/<path:path>", name="static", public=True)
    def static(path):
        return bottle.static_file(path, root=str(STATIC_ROOT))

    @ui.app.get("/healthz", name="healthz", public=True)
    def healthz():
        bottle.response.content_type = "text/plain"
        return "ok"

    return ui


def create_app(settings, engine, **options) -> bottle.Bottle:
    """The WSGI application for ``settings`` and ``engine``."""
    return create_ui(settings, engine, **options).app
