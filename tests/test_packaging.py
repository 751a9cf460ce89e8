"""Everything ships in the wheel: a plain ``pip install .`` works from any directory.

The wheel is built from a clean copy of the working tree (``wheels.build_wheel``), then
installed without its dependencies into a directory of its own and used from ``/`` by a Python
that cannot see the repository. That the wheel's dependencies install and serve is
test_clean_install.py's story.
"""

from __future__ import annotations

import ast
import configparser
import email.parser
import importlib.metadata
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pbx_crm.db import head_revision
from wheels import REPO, build_wheel, clean_copy

# Folder in the repository -> where it lives in the installed package.
SHIPPED_FOLDERS = {
    "pbx_crm": "pbx_crm",
    "agi": "pbx_crm/agi",
    "webui": "pbx_crm/webui",
    "sql": "pbx_crm/sql",
    "dialplan": "pbx_crm/dialplan",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return clean_copy(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory) -> Path:
    return build_wheel(source, tmp_path_factory.mktemp("wheel"))


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
    assert parser.get("console_scripts", "pbx-crm").replace(" ", "") == "pbx_crm.cli.main:main"


def _distribution(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules(root: Path) -> set[str]:
    """Top-level names of the modules the shipped Python files import, standard library and
    pbx_crm's own left out."""
    modules = set()
    for folder in SHIPPED_FOLDERS:
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"pbx_crm"}


def test_the_wheel_requires_every_distribution_its_code_imports(source, wheel):
    """An import served only by something else's dependency (MarkupSafe through Jinja2) works
    until that dependency changes: every one is required by name. The distributions that
    provide a module are read from this test venv."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist()
                       if name.endswith(".dist-info/METADATA")]
        headers = email.parser.Parser().parsestr(archive.read(metadata).decode())
    requirements = [line for line in headers.get_all("Requires-Dist", [])
                    if "extra ==" not in line]
    required = {_distribution(re.match(r"[A-Za-z0-9._-]+", line).group())
                for line in requirements}
    providers = importlib.metadata.packages_distributions()
    not_required = {module: providers.get(module, ["(not installed here)"])
                    for module in sorted(_imported_modules(source))
                    if not required & {_distribution(d) for d in providers.get(module, [])}}
    assert not_required == {}, "imported, but not in install_requires in setup.cfg"
    # The web server runs gunicorn's gevent worker, whose own needs are that extra's.
    assert any(re.match(r"gunicorn\[gevent\]", line) for line in requirements), requirements


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
