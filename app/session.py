"""What the window is about, as plain Python: the picture, its results, the jobs running.

The window renders a :class:`Session` (the Picture tab) and a :class:`BatchSession` (the
Batch tab) and turns user actions into their transitions; nothing here imports Qt, so the
rules (the job state machine, what stays on screen after a cancel, when a preview is stale,
which region a preview covers, what the progress line says, each batch file's time) are
tested without a window.

The job state machine (:class:`Phase`), the same for an upscale, a preview and a batch::

    idle/done/failed/cancelled --ask--> asking --decline--> idle
             |                             |
             +-----------start-------------+--> running --cancel--> cancelling
                                                   |                    |
                                 Finished / Failed / Cancelled message from the worker
                                                   v                    v
                                           done | failed | cancelled (cancelling -> cancelled
                                                                      unless it had finished)

Only the job in flight counts: messages about an older one are ignored.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sr_core.units import format_bytes

from .messages import (
    Cancelled,
    Download,
    Failed,
    Finished,
    Fraction,
    Progress,
    Reply,
    Status,
    TileDone,
)
from .tasks import BatchOutcome, BatchPlanned, BatchStep, PreviewKey

__all__ = ["PREVIEW_MAX_PIXELS", "BatchSession", "FileEtas", "Kind", "Phase", "PreviewKey",
           "Session", "eta_text", "preview_region"]

#: A preview covers at most this many input pixels (256 x 256): a few seconds on a laptop CPU.
PREVIEW_MAX_PIXELS = 256 * 256
#: ... and at least this many pixels on each side (the model needs some room).
PREVIEW_MIN_SIDE = 32
#: How far the unfinished part of the picture is dimmed towards grey while a run goes on.
PREVIEW_DIM = 0.55

#: Seconds between two redraws of the batch rows' times.
TIMES_EVERY = 1.0

Rect = tuple[int, int, int, int]  # x, y, width, height in input pixels


class Phase(StrEnum):
    """Where a job stands."""

    IDLE = "idle"
    ASKING = "asking"          # sized; the user is asked whether to go on
    RUNNING = "running"
    CANCELLING = "cancelling"  # cancel set; the worker has not answered yet
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Kind(StrEnum):
    """What a job does."""

    UPSCALE = "upscale"
    PREVIEW = "preview"
    BATCH = "batch"


_RESTING = {Phase.IDLE, Phase.DONE, Phase.FAILED, Phase.CANCELLED}
#: Allowed moves: anything else is a bug and raises ValueError.
TRANSITIONS: dict[Phase, set[Phase]] = {
    **{p: {Phase.ASKING, Phase.RUNNING, Phase.IDLE} for p in _RESTING},
    Phase.ASKING: {Phase.ASKING, Phase.RUNNING, Phase.IDLE},
    Phase.RUNNING: {Phase.RUNNING, Phase.CANCELLING, Phase.DONE, Phase.FAILED,
                    Phase.CANCELLED, Phase.IDLE},
    Phase.CANCELLING: {Phase.RUNNING, Phase.DONE, Phase.FAILED, Phase.CANCELLED, Phase.IDLE},
}


def eta_text(seconds: float) -> str:
    """A short duration for people: "about 3 min left"."""
    if seconds < 0:
        return ""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


def duration_text(seconds: float) -> str:
    """A duration without "left": "12 s", "3 min", "1.5 h"."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def preview_region(view: tuple[float, float, float, float], width: int, height: int,
                   max_pixels: int = PREVIEW_MAX_PIXELS) -> Rect:
    """The input rectangle a preview of ``view`` (the part of the picture on screen, as
    ``(x, y, w, h)`` in input pixels) upscales.

    The view is cut to the picture; if it holds more than ``max_pixels`` pixels, a
    rectangle of the same shape and that many pixels around the view's centre is taken.
    """
    vx, vy, vw, vh = view
    x0, y0 = max(0.0, vx), max(0.0, vy)
    x1, y1 = min(float(width), vx + vw), min(float(height), vy + vh)
    if x1 <= x0 or y1 <= y0:  # nothing of the picture in view: its centre
        x0, y0, x1, y1 = 0.0, 0.0, float(width), float(height)
    w, h = x1 - x0, y1 - y0
    if w * h > max_pixels:
        f = math.sqrt(max_pixels / (w * h))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        w, h = w * f, h * f
        x0, y0 = cx - w / 2, cy - h / 2
    side_w = min(width, max(PREVIEW_MIN_SIDE, int(w + 1e-6)))  # down: stay within the budget
    side_h = min(height, max(PREVIEW_MIN_SIDE, int(h + 1e-6)))
    x = min(max(0, round(x0 + (w - side_w) / 2)), width - side_w)
    y = min(max(0, round(y0 + (h - side_h) / 2)), height - side_h)
    return x, y, side_w, side_h


