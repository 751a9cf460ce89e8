"""Sign-in and sign-out.

A sign-in attempt is counted, in a transaction of its own, before the password is checked,
and refused there while the login or the client address has failed too often
(``pbx_crm.people.sign_in``); the refusal and a wrong password read alike apart from the wait
they name. The client address is the one ``WebUI.client_address`` believes (a trusted proxy's
``X-Forwarded-For``). The session cookie is HttpOnly, SameSite=Lax, and Secure when
``web_secure_cookies`` is set.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import bottle

from pbx_crm.people import users, sign_in as web_sessions
from pbx_crm.db import transaction
from pbx_crm.errors import CrmError

from .app import LOGIN_CSRF_COOKIE, SESSION_COOKIE, WebUI, form, query


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to somewhere else."""
    target = (target or "").strip()
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc \
            or "\\" in target:
        return "/board"
    return target


def register(ui: WebUI) -> None:
    app = ui.app

    def login_page(*, error=None, login="", status=200, next_path="/board"):
        return ui.render("login.html", status=status, error=error, login=login,
                         next_path=next_path, login_csrf=ui.login_csrf_token())

    @app.get("/login", name="login", public=True)
    def login_form():
        return login_page(next_path=_safe_next(query().get("next")))

    @app.post("/login", public=True)
    def login_submit():
        values = form()
        login = (values.get("login") or "").strip()[:64]
        password = values.get("password") or ""
        next_path = _safe_next(values.get("next"))
        address = ui.client_address()
        try:
            with transaction(ui.engine) as session:
                web_sessions.begin_attempt(session, login, address)
            with transaction(ui.engine) as session:
                user = users.authenticate(session, login, password)
                if user is not None:
                    web_sessions.forget_attempts(session, login, address)
                    token = web_sessions.open_session(session, user)
        except CrmError as error:  # too many failed attempts, among others
            return login_page(error=ui.refusal_text(error), login=login, status=error.status,
                              next_path=next_path)
        if user is None:
            return login_page(error=ui.gettext("Wrong login or password."), login=login,
                              status=401, next_path=next_path)
        ui.set_cookie(SESSION_COOKIE, token)
        bottle.response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return bottle.redirect(next_path, 303)

    @app.post("/logout", name="logout")
    def logout():
        with transaction(ui.engine) as session:
            web_sessions.close_session(session, bottle.request.get_cookie(SESSION_COOKIE))
        bottle.response.delete_cookie(SESSION_COOKIE, path="/")
        return bottle.redirect("/login", 303)
