"""Users, their roles and phone extensions, the devices that ring for an extension, and
password checks.

An extension may ring several devices (a desk phone and a softphone, ``101a`` and ``101b``):
the dialplan dials them all and a channel names the device, so the PBX edges read a device as
its extension through ``device_extensions`` and dial an extension through ``dial_devices``.
A device name belongs to one extension at most and is never another extension's number.

An extension is a number on one Asterisk box (``user_extensions.pbx``; None is the default
box, ``main``): a company with two offices may have a 101 in each, ringing different sellers.
Admins write such an extension ``jakarta/101`` (``Extension``), the default box's as before
(``101``), and the PBX edges ask with the box they serve (``pbx=``).

Passwords are hashed with Argon2id (argon2-cffi); a hash made with older parameters is
upgraded the next time its owner signs in. A new password and a deactivation sign the user
out of every browser (``web_sessions.end_user_sessions``): a session stolen or left open on
another machine ends with the password it was opened with.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import NamedTuple

import argon2
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete
from sqlmodel import Session, select

from ..config import PBX_NAME_PATTERN, stored_pbx
from ..enums import Role
from ..errors import Conflict, NotFound, Phrase, ValidationError
from ..rules.addresses import clean_email
from ..rules.funnel import Actor, ensure_head
from ..funnel.journal import audit
from ..models import User, UserExtension
from .sign_in import end_user_sessions

LOGIN_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
EXTENSION_PATTERN = re.compile(r"[0-9*#]{1,32}")
# What the call tracker reads from a channel as a device: a PJSIP/SIP/IAX2 endpoint name, or
# the exten of ``Local/<exten>@<phone context>``; never '@', '/' or ';', which end the name.
DEVICE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,40}")
MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()
_dummy_hash: str | None = None


def use_password_profile(parameters: argon2.Parameters) -> None:
    """Choose the Argon2 cost for new hashes. The default (RFC 9106 low-memory) is for real
    users; the test suite and benchmarks choose ``argon2.profiles.CHEAPEST``."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher.from_parameters(parameters)
    _dummy_hash = None


