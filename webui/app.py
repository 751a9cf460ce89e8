"""The web UI's plumbing: who is signed in, CSRF, ownership of deals, pages, errors.

``WebUI`` holds what every route needs (settings, engine, one Jinja2 environment per
language) and installs one Bottle plugin that runs before every route:

* a route is for signed-in users unless registered with ``public=True``; the session cookie's
  token is looked up in ``web_sessions`` (``pbx_crm.people.sign_in``);
* every state-changing request carries the session's CSRF token (form field ``csrf_token`` or
  header ``X-CSRF-Token``); the public sign-in form uses a double-submit cookie instead;
* a route with ``<deal_id>`` in its path is checked for the deal's ownership here, once, by
  ``deals.get_deal`` (which asks ``pbx_crm.rules.funnel``), before its own code runs;
* refusals of the core (``CrmError``) become a page (or JSON) with their HTTP status, in
  the user's language (``refusal_text``);
* a request body over ``web_max_body_kb`` is refused before it is read, and the client's
  address is believed from a trusted proxy only (``pbx_crm.web.front_door``).

Routes live in the ``routes_*`` modules and stay thin: parse, call one service, shape output.
"""

from __future__ import annotations

import functools
import gettext
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import bottle
import jinja2
from babel.dates import format_datetime, format_timedelta

from pbx_crm.funnel import contacts, deals
from pbx_crm.funnel.calls import OUTCOMES
from pbx_crm.people import language as wording
from pbx_crm.people import sign_in as web_sessions
from pbx_crm.web import front_door
from pbx_crm.db import database_away, transaction
from pbx_crm.errors import CrmError, Forbidden, Phrase, Unavailable, ValidationError
from pbx_crm.rules.funnel import Actor
from pbx_crm.models import User, utcnow
from pbx_crm.rules.money import format_money, locale_for, plain_amount

log = logging.getLogger(__name__)

