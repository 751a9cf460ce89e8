"""Serving the web UI: the infrastructure under the routes of ``webui/``.

``server`` (gunicorn with gevent workers), ``front_door`` (who sent a request and how much it
may send, before any route runs), ``event_stream`` (delivering the event outbox to the signed-in
browsers: screen-pops).

May import: the store, ``rules``, the services (``funnel``, ``people``) and ``webui``. Never
``telephony`` or ``cli``.
"""
