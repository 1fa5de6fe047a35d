"""The window's state without a window (no qtbot, no QApplication): the job state machine,
preview regions, what stays on screen, the progress line and each batch file's time."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from app.messages import Cancelled, Failed, Finished, Fraction, Progress, Reply, Status, TileDone
from app.session import (
    PREVIEW_MAX_PIXELS,
    BatchSession,
    FileEtas,
    Kind,
    Phase,
    PreviewKey,
    Session,
    preview_region,
)


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


def _picture(w: int = 40, h: int = 30):
    from app.display import DisplayImage
    from app.tasks import Picture

    return Picture(None, DisplayImage(np.zeros((h, w, 3), np.float32)), "p.png",
                   Path("/nowhere/p.png"))


@dataclass
class _Job:
    model: str = "m"
    region: tuple = (0, 0, 10, 10)
    clean_up: float | None = None
    id: int = field(default_factory=lambda: next(_ids))
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> PreviewKey:
        return PreviewKey(self.model, None, "auto")


@dataclass
class _Upscale:
    id: int = field(default_factory=lambda: next(_ids))
    cancel: threading.Event = field(default_factory=threading.Event)


_ids = iter(range(1, 1000))


@dataclass
class _Preview:
    job: _Job
    region: tuple = (0, 0, 10, 10)
    scale: int = 2
    seconds: float = 1.5
    model_name: str = "ASID"
    kept_tiles: int = 2


@dataclass
class _Result:
    path: Path = Path("/out/p_x2.png")
    seconds: float = 3.0
    model_name: str = "ASID"


def test_a_cancelled_run_leaves_the_last_output_and_only_the_current_job_counts():
    s = Session()
    s.open(_picture())
    first = _Job()
    s.start(first)
    s.finished_preview(_Preview(first))
    assert s.latest == "preview" and s.job is None and s.phase is Phase.DONE
    second = _Job(model="other")
    s.start(second)
    assert s.is_current(second.id) and not s.is_current(first.id)
    s.end()  # cancelled
    assert s.latest == "preview" and s.preview.job is first and s.phase is Phase.CANCELLED
    s.finished_upscale("result")
    assert s.latest == "result" and s.preview is not None
    s.open(_picture())
    assert (s.result, s.preview, s.latest) == (None, None, "")


def test_the_state_machine_through_the_workers_messages():
    s = Session()
    s.open(_picture())
    job = _Upscale()
    s.start(job, Kind.UPSCALE)
    assert s.phase is Phase.RUNNING and s.busy and s.fraction is None  # busy, no measure yet
    assert s.canvas is not None and s.label == "Starting\u2026"
    other = _Upscale()
    assert s.receive(Reply(other, Status("old news"))) == ""  # not the job in flight
    assert s.receive(Reply(job, Status("Upscaling with ASID..."))) == "status"
    assert s.label == s.status == "Upscaling with ASID..."
    assert s.receive(Reply(job, Progress(1, 4, 30.0))) == ""
    assert s.receive(Reply(job, Fraction(0.255, 90.0))) == "progress"
    assert s.label == "Upscaling 25 % (tile 2 of 4) \u2014 about 2 min left"
    assert s.receive(Reply(job, Fraction(0.257, 89.0))) == ""  # same per cent: no repaint
    assert s.receive(Reply(job, TileDone(0, 0, np.full((5, 5, 3), 255, np.uint8)))) == "tile"
    assert s.cancel() and s.phase is Phase.CANCELLING and job.cancel.is_set()
    assert s.label == "Cancelling\u2026" and not s.cancel()  # a second Esc: nothing more
    assert s.receive(Reply(job, Cancelled())) == "cancelled"
    assert s.phase is Phase.CANCELLED and s.job is None and s.canvas is None
    assert s.label == "Cancelled; nothing was written." and s.latest == ""
    assert not s.cancel()  # nothing runs

    again = _Upscale()
    s.start(again, Kind.UPSCALE)
    assert s.receive(Reply(again, Finished(_Result()))) == "done"
    assert s.phase is Phase.DONE and s.latest == "result" and s.fraction == 1.0
    assert s.label == "Done in 3.0 s" and s.status == "Saved /out/p_x2.png"

    failing = _Upscale()
    s.start(failing, Kind.UPSCALE)
    assert s.receive(Reply(failing, Failed("The disk is full."))) == "failed"
    assert s.phase is Phase.FAILED and s.error == "The disk is full."
    assert s.latest == "result"  # the earlier result stays


def test_asking_first_and_declining_leaves_nothing_running():
    s = Session()
    s.open(_picture())
    s.ask(Kind.UPSCALE)
    assert s.phase is Phase.ASKING and not s.busy
    s.decline()
    assert s.phase is Phase.IDLE and s.job is None
    s.ask(Kind.UPSCALE)
    s.start(_Upscale(), Kind.UPSCALE)
    assert s.phase is Phase.RUNNING
    with pytest.raises(ValueError, match="cannot go from running to asking"):
        s.ask(Kind.UPSCALE)


def test_a_new_preview_or_the_whole_photo_cancels_a_preview_under_way():
    s = Session()
    s.open(_picture())
    first = _Job()
    s.start(first)
    second = _Job(region=(5, 5, 10, 10))
    s.start(second)
    assert first.cancel.is_set() and s.running(Kind.PREVIEW) and s.rerun_region() == (5, 5,
                                                                                        10, 10)
    assert s.receive(Reply(first, Cancelled())) == ""  # the old one's answer is ignored
    whole = _Upscale()
    s.start(whole, Kind.UPSCALE)
    assert second.cancel.is_set() and s.running(Kind.UPSCALE)
    assert s.drop_preview() is True and not whole.cancel.is_set()  # a whole upscale stays


def test_the_preview_message_and_labels():
    s = Session()
    s.open(_picture())
    job = _Job(region=(0, 0, 20, 10))
    s.start(job)
    assert s.status == "Previewing a 20 \u00d7 10 region\u2026"
    assert s.receive(Reply(job, Finished(_Preview(job, (0, 0, 20, 10))))) == "done"
    assert s.label == "Preview in 1.5 s" and "reuses the preview's 2 tiles" in s.status
    assert s.preview_label(s.preview) == "Preview: ASID"
    assert s.original_label(smooth=True) == "Original  40 \u00d7 30  (Lanczos)"
    assert s.title("Finescale") == "p.png \u2014 Finescale"


def test_the_output_folder_is_the_chosen_one_else_the_originals_else_pictures(tmp_path):
    s = Session()
    s.open(_picture())
    assert s.output_folder(" ~/x ", "/pics", tmp_path) == Path("~/x").expanduser()
    assert s.output_folder("", "/pics", tmp_path) == Path("/pics/Finescale")  # not writable
    s.picture.path = tmp_path / "in.png"
    assert s.output_folder("", "/pics", tmp_path / "res") == tmp_path
    assert s.output_folder("", "/pics", tmp_path) == Path("/pics/Finescale")  # resources


def test_a_preview_is_outdated_when_its_model_or_clean_up_changes():
    s = Session()
    s.open(_picture())
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


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_batch_file_has_its_own_estimate_refined_from_the_measured_work():
    clock = _Clock()
    etas = FileEtas(seconds_per_megapixel=10.0, clock=clock)
    etas.pixels = {"a.png": 1_000_000, "b.png": 2_000_000, "c.png": 500_000}
    assert etas.left("b.png") == pytest.approx(20.0)  # the cost model: 10 s/MP
    etas.begin("a.png")
    clock.now += 2.0
    etas.step(0.5)  # half of a.png in 2 s: 4 s/MP measured
    assert etas.left("a.png") == pytest.approx(2.0)
    assert etas.left("b.png") == pytest.approx(8.0)
    clock.now += 2.0
    etas.end("a.png", ok=True)
    assert etas.took["a.png"] == pytest.approx(4.0)
    assert etas.left("c.png") == pytest.approx(2.0)
    assert FileEtas(None, clock).left("a.png") is None  # unknown model, nothing measured


def test_the_batch_session_shows_each_rows_time():
    from app.tasks import BatchOutcome, BatchPlanned, BatchRow, BatchStep

    clock = _Clock()
    b = BatchSession(clock)
    req = _Upscale()
    b.start(req, seconds_per_megapixel=10.0)
    rows = [BatchRow("a.png", "pending", "a_x2.png", None, 1_000_000),
            BatchRow("b.png", "pending", "b_x2.png", None, 3_000_000),
            BatchRow("old.png", "skipped", None, "exists")]
    assert b.receive(Reply(req, BatchPlanned("3 files", rows))) == "planned"
    assert [b.row_time(i) for i in range(3)] == ["\u2248 10 s", "\u2248 30 s", ""]
    assert b.receive(Reply(req, BatchStep(0, 2, "a.png", 0, 2, -1.0))) == "progress"
    assert b.times_due() and not b.times_due()  # the rows' times: once a second at most
    clock.now += 5.0
    b.receive(Reply(req, BatchStep(0, 2, "a.png", 1, 2, 15.0)))
    assert b.row_status(0) == "upscaling" and b.row_time(0) == "about 5 s left"
    assert b.row_time(1) == "\u2248 30 s" and b.fraction == pytest.approx(0.25)
    clock.now += 5.0
    done = BatchRow("a.png", "done", "a_x2.png", None, 1_000_000, 10.0)
    assert b.receive(Reply(req, BatchStep(1, 2, "", 0, 0, 30.0, done))) == "row"
    assert b.row_time(0) == "took 10 s" and b.row_status(0) == "done" and b.files == (1, 2)
    assert b.receive(Reply(req, Finished(BatchOutcome("finished", {"done": 2}, "")))) == "ended"
    assert b.phase is Phase.DONE and b.summary() == ("Batch finished: 2 done.", False)


def test_the_session_tasks_and_messages_do_not_import_qt():
    root = Path(__file__).resolve().parents[1]
    code = ("import sys; import app.session, app.tasks, app.messages; "
            "sys.exit(any(m.startswith('PySide6') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root)},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("view", [(0, 0, 1, 1), (399, 299, 1, 1)])
def test_regions_always_lie_inside_the_picture(view):
    x, y, w, h = preview_region(view, 400, 300)
    assert x >= 0 and y >= 0 and x + w <= 400 and y + h <= 300


def test_a_new_clean_up_value_blends_the_pairs_ends_kept_instead_of_reloading_them():
    import torch

    from app.tasks import Engines, prepare_model
    from sr_core import catalog

    photo = catalog.default_model()  # the embedded photo model: it has a clean-up pair

    @dataclass
    class _Choice:
        clean_up: float | None
        model: str = photo
        cancel: threading.Event = field(default_factory=threading.Event)

    engines, said = Engines(), []
    for value in (0.3, None, 0.6):
        got = engines._model(_Choice(value), said.append)
    assert engines.loads == 2  # the two ends, once
    want = prepare_model(photo, threading.Event(), lambda t: None, lambda d, t: None, 0.6)
    a, b = got.net.state_dict(), want.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)  # the very weights a fresh load gives
