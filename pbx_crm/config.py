"""Settings: one frozen object, loaded once at start-up and passed down.

Layers, lowest first: built-in defaults < the config file (``/etc/pbx-crm/pbx-crm.ini`` or
``--config``) < ``PBX_CRM_*`` environment variables < command-line flags. Nothing in the
package reads the environment or a file at import time; the CLI calls ``load_settings`` and
hands the result to every component, and tests build ``Settings`` directly.

Several Asterisk boxes (two offices, each with its PBX) are named sections of the file,
``[pbx:jakarta]`` with ``host``, ``port``, ``username``, ``secret`` and, where the box differs,
``device_technology``, ``device_suffix`` and ``originate_context``; or the variables
``PBX_CRM_PBX_<NAME>_<KEY>`` (``PBX_CRM_PBX_JAKARTA_HOST``), which override the file's. The
``ami_*`` settings stay the box named ``main`` (``DEFAULT_PBX``), so a one-box setup reads
as it always did. ``Settings.pbx_boxes`` lists every box with an AMI host.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path

from .errors import ValidationError
from .rules.phones import ExtensionPlan
from .rules.working_hours import parse_working_days, parse_working_hours

DEFAULT_CONFIG_FILE = Path("/etc/pbx-crm/pbx-crm.ini")
ENV_PREFIX = "PBX_CRM_"
INI_SECTION = "pbx-crm"
# The box of the ami_* settings; the extensions stored with no box (user_extensions.pbx NULL).
DEFAULT_PBX = "main"
PBX_SECTION = "pbx:"  # [pbx:<name>]
PBX_ENV_PREFIX = ENV_PREFIX + "PBX_"
# A box's name: what the dialplan's CRM_PBX and an admin's "jakarta/101" say, and what an
# environment variable can carry (PBX_CRM_PBX_JAKARTA_HOST).
PBX_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")


class ConfigError(ValidationError):
    """A setting that cannot be used; the message names the setting and where it came from."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "pbx-crm"


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "yes", "true", "on"}:
        return True
    if value in {"0", "no", "false", "off"}:
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _parse_region(text: str) -> str:
    import phonenumbers

    region = text.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{text!r} is not an ISO country code known to phonenumbers")
    return region


def _parse_time_zone(text: str) -> str:
    try:
        zoneinfo.ZoneInfo(text.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r} is not an IANA time zone such as Asia/Jakarta") from None
    return text.strip()


def _parse_currency(text: str) -> str:
    code = text.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"expected a three-letter currency code, got {text!r}")
    return code


def _parse_peers(text: str) -> frozenset[str]:
    import ipaddress

    peers = frozenset(p.strip() for p in text.split(",") if p.strip())
    for peer in peers:
        ipaddress.ip_network(peer, strict=False)  # ValueError names the bad entry
    return peers


def _parse_networks(text: str) -> frozenset[str]:
    import ipaddress

    # Strict: "10.0.0.5/24" is refused (host bits set) rather than read as a wider network.
    return frozenset(str(ipaddress.ip_network(entry.strip()))
                     for entry in text.split(",") if entry.strip())


def _parse_host(text: str) -> str:
    """A host name or an IP address; what follows a value in the file is kept in it, so a
    comment after one is the mistake most likely here."""
    text = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9.:_\[\]%-]*", text):
        raise ValueError(f"expected a host name or an IP address, got {text!r} (in the config "
                         "file a comment goes on a line of its own)")
    return text


def _parse_port(text: str) -> int:
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"expected a TCP port, got {text!r}")
    return int(text)


def _parse_positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        raise ValueError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _parse_device_suffix(text: str) -> str:
    text = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9@/_.:+-]*", text):
        raise ValueError("expected what follows the extension in a device name, such as "
                         f"@phones (letters, digits and @ / _ . : + -), got {text!r}")
    return text


def _parse_workers(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"expected a number of worker processes (0: one per core), got {text!r}")
    return int(text)


@dataclass(frozen=True)
class PbxBox:
    """One Asterisk box the CRM follows over AMI: what the listener logs in with and what
    click-to-call rings the seller's phone through (the names are the ``Settings`` ones, so
    ``click_to_call.device_of`` reads either)."""

    name: str
    host: str
    port: int = 5038
    username: str = "pbx-crm"
    secret: str = ""
    device_technology: str = "PJSIP"
    device_suffix: str = ""
    originate_context: str = "from-internal"

    @property
    def stored(self) -> str | None:
        """``user_extensions.pbx`` of this box's extensions (NULL for the default box)."""
        return stored_pbx(self.name)


