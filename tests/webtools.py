"""A real HTTP server around the web app, a small cookie-keeping client, and a browser's
screen-pop stream read message by message, for the web tests: the same WSGI app gunicorn
serves, on a loopback port of its own per test."""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import re
import socketserver
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from factories import PASSWORD

from pbx_crm.webui import create_ui

CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


class WebServer:
    """``create_ui(settings, engine)`` served over HTTP on 127.0.0.1 in a thread."""

    def __init__(self, settings, engine, *, port: int = 0, **options):
        self.ui = create_ui(settings, engine, **options)
        self.server = make_server("127.0.0.1", port, self.ui.app, server_class=_ThreadingServer,
                                  handler_class=_QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.ui.close()


@dataclass
class Answer:
    status: int
    headers: dict
    text: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def csrf(self) -> str:
        match = CSRF.search(self.text)
        assert match, "no CSRF token on the page"
        return match.group(1)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Client:
    """One browser's worth of cookies; redirects are returned, not followed."""

    def __init__(self, base: str):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(
            self.cookies), _NoRedirects)
        self.csrf_token = ""

    def request(self, method: str, path: str, data: dict | None = None,
                headers: dict | None = None) -> Answer:
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, method=method,
                                         headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                return Answer(response.status, dict(response.headers),
                              response.read().decode())
        except urllib.error.HTTPError as error:
            return Answer(error.code, dict(error.headers), error.read().decode())

    def get(self, path: str, **kw) -> Answer:
        return self.request("GET", path, **kw)

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kw) -> Answer:
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf_token)
        return self.request("POST", path, data=data, **kw)

    def post_json(self, path: str, data: dict) -> tuple[Answer, dict]:
        import json

        answer = self.post(path, data, headers={"Accept": "application/json"})
        return answer, json.loads(answer.text)

    def cookie(self, name: str):
        return next((c for c in self.cookies if c.name == name), None)

    def sign_in(self, login: str, password: str) -> Answer:
        form = self.get("/login")
        answer = self.post("/login", {"login": login, "password": password,
                                      "csrf_token": form.csrf(), "next": "/board"})
        if answer.status == 303:
            self.csrf_token = self.get("/board").csrf()
        return answer


def signed_in(web: WebServer, login: str, password: str = PASSWORD) -> Client:
    """A browser-like client of ``web``, signed in as ``login``."""
    client = Client(web.url)
    assert client.sign_in(login, password).status == 303
    return client


class Stream:
    """One browser's EventSource, read message by message."""

    def __init__(self, client: Client, *, last_event_id: int | None = None, query: str = "",
                 timeout: float = 10.0):
        url = urlsplit(client.base)
        self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        headers = {"Accept": "text/event-stream",
                   "Cookie": "; ".join(f"{c.name}={c.value}" for c in client.cookies)}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.connection.request("GET", "/events" + query, headers=headers)
        self.response = self.connection.getresponse()

    def next(self) -> dict:
        """The next event (comments and the retry line skipped), as id, event and data."""
        while True:
            message = self.next_message()
            assert message is not None, "the stream ended"
            if "id" in message:
                return message

    def next_message(self) -> dict | None:
        """The next message with an ``event:`` (id only when it has one), or None when the
        server ended the stream; waits at most the connection's timeout."""
        fields: dict = {}
        while True:
            line = self.response.readline().decode()
            if not line:
                return None
            line = line.rstrip("\n")
            if not line:
                if "event" in fields:
                    message = {"event": fields["event"], "data": json.loads(fields["data"])}
                    if "id" in fields:
                        message["id"] = int(fields["id"])
                    return message
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value

    def close(self) -> None:
        self.response.close()  # the socket closes with its last reader
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