class JobState:
    """A job and its :class:`Phase`, moved only along :data:`TRANSITIONS`."""

    def __init__(self) -> None:
        self.phase = Phase.IDLE
        self.kind: Kind | None = None
        self.job: Any = None

    def _go(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise ValueError(f"a job cannot go from {self.phase} to {phase}")
        self.phase = phase

    @property
    def busy(self) -> bool:
        """True while a job runs (or is being cancelled)."""
        return self.phase in (Phase.RUNNING, Phase.CANCELLING)

    def ask(self, kind: Kind) -> None:
        """The job was sized and the user is asked whether to go on."""
        self._go(Phase.ASKING)
        self.kind = kind

    def decline(self) -> None:
        """The user said no: nothing runs."""
        self._go(Phase.IDLE)
        self.kind = None

    def cancel(self) -> bool:
        """Set the running job's cancel event; False when nothing runs (or it is already
        being cancelled: a second Esc changes nothing)."""
        if self.phase is not Phase.RUNNING:
            return False
        self.job.cancel.set()
        self._go(Phase.CANCELLING)
        return True

    def _stop(self, phase: Phase) -> None:
        self._go(phase)
        self.job = None


@dataclass
class Session(JobState):
    """The Picture tab: the picture shown, the last full result, the last preview, the job
    in flight and what the progress line says about it.

    ``latest`` says which finished output the compare view shows ("result", "preview" or
    ""): a job that is cancelled or fails leaves it as it was, so the earlier output stays.
    ``fraction`` is the share of the job done (None: busy without a measure); ``label`` the
    line beside the progress bar; ``status`` the status bar's; ``error`` the sentence of the
    last failure; ``canvas`` the whole picture filling in tile by tile during an upscale.
    """

    picture: Any = None        # app.tasks.Picture
    result: Any = None         # app.tasks.UpscaleResult: the last whole-photo result
    preview: Any = None        # app.tasks.PreviewResult: the last region preview
    latest: str = ""
    rival: Any = None          # the preview before ``preview``: same region, other choices
    fraction: float | None = 0.0
    label: str = ""
    status: str = ""
    error: str = ""
    canvas: Any = None         # app.display.DisplayImage
    tiles: tuple[int, int] = (0, 0)
    _pct: int = field(default=-1, repr=False)

    def __post_init__(self) -> None:
        JobState.__init__(self)  # the dataclass's generated __init__ does not call it

    # --- the picture ------------------------------------------------------------------------
    def open(self, picture: Any) -> None:
        """A new picture: earlier outputs belong to the old one and go."""
        self.picture, self.result, self.preview, self.latest = picture, None, None, ""
        self.rival = None
        self.fraction, self.label = 0.0, ""
        w, h = picture.display.width, picture.display.height
        self.status = f"{picture.name}: {w:,} \u00d7 {h:,} pixels."

    def show_pair(self, result: Any) -> None:
        """A result written earlier (a batch row's), shown beside the picture opened."""
        self.result, self.latest = result, "result"
        self.status = f"{self.picture.name} beside its result {result.path.name}."

    def missing(self, model: str) -> str:
        """What is missing before a run, in one sentence ("" when nothing is)."""
        if self.picture is None:
            return "Open a picture first (drop one on the window, or Ctrl+O)."
        if not model:
            return "No model is available; open Models \u2192 Manage models to download one."
        return ""

    # --- starting and stopping --------------------------------------------------------------
    def start(self, job: Any, kind: Kind | None = None) -> None:
        """``job`` was submitted; it becomes the one whose messages count. A preview still
        running is cancelled (a new preview or the whole photo wins over it)."""
        kind = kind or (Kind.PREVIEW if hasattr(job, "region") else Kind.UPSCALE)
        if self.busy and self.job is not job:
            self.job.cancel.set()
        self._go(Phase.RUNNING)
        self.job, self.kind = job, kind
        self.tiles, self._pct, self.error = (0, 0), -1, ""
        self.fraction, self.label = None, "Starting\u2026"
        if kind is Kind.UPSCALE:
            self.canvas = self.picture.display.copy()
            self.canvas.dim(PREVIEW_DIM)
            self.status = "Upscaling the whole picture\u2026"
        else:
            self.status = f"Previewing a {job.region[2]} \u00d7 {job.region[3]} region\u2026"

    def cancel(self) -> bool:
        """Cancel the job in flight (within one layer); nothing is written."""
        if not super().cancel():
            return False
        self.label = "Cancelling\u2026"
        return True

    def drop_preview(self) -> bool:
        """Cancel a preview under way (another picture is opened); True while a whole upscale
        runs, which the caller must not disturb."""
        if self.running(Kind.PREVIEW):
            self.job.cancel.set()
            self._stop(Phase.IDLE)
            self.label, self.fraction = "", 0.0
        return self.running(Kind.UPSCALE)

    def is_current(self, job_id: int) -> bool:
        """True when ``job_id`` is the job in flight (messages of older ones are ignored)."""
        return self.job is not None and self.job.id == job_id

    def end(self, phase: Phase = Phase.CANCELLED) -> None:
        """The job in flight stopped without an output (cancelled, by default, or failed)."""
        if self.job is not None:
            self._stop(phase)
        self.canvas, self.tiles, self._pct = None, (0, 0), -1

    def finished_upscale(self, result: Any) -> None:
        """A whole-photo result arrived: it is what the view shows now."""
        if self.job is not None:
            self._stop(Phase.DONE)
        self.canvas = None
        self.result, self.latest = result, "result"

    def finished_preview(self, preview: Any) -> None:
        """A preview arrived: it is what the view shows now. The one it replaces stays as
        its ``rival`` when it covers the same region with other choices (model vs model)."""
        old = self.preview
        if old is not None and old.region == preview.region and old.job.key != preview.job.key:
            self.rival = old
        elif old is None or old.region != preview.region:
            self.rival = None
        if self.job is not None:
            self._stop(Phase.DONE)
        self.preview, self.latest = preview, "preview"

    def running(self, kind: Kind | type) -> bool:
        """True while a job of this kind (or request class) runs."""
        if self.job is None:
            return False
        return self.kind == kind if isinstance(kind, Kind) else isinstance(self.job, kind)

    def preview_outdated(self, key: PreviewKey) -> bool:
        """True when a preview is shown (or running) for other choices than ``key``."""
        if self.preview is None and self.job is None:
            return False
        if self.job is not None and self.kind is Kind.PREVIEW:
            return self.job.key != key
        return self.latest == "preview" and self.preview.job.key != key

    def rerun_region(self) -> Rect | None:
        """The region to preview again with new choices: the running preview's or the last."""
        if self.running(Kind.PREVIEW):
            return self.job.region
        return self.preview.region if self.preview is not None else None

    # --- the worker's messages --------------------------------------------------------------
    def receive(self, reply: Reply) -> str:
        """Take in one message; returns what changed: "" (an older job's message: ignored),
        "status", "progress", "tile", "done", "failed" or "cancelled"."""
        if self.job is None or reply.request is not self.job:
            return ""
        msg = reply.message
        if isinstance(msg, Status):
            self.label = self.status = msg.text
            return "status"
        if isinstance(msg, Download):
            done = format_bytes(msg.done)
            if msg.total:
                self.fraction = msg.done / msg.total
                self.label = f"Downloading the model: {done} of {format_bytes(msg.total)}"
            else:
                self.label = f"Downloading the model: {done}"
            return "progress"
        if isinstance(msg, Progress):
            self.tiles = (msg.done, msg.total)
            return ""
        if isinstance(msg, Fraction):
            return "progress" if self._fraction(msg.fraction, msg.eta) else ""
        if isinstance(msg, TileDone):
            if self.canvas is not None:
                self.canvas.update_region(msg.y0, msg.x0, msg.rgb)
            return "tile"
        if isinstance(msg, Finished):
            return self._finished(msg.value)
        if isinstance(msg, Failed):
            self.end(Phase.FAILED)
            self.fraction, self.label, self.error = 0.0, "Failed.", msg.text
            return "failed"
        if isinstance(msg, Cancelled):
            self.end(Phase.CANCELLED)
            self.fraction, self.label = 0.0, "Cancelled; nothing was written."
            self.status = self.label
            return "cancelled"
        return ""

    def _fraction(self, fraction: float, eta: float) -> bool:
        pct = int(100 * fraction)
        if pct == self._pct and fraction < 1:
            return False  # the screen changes once per per cent, however often layers end
        self._pct = pct
        self.fraction = fraction
        what = "Preview" if self.kind is Kind.PREVIEW else "Upscaling"
        left = eta_text(eta) if eta >= 0 and fraction < 1 else ""
        done, total = self.tiles
        tiles = f" (tile {min(done + 1, total)} of {total})" if total > 1 else ""
        self.label = f"{what} {pct} %{tiles}" + (f" \u2014 {left}" if left else "")
        return True

    def _finished(self, value: Any) -> str:
        self.fraction = 1.0
        if self.kind is Kind.PREVIEW:
            self.finished_preview(value)
            self.label = f"Preview in {value.seconds:.1f} s"
            rw, rh = value.region[2:]
            kept = getattr(value, "kept_tiles", 0)
            reuse = (f" (it reuses the preview's {kept} tile{'s' if kept > 1 else ''})"
                     if kept else "")
            self.status = (f"Preview of a {rw} \u00d7 {rh} region with {value.model_name}; "
                           "change the model or the clean-up to compare, or press Upscale "
                           f"for the whole picture{reuse}.")
        else:
            self.finished_upscale(value)
            self.label = f"Done in {value.seconds:.1f} s"
            self.status = f"Saved {value.path}"
        self.tiles, self._pct = (0, 0), -1
        return "done"

    # --- labels -----------------------------------------------------------------------------
    def original_label(self, smooth: bool = False) -> str:
        """The label over the original in the compare view (saying how it is enlarged)."""
        pic = self.picture
        how = "  (Lanczos)" if smooth else ""
        return f"Original  {pic.display.width:,} \u00d7 {pic.display.height:,}{how}"

    @staticmethod
    def preview_label(preview: Any) -> str:
        """The label over a preview: the model, and the clean-up where there is one."""
        c = preview.job.clean_up
        return f"Preview: {preview.model_name}" + (f", clean-up {c:.2f}" if c is not None
                                                   else "")

    def result_label(self) -> str:
        """The label over the whole result: model and size."""
        r = self.result
        return f"{r.model_name}  {r.display.width:,} \u00d7 {r.display.height:,}"

    def title(self, app: str) -> str:
        """The window title."""
        if self.picture is None:
            return app
        if self.result is not None:
            return f"{self.picture.name} \u2192 {self.result.path.name} \u2014 {app}"
        return f"{self.picture.name} \u2014 {app}"

    # --- sizing -----------------------------------------------------------------------------
    def output_folder(self, chosen: str, pictures: str, resources: Path) -> Path:
        """Where the result goes: ``chosen``, else the original's folder when it is writable
        (and not the shipped resources), else ``pictures``/Finescale."""
        if chosen.strip():
            return Path(chosen.strip()).expanduser()
        path = self.picture.path
        if path is not None:
            folder = path.parent
            if os.access(folder, os.W_OK) and folder.resolve() != resources.resolve():
                return folder
        return Path(pictures) / "Finescale"

    def job_size(self, model: str, device: str, size: tuple[int, int]) -> Any:
        """The sizing estimate (:class:`sr_core.sizing.JobSize`) for upscaling the picture
        to ``size`` with ``model`` on ``device``."""
        import torch

        from sr_core import catalog, sizing

        try:
            family = catalog.get(model).arch
        except Exception:  # noqa: BLE001 - a checkpoint file or an unknown id: no ETA
            family = ""
        gpu = device != "cpu" and torch.cuda.is_available()
        photo = self.picture.photo
        return sizing.estimate(photo.width, photo.height, int(size[0]), int(size[1]),
                               family=family, device_type="cuda" if gpu else "cpu",
                               channels=3 + (photo.alpha is not None), bits=photo.bit_depth)

    @staticmethod
    def question(est: Any) -> str | None:
        """The question to ask before a job of more than a few minutes or above what fits
        in memory (None: no need to ask)."""
        from sr_core import sizing

        limit = sizing.default_output_limit(channels=est.channels, bits=est.bits)
        too_big = est.out_width * est.out_height > limit
        slow = est.seconds is not None and est.seconds > sizing.ASK_ABOVE_SECONDS
        if not (too_big or slow):
            return None
        why = (f"This is more than fits in the free memory ({limit / 1e6:.0f} MP)."
               if too_big else "This will take a while.")
        return f"The result will be {est.describe()}. {why} Upscale anyway?"


class FileEtas:
    """Each batch file's time: the cost model's estimate, refined from the work measured.

    Before anything is measured a file of ``p`` pixels is expected to take ``p`` times the
    cost model's seconds per pixel (``sizing.seconds_per_megapixel``; None: unknown). Once
    files (or part of the current one) are done, the rate measured on this batch replaces
    it. ``clock`` is injectable (seconds as a float).
    """

    def __init__(self, seconds_per_megapixel: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.prior = None if seconds_per_megapixel is None else seconds_per_megapixel / 1e6
        self.clock = clock
        self.pixels: dict[str, int] = {}
        self.took: dict[str, float] = {}
        self.current: str | None = None
        self._t0 = 0.0
        self._part = 0.0
        self._done_px = 0
        self._done_s = 0.0

    def begin(self, name: str) -> None:
        """``name`` starts now."""
        if self.current != name:
            self.current, self._t0, self._part = name, self.clock(), 0.0

    def step(self, part: float) -> None:
        """The current file is ``part`` (0..1) done."""
        self._part = min(1.0, max(0.0, part))

    def end(self, name: str, ok: bool) -> None:
        """``name`` ended (``ok``: upscaled; a failure teaches nothing about the rate)."""
        if name != self.current:
            return
        took = self.clock() - self._t0
        self.took[name] = took
        if ok and self.pixels.get(name):
            self._done_px += self.pixels[name]
            self._done_s += took
        self.current = None

    def rate(self) -> float | None:
        """Seconds per input pixel: measured when possible, else the cost model's."""
        px, s = self._done_px, self._done_s
        if self.current is not None and self._part > 0:
            px += self.pixels.get(self.current, 0) * self._part
            s += self.clock() - self._t0
        return s / px if px > 0 and s > 0 else self.prior

    def left(self, name: str) -> float | None:
        """Seconds until ``name`` is done if it ran alone from now: its whole estimate when
        waiting, what remains when it is the current file; None when unknown."""
        rate, px = self.rate(), self.pixels.get(name, 0)
        if rate is None or not px:
            return None
        if name == self.current:
            return max(0.0, px * (1.0 - self._part) * rate)
        return px * rate


class BatchSession(JobState):
    """The Batch tab: the batch in flight, its rows and what each row and line says."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.rows: list[Any] = []          # app.tasks.BatchRow, in table order
        self.index: dict[str, int] = {}
        self.etas = FileEtas(None, clock)
        self.fraction: float | None = 0.0
        self.status = "Choose a folder of pictures and press Start."
        self.files = (0, 0)
        self.current = ""
        self.outcome: Any = None           # app.tasks.BatchOutcome of the last batch
        self.error = ""
        self._times_at: float | None = None

    def start(self, job: Any, seconds_per_megapixel: float | None = None) -> None:
        """``job`` (a BatchRequest) was submitted; ``seconds_per_megapixel`` is the cost
        model's figure for its model and device (None: unknown)."""
        self._go(Phase.RUNNING)
        self.job, self.kind = job, Kind.BATCH
        self.rows, self.index, self.current, self.files = [], {}, "", (0, 0)
        self.etas = FileEtas(seconds_per_megapixel, self.clock)
        self.fraction, self.status, self.error, self.outcome = None, "Starting\u2026", "", None

    def cancel(self) -> bool:
        """Stop after the current layer; the unfinished file is redone by the next run."""
        if not super().cancel():
            return False
        self.status = "Cancelling\u2026"
        return True

    def receive(self, reply: Reply) -> str:
        """Take in one message; returns "" (ignored), "status", "planned", "progress",
        "row" (a file ended) or "ended"."""
        if self.job is None or reply.request is not self.job:
            return ""
        msg = reply.message
        if isinstance(msg, Status):
            self.status = msg.text
            return "status"
        if isinstance(msg, Download):
            self.fraction = msg.done / msg.total if msg.total else None
            return "progress"
        if isinstance(msg, BatchPlanned):
            self.status = msg.summary[:1].upper() + msg.summary[1:] + "."
            self.rows = list(msg.rows)
            self.index = {r.input: i for i, r in enumerate(self.rows)}
            self.etas.pixels = {r.input: r.pixels for r in self.rows}
            self.fraction = 0.0
            return "planned"
        if isinstance(msg, BatchStep):
            return self._step(msg)
        if isinstance(msg, Finished):
            return self._ended(msg.value)
        if isinstance(msg, Cancelled):
            return self._ended(BatchOutcome("cancelled", {}, ""))
        if isinstance(msg, Failed):
            self._stop(Phase.FAILED)
            self.fraction, self.error = 0.0, msg.text
            self.status = "The batch did not run."
            return "ended"
        return ""

    def _step(self, p: Any) -> str:
        if p.finished is not None:
            self.files = (p.files_done, p.files_total)
            self.etas.end(p.finished.input, p.finished.status == "done")
            i = self.index.get(p.finished.input)
            if i is not None:
                self.rows[i] = p.finished
            self.current = ""
            return "row"
        if p.files_total <= 0:
            return ""
        self.files = (p.files_done, p.files_total)
        part = p.tiles_done / p.tiles_total if p.tiles_total else 0.0
        self.fraction = min(1.0, (p.files_done + part) / p.files_total)
        if p.current:
            self.current = p.current
            self.etas.begin(p.current)
            self.etas.step(part)
            tiles = f", tile {p.tiles_done} of {p.tiles_total}" if p.tiles_total else ""
            left = eta_text(p.eta)
            self.status = f"Upscaling {p.current}{tiles}" + (f" \u2014 {left}" if left else "")
        return "progress"

    def _ended(self, outcome: Any) -> str:
        self._stop(Phase.DONE if outcome.state == "finished" else Phase.CANCELLED)
        self.outcome, self.current = outcome, ""
        self.fraction = 1.0 if outcome.state == "finished" else self.fraction or 0.0
        head = {"finished": "Batch finished", "cancelled": "Batch cancelled"}.get(
            outcome.state, "Batch stopped")
        self.status = head + "."
        return "ended"

    def times_due(self) -> bool:
        """True at most once a second: when the rows' times are worth redrawing (a folder of
        thousands of files gets a progress message per tile)."""
        now = self.clock()
        if self._times_at is not None and now - self._times_at < TIMES_EVERY:
            return False
        self._times_at = now
        return True

    def row_status(self, i: int) -> str:
        """The status column of row ``i``."""
        row = self.rows[i]
        if row.input == self.current and row.status == "pending":
            return "upscaling"
        return {"pending": "waiting"}.get(row.status, row.status)

    def row_time(self, i: int) -> str:
        """Row ``i``'s own time: how long it took, what is left of it, or its estimate."""
        row = self.rows[i]
        if row.status == "done":
            took = self.etas.took.get(row.input, row.seconds)
            return f"took {duration_text(took)}" if took else ""
        if row.status != "pending":
            return ""
        left = self.etas.left(row.input)
        if left is None:
            return ""
        if row.input == self.current:
            return eta_text(left)
        return f"\u2248 {duration_text(left)}"

    def summary(self) -> tuple[str, bool]:
        """The end-of-batch sentence and whether it names failures."""
        o = self.outcome
        if o is None:
            return "", False
        failed = [r.input for r in self.rows if r.status == "failed"]
        counts = ", ".join(f"{o.totals.get(k, 0)} {k}" for k in ("done", "skipped", "failed")
                           if k in o.totals)
        if o.state == "cancelled":
            counts += (", " if counts else "") + "the rest is redone when you start it again"
        head = self.status.rstrip(".")
        text = f"{head}: {counts}." if counts else f"{head}."
        if failed:
            text += " Failed: " + "; ".join(failed[:5]) + (" \u2026" if len(failed) > 5 else "") \
                + " (reasons in the list)."
        if o.report:
            text += f" Report: {o.report}"
        return text, bool(failed)


def seconds_per_megapixel(model: str, device: str) -> float | None:
    """The cost model's seconds per input megapixel for ``model`` on ``device`` (None:
    unknown, e.g. a checkpoint file)."""
    from sr_core import catalog, sizing

    try:
        family = catalog.get(model).arch
    except Exception:  # noqa: BLE001 - a checkpoint file or an unknown id
        return None
    import torch

    gpu = device != "cpu" and torch.cuda.is_available()
    return sizing.seconds_per_megapixel(family, "cuda" if gpu else "cpu")
