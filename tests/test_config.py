"""Settings come in layers: defaults < config file < PBX_CRM_* environment < command-line flags.

A bad value stops start-up with a message that names the setting, the value and where it came
from, so an admin knows which line of which file (or which variable, or which flag) to fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from pbx_crm import config
from pbx_crm.config import Address, ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def no_system_config_file(tmp_path, monkeypatch):
    """/etc/pbx-crm/pbx-crm.ini of the machine running the tests never takes part."""
    absent = tmp_path / "etc" / "pbx-crm.ini"
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", absent)
    return absent


def ini(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


# --- defaults -------------------------------------------------------------------------------


def test_with_nothing_configured_the_defaults_apply():
    settings = load_settings(environ={})
    assert settings == Settings(data_dir=settings.data_dir)
    assert settings.phone_region == "ID"
    assert settings.time_zone == "Asia/Jakarta"
    assert settings.currency == "IDR"


def test_the_web_interface_and_fastagi_listen_on_localhost_by_default():
    settings = load_settings(environ={})
    assert settings.web_listen == Address("127.0.0.1", 8080)
    assert settings.fastagi_listen == Address("127.0.0.1", 4573)
    assert (str(settings.web_listen), str(settings.fastagi_listen)) == (
        "127.0.0.1:8080", "127.0.0.1:4573")


def test_unknown_callers_create_deals_by_default():
    assert load_settings(environ={}).unknown_callers_create_deals is True


def test_the_default_database_is_an_sqlite_file_in_the_data_directory(tmp_path):
    settings = load_settings(environ={"PBX_CRM_DATA_DIR": str(tmp_path / "data")})
    url = make_url(settings.database)
    assert url.get_backend_name() == "sqlite"
    assert Path(url.database) == tmp_path / "data" / "pbx-crm.sqlite3"


def test_a_configured_database_url_replaces_the_sqlite_file(tmp_path):
    postgres = "postgresql+psycopg://crm@db.example/crm"
    settings = load_settings(environ={"PBX_CRM_DATA_DIR": str(tmp_path),
                                      "PBX_CRM_DATABASE_URL": postgres})
    assert settings.database == postgres


# --- the layers -----------------------------------------------------------------------------


def test_file_then_environment_then_flags_each_override_the_layer_below(tmp_path):
    path = ini(tmp_path / "pbx-crm.ini", "[pbx-crm]\n"
               "web_listen = 0.0.0.0:8001\n"
               "phone_region = MY\n"
               "hook_budget_ms = 300\n")
    environ = {"PBX_CRM_WEB_LISTEN": "0.0.0.0:8002", "PBX_CRM_PHONE_REGION": "SG"}
    flags = {"web_listen": "0.0.0.0:8003", "phone_region": None}  # None: flag not given

    assert load_settings(config_file=path, environ=environ, overrides=flags).web_listen == \
        Address("0.0.0.0", 8003)
    assert load_settings(config_file=path, environ=environ).web_listen == Address("0.0.0.0", 8002)
    assert load_settings(config_file=path, environ={}).web_listen == Address("0.0.0.0", 8001)
    assert load_settings(environ={}).web_listen == Address("127.0.0.1", 8080)

    # Each setting is layered on its own: what a higher layer leaves out, a lower one keeps.
    settings = load_settings(config_file=path, environ=environ, overrides=flags)
    assert settings.phone_region == "SG"
    assert settings.hook_budget_ms == 300
    assert settings.time_zone == "Asia/Jakarta"


def test_the_system_config_file_is_read_when_present(no_system_config_file):
    no_system_config_file.parent.mkdir()
    ini(no_system_config_file, "[pbx-crm]\ncurrency = usd\n")
    assert load_settings(environ={}).currency == "USD"


def test_the_system_config_file_is_not_required(no_system_config_file):
    assert not no_system_config_file.exists()
    assert load_settings(environ={}) == load_settings(environ={})


def test_the_environment_can_name_the_config_file(tmp_path):
    path = ini(tmp_path / "other.ini", "[pbx-crm]\ntime_zone = Asia/Makassar\n")
    assert load_settings(environ={"PBX_CRM_CONFIG": str(path)}).time_zone == "Asia/Makassar"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_config_file_asked_for_by_name_must_exist(tmp_path, how):
    missing = tmp_path / "missing.ini"
    with pytest.raises(ConfigError, match="missing.ini"):
        if how == "flag":
            load_settings(config_file=missing, environ={})
        else:
            load_settings(environ={"PBX_CRM_CONFIG": str(missing)})


def test_a_config_file_that_cannot_be_read_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(config_file=tmp_path, environ={})  # a directory, not a file
    latin1 = tmp_path / "latin1.ini"
    latin1.write_bytes("[pbx-crm]\ncurrency = \xa3\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.ini"):
        load_settings(config_file=latin1, environ={})


def test_an_unknown_setting_in_the_file_is_an_error(tmp_path):
    path = ini(tmp_path / "pbx-crm.ini", "[pbx-crm]\nweb_port = 8080\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config_file=path, environ={})
    assert "web_port" in error.value.message and str(path) in error.value.message


def test_settings_under_another_section_are_an_error_not_silently_ignored(tmp_path):
    path = ini(tmp_path / "pbx-crm.ini", "[pbx_crm]\nweb_listen = 0.0.0.0:80\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config_file=path, environ={})
    assert "[pbx_crm]" in error.value.message and "[pbx-crm]" in error.value.message


def test_an_empty_config_file_is_fine(tmp_path):
    path = ini(tmp_path / "pbx-crm.ini", "# nothing set yet\n")
    assert load_settings(config_file=path, environ={}) == load_settings(environ={})


# --- bad values -----------------------------------------------------------------------------

BAD_VALUES = [
    ("phone_region", "XX"),
    ("time_zone", "Mars/Base"),
    ("web_listen", "nohost"),
    ("fastagi_listen", "127.0.0.1:70000"),
    ("unknown_callers_create_deals", "maybe"),
    ("internal_extensions", "abc"),
    ("currency", "RP"),
    ("web_trusted_proxies", "10.0.0.5/24"),
    ("web_max_body_kb", "0"),
    ("ami_host", "10.0.1.5  ; the PBX"),  # a comment after a value is part of it
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_in_the_file_names_the_file_and_the_setting(tmp_path, name, value):
    path = ini(tmp_path / "pbx-crm.ini", f"[pbx-crm]\n{name} = {value}\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config_file=path, environ={})
    message = error.value.message
    assert str(path) in message and name in message and value in message


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_in_the_environment_names_the_variable(name, value):
    variable = "PBX_CRM_" + name.upper()
    with pytest.raises(ConfigError) as error:
        load_settings(environ={variable: value})
    message = error.value.message
    assert variable in message and value in message


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_given_as_a_flag_names_the_flag(name, value):
    flag = "--" + name.replace("_", "-")
    with pytest.raises(ConfigError) as error:
        load_settings(environ={}, overrides={name: value})
    message = error.value.message
    assert flag in message and value in message


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("phone_region", "my", "MY"),
    ("currency", " usd ", "USD"),
    ("unknown_callers_create_deals", "off", False),
    ("web_listen", "[::1]:8443", Address("::1", 8443)),
    ("fastagi_listen", "0.0.0.0:65535", Address("0.0.0.0", 65535)),
    ("hook_budget_ms", "250", 250),
    ("web_trusted_proxies", "10.0.0.2, 192.168.1.0/24",
     frozenset({"10.0.0.2/32", "192.168.1.0/24"})),
    ("web_trusted_proxies", "", frozenset()),
    ("web_max_body_kb", "1024", 1024),
])
def test_good_values_are_read_into_their_types(name, value, expected):
    assert getattr(load_settings(environ={}, overrides={name: value}), name) == expected