SESSION_COOKIE = "pbx_crm_session"
LOGIN_CSRF_COOKIE = "pbx_crm_login_csrf"
# The language of the browser's last signed-in user, for the pages that cannot ask the database.
LANGUAGE_COOKIE, LANGUAGE_COOKIE_S = "pbx_crm_language", 365 * 24 * 3600
LANGUAGES = {"en": "English", "id": "Bahasa Indonesia"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# While the database does not answer, a browser is asked to come back after this long, and
# the log says so once in this long, not once a request.
AWAY_RETRY_S = 10
SECURITY_HEADERS = {
    # No inline script or style anywhere: text that slipped through as markup still runs nothing.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def load_translations(language: str) -> gettext.NullTranslations:
    """The catalog for ``language``, compiled from its .po file when first loaded (no .mo
    files to keep in step); English is the source language. The one loader the services'
    e-mails use too (``pbx_crm.people.language``)."""
    return wording.catalog(language)


# Babel's units for format_timedelta, largest first.
_AGE_UNITS = (("year", 3600 * 24 * 365), ("month", 3600 * 24 * 30), ("week", 3600 * 24 * 7),
              ("day", 3600 * 24), ("hour", 3600), ("minute", 60), ("second", 1))


@functools.lru_cache(maxsize=2048)
def _age_text(locale: str, unit_seconds: int, value: int) -> str:
    return format_timedelta(unit_seconds * value, threshold=1.0, locale=locale)


@functools.cache
def _environment(language: str) -> jinja2.Environment:
    """One environment per language, shared by every app in the process (compiled templates
    are kept); the settings never change what a template says."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("pbx_crm.webui", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             extensions=["jinja2.ext.i18n"], trim_blocks=True,
                             lstrip_blocks=True, auto_reload=False)
    env.install_gettext_translations(load_translations(language), newstyle=True)
    env.globals.update(LANGUAGES=LANGUAGES, url_quote=quote)
    return env


@dataclass(frozen=True)
class Formatter:
    """Dates, times, durations and money in one user's locale and time zone."""

    locale: str
    zone: ZoneInfo
    now: datetime

    def datetime(self, value: datetime | None, format: str = "medium") -> str:
        return "" if value is None else format_datetime(value, format, tzinfo=self.zone,
                                                        locale=self.locale)

    def age(self, since: datetime) -> str:
        """How long ago, as Babel's ``format_timedelta`` says it ("3 days"), cached per unit
        and value: a board shows hundreds of ages."""
        seconds = max(0.0, (self.now - since).total_seconds())
        for unit, length in _AGE_UNITS:
            value = seconds / length
            if value >= 1.0 or unit == "second":
                return _age_text(self.locale, length, max(1, round(value)))
        raise AssertionError("unreachable")

    def seconds(self, seconds: int | None) -> str:
        if seconds is None:
            return ""
        minutes, rest = divmod(seconds, 60)
        return f"{minutes}:{rest:02d}"

    def money(self, amount_minor: int, currency: str) -> str:
        return format_money(amount_minor, currency, locale=self.locale)

    def amount_field(self, amount_minor: int, currency: str) -> str:
        return plain_amount(amount_minor, currency, locale=self.locale)


class WebUI:
    def __init__(self, settings, engine, *, originate=None):
        self.settings = settings
        self.engine = engine
        # Click-to-call: a callable like AmiClient.originate; made on first use when AMI is set.
        self._originate = originate
        self._ami_client = None
        self._closers = []  # what stops with the app (e.g. the event stream's reader)
        self.translations = {lang: load_translations(lang) for lang in LANGUAGES}
        self.envs = {lang: _environment(lang) for lang in LANGUAGES}
        self.trusted_proxies = front_door.trusted_networks(settings)
        self.max_body_bytes = settings.web_max_body_kb * 1024
        # Bottle refuses a form over MEMFILE_MAX with a page of its own (a class attribute:
        # one per process); the front door's cap is the one that speaks to users.
        bottle.BaseRequest.MEMFILE_MAX = max(bottle.BaseRequest.MEMFILE_MAX, self.max_body_bytes)
        self.app = bottle.Bottle()
        self._away_logged = -float(AWAY_RETRY_S)
        self.app.add_hook("before_request", lambda: front_door.check_request(
            bottle.request.environ, self.trusted_proxies, self.max_body_bytes))
        self.app.install(self._guard)
        self.app.add_hook("after_request", self._security_headers)
        self.app.error_handler.update({404: self._not_found, 405: self._not_found,
                                       500: self._server_error})

    # --- templates -------------------------------------------------------------------

    def language(self) -> str:
        """The signed-in user's language; else the one this browser's last user read (the
        sign-in page, a page while the database does not answer), else the browser's."""
        signed = bottle.request.environ.get("pbx_crm.signed_in")
        if signed is not None and signed.user.language in LANGUAGES:
            return signed.user.language
        remembered = bottle.request.get_cookie(LANGUAGE_COOKIE, "")
        if remembered in LANGUAGES:
            return remembered
        accepted = bottle.request.headers.get("Accept-Language", "")
        return "id" if accepted.lower().startswith("id") else "en"

    def locale(self) -> str:
        """Money, dates and typed amounts: the user's language as written in the company's
        country (``phone_region``): an English user in Indonesia reads Rp96.000.000 and
        7 Dec 2026, as the CLI prints them, not IDR96,000,000 and Dec 7, 2026."""
        return locale_for(self.language(), self.settings.phone_region)

    def gettext(self, message: str, **values) -> str:
        text = self.translations[self.language()].gettext(message)
        return text % values if values else text

    def refusal_text(self, error: CrmError) -> str:
        """A refusal of the core as the user reads it: in their language."""
        return error.translated(self.translations[self.language()].gettext)

    def said(self, data, text: str | None) -> str:
        """A stored text (a timeline entry's, a notification's) as the user reads it: its
        kept words (``data["say"]``) in their language; a row that kept none, as stored."""
        return wording.said(data, text, self.translations[self.language()].gettext)

    def deal_title(self, title: str) -> str:
        """A deal's title as the user reads it: one the PBX gave ("Call from <number>") in
        their language, one someone wrote as written."""
        caller = contacts.caller_of_call_title(title or "")
        return self.gettext("Call from %(number)s", number=caller) if caller else title

    def outcome(self, disposition: str | None) -> str:
        """How a call ended, in the user's words (``calls.OUTCOMES``, the one mapping)."""
        phrase = OUTCOMES.get(disposition or "")
        return self.translations[self.language()].gettext(phrase) if phrase else \
            disposition or ""

    def formatter(self) -> Formatter:
        signed = bottle.request.environ.get("pbx_crm.signed_in")
        zone = (signed.user.time_zone if signed and signed.user.time_zone
                else self.settings.time_zone)
        return Formatter(locale=self.locale(), zone=ZoneInfo(zone), now=utcnow())

    def render(self, template: str, *, status: int = 200, **context) -> str:
        signed = bottle.request.environ.get("pbx_crm.signed_in")
        context.setdefault("error", None)
        context.setdefault("notice", None)
        context.update(
            user=signed.user if signed else None,
            csrf_token=signed.web_session.csrf_token if signed else "",
            fmt=self.formatter(), path=bottle.request.path,
            unread=bottle.request.environ.get("pbx_crm.unread", 0),
            has_route=self.has_route, lang=self.language(), said=self.said,
            outcome=self.outcome, deal_title=self.deal_title)
        if signed and signed.user.language in LANGUAGES \
                and bottle.request.get_cookie(LANGUAGE_COOKIE) != signed.user.language:
            self.set_cookie(LANGUAGE_COOKIE, signed.user.language, max_age=LANGUAGE_COOKIE_S)
        bottle.response.status = status
        bottle.response.content_type = "text/html; charset=utf-8"
        return self.envs[self.language()].get_template(template).render(**context)

    def has_route(self, name: str) -> bool:
        return any(route.name == name for route in self.app.routes)

    # --- the request's user ------------------------------------------------------------

    @property
    def actor(self) -> Actor:
        return Actor.of(bottle.request.environ["pbx_crm.signed_in"].user)

    @property
    def user(self) -> User:
        return bottle.request.environ["pbx_crm.signed_in"].user

    def wants_json(self) -> bool:
        return "application/json" in bottle.request.headers.get("Accept", "")

    def client_address(self) -> str:
        return front_door.client_address(bottle.request.environ, self.trusted_proxies)

    def set_cookie(self, name: str, value: str, **options) -> None:
        bottle.response.set_cookie(name, value, path="/", httponly=True, samesite="lax",
                                   secure=self.settings.web_secure_cookies, **options)

    def _signed_in(self):
        token = bottle.request.get_cookie(SESSION_COOKIE)
        if not token:
            return None
        with transaction(self.engine, read_only=True) as session:
            signed = web_sessions.signed_in(session, token)
            if signed is not None:
                from pbx_crm.people.notifications import unread_count

                bottle.request.environ["pbx_crm.unread"] = unread_count(
                    session, Actor.of(signed.user))
        if signed is not None and signed.needs_touch:
            with transaction(self.engine) as session:
                web_sessions.touch(session, signed.web_session.id)
        return signed

    # --- the guard plugin ---------------------------------------------------------------

    def _guard(self, callback):
        def guarded(*args, **kwargs):
            request = bottle.request
            route = request.route
            try:
                if request.environ.get(front_door.BODY_REFUSED):
                    self._refuse_body(route)
                if route.config.get("public"):
                    if request.method not in SAFE_METHODS:
                        self._check_login_csrf()
                    return callback(*args, **kwargs)
                signed = self._signed_in()
                if signed is None:
                    return self._sign_in_first()
                request.environ["pbx_crm.signed_in"] = signed
                if request.method not in SAFE_METHODS:
                    sent = (request.headers.get("X-CSRF-Token")
                            or request.forms.get("csrf_token") or "")
                    if not hmac.compare_digest(sent.encode(), signed.web_session.csrf_token
                                               .encode()):
                        raise Forbidden("This form has expired; reload the page and try again.")
                if "deal_id" in kwargs:
                    self.check_deal(kwargs["deal_id"])
                return callback(*args, **kwargs)
            except CrmError as error:
                return self.refusal(error)
            except Exception as error:
                if not database_away(self.engine, error):
                    raise
                return self._database_away(error)
        return guarded

    def _database_away(self, error: Exception):
        """A request the database did not answer (down, unreachable, its write lock held):
        nothing was changed; the user reads so in their language, as a page or JSON, and is
        asked to try again, while the log says it once in ``AWAY_RETRY_S``."""
        now = time.monotonic()
        if now - self._away_logged >= AWAY_RETRY_S:
            self._away_logged = now
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()
            log.warning("the database did not answer a web request (%s); the pages say so "
                        "until it does", reason[0] if reason else type(error).__name__)
        bottle.response.headers["Retry-After"] = str(AWAY_RETRY_S)
        away = Unavailable("The CRM cannot reach its database just now: nothing was changed. "
                           "Calls still ring through. Try again in a moment.")
        if self.wants_json():
            return self.json({"error": self.refusal_text(away)}, status=away.status)
        return self.render("error.html", status=away.status, error=self.refusal_text(away))

    def _refuse_body(self, route) -> None:
        if not route.config.get("public"):
            # Signed in or not, the refusal speaks the user's language when it can.
            bottle.request.environ["pbx_crm.signed_in"] = self._signed_in()
        raise front_door.TooLarge("This is too large to send: at most %(size)d KB at once.",
                                  size=self.settings.web_max_body_kb)

    def check_deal(self, deal_id: int) -> None:
        """The one ownership check of every deal route: read access, as the funnel rules it
        (a seller on another seller's deal gets 403; a missing deal 404)."""
        with transaction(self.engine, read_only=True) as session:
            deals.get_deal(session, self.actor, deal_id)

    def _check_login_csrf(self) -> None:
        cookie = bottle.request.get_cookie(LOGIN_CSRF_COOKIE) or ""
        sent = bottle.request.forms.get("csrf_token") or ""
        if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
            raise Forbidden("This form has expired; reload the page and try again.")

    def login_csrf_token(self) -> str:
        token = bottle.request.get_cookie(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        self.set_cookie(LOGIN_CSRF_COOKIE, token)
        return token

    def _sign_in_first(self):
        request = bottle.request
        if request.method in SAFE_METHODS and not self.wants_json():
            target = request.fullpath + (f"?{request.query_string}" if request.query_string
                                         else "")
            return bottle.redirect("/login?" + urlencode({"next": target}), 303)
        return self.json({"error": self.gettext("Sign in first.")}, status=401)

    # --- shaping answers -------------------------------------------------------------------

    def refusal(self, error: CrmError):
        """A refusal of the core as a page or JSON, with its status; nothing was changed
        (the route's transaction rolled back)."""
        status = getattr(error, "status", 400)
        text = self.refusal_text(error)
        if self.wants_json():
            return self.json({"error": text}, status=status)
        if bottle.request.environ.get("pbx_crm.signed_in") is None \
                and not bottle.request.route.config.get("public"):
            bottle.response.status = status
            return text
        return self.render("error.html", status=status, error=text)

    def json(self, payload: dict, *, status: int = 200) -> str:
        bottle.response.status = status
        bottle.response.content_type = "application/json"
        return json.dumps(payload)

    def _security_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            bottle.response.headers[name] = value
        if bottle.request.path.startswith("/static/"):
            bottle.response.headers["Cache-Control"] = "public, max-age=3600"
        else:
            bottle.response.headers["Cache-Control"] = "no-store"

    def _not_found(self, error) -> str:
        """An address with no page, in the reader's language (the one the browser's last
        signed-in user reads: no route ran to say who is signed in), with the way back."""
        return self.render("error.html", status=error.status_code,
                           error=self.gettext("There is no page at this address."))

    def _server_error(self, error) -> str:
        """Plain text, so that it shows even when the templates are what failed."""
        bottle.response.content_type = "text/plain; charset=utf-8"
        return self.gettext("Something went wrong on the server; the error is in its log.")

    # --- click-to-call -------------------------------------------------------------------

    def originate(self):
        """The AMI originate callable, or None when no AMI is configured."""
        if self._originate is not None:
            return self._originate
        if self.settings.pbxes:  # several PBXes: each box's, by name (click_to_call picks)
            if not self.settings.pbx_boxes:
                return None
            from pbx_crm.telephony.pbx_boxes import Originators

            self._originate = Originators(self.settings)
            self._closers.append(self._originate.close)
            return self._originate
        if not self.settings.ami_host:
            return None
        if self._ami_client is None:
            from pbx_crm.telephony.ami_client import AmiClient

            client = AmiClient(self.settings.ami_host, self.settings.ami_port,
                               self.settings.ami_username, self.settings.ami_secret,
                               events="call", action_timeout=5.0)
            client.start()
            # The first click waits for the login; later ones find the session up (the
            # client reconnects by itself when Asterisk restarts).
            client.wait_connected(5.0)
            self._ami_client = client
        return self._ami_client.originate

    def on_close(self, closer) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        for closer in self._closers:
            closer()
        if self._ami_client is not None:
            self._ami_client.close()


# --- form reading -------------------------------------------------------------------------


def form() -> bottle.FormsDict:
    """The posted form, as UTF-8 text."""
    return bottle.request.forms.decode()


def query() -> bottle.FormsDict:
    return bottle.request.query.decode()


def int_field(values, name: str, what: str, *, required: bool = True) -> int | None:
    """The id or number in field ``name``; ``what`` names it in a refusal ("Choose stage."),
    a phrase translated with it (callers mark it ``Phrase(...)`` for the catalog)."""
    what = Phrase(what)
    text = (values.get(name) or "").strip()
    if not text:
        if required:
            raise ValidationError("Choose %(what)s.", what=what, field=name)
        return None
    if not text.isdigit() or len(text) > 18:
        raise ValidationError("“%(text)s” is not a valid %(what)s.", text=text[:20], what=what,
                              field=name)
    return int(text)


def version_field(values) -> int:
    """The deal version the page was showing; moves and edits are refused on an old one."""
    text = (values.get("version") or "").strip()
    if not text.isdigit() or len(text) > 18:
        raise ValidationError("This form is missing the deal's version; reload the page.",
                              field="version")
    return int(text)
