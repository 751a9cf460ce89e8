"""Signed-in browsers and the brake on password guessing, kept in the database.

The web edge calls these; every worker process (gunicorn runs several) sees the same rows, so a
sign-out or a lock-out holds whichever process answers next. A session cookie carries a random
token; the table keeps only its SHA-256, plus the CSRF token the pages send back with every
state-changing request. Sign-in attempts are counted per login and per client address over
a sliding window; past a limit, sign-in is refused before the password is even checked, so a
guesser learns nothing and costs no Argon2 work. An attempt is counted *before* its password
is checked, under a lock (``begin_attempt``), so a burst of parallel guesses gets no more
checks than the limit; a right password forgets it again (``forget_attempts``).

A login past its limit stays open to addresses that have not failed on it (OWASP's account
lockout advice: count per account, but do not let a guesser lock the owner out from
everywhere); an address past its own limit is refused for every login. IPv6 clients are
counted by their /64 network, which one host usually holds whole.

Sign-out deletes the browser's row; deactivation and a password change delete every row of the
user (``end_user_sessions``, called by ``pbx_crm.people.users``). An open screen-pop stream asks
``still_open`` before each event it sends (``pbx_crm.web.event_stream``), so it ends with its row.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import delete, func, text, update
from sqlmodel import Session, select

from ..errors import N_, CrmError
from ..models import LoginFailure, User, WebSession, utcnow

SESSION_LIFETIME = timedelta(hours=12)
# A session's expiry slides forward on use, written at most this often (not on every click).
TOUCH_EVERY = timedelta(minutes=5)
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_LOGIN = 5
MAX_FAILURES_PER_ADDRESS = 20


class TooManyAttempts(CrmError):
    """Sign-in refused for a while after repeated failures; ``minutes`` is the wait."""

    status = 429

    def __init__(self, minutes: int):
        super().__init__(N_("Too many failed sign-ins; try again in %(minutes)d minutes."),
                         minutes=minutes)
        self.minutes = minutes


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


def begin_attempt(session: Session, login: str, address: str, *,
                  now: datetime | None = None) -> None:
    """Count a sign-in attempt as failed before its password is checked, or refuse it
    (``TooManyAttempts``) while this login or this address has failed too often.

    The count and the write happen under one lock per login and per address (SQLite's write
    lock, taken at BEGIN IMMEDIATE; PostgreSQL's transaction advisory locks), so parallel
    attempts see each other: 40 at once get exactly MAX_FAILURES_PER_LOGIN password checks.
    The caller commits before checking the password, and calls ``forget_attempts`` when it
    was right."""
    now = now or utcnow()
    login, address = _clean_login(login), address_key(address)
    _lock(session, f"login {login}", f"address {address}")
    since = now - FAILURE_WINDOW
    # Expired rows go here, where a write happens anyway; rows another attempt is sweeping
    # are skipped (two sweeps deleting the same rows in another order could deadlock).
    session.exec(delete(LoginFailure).where(LoginFailure.id.in_(
        select(LoginFailure.id).where(LoginFailure.at < since)
        .with_for_update(skip_locked=True))))
    recent = select(LoginFailure.at).where(LoginFailure.at > since)
    from_here = session.exec(select(func.count()).where(
        LoginFailure.address == address, LoginFailure.at > since)).one()
    if from_here >= MAX_FAILURES_PER_ADDRESS:
        raise TooManyAttempts(_wait(session, recent.where(LoginFailure.address == address),
                                    from_here, MAX_FAILURES_PER_ADDRESS, now))
    on_login, on_login_from_here = session.exec(
        select(func.count(), func.count().filter(LoginFailure.address == address))
        .where(LoginFailure.login == login, LoginFailure.at > since)).one()
    if on_login >= MAX_FAILURES_PER_LOGIN and on_login_from_here:
        # Open again when the login falls under its limit, or when this address's own
        # failures on it have all expired, whichever comes first.
        wait = min(_wait(session, recent.where(LoginFailure.login == login), on_login,
                         MAX_FAILURES_PER_LOGIN, now),
                   _wait(session, recent.where(LoginFailure.login == login,
                                               LoginFailure.address == address),
                         on_login_from_here, 1, now))
        raise TooManyAttempts(wait)
    session.add(LoginFailure(login=login, address=address, at=now))
    session.flush()


def forget_attempts(session: Session, login: str, address: str) -> None:
    """A successful sign-in forgets the login's failures from this address (the attempt
    itself among them); other addresses' failures on the login stay counted."""
    session.exec(delete(LoginFailure).where(LoginFailure.login == _clean_login(login),
                                            LoginFailure.address == address_key(address)))


def address_key(address: str) -> str:
    """What the limits count an address as: an IPv4 address as is, an IPv6 one by its /64
    (an IPv4-mapped one as the IPv4 address); anything else as given, cut to the column."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return (address or "unknown")[:64]
    if parsed.version == 6:
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _lock(session: Session, *names: str) -> None:
    """Serialize sign-in bookkeeping on these names until the transaction ends. SQLite has
    done so already (one writer at a time); PostgreSQL takes an advisory lock per name, always
    in the order given (login, then address), so two attempts never wait on each other in a
    circle."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for name in names:
        key = int.from_bytes(hashlib.sha256(f"pbx-crm sign-in {name}".encode()).digest()[:8],
                             "big", signed=True)
        session.exec(text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=key))


def _wait(session: Session, failures, count: int, limit: int, now: datetime) -> int:
    """Whole minutes until ``count`` recent failures fall under ``limit``: until the
    (count - limit + 1)-th oldest of them leaves the window."""
    freed_at = session.exec(failures.order_by(LoginFailure.at)
                            .offset(count - limit).limit(1)).one()
    return max(1, int((freed_at + FAILURE_WINDOW - now).total_seconds() // 60) + 1)


def _clean_login(login: str) -> str:
    return (login or "").strip().lower()[:64]
