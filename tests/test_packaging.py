"""Everything ships in the wheel: a plain ``pip install .`` works from any directory.

The wheel is built from a clean copy of the working tree (an in-tree build reuses ``build/lib``,
whose stale copies could hide a file that package_data no longer picks up), then installed into
a directory of its own and used from ``/`` by a Python that cannot see the repository.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pbx_crm.db import head_revision

REPO = Path(__file__).resolve().parents[1]
# Folder in the repository -> where it lives in the installed package.
SHIPPED_FOLDERS = {
    "pbx_crm": "pbx_crm",
    "agi": "pbx_crm/agi",
    "webui": "pbx_crm/webui",
    "sql": "pbx_crm/sql",
    "dialplan": "pbx_crm/dialplan",
}
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", "*.sqlite3*",
    ".pytest_cache", "node_modules",
)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("source") / "pbx-crm"
    shutil.copytree(REPO, copy, ignore=NOT_SOURCE)
    return copy


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(out), str(source)],
        check=True, capture_output=True, text=True,
    )
    (built,) = out.glob("pbx_crm-*.whl")
    return built


def _files_under(root: Path, folder: str) -> list[str]:
    return sorted(
        path.relative_to(root / folder).as_posix()
        for path in (root / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def test_every_packaged_folder_ships_whole_in_the_wheel(source, wheel):
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    missing = [
        f"{folder}/{name} (expected at {target}/{name})"
        for folder, target in SHIPPED_FOLDERS.items()
        for name in _files_under(source, folder)
        if f"{target}/{name}" not in in_wheel
    ]
    assert not missing, "not in the wheel; see packages and package_data in setup.cfg:\n" + \
        "\n".join(missing)


def test_the_wheel_carries_migrations_templates_and_schema_dumps(wheel):
    """The files the running program looks up, named so a bad glob cannot pass unnoticed."""
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    needed = {"pbx_crm/sql/migrations/env.py", "pbx_crm/sql/migrations/script.py.mako",
              "pbx_crm/sql/migrations/versions/0001_initial_schema.py",
              "pbx_crm/sql/schema.sqlite.sql", "pbx_crm/sql/schema.postgres.sql",
              "pbx_crm/sql/README.md"}
    assert sorted(needed - in_wheel) == []


def test_the_wheel_declares_the_pbx_crm_command(wheel):
    with zipfile.ZipFile(wheel) as archive:
        (entry_points,) = [name for name in archive.namelist()
                           if name.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(entry_points).decode())
    assert parser.get("console_scripts", "pbx-crm").replace(" ", "") == "pbx_crm.cli:main"


# Run by a Python that sees only the installed copy: it migrates a new SQLite database with
# the shipped migrations and compares the result with the shipped schema dump.
FROM_ANYWHERE = """
import sys, tempfile
from pathlib import Path
repo, site = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
assert all(Path(p or ".").resolve() != repo for p in sys.path), sys.path

import pbx_crm, pbx_crm.sql.migrations
from pbx_crm import db
from pbx_crm.schema_dump import dump_schema
for module in (pbx_crm, pbx_crm.sql.migrations):
    assert Path(module.__file__).resolve().is_relative_to(site), module.__file__

with tempfile.TemporaryDirectory() as tmp:
    engine = db.make_engine(f"sqlite:///{tmp}/crm.sqlite3")
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    dump = db.schema_dump_path("sqlite")
    assert dump.resolve().is_relative_to(site), dump
    assert dump_schema(engine) == dump.read_text(encoding="utf-8")
    engine.dispose()
print("migrated", db.head_revision())
"""


def test_an_installed_wheel_migrates_a_database_from_the_root_directory(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
         "-q", "--target", str(site), str(wheel)],
        check=True, capture_output=True, text=True,
    )
    # Only what Python needs: no PBX_CRM_* settings, nothing that points at the repository.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(site),
           "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)}
    result = subprocess.run(
        # -s: no user site-packages; -P: the working directory is not put on sys.path.
        [sys.executable, "-s", "-P", "-c", FROM_ANYWHERE, str(REPO), str(site)],
        cwd="/", env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"migrated {head_revision()}"
