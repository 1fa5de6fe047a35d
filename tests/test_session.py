"""The Picture tab's state without a window: preview regions and what stays on screen."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.session import PREVIEW_MAX_PIXELS, PreviewKey, Session, preview_region


def test_a_small_view_is_previewed_as_it_is():
    assert preview_region((10.2, 20.7, 120.0, 80.0), 400, 300) == (10, 21, 120, 80)


def test_a_large_view_is_cut_to_the_budget_around_its_centre_with_its_shape():
    x, y, w, h = preview_region((0, 0, 4000, 3000), 4000, 3000)
    assert w * h <= PREVIEW_MAX_PIXELS and w * h > 0.95 * PREVIEW_MAX_PIXELS
    assert abs(w / h - 4 / 3) < 0.02
    assert abs(x + w / 2 - 2000) <= 1 and abs(y + h / 2 - 1500) <= 1


def test_the_view_beyond_the_picture_is_cut_to_it():
    assert preview_region((-50, -40, 150, 120), 60, 50) == (0, 0, 60, 50)
    x, y, w, h = preview_region((350, 250, 200, 200), 400, 300)  # the bottom-right corner
    assert (x + w, y + h) == (400, 300) and min(w, h) >= 32


def test_a_tiny_view_still_gives_the_model_some_room():
    assert preview_region((100, 100, 3, 2), 400, 300)[2:] == (32, 32)


@dataclass
class _Job:
    model: str = "m"
    region: tuple = (0, 0, 10, 10)
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def key(self) -> PreviewKey:
        return PreviewKey(self.model, None, "auto")


_ids = iter(range(1, 1000))


@dataclass
class _Preview:
    job: _Job
    region: tuple = (0, 0, 10, 10)


def test_a_cancelled_run_leaves_the_last_output_and_only_the_current_job_counts():
    s = Session()
    s.open("picture")
    first = _Job()
    s.start(first)
    s.finished_preview(_Preview(first))
    assert s.latest == "preview" and s.job is None
    second = _Job(model="other")
    s.start(second)
    assert s.is_current(second.id) and not s.is_current(first.id)
    s.end()  # cancelled
    assert s.latest == "preview" and s.preview.job is first
    s.finished_upscale("result")
    assert s.latest == "result" and s.preview is not None
    s.open("another picture")
    assert (s.result, s.preview, s.latest) == (None, None, "")


def test_a_preview_is_outdated_when_its_model_or_clean_up_changes():
    s = Session()
    key = PreviewKey("m", None, "auto")
    assert not s.preview_outdated(key)  # nothing previewed: nothing to re-run
    job = _Job()
    s.start(job)
    s.finished_preview(_Preview(job))
    assert not s.preview_outdated(key)
    assert s.preview_outdated(PreviewKey("m", 0.5, "auto"))
    assert s.preview_outdated(PreviewKey("other", None, "auto"))
    s.finished_upscale("result")  # the whole photo is shown now: no preview to re-run
    assert not s.preview_outdated(PreviewKey("other", None, "auto"))


def test_the_session_module_does_not_import_qt():
    root = Path(__file__).resolve().parents[1]
    code = ("import sys; import app.session; "
            "sys.exit(any(m.startswith('PySide6') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root)},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("view", [(0, 0, 1, 1), (399, 299, 1, 1)])
def test_regions_always_lie_inside_the_picture(view):
    x, y, w, h = preview_region(view, 400, 300)
    assert x >= 0 and y >= 0 and x + w <= 400 and y + h <= 300
