"""Signed-in browsers and the brake on password guessing, kept in the database.

The web edge calls these; every worker process (gunicorn runs several) sees the same rows, so a
sign-out or a lock-out holds whichever process answers next. A session cookie carries a random
token; the table keeps only its SHA-256, plus the CSRF token the pages send back with every
state-changing request. Failed sign-ins are counted per login and per client address over a
sliding window; past the limit, sign-in is refused before the password is even checked, so a
guesser learns nothing and costs no Argon2 work.

Sign-out deletes the browser's row; deactivation and a password change delete every row of the
user (``end_user_sessions``, called by ``pbx_crm.users``). An open screen-pop stream asks
``still_open`` before each event it sends (``pbx_crm.event_stream``), so it ends with its row.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import delete, func, update
from sqlmodel import Session, select

from .errors import CrmError
from .models import LoginFailure, User, WebSession, utcnow

SESSION_LIFETIME = timedelta(hours=12)
# A session's expiry slides forward on use, written at most this often (not on every click).
TOUCH_EVERY = timedelta(minutes=5)
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_LOGIN = 5
MAX_FAILURES_PER_ADDRESS = 20


class TooManyAttempts(CrmError):
    """Sign-in refused for a while after repeated failures."""

    status = 429


@dataclass(frozen=True)
class SignedIn:
    user: User
    web_session: WebSession
    needs_touch: bool = False


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, *, now: datetime | None = None) -> str:
    """A new browser session for ``user``; returns the token for the cookie."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=_hash(token), user_id=user.id,
                           csrf_token=secrets.token_urlsafe(32), created_at=now,
                           last_seen_at=now, expires_at=now + SESSION_LIFETIME))
    # Old sessions of anyone are swept here, where a write happens anyway.
    session.exec(delete(WebSession).where(WebSession.expires_at < now))
    session.flush()
    return token


def signed_in(session: Session, token: str | None, *,
              now: datetime | None = None) -> SignedIn | None:
    """The active user behind a cookie token, or None (unknown, expired, deactivated)."""
    if not token or len(token) > 200:
        return None
    now = now or utcnow()
    row = session.exec(select(WebSession, User).join(User, User.id == WebSession.user_id)
                       .where(WebSession.token_hash == _hash(token))).first()
    if row is None:
        return None
    web_session, user = row
    if web_session.expires_at <= now or not user.active:
        return None
    # Read-only here (a page view takes no write lock); the edge calls ``touch`` when due.
    return SignedIn(user, web_session, needs_touch=now - web_session.last_seen_at >= TOUCH_EVERY)


def touch(session: Session, web_session_id: int, *, now: datetime | None = None) -> None:
    """Slide a session's expiry forward: it lasts SESSION_LIFETIME after its last use."""
    now = now or utcnow()
    session.exec(update(WebSession).where(WebSession.id == web_session_id)
                 .values(last_seen_at=now, expires_at=now + SESSION_LIFETIME)
                 .execution_options(synchronize_session=False))


def end_user_sessions(session: Session, user_id: int) -> None:
    """Sign ``user_id`` out of every browser (deactivated, or a new password)."""
    session.exec(delete(WebSession).where(WebSession.user_id == user_id))


# Built once, a Core statement: it runs for every batch of screen-pops a worker sends, and
# the ORM's select costs 3-4 times as much for the few sessions of one pop.
_sessions, _users = WebSession.__table__.c, User.__table__.c
_STILL_OPEN = (sa.select(_sessions.id).join(User.__table__, _users.id == _sessions.user_id)
               .where(_sessions.id.in_(sa.bindparam("ids", expanding=True)),
                      _sessions.expires_at > sa.bindparam("now"), _users.active))


def still_open(session: Session, web_session_ids, *, now: datetime | None = None) -> set[int]:
    """Which of ``web_session_ids`` still sign an active user in: one indexed query for the
    receivers of a batch of screen-pops, whatever its size."""
    ids = sorted(set(web_session_ids))
    if not ids:
        return set()
    rows = session.connection().execute(_STILL_OPEN, {"ids": ids, "now": now or utcnow()})
    return {row[0] for row in rows}


def close_session(session: Session, token: str | None) -> None:
    if token:
        session.exec(delete(WebSession).where(WebSession.token_hash == _hash(token)))


def check_not_throttled(session: Session, login: str, address: str, *,
                        now: datetime | None = None) -> None:
    """Refuse a sign-in attempt while this login or this address has failed too often."""
    now = now or utcnow()
    since = now - FAILURE_WINDOW
    for column, value, limit in ((LoginFailure.login, _clean_login(login),
                                  MAX_FAILURES_PER_LOGIN),
                                 (LoginFailure.address, address[:64], MAX_FAILURES_PER_ADDRESS)):
        count, oldest = session.exec(select(func.count(), func.min(LoginFailure.at))
                                     .where(column == value, LoginFailure.at > since)).one()
        if count >= limit:
            wait = max(1, int((oldest + FAILURE_WINDOW - now).total_seconds() // 60) + 1)
            raise TooManyAttempts(f"Too many failed sign-ins; try again in {wait} minutes.")


def record_failure(session: Session, login: str, address: str, *,
                   now: datetime | None = None) -> None:
    now = now or utcnow()
    session.exec(delete(LoginFailure).where(LoginFailure.at < now - FAILURE_WINDOW))
    session.add(LoginFailure(login=_clean_login(login), address=address[:64], at=now))


def clear_failures(session: Session, login: str) -> None:
    """A successful sign-in forgets the login's failures (not the address's)."""
    session.exec(delete(LoginFailure).where(LoginFailure.login == _clean_login(login)))


def _clean_login(login: str) -> str:
    return (login or "").strip().lower()[:64]