def stored_pbx(name: str | None) -> str | None:
    """``user_extensions.pbx`` for a box name: None for the default box."""
    return None if not name or name == DEFAULT_PBX else name


# The keys of a [pbx:<name>] section, and how each is read.
_PBX_KEYS = {"host": _parse_host, "port": _parse_port, "username": str.strip, "secret": str,
             "device_technology": str.strip, "device_suffix": _parse_device_suffix,
             "originate_context": str.strip}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=_default_data_dir)
    # Empty means "an SQLite file in data_dir"; see database_url_or_default.
    database_url: str = ""
    phone_region: str = "ID"
    internal_extensions: ExtensionPlan = field(
        default_factory=lambda: ExtensionPlan.parse("100-999")
    )
    time_zone: str = "Asia/Jakarta"
    currency: str = "IDR"
    unknown_callers_create_deals: bool = True
    # A transferred call hands its deal to the seller now on the call even when the deal had
    # an owner before (an Unsorted deal goes to that seller either way).
    transfers_move_owner: bool = False
    web_listen: Address = Address("127.0.0.1", 8080)
    fastagi_listen: Address = Address("127.0.0.1", 4573)
    # FastAGI has no authentication: a non-loopback listen address needs this allow-list.
    fastagi_allowed_peers: frozenset[str] = frozenset()
    # Connections one peer address may hold at once (sessions and connections still sending
    # their environment); sized for one busy Asterisk, see pbx_crm.telephony.fastagi.
    fastagi_max_connections_per_peer: int = 256
    hook_budget_ms: int = 500
    # The AMI listener (screen-pops, click-to-call); an empty host leaves it off.
    ami_host: str = ""
    ami_port: int = 5038
    ami_username: str = "pbx-crm"
    ami_secret: str = ""
    # Where click-to-call rings the seller's phone first (<technology>/<extension><suffix>,
    # as the dialplan's CRM_DEVICE_TECH and CRM_DEVICE_SUFFIX), then dials out.
    device_technology: str = "PJSIP"
    device_suffix: str = ""
    originate_context: str = "from-internal"
    # Web UI: mark the session cookie Secure (set it when the UI is served over HTTPS).
    web_secure_cookies: bool = False
    # Web worker processes; 0 means one per CPU core.
    web_workers: int = 0
    # The reverse proxies whose X-Forwarded-For (client address) and X-Forwarded-Proto are
    # believed; gunicorn's forwarded_allow_ips is set from this too. Empty: none.
    web_trusted_proxies: frozenset[str] = frozenset({"127.0.0.1/32", "::1/128"})
    # Request bodies above this are refused (413) before they are read. The largest form
    # the UI sends is a deal note of 10,000 characters, up to about 120 KB URL-encoded.
    web_max_body_kb: int = 256
    # Minutes within which a missed call should be called back: the callback report measures
    # each seller against it.
    callback_target_minutes: int = 30
    # Where call recordings are fetched from: the base URL a recording reference is appended to.
    recordings_url: str = ""
    # The company's working clock (in time_zone), for robots counting business days.
    working_hours: tuple[time, time] = (time(9), time(18))
    working_days: frozenset[int] = frozenset(range(5))
    # Robot nudges by e-mail; an empty host sends none (the CRM's notifications still show).
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "pbx-crm@localhost"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    # The robots' clock: a pass over every rule, and the reading of telephony triggers.
    robot_pass_seconds: int = 60
    robot_trigger_seconds: int = 5
    # How far back a pass looks again (late writes, replayed calls) and how late a missed
    # pass may still run after a restart; runs are keyed, so looking again repeats nothing.
    robot_grace_minutes: int = 60
    # The other Asterisk boxes ([pbx:<name>] sections, PBX_CRM_PBX_<NAME>_* variables).
    pbxes: tuple[PbxBox, ...] = ()

    @property
    def pbx_names(self) -> tuple[str, ...]:
        """Every box an extension may belong to: ``main`` first, then the named ones."""
        return (DEFAULT_PBX,) + tuple(box.name for box in self.pbxes)

    @property
    def main_pbx(self) -> PbxBox:
        """The default box: the ami_* and device settings (its host may be empty)."""
        return PbxBox(DEFAULT_PBX, self.ami_host, self.ami_port, self.ami_username,
                      self.ami_secret, self.device_technology, self.device_suffix,
                      self.originate_context)

    @property
    def pbx_boxes(self) -> tuple[PbxBox, ...]:
        """The boxes with an AMI host: ``main`` when ami_host is set, then the named ones."""
        return tuple(box for box in (self.main_pbx,) + self.pbxes if box.host)

    def pbx(self, name: str | None) -> PbxBox:
        """The box called ``name`` (None: ``main``); ``KeyError`` for a name no section
        defines."""
        if not name or name == DEFAULT_PBX:
            return self.main_pbx
        for box in self.pbxes:
            if box.name == name:
                return box
        raise KeyError(name)

    @property
    def database(self) -> str:
        """The SQLAlchemy URL in force: the configured one, or the embedded SQLite file."""
        return self.database_url or f"sqlite:///{self.data_dir / 'pbx-crm.sqlite3'}"

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


