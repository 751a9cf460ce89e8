"""Asterisk's side of AGI, faithful to the recorded Asterisk 22.10.1 sessions.

Plays a call's channel (``FakeChannel``) against a FastAGI server (``run_fastagi``) or a
process-AGI script (``run_process_agi``): the environment block in Asterisk's order and format,
each command answered as the captures show (``pbx_crm.simulator.agi_commands``), the inline
``HANGUP`` line (FastAGI) or SIGHUP (process AGI) when the caller hangs up, and the ``HANGUP``
line Asterisk writes after a FastAGI script half-closes. Used by the demo to play calls and by
the tests; it needs no Asterisk. Unlike Asterisk, reads have a timeout (``read_timeout``), so
a stuck test fails instead of hanging.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from .agi_commands import execute

ASTERISK_VERSION = "22.10.1"
CONNECT_TIMEOUT = 2.0  # Asterisk's per-address FastAGI connect timeout
DEFAULT_READ_TIMEOUT = 10.0


# What Asterisk puts into a process AGI's environment (scenario 05, verbatim).
AST_ENVIRONMENT = {
    "AST_AGI_DIR": "/var/lib/asterisk/agi-bin",
    "AST_BUILD_DATE": "2026-11-28 18:43:33 UTC",
    "AST_BUILD_HOST": "vm",
    "AST_BUILD_KERNEL": "6.18.44-fc-v782",
    "AST_BUILD_MACHINE": "x86_64",
    "AST_BUILD_OS": "Linux",
    "AST_BUILD_USER": "root",
    "AST_CONFIG_DIR": "/etc/asterisk",
    "AST_CONFIG_FILE": "/etc/asterisk/asterisk.conf",
    "AST_DATA_DIR": "/var/lib/asterisk",
    "AST_KEY_DIR": "/var/lib/asterisk/keys",
    "AST_LOG_DIR": "/var/log/asterisk",
    "AST_MODULE_DIR": "/lib/asterisk/modules",
    "AST_MONITOR_DIR": "/var/spool/asterisk/monitor",
    "AST_RUN_DIR": "/var/run/asterisk",
    "AST_SPOOL_DIR": "/var/spool/asterisk",
    "AST_SYSTEMNAME": "",
    "AST_VAR_DIR": "/var/lib/asterisk",
    "AST_VERSION": ASTERISK_VERSION,
}


# ---------------------------------------------------------------------------------------------
# The channel
# ---------------------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One command as Asterisk received it (LF stripped; a CR stays, as in Asterisk) and the
    response it sent (lines joined with LF, without the final LF)."""

    command: str
    response: str


