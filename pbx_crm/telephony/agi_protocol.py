"""The AGI wire protocol as Asterisk 22 speaks it: environment block, command quoting, responses.

Owns the bytes between Asterisk and a pbx-crm AGI session, and nothing above them. The FastAGI
server (``pbx_crm.telephony.fastagi``) speaks through it; the Asterisk emulator (``pbx_crm.simulator.agi``)
plays the other side. Every rule here is visible in the recorded transcripts
(``tests/fixtures/asterisk-captures``), and the tests replay them through this reader.

pyst2 0.5.1: what is reused and why the rest is not (checked on Python 3.11). ``asterisk.agi.AGI``
installs a process-wide SIGHUP handler in its constructor and reads blocking text files; its
``get_result`` raises ``ValueError`` on the inline ``HANGUP`` line and on EOF, turns ``511`` into
``AGIUnknownError``, loops waiting for a second line after a single-line ``520``; its ``_quote``
escapes nothing. Subclassing it would mean overriding ``__init__``, ``_get_agi_env``, ``_quote``,
``send_command``, ``get_result`` and ``execute``, that is all of it, while its helpers would keep
pyst2's raising semantics next to ours. So the reader is our own (small, and byte-exact against
the captures) and what is reused is pyst2's exception hierarchy: ``AgiHangup`` is an
``asterisk.agi.AGIHangup`` and the other errors are ``asterisk.agi.AGIError``, so code written
against pyst2 still catches them.
"""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from asterisk.agi import AGIError, AGIHangup

logger = logging.getLogger(__name__)

# Asterisk reads one command into ``char buf[AGI_BUF_LEN]`` (2048, res_agi.c) with fgets: a
# longer line is cut and its tail runs as a second command. Nothing we send may come near that.
MAX_COMMAND_BYTES = 2047  # including the LF
MAX_VALUE_BYTES = 1024  # of the quoted value's content, escapes included
MAX_NAME_LENGTH = 80
MAX_LINE_BYTES = 8192  # longest line accepted from Asterisk
MAX_ENV_LINES = 256
MAX_USAGE_LINES = 200

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_()]*")
# What MSet takes as it is: a variable's name (no function), a short value of letters (any
# alphabet), digits, single spaces, '.', '-' and '+' only. MSet's argument parser strips
# quotes and backslashes, nests on brackets, splits pairs on ',' and each pair on every '=':
# a value holding any of those (or anything else) is sent with its own SET VARIABLE.
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_VALUE = re.compile(r"(?=.{1,64}$)[\w.+-]+(?: [\w.+-]+)*")
_RESPONSE_LINE = re.compile(r"(\d{3})(?:([ -])(.*))?")
_BLOCK_END = re.compile(r"\d{3} ")
# C0 and C1 controls, DEL, and lone surrogates: none of them belongs in a channel variable,
# and LF/CR/NUL would end or cut the command line.
_UNSENDABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class AgiProtocolError(AGIError):
    """The peer broke the AGI protocol: a malformed environment block or response line."""


class AgiHangup(AGIHangup):
    """The connection closed (EOF or reset) while a response or the environment was awaited."""


class AgiCommandError(AGIError):
    """A helper got a response other than ``200``; the response is in ``.response``."""

    def __init__(self, response: AgiResponse):
        super().__init__(f"AGI command failed: {response.lines[0] if response.lines else response}")
        self.response = response


