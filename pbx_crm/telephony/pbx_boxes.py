"""Several Asterisk boxes in one CRM: one AMI listener per box, click-to-call on the right one.

A company with two offices has two PBXes (``[pbx:jakarta]``, ``[pbx:surabaya]`` beside the
default box of the ami_* settings, see ``pbx_crm.config``), and an extension is a number on
one of them (``user_extensions.pbx``). This module owns the wiring: ``AmiListeners`` runs one
``AmiListener`` per box with an AMI host, in one process (``start_ami`` for ``pbx-crm ami``
and ``serve``), each with its own session, call tracker and device map of that box's
extensions, so a phone ringing 101 in Jakarta pops Jakarta's 101 and nobody in Surabaya.
``Originators`` is what the web UI and ``pbx-crm call`` hand to click-to-call: each box's
``originate`` by name, its session opened on first use.

A single-box setup never comes here: ``start_ami`` runs one ``AmiListener`` as it always did.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping

from ..config import PbxBox, Settings
from .ami_client import AmiClient
from .ami_listener import AmiListener

log = logging.getLogger(__name__)

AMI_CONNECT_WAIT = 5.0  # seconds a first click-to-call on a box waits for its AMI login


class AmiListeners:
    """One ``AmiListener`` per box, started and stopped together; ``listeners`` by box
    name."""

    def __init__(self, engine, settings: Settings, *, boxes: tuple[PbxBox, ...] | None = None,
                 **listener_options):
        self.listeners = {box.name: AmiListener(engine, settings, box=box, **listener_options)
                          for box in (settings.pbx_boxes if boxes is None else boxes)}

    def __getitem__(self, name: str) -> AmiListener:
        return self.listeners[name]

    def start(self) -> AmiListeners:
        for name, listener in self.listeners.items():
            listener.start()
            log.info("AMI listener for PBX %s connecting to %s:%s as %r", name,
                     listener.box.host, listener.box.port, listener.box.username)
        return self

    def stop(self) -> None:
        for listener in self.listeners.values():
            listener.stop()

    def refresh_devices(self) -> None:
        for listener in self.listeners.values():
            listener.refresh_devices()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Every box's events so far handled (each waited for in turn, within ``timeout``)."""
        return all([listener.wait_idle(timeout) for listener in self.listeners.values()])

    @property
    def failures(self) -> int:
        return sum(listener.failures for listener in self.listeners.values())

    def originators(self) -> dict[str, Callable]:
        """Each box's ``originate``, on the listener's own session, for click-to-call."""
        return {name: listener.client.originate for name, listener in self.listeners.items()}


class Originators(Mapping):
    """Click-to-call's ``originate`` per box name; a box's AMI session is opened on its first
    call and kept (the client reconnects by itself when Asterisk restarts). ``close()``."""

    def __init__(self, settings: Settings, *, client_factory: Callable[..., AmiClient] = AmiClient,
                 connect_wait: float = AMI_CONNECT_WAIT):
        self._boxes = {box.name: box for box in settings.pbx_boxes}
        self._factory = client_factory
        self._connect_wait = connect_wait
        self._clients: dict[str, AmiClient] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Callable:
        box = self._boxes[name]  # KeyError: no such box with an AMI host
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self._factory(box.host, box.port, box.username, box.secret,
                                       events="call", action_timeout=self._connect_wait)
                client.start()
                self._clients[name] = client
        client.wait_connected(self._connect_wait)
        return client.originate

    def __iter__(self) -> Iterator[str]:
        return iter(self._boxes)

    def __len__(self) -> int:
        return len(self._boxes)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def several_boxes(settings: Settings) -> bool:
    """Whether the settings name boxes beyond the default one (the multi-box wiring applies)."""
    return bool(settings.pbxes)
