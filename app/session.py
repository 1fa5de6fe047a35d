"""What the Picture tab is about, as plain Python: the picture, its results, the job running.

The window renders a :class:`Session` and turns user actions into its transitions; nothing
here imports Qt, so the rules (what stays on screen after a cancel, when a preview is stale,
which region a preview covers) are tested without a window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: A preview covers at most this many input pixels (256 x 256): a few seconds on a laptop CPU.
PREVIEW_MAX_PIXELS = 256 * 256
#: ... and at least this many pixels on each side (the model needs some room).
PREVIEW_MIN_SIDE = 32

Rect = tuple[int, int, int, int]  # x, y, width, height in input pixels


@dataclass(frozen=True)
class PreviewKey:
    """What a preview depends on besides the region: a change of any of them re-runs it."""

    model: str
    clean_up: float | None
    device: str


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


@dataclass
class Session:
    """The picture shown, the last full result, the last preview and the job in flight.

    ``latest`` says which finished output the compare view shows ("result", "preview" or
    ""): a job that is cancelled or fails leaves it as it was, so the earlier output stays.
    """

    picture: Any = None        # app.worker.Picture
    result: Any = None         # app.worker.UpscaleResult: the last whole-photo result
    preview: Any = None        # app.worker.PreviewResult: the last region preview
    job: Any = None            # the UpscaleJob or PreviewJob running, if any
    latest: str = ""
    rival: Any = None          # the preview before ``preview``: same region, other choices

    def open(self, picture: Any) -> None:
        """A new picture: earlier outputs belong to the old one and go."""
        self.picture, self.result, self.preview, self.latest = picture, None, None, ""
        self.rival = None

    def start(self, job: Any) -> None:
        """A job was submitted; it becomes the one whose signals count."""
        self.job = job

    def is_current(self, job_id: int) -> bool:
        """True when ``job_id`` is the job in flight (signals of older ones are ignored)."""
        return self.job is not None and self.job.id == job_id

    def end(self) -> None:
        """The job in flight stopped (finished, failed or cancelled)."""
        self.job = None

    def finished_upscale(self, result: Any) -> None:
        """A whole-photo result arrived: it is what the view shows now."""
        self.job, self.result, self.latest = None, result, "result"

    def finished_preview(self, preview: Any) -> None:
        """A preview arrived: it is what the view shows now. The one it replaces stays as
        its ``rival`` when it covers the same region with other choices (model vs model)."""
        old = self.preview
        if old is not None and old.region == preview.region and old.job.key != preview.job.key:
            self.rival = old
        elif old is None or old.region != preview.region:
            self.rival = None
        self.job, self.preview, self.latest = None, preview, "preview"

    def running(self, kind: type) -> bool:
        """True while a job of this class runs."""
        return isinstance(self.job, kind)

    def preview_outdated(self, key: PreviewKey) -> bool:
        """True when a preview is shown (or running) for other choices than ``key``."""
        if self.preview is None and self.job is None:
            return False
        shown = self.job if self.job is not None and hasattr(self.job, "region") else None
        if shown is not None:
            return shown.key != key
        return self.latest == "preview" and self.preview.job.key != key