def _hash_of_nobody() -> str:
    """Verified against when the login is unknown, so a wrong login costs what a wrong
    password costs and does not tell which logins exist."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("not a password of anyone")
    return _dummy_hash


def _clean_login(login: str) -> str:
    login = (login or "").strip().lower()
    if not LOGIN_PATTERN.fullmatch(login):
        raise ValidationError("A login is 2-64 lowercase letters, digits, dots, dashes or "
                              "underscores, starting with a letter or digit.", field="login")
    return login


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValidationError("A password needs at least %(length)s characters.",
                              length=MIN_PASSWORD_LENGTH, field="password")


class Extension(NamedTuple):
    """An extension on its box: ``pbx`` as stored (None: the default box) and the number."""

    pbx: str | None
    number: str

    def __str__(self) -> str:
        """What an admin reads and writes: ``jakarta/101``, or ``101`` on the default box."""
        return f"{self.pbx}/{self.number}" if self.pbx else self.number


def _split(text: str) -> tuple[str, str]:
    """``jakarta/101`` as (``jakarta``, ``101``); ``101`` as (``""``, ``101``)."""
    box, _, number = text.rpartition("/")
    return box.strip().lower(), number.strip()


def _clean_extensions(extensions, pbxes: Collection[str] | None = None) -> list[Extension]:
    """``101`` or ``jakarta/101`` as ``Extension``s; a box ``pbxes`` does not name (when
    given: the configured boxes) is refused."""
    cleaned = []
    for extension in extensions:
        text = str(extension).strip()
        box, number = _split(text)
        if not EXTENSION_PATTERN.fullmatch(number) or (box and not PBX_NAME_PATTERN.fullmatch(
                box)):
            raise ValidationError("“%(extension)s” is not a phone extension.",
                                  extension=text[:40], field="extensions")
        if box and pbxes is not None and box not in pbxes:
            raise ValidationError("“%(extension)s”: there is no PBX called %(pbx)s; the "
                                  "PBXes are %(pbxes)s.", extension=text[:40], pbx=box,
                                  pbxes=", ".join(pbxes), field="extensions")
        found = Extension(stored_pbx(box), number)
        if found not in cleaned:
            cleaned.append(found)
    return cleaned


def create_user(session: Session, actor: Actor, *, login: str, name: str, password: str,
                role: str = Role.SELLER.value, extensions=(), team: str | None = None,
                language: str = "en", pbxes: Collection[str] | None = None) -> User:
    ensure_head(actor, Phrase("add users"))
    login = _clean_login(login)
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise ValidationError("A user needs a name of at most 120 characters.", field="name")
    if role not in {r.value for r in Role}:
        raise ValidationError("A role is either seller or head.", field="role")
    _check_password(password)
    if session.exec(select(User.id).where(User.login == login)).first() is not None:
        raise Conflict("The login “%(login)s” is taken.", login=login)
    # Checked before the user is written, so a refusal leaves nothing behind in the session.
    extensions = _free_extensions(session, extensions, user_id=None, pbxes=pbxes)
    user = User(login=login, name=name, role=role, password_hash=_hasher.hash(password),
                team=(team or "").strip() or None, language=language)
    session.add(user)
    session.flush()
    set_extensions(session, actor, user.id, [str(e) for e in extensions])
    audit(session, actor, "user", user.id, "create", {"login": login, "role": role})
    return user


def set_extensions(session: Session, actor: Actor, user_id: int, extensions, *,
                   pbxes: Collection[str] | None = None) -> list[str]:
    """Replace a user's extensions (``101``, ``jakarta/101``); an extension that rings someone
    else on the same box is refused, as is a box ``pbxes`` (the configured ones, when given)
    does not name. An extension kept keeps its devices."""
    ensure_head(actor, Phrase("change extensions"))
    cleaned = _free_extensions(session, extensions, user_id=user_id, pbxes=pbxes)
    kept = {Extension(pbx, number): devices for pbx, number, devices in session.exec(
        select(UserExtension.pbx, UserExtension.extension, UserExtension.devices)
        .where(UserExtension.user_id == user_id))}
    session.exec(delete(UserExtension).where(UserExtension.user_id == user_id))
    session.add_all(UserExtension(user_id=user_id, pbx=e.pbx, extension=e.number,
                                  devices=kept.get(e)) for e in cleaned)
    session.flush()
    return [str(e) for e in cleaned]


def _free_extensions(session: Session, extensions, *, user_id: int | None,
                     pbxes: Collection[str] | None = None) -> list[Extension]:
    """The cleaned extensions; one that already rings another user on its box, as an
    extension or as one of their devices, is refused."""
    cleaned = _clean_extensions(extensions, pbxes)
    if cleaned:
        query = select(UserExtension.pbx, UserExtension.extension, UserExtension.devices,
                       User.login).join(User)
        if user_id is not None:
            query = query.where(UserExtension.user_id != user_id)
        for pbx, extension, devices, login in session.exec(query):
            names = {extension, *device_names(devices)}
            taken = [e for e in cleaned if e.pbx == pbx and e.number in names]
            if taken:
                raise Conflict("Extension %(extension)s already rings %(login)s.",
                               extension=str(taken[0]), login=login)
    return cleaned


def device_names(devices: str | None) -> list[str]:
    """The device names kept in ``user_extensions.devices`` (comma-separated)."""
    return [name for name in (devices or "").split(",") if name]


def _clean_devices(devices) -> list[str]:
    cleaned = []
    for device in devices:
        device = str(device).strip()
        if not DEVICE_PATTERN.fullmatch(device):
            raise ValidationError(
                "“%(device)s” is not a device name: up to 40 letters, digits, "
                "dots, dashes or underscores.", device=device[:40], field="devices")
        if device not in cleaned:
            cleaned.append(device)
    return cleaned


def set_devices(session: Session, actor: Actor, user_id: int, extension: str,
                devices) -> list[str]:
    """Replace the devices that ring for one of a user's extensions (``101``,
    ``jakarta/101``; none: the extension is its own only device). A device of another
    extension on that box, or another extension's number there, is refused: a channel must
    name one seller."""
    ensure_head(actor, Phrase("change extensions"))
    text = str(extension or "").strip()
    box, number = _split(text)
    row = session.exec(select(UserExtension).where(
        UserExtension.user_id == user_id, UserExtension.extension == number,
        _on_box(stored_pbx(box)))).first()
    if row is None:
        raise NotFound("This user has no extension %(extension)s.", extension=text[:40])
    cleaned = _clean_devices(devices)
    others = session.exec(select(UserExtension.extension, UserExtension.devices, User.login)
                          .join(User).where(UserExtension.id != row.id, _on_box(row.pbx)))
    for other, their_devices, login in others:
        for device in cleaned:
            if device == other:
                raise Conflict("“%(device)s” is an extension of %(login)s: a device needs a "
                               "name of its own.", device=device, login=login)
            if device in device_names(their_devices):
                raise Conflict("Device %(device)s already rings %(login)s on extension "
                               "%(extension)s.", device=device, login=login,
                               extension=str(Extension(row.pbx, other)))
    row.devices = ",".join(cleaned) or None
    session.add(row)
    session.flush()
    audit(session, actor, "user", user_id, "set_devices",
          {"extension": str(Extension(row.pbx, row.extension)), "devices": cleaned})
    return cleaned


def _on_box(pbx: str | None):
    """The condition "on box ``pbx``" (None: the default box, stored as NULL)."""
    return UserExtension.pbx.is_not_distinct_from(pbx)


def devices_of_extensions(session: Session) -> dict[str, list[str]]:
    """Every extension (``101``, ``jakarta/101``) that rings devices of its own, with them:
    what the settings page shows."""
    return {str(Extension(pbx, extension)): device_names(devices)
            for pbx, extension, devices in session.exec(
                select(UserExtension.pbx, UserExtension.extension, UserExtension.devices)
                .where(UserExtension.devices.is_not(None)))}


def device_extensions(session: Session, pbx: str | None = None) -> dict[str, str]:
    """``{device: extension}`` for the active users' devices on box ``pbx`` (None: the
    default box), for the call tracker's device map: a channel of ``101b`` is seller ``101``."""
    found = {}
    for extension, devices in session.exec(
            select(UserExtension.extension, UserExtension.devices).join(User)
            .where(User.active, UserExtension.devices.is_not(None), _on_box(pbx))):
        for device in device_names(devices):
            found[device] = extension
    return found


