"""pbx-crm's wheel as a release builds it: from a clean copy of the working tree.

An in-tree build reuses ``build/lib``, whose stale copies could hide a file that package_data
no longer picks up; a copy without build products, virtual environments and databases cannot.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", "*.sqlite3*",
    ".pytest_cache", "node_modules",
)


def clean_copy(parent: Path) -> Path:
    """The working tree copied into ``parent``, source files only."""
    copy = parent / "pbx-crm"
    shutil.copytree(REPO, copy, ignore=NOT_SOURCE)
    return copy


def build_wheel(source: Path, out: Path) -> Path:
    """The wheel of ``source``, built into ``out`` with this Python's setuptools."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(out), str(source)],
        check=True, capture_output=True, text=True,
    )
    (built,) = out.glob("pbx_crm-*.whl")
    return built
