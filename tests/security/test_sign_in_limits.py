"""The brake on password guessing, as the documented layout serves it: behind a reverse proxy on
the same machine, which names each client in ``X-Forwarded-For``.

A guesser is counted at their own address, not at the proxy's, so guessing from one place
cannot lock the whole company out; a login a guesser locked still opens from an address that
never failed on it; a client talking to the server directly cannot name another address; and a
burst of parallel guesses gets exactly as many password checks as the limit, on both
databases.
"""

from __future__ import annotations

import threading

import pytest
from sqlmodel import select

from factories import PASSWORD, make_user
from gunicorn_server import pbx_crm_web
from pbx_crm.people import sign_in as web_sessions
from pbx_crm.db import transaction
from pbx_crm.models import LoginFailure
from webtools import Client, WebServer

GUESSER = "203.0.113.7"
OFFICE = "198.51.100.20"


class BrowserBehindProxy(Client):
    """A browser whose requests reach the web UI through the proxy, which says where it is."""

    def __init__(self, base: str, address: str):
        super().__init__(base)
        self.address = address

    def request(self, method, path, data=None, headers=None):
        return super().request(method, path, data=data, headers={
            **(headers or {}), "X-Forwarded-For": self.address,
            "X-Forwarded-Proto": "https"})


@pytest.fixture
def team(engine):
    with transaction(engine) as session:
        make_user(session, "ana", extensions=["101"])
        make_user(session, "budi", extensions=["102"])


def failures_by_address(engine) -> dict[str, int]:
    with transaction(engine, read_only=True) as session:
        counts: dict[str, int] = {}
        for address in session.exec(select(LoginFailure.address)):
            counts[address] = counts.get(address, 0) + 1
        return counts


def test_guesses_on_random_logins_lock_out_the_guesser_not_the_company(web, team, engine):
    guesser = BrowserBehindProxy(web.url, GUESSER)
    for n in range(web_sessions.MAX_FAILURES_PER_ADDRESS):
        assert guesser.sign_in(f"nobody{n}", "guess").status == 401
    refused = guesser.sign_in("nobody-else", "guess")
    assert refused.status == 429 and "Too many failed sign-ins" in refused.text
    # Everyone else comes through the same proxy, from addresses of their own.
    assert BrowserBehindProxy(web.url, OFFICE).sign_in("ana", PASSWORD).status == 303
    assert failures_by_address(engine) == {GUESSER: web_sessions.MAX_FAILURES_PER_ADDRESS}


def test_a_login_a_guesser_locked_still_opens_from_an_address_that_never_failed(web, team):
    guesser = BrowserBehindProxy(web.url, GUESSER)
    for _ in range(web_sessions.MAX_FAILURES_PER_LOGIN):
        assert guesser.sign_in("ana", "guess").status == 401
    # Locked for the guesser, even with the right password...
    assert guesser.sign_in("ana", PASSWORD).status == 429
    # ...but ana, at the office, signs in, and her sign-in does not unlock the guesser.
    assert BrowserBehindProxy(web.url, OFFICE).sign_in("ana", PASSWORD).status == 303
    assert guesser.sign_in("ana", PASSWORD).status == 429


def test_the_lock_out_speaks_the_browsers_language(web, team):
    guesser = BrowserBehindProxy(web.url, GUESSER)
    for _ in range(web_sessions.MAX_FAILURES_PER_LOGIN):
        guesser.sign_in("ana", "guess")
    form = guesser.get("/login", headers={"Accept-Language": "id"})
    refused = guesser.post("/login", {"login": "ana", "password": PASSWORD,
                                      "csrf_token": form.csrf()},
                           headers={"Accept-Language": "id"})
    assert refused.status == 429
    assert "Terlalu banyak percobaan masuk yang gagal; coba lagi dalam 15 menit." in refused.text


def test_an_ipv6_guesser_is_counted_by_the_network_it_holds(web, team, engine):
    for n in range(web_sessions.MAX_FAILURES_PER_ADDRESS):
        # A fresh address of the same /64 for every guess changes nothing.
        guesser = BrowserBehindProxy(web.url, f"2001:db8:0:7::{n + 1:x}")
        assert guesser.sign_in(f"nobody{n}", "guess").status == 401
    assert BrowserBehindProxy(web.url, "2001:db8:0:7::beef").sign_in(
        "ana", PASSWORD).status == 429
    assert BrowserBehindProxy(web.url, "2001:db8:0:8::1").sign_in("ana", PASSWORD).status == 303
    assert failures_by_address(engine) == {"2001:db8:0:7::/64": 20}