def extensions_on(session: Session, pbx: str | None = None) -> frozenset[str]:
    """The active users' extensions on box ``pbx`` (None: the default box): the phones whose
    ringing pops a card."""
    return frozenset(session.exec(select(UserExtension.extension).join(User)
                                  .where(User.active, _on_box(pbx))).all())


def dial_devices(session: Session, extension: str, pbx: str | None = None) -> list[str]:
    """The devices to ring for an extension on box ``pbx``: its own devices, or the extension
    itself."""
    devices = session.exec(select(UserExtension.devices).where(
        UserExtension.extension == extension, _on_box(pbx))).first()
    return device_names(devices) or [extension]


def first_extension(session: Session, user_id: int | None) -> Extension | None:
    """The phone that rings for a seller first (click-to-call's, the owner's): their first
    extension, on its box; None for nobody or an inactive user."""
    if user_id is None:
        return None
    found = session.exec(select(UserExtension.pbx, UserExtension.extension).join(User)
                         .where(UserExtension.user_id == user_id, User.active)
                         .order_by(UserExtension.id)).first()
    return Extension(*found) if found else None


def set_password(session: Session, actor: Actor, login: str, password: str) -> None:
    if actor.user_id is not None and actor.name != login:
        ensure_head(actor, Phrase("change another user's password"))
    _check_password(password)
    user = get_user_by_login(session, login)
    user.password_hash = _hasher.hash(password)
    session.add(user)
    end_user_sessions(session, user.id)
    audit(session, actor, "user", user.id, "set_password")


