"""AMI framing: bytes off the socket into messages, and actions into bytes.

This module owns the Asterisk Manager Interface wire format and nothing else: no sockets of its
own, no threads, no idea of what an event means. The AMI client (``pbx_crm.telephony.ami_client``), the loopback
server in ``pbx_crm.simulator.ami``, the tests and the benchmark all read through ``AmiReader``
and write through ``format_action`` / ``format_message``.

The format, as Asterisk 22 sends it: one banner line (``Asterisk Call Manager/11.0.0\\r\\n``,
with no blank line after it), then messages of ``Key: Value\\r\\n`` lines, each ended by a blank
``\\r\\n``. Keys repeat (``ChanVariable``, ``Variable``), so a message keeps every pair in order;
the value is everything after the first ``": "``, kept verbatim (a value may contain ``": "``).
Bare LF line ends are tolerated. pyst2 reads one byte per system call (~600 events/s) and dies
on a repeated ``ChanVariable``; reading 64 KB chunks and splitting them with one regex gives
~28,000 events/s with the call tracker behind it (``bench/ami_events.py``).
"""

from __future__ import annotations

import re
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping

BANNER_PREFIX = "Asterisk Call Manager/"
# The blank line that ends a message, with CRLF or LF line ends (or a mix of both). Only the
# blank line is matched: the last header keeps its own line end, so a value ending in CR (an
# AGI command sent with CRLF, echoed in AGIExecStart) stays verbatim.
_END_OF_MESSAGE = re.compile(rb"(?<=\n)\r?\n")
# A message this large is a broken peer, not AMI (Command output is the largest, a few 100 KB).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
_READ_CHUNK = 65536

Headers = Mapping[str, object] | Iterable[tuple[str, object]]


class AmiProtocolError(Exception):
    """The peer sent something that is not AMI."""


class ConnectionClosed(AmiProtocolError):
    """The peer closed the connection (EOF)."""


class Message:
    """One AMI message: ordered ``(key, value)`` pairs where keys may repeat.

    ``msg["Key"]`` and ``msg.get("Key")`` give the first value, ``msg.get_all("Key")`` every
    value in order. Key lookups ignore case, as Asterisk's own parser does (the ``Cdr`` event
    says ``UniqueID`` where channel events say ``Uniqueid``). A line without a colon (old
    ``Command`` output) is kept with the empty key ``""``.
    """

    __slots__ = ("_first", "_pairs", "events")

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self._pairs: list[tuple[str, str]] = list(pairs)
        # reversed(): the first occurrence of a key is written last, so it wins.
        self._first = {key.lower(): value for key, value in reversed(self._pairs)}
        # Filled by the client for list actions (CoreShowChannels): the events that followed
        # the response, up to and excluding the one with "EventList: Complete".
        self.events: list[Message] = []

    def __getitem__(self, key: str) -> str:
        try:
            return self._first[key.lower()]
        except KeyError:
            raise KeyError(f"AMI message {self.name!r} has no {key!r} header") from None

    def get(self, key: str, default: str | None = None) -> str | None:
        return self._first.get(key.lower(), default)

    def get_all(self, key: str) -> list[str]:
        wanted = key.lower()
        return [value for name, value in self._pairs if name.lower() == wanted]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._first

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def keys(self) -> list[str]:
        return [key for key, _ in self._pairs]

    def __len__(self) -> int:
        return len(self._pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self._pairs == other._pairs

    __hash__ = None  # mutable-looking container: equality by content, no hashing

    @property
    def kind(self) -> str:
        """``"event"``, ``"response"`` or ``"other"``."""
        if "event" in self._first:
            return "event"
        if "response" in self._first:
            return "response"
        return "other"

    @property
    def is_event(self) -> bool:
        return "event" in self._first

    @property
    def is_response(self) -> bool:
        return "response" in self._first and "event" not in self._first

    @property
    def name(self) -> str | None:
        """The event name, or the response status (``Success``, ``Error``, ``Goodbye``)."""
        return self._first.get("event") or self._first.get("response")

    @property
    def action_id(self) -> str | None:
        return self._first.get("actionid")

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}: {value}" for key, value in self._pairs[:6])
        more = f", ... +{len(self._pairs) - 6}" if len(self._pairs) > 6 else ""
        return f"<Message {shown}{more}>"


def parse_message(block: bytes) -> Message:
    """One message's bytes (without the blank line that ends it) into a ``Message``."""
    pairs = []
    for line in block.decode("utf-8", "replace").split("\n"):
        line = line.removesuffix("\r")
        if not line:
            continue
        key, colon, value = line.partition(":")
        if not colon:
            pairs.append(("", line))
            continue
        # Verbatim after the first ": ": only the one separating space goes.
        pairs.append((key, value.removeprefix(" ")))
    return Message(pairs)


