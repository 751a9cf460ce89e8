"""What the web UI believes of a request before any route runs: who sent it, and how much it
may send. The web UI (``pbx_crm.webui.app``) runs ``check_request`` as a Bottle hook and asks
``client_address``; ``pbx_crm.web.server`` gives gunicorn the hooks of ``gunicorn_hooks`` and
the same trusted proxies (its ``forwarded_allow_ips``, which decides whether
``X-Forwarded-Proto`` is believed). Standard library only: gunicorn's master imports it, before
its workers patch the standard library for gevent.

* **The client's address** is the peer's, unless the peer is a trusted proxy
  (``web_trusted_proxies``, loopback by default); then it is the right-most address of
  ``X-Forwarded-For`` that is not itself a trusted proxy (a proxy appending to what the client
  sent leaves the client's own entries on the left). A client talking to the server directly
  cannot name another address: its ``X-Forwarded-*`` headers are dropped before Bottle, which
  would build redirects from them, sees them. The sign-in limits count this address.
* **The body** is refused (413) past ``web_max_body_kb`` before it is read: a declared
  ``Content-Length`` is judged from the header. Up to ``DRAIN_LIMIT`` the body is then read and
  dropped, so a browser gets its refusal page on a connection that stays usable; a larger one
  is never read, and gunicorn closes the connection after the answer (reading it would hold
  the worker: a gevent worker reading a body that keeps arriving serves nobody else). A
  chunked body, which gunicorn de-chunks, is read up to the cap and no further.

The web UI's guard turns a refused body into the refusal page, in the user's language.
"""

from __future__ import annotations

import io
import ipaddress

from ..errors import CrmError

BODY_REFUSED = "pbx_crm.body_refused"
CLOSE_AFTER = "pbx_crm.close_after"
# A refused body up to this size is read and dropped rather than left on the connection.
DRAIN_LIMIT = 1 << 20
_DRAIN_PIECE = 64 * 1024
_FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                       "HTTP_X_FORWARDED_PROTOCOL", "HTTP_X_FORWARDED_SSL", "HTTP_FORWARDED")


class TooLarge(CrmError):
    status = 413


def trusted_networks(settings) -> list:
    return [ipaddress.ip_network(entry) for entry in sorted(settings.web_trusted_proxies)]


def client_address(environ, trusted) -> str:
    """The address that sent the request, believing only trusted proxies' headers."""
    peer = environ.get("REMOTE_ADDR") or "unknown"
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            # Not written by a proxy we trust: nothing left of it can be believed either.
            return peer
        if not _is_trusted(str(address), trusted):
            return str(address)
    return hops[0] if hops else peer


def check_request(environ, trusted, max_bytes: int) -> None:
    """Before routing: forget what an untrusted peer says about forwarding, and cap the body."""
    if not _is_trusted(environ.get("REMOTE_ADDR") or "", trusted):
        for header in _FORWARDING_HEADERS:
            environ.pop(header, None)
    check_body(environ, max_bytes)


def _is_trusted(address: str, trusted) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    parsed = getattr(parsed, "ipv4_mapped", None) or parsed
    return any(parsed in network for network in trusted)


def check_body(environ, max_bytes: int) -> None:
    """Mark a body over ``max_bytes`` as refused (``BODY_REFUSED``) without reading it past
    what is said above, and leave the route an empty one; a chunked body that fits is handed
    on with its length, as Bottle reads it best."""
    declared = environ.get("CONTENT_LENGTH", "").strip()
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        if not environ.get("wsgi.input_terminated"):
            # A server that does not de-chunk leaves no safe way to bound the body.
            _refuse(environ, close=True)
            return
        body = environ["wsgi.input"].read(max_bytes + 1)
        if len(body) > max_bytes:
            _refuse(environ, close=True)
            return
        environ.pop("HTTP_TRANSFER_ENCODING")
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(body)
        return
    if not declared.isdigit() or int(declared) <= max_bytes:
        return
    length = int(declared)
    if length <= max(DRAIN_LIMIT, max_bytes):
        read = environ["wsgi.input"].read
        while length > 0:
            piece = read(min(length, _DRAIN_PIECE))
            if not piece:
                break
            length -= len(piece)
        _refuse(environ, close=False)
    else:
        _refuse(environ, close=True)


def _refuse(environ, *, close: bool) -> None:
    environ[BODY_REFUSED] = True
    environ[CLOSE_AFTER] = close
    environ["CONTENT_LENGTH"] = "0"
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ["wsgi.input"] = io.BytesIO()


def gunicorn_hooks(max_bytes: int) -> dict:
    """gunicorn's ``pre_request`` and ``post_request``: a connection whose body was left
    unread is closed after the answer (gunicorn would otherwise read the rest, all of it, to
    reach the next request), and the answer says so when the declared length already tells."""

    def pre_request(worker, req):
        declared = next((value for name, value in req.headers if name == "CONTENT-LENGTH"), "")
        if declared.strip().isdigit() and int(declared) > max(DRAIN_LIMIT, max_bytes):
            req.must_close = True

    def post_request(worker, req, environ, resp):
        if environ.get(CLOSE_AFTER):
            req.must_close = True

    return {"pre_request": pre_request, "post_request": post_request}