@dataclass
class FakeChannel:
    """A channel as AGI sees it. ``callerid``/``calleridname`` None means none was sent (the
    environment then says ``unknown`` and ``CALLERID(num)`` reads empty, as recorded).

    ``variables`` are the channel variables (preset some to play a scenario, e.g. ``DIALSTATUS``
    for a hangup handler, or ``CONNECTEDLINE(all)``); ``transcript`` collects every exchange of
    every session run on this channel. ``up`` answers CHANNEL STATUS 6 (else 4, ringing);
    ``dead`` makes the media commands answer 511. ``hangup()`` is the caller hanging up, from
    any thread, also while a session runs.
    """

    name: str = "PJSIP/trunk-00000001"
    uniqueid: str = "1795892488.1"
    linkedid: str = ""
    callerid: str | None = "+62 812-3456-7890"
    calleridname: str | None = "Budi"
    callingpres: int = 0
    context: str = "from-trunk"
    extension: str = "2150001"
    priority: int | str = 1
    language: str = "en"
    type: str = "PJSIP"
    dnid: str = "unknown"
    rdnis: str = "unknown"
    accountcode: str = ""
    threadid: str = "140235017316032"
    up: bool = False
    dead: bool = False
    variables: dict[str, str] = field(default_factory=dict)
    transcript: list[Exchange] = field(default_factory=list)

    def __post_init__(self):
        if not self.linkedid:
            self.linkedid = self.uniqueid  # a trunk call's first channel is its inbound leg
        self._lock = threading.Lock()
        self._wakers: set[socket.socket] = set()

    def hangup(self) -> None:
        """The caller hangs up: the channel is dead, a running session is told at once."""
        with self._lock:
            self.dead = True
            wakers = list(self._wakers)
        for waker in wakers:
            try:
                waker.send(b"h")
            except OSError:
                pass

    @contextmanager
    def _hangup_signal(self):
        """A socket that becomes readable when ``hangup()`` is called during the session."""
        reader, writer = socket.socketpair()
        with self._lock:
            self._wakers.add(writer)
        try:
            yield reader
        finally:
            with self._lock:
                self._wakers.discard(writer)
            reader.close()
            writer.close()

    # -- what GET VARIABLE / GET FULL VARIABLE read ---------------------------------------------

    def read(self, name: str) -> str | None:
        """A variable or dialplan function as Asterisk would read it; None when it fails."""
        function = re.fullmatch(r"([A-Za-z_]+)\((.*)\)", name)
        if function:
            fname, arg = function.group(1).upper(), function.group(2).strip().lower()
            if fname == "CALLERID":
                number, cname = self.callerid or "", self.calleridname or ""
                return {"num": number, "name": cname, "all": f'"{cname}" <{number}>'}.get(arg, "")
            if fname == "CHANNEL":
                state = "Up" if self.up else "Ring"
                return {
                    "name": self.name,
                    "linkedid": self.linkedid,
                    "uniqueid": self.uniqueid,
                    "state": state,
                    "language": self.language,
                }.get(arg)
            return self.variables.get(name)
        builtin = {
            "UNIQUEID": self.uniqueid,
            "CHANNEL": self.name,
            "EXTEN": self.extension,
            "CONTEXT": self.context,
        }
        if name in builtin:
            return builtin[name]
        return self.variables.get(name)

    def write(self, name: str, value: str) -> None:
        function = re.fullmatch(r"CALLERID\((num|name)\)", name, re.IGNORECASE)
        if function:
            if function.group(1).lower() == "num":
                self.callerid = value
            else:
                self.calleridname = value
            return
        self.variables[name] = value

    def substitute(self, text: str) -> str:
        """Expand ``${...}`` (nested allowed) as GET FULL VARIABLE does; unset reads empty."""
        out = []
        i = 0
        while i < len(text):
            if text.startswith("${", i):
                depth, j = 1, i + 2
                while j < len(text) and depth:
                    if text.startswith("${", j):
                        depth, j = depth + 1, j + 2
                        continue
                    if text[j] == "}":
                        depth -= 1
                    j += 1
                if depth:
                    out.append(text[i:])
                    break
                out.append(self.read(self.substitute(text[i + 2 : j - 1])) or "")
                i = j
            else:
                out.append(text[i])
                i += 1
        return "".join(out)


# ---------------------------------------------------------------------------------------------
# Environment blocks
# ---------------------------------------------------------------------------------------------


def _env_fields(channel: FakeChannel, request: str) -> list[tuple[str, str]]:
    return [
        ("agi_request", request),
        ("agi_channel", channel.name),
        ("agi_language", channel.language),
        ("agi_type", channel.type),
        ("agi_uniqueid", channel.uniqueid),
        ("agi_version", ASTERISK_VERSION),
        ("agi_callerid", channel.callerid or "unknown"),
        ("agi_calleridname", channel.calleridname or "unknown"),
        ("agi_callingpres", str(int(channel.callingpres))),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", channel.dnid),
        ("agi_rdnis", channel.rdnis),
        ("agi_context", channel.context),
        ("agi_extension", channel.extension),
        ("agi_priority", str(channel.priority)),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", channel.accountcode),
        ("agi_threadid", channel.threadid),
    ]


def _render(fields: list[tuple[str, str]], args: Sequence[str]) -> bytes:
    fields = fields + [(f"agi_arg_{n}", str(arg)) for n, arg in enumerate(args, 1)]
    return "".join(f"{key}: {value}\n" for key, value in fields).encode("utf-8") + b"\n"


def fastagi_env_block(
    channel: FakeChannel, address: tuple[str, int], script_with_query: str, args: Sequence[str] = ()
) -> bytes:
    """What Asterisk sends first for ``AGI(agi://host:port/<script_with_query>,args...)``."""
    url = f"agi://{address[0]}:{address[1]}/{script_with_query}"
    network = [("agi_network", "yes"), ("agi_network_script", script_with_query)]
    return _render(network + _env_fields(channel, url), args)