def set_active(session: Session, actor: Actor, login: str, active: bool) -> User:
    ensure_head(actor, Phrase("activate or deactivate users"))
    user = get_user_by_login(session, login)
    user.active = active
    session.add(user)
    if not active:
        # Reactivating must not bring an old session back.
        end_user_sessions(session, user.id)
    audit(session, actor, "user", user.id, "activate" if active else "deactivate")
    return user


# The languages the web UI has catalogs for.
LANGUAGES = ("en", "id")


def set_language(session: Session, actor: Actor, user_id: int, language: str) -> User:
    """A user's language for the web UI; users choose their own, heads anyone's."""
    if actor.user_id != user_id:
        ensure_head(actor, Phrase("change another user's language"))
    if language not in LANGUAGES:
        raise ValidationError("The language is one of %(languages)s.",
                              languages=", ".join(LANGUAGES), field="language")
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No user #%(user_id)s.", user_id=user_id)
    user.language = language
    session.add(user)
    audit(session, actor, "user", user.id, "set_language", {"language": language})
    return user


def set_email(session: Session, actor: Actor, user_id: int, email: str | None) -> User:
    """Where a user's robot nudges go by e-mail (when SMTP is set up); empty: in the CRM
    only. Users set their own, heads anyone's."""
    if actor.user_id != user_id:
        ensure_head(actor, Phrase("change another user's e-mail address"))
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No user #%(user_id)s.", user_id=user_id)
    user.email = clean_email(email)
    session.add(user)
    audit(session, actor, "user", user.id, "set_email", {"email": user.email})
    return user


def get_user_by_login(session: Session, login: str) -> User:
    user = session.exec(select(User).where(User.login == (login or "").strip().lower())).first()
    if user is None:
        raise NotFound("No user with the login “%(login)s”.", login=(login or "")[:64])
    return user


def get_active_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise ValidationError("User #%(user_id)s is not an active user.", user_id=user_id,
                              field="owner")
    return user


def authenticate(session: Session, login: str, password: str) -> User | None:
    """The active user with this login and password, or None (same cost either way)."""
    user = session.exec(select(User).where(User.login == (login or "").strip().lower(),
                                           User.active)).first()
    try:
        _hasher.verify(user.password_hash if user else _hash_of_nobody(), password or "")
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        session.add(user)
    return user


def list_users(session: Session) -> list[tuple[User, list[str]]]:
    """Every user with their extensions as admins write them (``101``, ``jakarta/101``)."""
    users = session.exec(select(User).order_by(User.role.desc(), User.login)).all()
    extensions: dict[int, list[str]] = {}
    for row in session.exec(select(UserExtension).order_by(UserExtension.pbx.is_not(None),
                                                           UserExtension.pbx,
                                                           UserExtension.extension)):
        extensions.setdefault(row.user_id, []).append(str(Extension(row.pbx, row.extension)))
    return [(user, extensions.get(user.id, [])) for user in users]


def list_sellers(session: Session) -> list[User]:
    """Every seller by name: whom a head filters the board by or hands a deal to."""
    return list(session.exec(select(User).where(User.role == Role.SELLER.value)
                             .order_by(User.name)))


def user_for_extension(session: Session, extension: str, pbx: str | None = None) -> User | None:
    """The active user an extension of box ``pbx`` rings (None: the default box), for the
    PBX edges."""
    return session.exec(select(User).join(UserExtension).where(
        UserExtension.extension == extension, _on_box(pbx), User.active)).first()