def test_a_client_talking_to_the_server_directly_cannot_name_another_address(
        settings, engine, team):
    # No proxy is trusted: the server is reached directly (here over loopback).
    with WebServer(settings.replace(web_trusted_proxies=frozenset()), engine) as web:
        for n in range(web_sessions.MAX_FAILURES_PER_ADDRESS):
            liar = BrowserBehindProxy(web.url, f"192.0.2.{n + 1}")
            assert liar.sign_in(f"nobody{n}", "guess").status == 401
        assert BrowserBehindProxy(web.url, "192.0.2.99").sign_in("ana", PASSWORD).status == 429
    assert failures_by_address(engine) == {"127.0.0.1": web_sessions.MAX_FAILURES_PER_ADDRESS}


def test_only_the_address_the_trusted_proxy_saw_is_believed(settings, engine, team):
    # nginx's $proxy_add_x_forwarded_for appends the peer it saw to whatever the client sent:
    # the client's own entries (on the left) are not believed, the proxy's (right-most) is.
    with WebServer(settings, engine) as web:
        for n in range(web_sessions.MAX_FAILURES_PER_LOGIN):
            liar = BrowserBehindProxy(web.url, f"192.0.2.{n + 1}, {GUESSER}")
            assert liar.sign_in("ana", "guess").status == 401
        assert BrowserBehindProxy(web.url, GUESSER).sign_in("ana", PASSWORD).status == 429
    assert failures_by_address(engine) == {GUESSER: web_sessions.MAX_FAILURES_PER_LOGIN}


# --- the real server: gunicorn and the app agree on whom to believe ---------------------------


@pytest.mark.parametrize("trusted, counted_at, scheme", [
    (None, GUESSER, "https"),  # the default: the proxy on this machine (loopback)
    ("", "127.0.0.1", "http"),  # no proxy trusted: the peer, whatever it says
])
def test_the_server_believes_the_forwarded_headers_of_trusted_proxies_only(
        engine, team, tmp_path, trusted, counted_at, scheme):
    env = {} if trusted is None else {"PBX_CRM_WEB_TRUSTED_PROXIES": trusted}
    with pbx_crm_web(engine, tmp_path, env=env) as port:
        base = f"http://127.0.0.1:{port}"
        assert BrowserBehindProxy(base, GUESSER).sign_in("ana", "guess").status == 401
        signed_in = BrowserBehindProxy(base, GUESSER).sign_in("budi", PASSWORD)
    assert signed_in.status == 303
    # The redirect names the scheme the browser used, as the proxy told it (or not).
    assert signed_in.location == f"{scheme}://127.0.0.1:{port}/board"
    assert failures_by_address(engine) == {counted_at: 1}


# --- a burst ---------------------------------------------------------------------------------


def burst(base: str, logins: list[str], address: str) -> list[int]:
    """Every login's wrong password sent at once, each from its own browser (its own sign-in
    form and connection); the answers' statuses."""
    browsers = [BrowserBehindProxy(base, address) for _ in logins]
    forms = [browser.get("/login").csrf() for browser in browsers]
    start = threading.Barrier(len(logins))
    statuses: list[int] = [0] * len(logins)

    def guess(index: int) -> None:
        start.wait(10)
        statuses[index] = browsers[index].post("/login", {
            "login": logins[index], "password": "guess", "csrf_token": forms[index]}).status

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(len(logins))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def test_forty_parallel_wrong_passwords_get_five_checks(engine, team, tmp_path):
    with pbx_crm_web(engine, tmp_path) as port:
        statuses = burst(f"http://127.0.0.1:{port}", ["ana"] * 40, GUESSER)
    # 401: the password was checked (and wrong); 429: refused before any check.
    assert statuses.count(401) == web_sessions.MAX_FAILURES_PER_LOGIN
    assert statuses.count(429) == 40 - web_sessions.MAX_FAILURES_PER_LOGIN
    assert failures_by_address(engine) == {GUESSER: web_sessions.MAX_FAILURES_PER_LOGIN}


def test_forty_parallel_guesses_on_as_many_logins_get_twenty_checks(engine, team, tmp_path):
    with pbx_crm_web(engine, tmp_path) as port:
        statuses = burst(f"http://127.0.0.1:{port}", [f"nobody{n}" for n in range(40)], GUESSER)
    assert statuses.count(401) == web_sessions.MAX_FAILURES_PER_ADDRESS
    assert statuses.count(429) == 40 - web_sessions.MAX_FAILURES_PER_ADDRESS


def test_the_count_holds_for_attempts_counted_on_many_threads_at_once(engine, team):
    # The service alone, one transaction per thread, as many web workers would run it.
    start = threading.Barrier(40)
    admitted: list[bool] = []

    def attempt() -> None:
        start.wait(10)
        try:
            with transaction(engine) as session:
                web_sessions.begin_attempt(session, "ana", GUESSER)
            admitted.append(True)
        except web_sessions.TooManyAttempts:
            admitted.append(False)

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert admitted.count(True) == web_sessions.MAX_FAILURES_PER_LOGIN
    assert len(admitted) == 40