# How each setting is read from text (file, environment, flag).
_PARSERS = {
    "data_dir": lambda text: Path(text).expanduser(),
    "database_url": str.strip,
    "phone_region": _parse_region,
    "internal_extensions": ExtensionPlan.parse,
    "time_zone": _parse_time_zone,
    "currency": _parse_currency,
    "unknown_callers_create_deals": _parse_bool,
    "transfers_move_owner": _parse_bool,
    "web_listen": Address.parse,
    "fastagi_listen": Address.parse,
    "hook_budget_ms": _parse_positive_int,
    "fastagi_allowed_peers": _parse_peers,
    "fastagi_max_connections_per_peer": _parse_positive_int,
    "ami_host": _parse_host,
    "ami_port": _parse_port,
    "ami_username": str.strip,
    "ami_secret": str,
    "device_technology": str.strip,
    "device_suffix": _parse_device_suffix,
    "originate_context": str.strip,
    "web_secure_cookies": _parse_bool,
    "web_workers": _parse_workers,
    "web_trusted_proxies": _parse_networks,
    "web_max_body_kb": _parse_positive_int,
    "callback_target_minutes": _parse_positive_int,
    "recordings_url": str.strip,
    "working_hours": parse_working_hours,
    "working_days": parse_working_days,
    "smtp_host": _parse_host,
    "smtp_port": _parse_port,
    "smtp_from": str.strip,
    "smtp_username": str.strip,
    "smtp_password": str,
    "smtp_starttls": _parse_bool,
    "robot_pass_seconds": _parse_positive_int,
    "robot_trigger_seconds": _parse_positive_int,
    "robot_grace_minutes": _parse_positive_int,
}
SETTING_NAMES = tuple(_PARSERS)


def parse_setting(name: str, text: str, origin: str):
    """One setting read from text, refused with a message naming ``origin``."""
    return _parse(name, text, origin)


def _parse(name: str, text: str, origin: str):
    try:
        return _PARSERS[name](text)
    except (ValueError, ValidationError) as error:
        reason = getattr(error, "message", None) or str(error)
        raise ConfigError(f"{origin}: {reason}") from None


def _read_file(path: Path, *, required: bool) -> tuple[dict[str, str],
                                                        dict[str, dict[str, str]]]:
    """The [pbx-crm] settings, and each [pbx:<name>] section's keys by box name."""
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        return {}, {}
    parser = configparser.ConfigParser(interpolation=None)
    # Opened here rather than by parser.read(), which skips a file it cannot open (no
    # permission, a directory) without a word and leaves the service on its defaults.
    try:
        with path.open(encoding="utf-8") as file:
            parser.read_file(file, source=str(path))
    except (OSError, UnicodeDecodeError, configparser.Error) as error:
        raise ConfigError(f"config file {path} cannot be read: {error}") from None
    others = [name for name in parser.sections()
              if name != INI_SECTION and not name.startswith(PBX_SECTION)]
    if others:
        # A misspelt section would otherwise be ignored as a whole.
        raise ConfigError(f"config file {path}: unknown section(s) "
                          f"{', '.join(f'[{name}]' for name in others)}; "
                          f"settings go under [{INI_SECTION}], a PBX box under "
                          f"[{PBX_SECTION}<name>]")
    boxes = {}
    for section in parser.sections():
        if section.startswith(PBX_SECTION):
            name = _pbx_name(section[len(PBX_SECTION):], f"config file {path} [{section}]")
            boxes[name] = dict(parser.items(section))
            unknown = sorted(set(boxes[name]) - set(_PBX_KEYS))
            if unknown:
                raise ConfigError(f"config file {path} [{section}]: unknown key(s) "
                                  f"{', '.join(unknown)}; a box takes "
                                  f"{', '.join(_PBX_KEYS)}")
    if not parser.has_section(INI_SECTION):
        return {}, boxes
    values = dict(parser.items(INI_SECTION))
    unknown = sorted(set(values) - set(SETTING_NAMES))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return values, boxes


