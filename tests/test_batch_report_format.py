"""The batch report's JSON stays byte for byte what earlier versions wrote.

``tests/data/batch_report.json`` was written by the single-module ``sr_core/batch.py``
before it became a package; a report made the same way now must equal it. Clocks and
file times are fixed, and the temporary folder and the version are replaced by markers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_core import __version__
from sr_core.batch import BatchOptions, ModelLabel, plan_batch, run_plan
from sr_core.formats import describe

FIXTURE = Path(__file__).parent / "data" / "batch_report.json"
NOW = "2026-01-02T03:04:05+00:00"
MTIME_NS = 1_700_000_000_000_000_000


def _bmp(path: Path, width: int, height: int) -> None:
    # BMP is uncompressed: the same bytes whatever the zlib or libjpeg version.
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = (np.arange(width * height * 3) % 251).astype(np.uint8).reshape(height, width, 3)
    Image.fromarray(rgb).save(path, format="BMP")


def deterministic_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A report over a fixed folder: done, failed, pending, skipped and hidden files."""
    for name in [n for n in sys.modules if n == "sr_core.batch" or n.startswith("sr_core.batch.")]:
        if hasattr(sys.modules[name], "_now"):
            monkeypatch.setattr(sys.modules[name], "_now", lambda: NOW)
    src, dst = tmp_path / "in", tmp_path / "out"
    _bmp(src / "a.bmp", 8, 6)
    _bmp(src / "b.bmp", 5, 4)
    _bmp(src / "sub" / "c.bmp", 3, 3)
    (src / "broken.bmp").write_bytes(b"BM" + b"\0" * 10)
    (src / "notes.txt").write_text("not an image")
    (src / ".hidden.png").write_bytes(b"")
    (src / os.fsdecode(b"odd_\xff.txt")).write_bytes(b"")
    dst.mkdir()
    (dst / ".old.bmp.0123abcd.part").write_bytes(b"half")
    for folder, _, files in os.walk(src):
        for name in files:
            os.utime(os.path.join(folder, name), ns=(MTIME_NS, MTIME_NS))

    plan = plan_batch(src, dst, BatchOptions(recursive=True), model=ModelLabel("Model-S", 2))

    def run_jobs(writer: object) -> str:
        done, failed = plan.jobs[0].result, plan.jobs[1].result
        done.status, done.seconds, done.finished = "done", 1.25, NOW
        done.out_width, done.out_height, done.notes = 16, 12, ["a note"]
        failed.status, failed.output, failed.reason = "failed", None, "Could not read it."
        failed.finished = NOW
        return "finished"

    report = run_plan(plan, run_jobs)
    data = report.path.read_bytes()
    data = data.replace(os.fsencode(str(tmp_path)), b"<TMP>")
    # Which formats an install reads depends on its optional plugins.
    data = data.replace(describe().encode(), b"<FORMATS>")
    return data.replace(f'"finescale": "{__version__}"'.encode(), b'"finescale": "<VERSION>"')


def test_report_bytes_equal_the_fixture_written_by_the_old_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert deterministic_report(tmp_path, monkeypatch) == FIXTURE.read_bytes()