class AmiReader:
    """Buffered AMI reader over anything with a ``recv(n) -> bytes`` (a socket).

    ``read_banner()`` once, right after connecting; then ``read_message()`` (or iterate) until
    it raises ``ConnectionClosed``. Not thread-safe: one reader thread owns it.
    """

    def __init__(self, recv: Callable[[int], bytes], *, chunk_size: int = _READ_CHUNK):
        self._recv = recv
        self._chunk_size = chunk_size
        self._rest = b""  # bytes after the last complete message
        self._blocks: deque[bytes] = deque()  # complete messages not yet handed out
        self._unsplit = False  # _rest has bytes not yet searched for message ends

    @classmethod
    def from_socket(cls, sock: socket.socket, **kwargs) -> AmiReader:
        return cls(sock.recv, **kwargs)

    def _fill(self) -> None:
        data = self._recv(self._chunk_size)
        if not data:
            raise ConnectionClosed("the AMI peer closed the connection")
        self._rest = self._rest + data if self._rest else data
        self._unsplit = True

    def read_banner(self) -> str:
        """The first line (``Asterisk Call Manager/11.0.0``), without its line end."""
        while b"\n" not in self._rest:
            if len(self._rest) > 1024:
                raise AmiProtocolError(f"no AMI banner: got {self._rest[:80]!r}")
            self._fill()
        line, _, self._rest = self._rest.partition(b"\n")
        self._unsplit = bool(self._rest)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def read_message(self) -> Message:
        while True:
            while self._blocks:
                block = self._blocks.popleft()
                if block.strip():  # stray blank lines between messages are not messages
                    return parse_message(block)
            if self._unsplit:
                parts = _END_OF_MESSAGE.split(self._rest)
                self._rest = parts.pop()
                self._blocks.extend(parts)
                self._unsplit = False
                if self._blocks:
                    continue
                if len(self._rest) > MAX_MESSAGE_BYTES:
                    raise AmiProtocolError(f"an AMI message longer than {MAX_MESSAGE_BYTES} bytes")
            self._fill()

    def __iter__(self) -> Iterator[Message]:
        """Messages until EOF."""
        try:
            while True:
                yield self.read_message()
        except ConnectionClosed:
            return


def split_stream(data: bytes) -> tuple[str | None, list[bytes]]:
    """A recorded stream into its banner and the exact bytes of each message.

    Each block keeps its own line ends and the blank line that ends it, so joining the blocks
    after the banner line gives back the stream (up to a trailing partial message, dropped).
    The loopback server replays captures with it byte for byte.
    """
    banner = None
    start = 0
    if data.startswith(BANNER_PREFIX.encode()):
        end = data.index(b"\n") + 1
        banner = data[:end].rstrip(b"\r\n").decode("utf-8", "replace")
        start = end
    blocks = []
    for match in _END_OF_MESSAGE.finditer(data, start):
        blocks.append(data[start:match.end()])
        start = match.end()
    return banner, blocks


def parse_stream(data: bytes) -> tuple[str | None, list[Message]]:
    """A whole recorded stream (banner optional) into its banner and messages."""
    banner, blocks = split_stream(data)
    return banner, [parse_message(block) for block in blocks if block.strip()]


def _pairs(headers: Headers | None) -> Iterator[tuple[str, object]]:
    if headers is None:
        return
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if isinstance(value, (list, tuple)):  # {"Variable": ["A=1", "B=2"]}: one line each
            for item in value:
                yield key, item
        else:
            yield key, value


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_message(headers: Headers) -> bytes:
    """``Key: Value\\r\\n`` lines and the blank line, refusing anything that could inject.

    A CR or LF inside a key or value would end the header early and let data (a contact name,
    a number typed in the CRM) become headers of its own: ``ValueError``. ``None`` values are
    left out. The value itself is not echoed in the error: it may be a secret.
    """
    lines = []
    for key, value in _pairs(headers):
        if value is None:
            continue
        key, value = str(key), _text(value)
        if not key or ":" in key or any(c in key for c in "\r\n") or key != key.strip():
            raise ValueError(f"{key!r} is not a valid AMI header name")
        if "\r" in value or "\n" in value:
            raise ValueError(
                f"AMI header {key!r}: the value contains a line break (CR or LF), which would "
                "inject extra headers into the action; refusing to send it"
            )
        lines.append(f"{key}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


def format_action(name: str, headers: Headers | None = None, action_id: str | None = None) -> bytes:
    """An action's bytes: ``Action``, ``ActionID``, then the headers (which may repeat).

    ``headers`` is a dict (a list or tuple value repeats the header: ``{"Variable": [...]}``)
    or a list of ``(key, value)`` pairs. CR/LF in any value raises ``ValueError``.
    """
    pairs = list(_pairs(headers))
    reserved = [key for key, _ in pairs if str(key).lower() in ("action", "actionid")]
    if reserved:
        raise ValueError(f"pass the action name and ActionID as arguments, not as {reserved[0]!r}")
    return format_message([("Action", name), ("ActionID", action_id), *pairs])