# ---------------------------------------------------------------------------------------------
# The request: the environment block Asterisk sends first
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgiRequest:
    """One AGI request as the hooks see it.

    ``env`` holds every ``agi_*`` line verbatim (empty values kept, ``unknown`` kept). For FastAGI
    ``script`` is the path of ``agi_network_script`` without its query string and ``args`` are
    ``agi_arg_1..N``; for process AGI (``AGI(pbx-crm.agi,<hook>,...)``) ``script`` is the first
    argument and ``args`` the ones after it. ``query`` is the parsed query string either way.
    """

    env: dict[str, str] = field(hash=False)
    script: str
    query: dict[str, str] = field(hash=False)
    args: tuple[str, ...]
    # When Asterisk connected (``time.monotonic()``), for the budget to count from it; None
    # when unknown (the budget then counts from when the request is handled).
    arrived: float | None = field(default=None, compare=False)

    @classmethod
    def from_env(cls, env: dict[str, str]) -> AgiRequest:
        numbered = []
        n = 1
        while f"agi_arg_{n}" in env:
            numbered.append(env[f"agi_arg_{n}"])
            n += 1
        if env.get("agi_network") == "yes":
            target = env.get("agi_network_script", "")
            args = tuple(numbered)
        else:
            target = numbered[0] if numbered else ""
            args = tuple(numbered[1:])
        path, _, query = target.partition("?")
        return cls(
            env=dict(env),
            script=path.strip("/"),
            query=dict(parse_qsl(query, keep_blank_values=True)),
            args=args,
        )

    @property
    def network(self) -> bool:
        """True for FastAGI, False for a process AGI (or the relay's re-labelled request)."""
        return self.env.get("agi_network") == "yes"

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def callerid(self) -> str:
        """Verbatim: Asterisk writes ``unknown`` when there is no caller number."""
        return self.env.get("agi_callerid", "")

    @property
    def calleridname(self) -> str:
        """Verbatim: Asterisk writes ``unknown`` when there is no caller name."""
        return self.env.get("agi_calleridname", "")

    @property
    def callingpres(self) -> int | None:
        try:
            return int(self.env.get("agi_callingpres", ""))
        except ValueError:
            return None

    @property
    def dnid(self) -> str:
        return self.env.get("agi_dnid", "")

    @property
    def extension(self) -> str:
        return self.env.get("agi_extension", "")

    @property
    def context(self) -> str:
        return self.env.get("agi_context", "")


def _readline(reader, limit: int = MAX_LINE_BYTES) -> bytes:
    line = reader.readline(limit + 1)
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogateescape")
    if len(line) > limit:
        raise AgiProtocolError(f"line longer than {limit} bytes")
    return line


def _decode(raw: bytes) -> str:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", "replace")


def read_env(reader) -> dict[str, str]:
    """Read an environment block up to its empty line; ``reader`` is a binary file object."""
    env: dict[str, str] = {}
    for _ in range(MAX_ENV_LINES):
        raw = _readline(reader)
        if not raw.endswith(b"\n"):
            raise AgiProtocolError("connection closed before the end of the AGI environment block")
        line = _decode(raw)
        if not line:
            return env
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_"):
            raise AgiProtocolError(f"not an AGI environment line: {line[:80]!r}")
        env[key] = value.removeprefix(" ")
    raise AgiProtocolError(f"AGI environment block longer than {MAX_ENV_LINES} lines")


def read_request(reader) -> AgiRequest:
    """Read the environment block Asterisk sends first and return the request it describes."""
    return AgiRequest.from_env(read_env(reader))


# ---------------------------------------------------------------------------------------------
# Commands: quoting for Asterisk's parser
# ---------------------------------------------------------------------------------------------


def escape(value: object, *, max_bytes: int = MAX_VALUE_BYTES) -> str:
    """Quote ``value`` as one argument for Asterisk's AGI parser (res_agi.c ``parse_args``).

    Inside double quotes Asterisk decodes ``\\"`` and ``\\\\``; line breaks, NUL and the other
    control characters are dropped (they would end or cut the command); the quoted content is cut
    to ``max_bytes`` of UTF-8 at a character boundary, never inside an escape.
    """
    text = _UNSENDABLE.sub("", str(value))
    if len(text) * 4 <= max_bytes:  # no character takes more than 4 bytes, escaped or not
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    pieces = []
    used = 0
    for char in text:
        piece = "\\" + char if char in '\\"' else char
        size = len(piece.encode("utf-8"))
        if used + size > max_bytes:
            break
        pieces.append(piece)
        used += size
    return '"' + "".join(pieces) + '"'


