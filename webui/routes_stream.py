"""The screen-pop push stream: ``GET /events`` as Server-Sent Events.

Each signed-in browser holds one stream (``static/screenpop.js``); this process's
``EventHub`` (``pbx_crm.web.event_stream``) hands it the events its user may receive. Each message
carries ``id:`` (the event id, which the browser sends back as ``Last-Event-ID`` when it
reconnects), ``event:`` (the kind: ringing, answered, stopped_ringing, call_ended; task_due) and
``data:`` (JSON: what the pop card shows). A comment line goes out every ``HEARTBEAT_SECONDS``
so proxies keep an idle stream open.

A stream ends with its session (sign-out, deactivation, a new password, expiry): the hub checks
the session before every event it hands over, and the stream checks it at each heartbeat.
Its last message is a ``signed_out`` event (no id, so the browser's place is kept), on which
``screenpop.js`` stops reconnecting and offers to sign in again.
"""

from __future__ import annotations

import json

import bottle

from pbx_crm.people import sign_in as web_sessions
from pbx_crm.db import database_away, transaction
from pbx_crm.errors import ValidationError
from pbx_crm.web.event_stream import EventHub

from .app import SESSION_COOKIE, WebUI

HEARTBEAT_SECONDS = 15.0
RETRY_MS = 2000  # how soon a browser reconnects after the stream broke
SIGNED_OUT = "event: signed_out\ndata: {}\n\n"


def last_event_id() -> int | None:
    """Where the browser resumes: the ``Last-Event-ID`` header of a reconnect, or the
    ``last_event_id`` query parameter of a page's first connect (a browser moving between
    pages keeps its place)."""
    text = (bottle.request.headers.get("Last-Event-ID")
            or bottle.request.query.get("last_event_id") or "").strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        raise ValidationError("“%(text)s” is not an event id.", text=text[:20],
                              field="last_event_id")
    return int(text)


def stream_position() -> str:
    """The stream position of the page being rendered ("" outside a request of this app)."""
    hub = bottle.request.environ.get("pbx_crm.event_hub")
    return str(hub.position()) if hub is not None else ""


def message(delivery, actor) -> str:
    data = json.dumps(delivery.data_for(actor), ensure_ascii=False, separators=(",", ":"))
    return f"id: {delivery.id}\nevent: {delivery.kind}\ndata: {data}\n\n"


def register(ui: WebUI, *, heartbeat: float = HEARTBEAT_SECONDS) -> EventHub:
    app = ui.app
    hub = EventHub(ui.engine)
    ui.event_hub = hub
    ui.on_close(hub.close)  # the reader stops with the app

    # Each page says where its stream starts (``_screenpop.html``), so a pop written between
    # the page and its stream's connect is not missed.
    @app.hook("before_request")
    def expose_hub():
        bottle.request.environ["pbx_crm.event_hub"] = hub

    for env in ui.envs.values():
        env.globals["stream_position"] = stream_position

    def still_signed_in(token: str) -> bool:
        """Whether the stream's session goes on. While the database does not answer it does,
        and the stream stays open for the pops to come (a session that ended meanwhile is
        seen at the first check the database answers)."""
        try:
            with transaction(ui.engine, read_only=True) as session:
                return web_sessions.signed_in(session, token) is not None
        except Exception as error:
            if database_away(ui.engine, error):
                return True
            raise

    @app.get("/events", name="events")
    def stream():
        after = last_event_id()
        actor = ui.actor
        token = bottle.request.get_cookie(SESSION_COOKIE)
        web_session_id = bottle.request.environ["pbx_crm.signed_in"].web_session.id
        subscription = hub.subscribe(actor, web_session_id, after=after)
        bottle.response.content_type = "text/event-stream; charset=utf-8"
        # Not buffered by a reverse proxy (nginx honours this header).
        bottle.response.headers["X-Accel-Buffering"] = "no"

        def messages():
            try:
                yield f"retry: {RETRY_MS}\n: stream of user {actor.user_id}\n\n"
                while not subscription.dropped:
                    delivery = subscription.get(heartbeat)
                    if subscription.signed_out:
                        yield SIGNED_OUT
                        return
                    if delivery is not None:
                        yield message(delivery, actor)
                        continue
                    if not still_signed_in(token):
                        yield SIGNED_OUT
                        return
                    yield ": heartbeat\n\n"
            finally:
                subscription.close()

        return messages()

    return hub