def process_env_block(channel: FakeChannel, script_path: str, args: Sequence[str] = ()) -> bytes:
    """What Asterisk writes on a process AGI's stdin for ``AGI(<script_path>,args...)``."""
    return _render(_env_fields(channel, script_path), args)


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------


@dataclass
class Transcript:
    """One AGI session as Asterisk saw it. ``wire`` is every byte sent to the script (env block,
    responses, ``HANGUP`` lines), comparable with a recorded ``*.agi-rx.raw`` file."""

    channel: FakeChannel
    agistatus: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    wire: bytes = b""
    hangup_notified: bool = False  # inline HANGUP line (FastAGI) or SIGHUP (process) sent
    returncode: int | None = None  # process AGI only
    stderr: str = ""  # process AGI only
    error: str = ""  # why the session failed to start (AGISTATUS=FAILURE)

    @property
    def commands(self) -> list[str]:
        return [exchange.command for exchange in self.exchanges]

    def _end(self, status: str) -> Transcript:
        self.agistatus = status
        self.channel.variables["AGISTATUS"] = status
        return self


class _Conversation:
    """The loop both transports share: answer each command line, tell the script once when the
    caller hangs up, stop at the script's EOF."""

    def __init__(
        self,
        channel: FakeChannel,
        transcript: Transcript,
        *,
        send: Callable[[bytes], None],
        notify_hangup: Callable[[], None],
        hangup_after: int | None,
        read_timeout: float,
    ):
        self.channel = channel
        self.transcript = transcript
        self.send = send
        self.notify_hangup = notify_hangup
        self.hangup_after = hangup_after
        self.read_timeout = read_timeout
        self.wire = bytearray()
        # A channel already dead when the AGI starts (a hangup handler) gets no HANGUP notice.
        self.notified = channel.dead
        self.died_during_session = False

    def emit(self, data: bytes) -> bool:
        self.wire += data
        try:
            self.send(data)
            return True
        except OSError:  # the script is gone; Asterisk ignores failed writes too
            return False

    def run(
        self,
        selector: selectors.BaseSelector,
        read_chunk: Callable[[object], bytes],
        data_source,
        wake: socket.socket,
        on_other: Callable[[object], None] = lambda key: None,
        exit_on_hangup: bool = False,
    ) -> None:
        selector.register(wake, selectors.EVENT_READ)
        buffer = bytearray()
        eof = False
        answered = 0
        if self.hangup_after == 0:
            self.channel.hangup()
        while True:
            if self.channel.dead and not self.notified:
                self.notified = self.died_during_session = True
                self.transcript.hangup_notified = True
                self.notify_hangup()
                if exit_on_hangup:
                    return
            newline = buffer.find(b"\n")
            if newline >= 0 or (eof and buffer):
                cut = newline if newline >= 0 else len(buffer)
                line = bytes(buffer[:cut]).decode("utf-8", "replace")
                del buffer[: cut + 1]
                response = execute(self.channel, line)
                exchange = Exchange(line, response)
                self.transcript.exchanges.append(exchange)
                self.channel.transcript.append(exchange)
                if not self.emit(response.encode("utf-8") + b"\n"):
                    return
                answered += 1
                if self.hangup_after is not None and answered == self.hangup_after:
                    self.channel.hangup()
                continue
            if eof:
                return
            events = selector.select(self.read_timeout)
            if not events:
                raise TimeoutError(f"the AGI script sent nothing for {self.read_timeout} s")
            for key, _ in events:
                if key.fileobj is wake:
                    wake.recv(64)
                elif key.fileobj is data_source:
                    chunk = read_chunk(data_source)
                    if chunk:
                        buffer += chunk
                    else:
                        eof = True
                else:
                    on_other(key)