def check_variable_name(name: str) -> str:
    """Return ``name`` if it is safe to send unquoted as a variable name; else ValueError."""
    if (
        not isinstance(name, str)
        or len(name) > MAX_NAME_LENGTH
        or not _VARIABLE_NAME.fullmatch(name)
    ):
        raise ValueError(f"not a channel variable name we send: {name!r}")
    return name


# ---------------------------------------------------------------------------------------------
# Responses and the session
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgiResponse:
    """One response: ``200 result=1 (value)``, ``510 ...``, ``511 ...`` or a ``520-`` block.

    ``result`` is the token after ``result=`` (``"1"``, ``"0"``, ``"-1"``; None when absent),
    ``value`` the text inside the parentheses up to the last ``)`` (None when there are none),
    ``lines`` the lines as received, without their line endings.
    """

    code: int
    result: str | None
    value: str | None
    lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.code == 200

    @classmethod
    def parse(cls, lines: tuple[str, ...]) -> AgiResponse:
        first = lines[0]
        match = _RESPONSE_LINE.fullmatch(first)
        if not match:
            raise AgiProtocolError(f"not an AGI response: {first[:80]!r}")
        code = int(match.group(1))
        rest = match.group(3) or ""
        result = value = None
        if match.group(2) == " " and rest.startswith("result="):
            token, _, tail = rest[len("result=") :].partition(" ")
            result = token
            if tail.startswith("("):
                close = tail.rfind(")")
                value = tail[1:close] if close > 0 else tail[1:]
        return cls(code, result, value, lines)


def _value_or_none(response: AgiResponse) -> str | None:
    if response.code != 200:
        raise AgiCommandError(response)
    if response.result == "1":
        return response.value if response.value is not None else ""
    return None


