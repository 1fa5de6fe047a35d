"""The code base stays ruff clean (the house rule), so CI catches style drift."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from reference import REPO


def test_ruff_reports_nothing() -> None:
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(REPO / ".venv" / "bin"))
    if ruff is None:
        pytest.fail("ruff is not installed; it is part of the dev extra (pip install -e '.[dev]')")
    run = subprocess.run([ruff, "check", "--output-format", "concise", str(REPO)],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr


def test_engine_never_imports_qt_or_the_app() -> None:
    code = ("import sys, sr_core.cli, sr_core.engine, sr_core.batch, sr_core.catalog, "
            "sr_core.evaluate, sr_core.train; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'app'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