def run_fastagi(
    address: tuple[str, int],
    script_with_query: str,
    args: Sequence[str],
    channel: FakeChannel,
    *,
    hangup_after_commands: int | None = None,
    exit_on_hangup: bool = False,
    source_address: tuple[str, int] | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> Transcript:
    """Run ``AGI(agi://host:port/<script_with_query>,args...)`` on ``channel``, as Asterisk does.

    ``hangup_after_commands=N``: the caller hangs up once N commands are answered (0: right after
    the environment block); ``channel.hangup()`` from another thread does the same at any time.
    Asterisk then writes an inline ``HANGUP`` line and answers as a dead channel. ``exit_on_hangup`` plays ``AGIEXITONHANGUP=yes``: Asterisk closes the session there.
    A refused or timed-out connection gives ``AGISTATUS=FAILURE`` and no session (scenario 09).
    ``source_address`` is the local address to connect from (an Asterisk host of a cluster).
    """
    transcript = Transcript(channel)
    try:
        sock = socket.create_connection(
            address, timeout=CONNECT_TIMEOUT, source_address=source_address
        )
    except OSError as error:
        transcript.error = f"connecting to {address[0]}:{address[1]} failed: {error}"
        return transcript._end("FAILURE")
    conversation = _Conversation(
        channel,
        transcript,
        send=sock.sendall,
        notify_hangup=lambda: conversation.emit(b"HANGUP\n"),
        hangup_after=hangup_after_commands,
        read_timeout=read_timeout,
    )
    with sock, channel._hangup_signal() as wake, selectors.DefaultSelector() as selector:
        sock.settimeout(read_timeout)
        if conversation.emit(fastagi_env_block(channel, address, script_with_query, args)):
            selector.register(sock, selectors.EVENT_READ)
            try:
                conversation.run(selector, _recv, sock, wake, exit_on_hangup=exit_on_hangup)
            except ConnectionResetError:
                pass  # the script went away abruptly: the same as EOF for Asterisk
            if not (exit_on_hangup and conversation.died_during_session):
                # The script half-closed (or closed): Asterisk always writes HANGUP, then closes.
                conversation.emit(b"HANGUP\n")
    transcript.wire = bytes(conversation.wire)
    return transcript._end("HANGUP" if conversation.died_during_session else "SUCCESS")


def _recv(sock: socket.socket) -> bytes:
    return sock.recv(65536)


def run_process_agi(
    script_path: str | os.PathLike,
    hook: str,
    args: Sequence[str],
    channel: FakeChannel,
    env: dict[str, str] | None = None,
    *,
    hangup_after: int | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> Transcript:
    """Run ``AGI(<script_path>,<hook>,args...)`` on ``channel``: the script as a child process with
    the environment block on stdin, ``argv = [script_path, hook, *args]`` and Asterisk's ``AST_*``
    variables added to ``os.environ`` and ``env``.

    A hang-up (``hangup_after=N`` commands, or ``channel.hangup()`` from another thread) sends
    SIGHUP to the process and no ``HANGUP`` line, as in scenario 07(B).
    """
    transcript = Transcript(channel)
    script_path = os.fspath(script_path)
    argv = [script_path, hook, *args]
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env={**os.environ, **AST_ENVIRONMENT, **(env or {})},
        )
    except OSError as error:
        transcript.error = f"cannot execute {script_path}: {error}"
        return transcript._end("FAILURE")
    stderr = bytearray()

    def signal_hangup():
        try:
            process.send_signal(signal.SIGHUP)
        except ProcessLookupError:
            pass

    def drain_stderr(key):
        chunk = os.read(key.fileobj.fileno(), 65536)
        if chunk:
            stderr.extend(chunk)
        else:
            key_selector.unregister(key.fileobj)

    def send(data: bytes) -> None:
        process.stdin.write(data)

    conversation = _Conversation(
        channel,
        transcript,
        send=send,
        notify_hangup=signal_hangup,
        hangup_after=hangup_after,
        read_timeout=read_timeout,
    )
    try:
        with channel._hangup_signal() as wake, selectors.DefaultSelector() as key_selector:
            if conversation.emit(process_env_block(channel, script_path, [hook, *args])):
                key_selector.register(process.stdout, selectors.EVENT_READ)
                key_selector.register(process.stderr, selectors.EVENT_READ)
                conversation.run(
                    key_selector,
                    lambda pipe: os.read(pipe.fileno(), 65536),
                    process.stdout,
                    wake,
                    on_other=drain_stderr,
                )
        process.stdin.close()
        stderr.extend(process.stderr.read())
        transcript.returncode = process.wait(timeout=read_timeout)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        for pipe in (process.stdin, process.stdout, process.stderr):
            try:
                pipe.close()
            except OSError:
                pass
    transcript.wire = bytes(conversation.wire)
    transcript.stderr = stderr.decode("utf-8", "replace")
    return transcript._end("HANGUP" if conversation.died_during_session else "SUCCESS")