class AgiSession:
    """The script side of one AGI session over a byte stream: commands out, responses in.

    ``reader``/``writer`` are binary file objects (a socket's ``makefile`` or stdin/stdout's
    ``.buffer``). Pass ``sock`` for FastAGI so ``finish()`` can half-close it. ``hung_up`` turns
    True once the inline ``HANGUP`` line has been seen (FastAGI only; a process AGI gets SIGHUP).
    """

    def __init__(self, reader, writer, *, sock: socket.socket | None = None, log=None):
        self.reader = reader
        self.writer = writer
        self.sock = sock
        self.hung_up = False
        self._log = log or logger

    @classmethod
    def over_socket(cls, sock: socket.socket, *, log=None) -> AgiSession:
        return cls(sock.makefile("rb"), sock.makefile("wb"), sock=sock, log=log)

    # -- the wire -----------------------------------------------------------------------------

    def send_line(self, text: str) -> None:
        """Send one command line; refuses line breaks, NUL and lines Asterisk would cut."""
        if "\n" in text or "\r" in text or "\0" in text:
            raise ValueError("an AGI command is one line: no CR, LF or NUL")
        data = text.encode("utf-8") + b"\n"
        if len(data) > MAX_COMMAND_BYTES:
            raise ValueError(
                f"AGI command of {len(data)} bytes: Asterisk cuts lines at {MAX_COMMAND_BYTES}"
            )
        self._log.debug(">>> %s", text)
        try:
            self.writer.write(data)
            self.writer.flush()
        except (BrokenPipeError, ConnectionResetError) as error:
            raise AgiHangup(f"connection closed while sending: {error}") from error

    def read_response(self) -> AgiResponse:
        """Read one response, skipping the inline ``HANGUP`` lines that may come before it."""
        while True:
            line = self._read_response_line()
            if line == "HANGUP":
                self.hung_up = True
                self._log.debug("<<< HANGUP (the caller hung up)")
                continue
            self._log.debug("<<< %s", line)
            lines = [line]
            if len(line) > 3 and line[3] == "-":
                while not _BLOCK_END.match(lines[-1]):
                    if len(lines) > MAX_USAGE_LINES:
                        raise AgiProtocolError(
                            f"multi-line response longer than {MAX_USAGE_LINES} lines"
                        )
                    lines.append(self._read_response_line())
            return AgiResponse.parse(tuple(lines))

    def _read_response_line(self) -> str:
        try:
            raw = _readline(self.reader)
        except ConnectionResetError as error:
            raise AgiHangup(f"connection reset: {error}") from error
        if not raw:
            raise AgiHangup("connection closed by Asterisk")
        return _decode(raw)

    def command(self, text: str) -> AgiResponse:
        self.send_line(text)
        return self.read_response()

    # -- helpers ------------------------------------------------------------------------------

    def set_variable(self, name: str, value: object) -> AgiResponse:
        """``SET VARIABLE``; it works on a dead channel too (200), so callers try it regardless."""
        return self.command(f"SET VARIABLE {check_variable_name(name)} {escape(value)}")

    def set_variables(self, variables: dict[str, object]) -> list[tuple[str, AgiResponse]]:
        """Set several variables in as few round trips as their values allow: the plain ones
        (ids, statuses, extensions) all in one ``EXEC MSet``, any other (a caller's name) with
        its own ``SET VARIABLE``. Empty values are not sent: the dialplan clears the variables
        before it asks (see ``dialplan/pbx-crm.conf``). Where ``MSet`` is refused, each plain
        one is set on its own. Returns (names, response) per command sent; a value that
        cannot be sent raises ``ValueError`` before anything is."""
        plain, others = {}, {}
        for name, value in variables.items():
            text = "" if value is None else str(value)
            if not text:
                continue
            check_variable_name(name)
            if _PLAIN_NAME.fullmatch(name) and _PLAIN_VALUE.fullmatch(text):
                plain[name] = text
            else:
                escape(text)  # refused here, before any command is sent
                others[name] = text
        sent = []
        if len(plain) > 1:
            names = ",".join(plain)
            pairs = ",".join(f"{n}={v}" for n, v in plain.items())
            # Quoted when a value holds a space (the AGI parser would split it there).
            response = self.command("EXEC MSet " + (escape(pairs) if " " in pairs else pairs))
            sent.append((names, response))
            if response.ok and response.result == "0":
                plain = {}
            else:
                self._log.warning("EXEC MSet answered %s: setting one by one", response.lines[0])
        for name, value in (plain | others).items():
            sent.append((name, self.set_variable(name, value)))
        return sent

    def get_variable(self, name: str) -> str | None:
        """The variable's value; None when unset (``200 result=0``)."""
        return _value_or_none(self.command(f"GET VARIABLE {check_variable_name(name)}"))

    def get_full_variable(self, expression: str) -> str | None:
        """Evaluate ``${...}`` expressions on the channel (quoted: a bare space would split them)."""
        return _value_or_none(self.command(f"GET FULL VARIABLE {escape(expression)}"))

    def verbose(self, message: str, level: int = 1) -> AgiResponse:
        return self.command(f"VERBOSE {escape(message)} {int(level)}")

    # -- the end ------------------------------------------------------------------------------

    def finish(self, *, timeout: float | None = None, max_bytes: int = 65536) -> None:
        """End the session the way Asterisk expects.

        FastAGI: half-close the write side (EOF is how a script says "done"), then read until
        Asterisk closes. Asterisk always writes one more ``HANGUP`` line first, even when the call
        is still up: it is the end-of-script notice, not a hangup, so ``hung_up`` is not touched.
        Process AGI: closing stdout ends the script.
        """
        try:
            self.writer.flush()
        except OSError:
            pass
        if self.sock is None:
            try:
                self.writer.close()
            except OSError:
                pass
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        if timeout is not None:
            self.sock.settimeout(timeout)
        drained = 0
        try:
            while drained < max_bytes:
                raw = self.reader.readline(MAX_LINE_BYTES)
                if not raw:
                    return
                drained += len(raw)
                if raw.rstrip(b"\r\n") != b"HANGUP":
                    self._log.debug("after the end of the session, ignored: %r", raw[:80])
        except OSError as error:
            self._log.debug("while draining the end of the session: %s", error)

    def close(self) -> None:
        for stream in (self.writer, self.reader):
            try:
                stream.close()
            except OSError:
                pass