def _pbx_name(text: str, origin: str) -> str:
    name = text.strip()
    if name == DEFAULT_PBX:
        raise ConfigError(f"{origin}: {DEFAULT_PBX!r} is the box of the ami_* settings; set "
                          f"those under [{INI_SECTION}], or give this box another name")
    if not PBX_NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{origin}: {name!r} is not a PBX name: up to 32 lowercase letters, "
                          "digits or underscores, starting with a letter (jakarta, office_2)")
    return name


def _pbx_boxes(from_file: dict[str, dict[str, str]], path: Path,
               environ: Mapping[str, str], settings: Settings) -> tuple[PbxBox, ...]:
    """The named boxes: the file's sections, each key overridden by its variable; a box
    takes the [pbx-crm] device settings it does not set."""
    texts = {name: {key: (value, f"{path} [{PBX_SECTION}{name}] {key}")
                    for key, value in keys.items()} for name, keys in from_file.items()}
    for variable, value in environ.items():
        if not variable.startswith(PBX_ENV_PREFIX):
            continue
        rest = variable[len(PBX_ENV_PREFIX):]
        key = next((k for k in _PBX_KEYS if rest.endswith("_" + k.upper())), None)
        if key is None:
            raise ConfigError(f"{variable}: not a PBX setting; write "
                              f"{PBX_ENV_PREFIX}<NAME>_<KEY> with KEY one of "
                              f"{', '.join(k.upper() for k in _PBX_KEYS)}")
        name = _pbx_name(rest[:-len(key) - 1].lower(), variable)
        texts.setdefault(name, {})[key] = (value, variable)
    boxes, seen = [], {}
    if settings.ami_host:
        seen[(settings.ami_host, settings.ami_port)] = DEFAULT_PBX
    for name in sorted(texts):
        values = {}
        for key, (text, origin) in texts[name].items():
            try:
                values[key] = _PBX_KEYS[key](text)
            except ValueError as error:
                raise ConfigError(f"{origin}: {error}") from None
        if not values.get("host"):
            raise ConfigError(f"PBX {name!r} has no host: set host under "
                              f"[{PBX_SECTION}{name}] or {PBX_ENV_PREFIX}{name.upper()}_HOST")
        values = {"device_technology": settings.device_technology,
                  "device_suffix": settings.device_suffix,
                  "originate_context": settings.originate_context, **values}
        box = PbxBox(name, **values)
        other = seen.setdefault((box.host, box.port), name)
        if other != name:
            # Two listeners on one box would pop every call twice.
            raise ConfigError(f"PBX {name!r} and PBX {other!r} are the same box "
                              f"({box.host}:{box.port}): one name a box")
        boxes.append(box)
    return tuple(boxes)


def load_settings(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str | None] | None = None,
) -> Settings:
    """Build Settings from the layers; ``overrides`` are CLI flags (None means "not given")."""
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get(ENV_PREFIX + "CONFIG"):
        config_file = environ[ENV_PREFIX + "CONFIG"]
    path = Path(config_file) if config_file else DEFAULT_CONFIG_FILE
    values: dict[str, object] = {}
    from_file, boxes = _read_file(path, required=config_file is not None)
    for name, text in from_file.items():
        values[name] = _parse(name, text, f"{path} [{INI_SECTION}] {name}")
    for name in SETTING_NAMES:
        variable = ENV_PREFIX + name.upper()
        if variable in environ:
            values[name] = _parse(name, environ[variable], variable)
    for name, text in (overrides or {}).items():
        if text is not None:
            values[name] = _parse(name, text, f"--{name.replace('_', '-')}")
    settings = Settings(**values)
    return settings.replace(pbxes=_pbx_boxes(boxes, path, environ, settings))
