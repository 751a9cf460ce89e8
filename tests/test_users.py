"""People: who may sign in, with which role, and which extensions ring them."""

import pytest
from sqlmodel import select

from factories import ADMIN, PASSWORD, make_user
from pbx_crm.people import users
from pbx_crm.errors import Conflict, Forbidden, NotFound, ValidationError
from pbx_crm.models import User


def add_user(session, actor=ADMIN, *, login="ana", password=PASSWORD, role="seller",
             extensions=(), name="Ana Wijaya"):
    return users.create_user(session, actor, login=login, name=name, password=password,
                             role=role, extensions=extensions)


def logins(session) -> list[str]:
    return list(session.exec(select(User.login).order_by(User.login)))


def test_a_head_adds_a_seller_with_extensions(session):
    ana = add_user(session, login="  Ana.W ", extensions=["101", " 2001 ", "101"])
    assert (ana.login, ana.name, ana.role, ana.active) == ("ana.w", "Ana Wijaya", "seller", True)
    assert ana.password_hash != PASSWORD
    assert users.list_users(session) == [(ana, ["101", "2001"])]


@pytest.mark.parametrize("login", ["a", "-ana", "ana wijaya", "ana@shop", "a" * 65],
                         ids=["one-char", "leading-dash", "space", "at-sign", "65-chars"])
def test_a_login_is_two_to_64_plain_characters(session, login):
    with pytest.raises(ValidationError) as refused:
        add_user(session, login=login)
    assert refused.value.field == "login"
    assert logins(session) == []


def test_a_password_has_at_least_eight_characters(session):
    with pytest.raises(ValidationError, match="at least 8") as refused:
        add_user(session, password="seven77")
    assert refused.value.field == "password"
    assert add_user(session, password="eight888").login == "ana"


def test_a_role_is_seller_or_head(session):
    with pytest.raises(ValidationError, match="seller or head"):
        add_user(session, role="admin")
    assert logins(session) == []


def test_a_login_is_taken_once(session):
    add_user(session, login="ana")
    with pytest.raises(Conflict, match="taken"):
        add_user(session, login="ANA")


def test_an_extension_rings_one_user_only(session):
    add_user(session, login="ana", extensions=["101"])
    with pytest.raises(Conflict, match="101 already rings ana"):
        add_user(session, login="budi", extensions=["102", "101"])
    assert logins(session) == ["ana"]
    with pytest.raises(ValidationError, match="not a phone extension"):
        add_user(session, login="budi", extensions=["ext-102"])
    assert logins(session) == ["ana"]


def test_a_seller_cannot_add_users_or_change_extensions(session):
    ana = make_user(session, "ana", extensions=["101"])
    with pytest.raises(Forbidden, match="Only a head"):
        add_user(session, ana, login="budi")
    with pytest.raises(Forbidden, match="Only a head"):
        users.set_extensions(session, ana, ana.user_id, ["999"])
    assert users.user_for_extension(session, "101").login == "ana"


# --- signing in ---------------------------------------------------------------------------


def test_signing_in_takes_the_right_password_of_an_active_user(session):
    ana = add_user(session)
    assert users.authenticate(session, "ana", PASSWORD) == ana
    assert users.authenticate(session, " ANA ", PASSWORD) == ana
    assert users.authenticate(session, "ana", PASSWORD.upper()) is None
    assert users.authenticate(session, "nobody", PASSWORD) is None
    users.set_active(session, ADMIN, "ana", False)
    assert users.authenticate(session, "ana", PASSWORD) is None


def test_a_seller_changes_their_own_password_but_nobody_elses(session):
    ana = make_user(session, "ana")
    make_user(session, "budi")
    users.set_password(session, ana, "ana", "a new secret")
    assert users.authenticate(session, "ana", "a new secret").login == "ana"
    with pytest.raises(Forbidden, match="another user's password"):
        users.set_password(session, ana, "budi", "a new secret")
    assert users.authenticate(session, "budi", PASSWORD).login == "budi"
    with pytest.raises(ValidationError):
        users.set_password(session, ana, "ana", "short")


def test_a_head_resets_a_sellers_password(session):
    hana = make_user(session, "hana", role="head")
    make_user(session, "ana")
    users.set_password(session, hana, "ana", "reset by hana")
    assert users.authenticate(session, "ana", "reset by hana").login == "ana"
    with pytest.raises(NotFound):
        users.set_password(session, hana, "nobody", "reset by hana")


# --- the PBX's view -----------------------------------------------------------------------


def test_an_extension_finds_the_active_user_it_rings(session):
    ana = add_user(session, login="ana", extensions=["101", "2001"])
    assert users.user_for_extension(session, "2001") == ana
    assert users.user_for_extension(session, "999") is None
    users.set_active(session, ADMIN, "ana", False)
    assert users.user_for_extension(session, "101") is None


def test_the_user_list_shows_each_users_extensions(session):
    make_user(session, "ana", extensions=["102", "101"])
    make_user(session, "hana", role="head")
    listed = {user.login: (user.role, extensions)
              for user, extensions in users.list_users(session)}
    assert listed == {"ana": ("seller", ["101", "102"]), "hana": ("head", [])}
