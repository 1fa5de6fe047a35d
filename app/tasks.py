"""The window's requests and the work each one does, without Qt.

A request is a dataclass with an ``id``, a ``cancel`` event and a ``run(send)`` method. The
generic :class:`~app.worker.RequestWorker` calls ``run`` in its thread; ``run`` reports with
``send(message)`` (one of the message dataclasses of :mod:`app.messages`) and returns the value
that arrives as ``Finished(value)``. Engine work stays in sr_core: ``run`` only calls it and
turns its callbacks into messages.

Output naming, free names and model preparation live here until sr_core has them (issue 19:
``sr_core.naming`` and ``sr_core.loader``).
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr_core import catalog, formats, installer
from sr_core.errors import Cancelled, OutputExistsError

from .display import DisplayImage
from .messages import Download, Fraction, Progress, Send, Status, TileDone

_ids = itertools.count(1)

#: Format -> extension of the files the window writes (HEIC and AVIF where this install can).
EXTENSIONS = {f: formats.extension(f)[1:] for f in formats.write_formats()}
#: Seconds between two download-progress messages (the window need not hear every chunk).
_DOWNLOAD_TICK = 0.05


def _next_id() -> int:
    return next(_ids)


@dataclass
class Picture:
    """A picture ready to show and upscale."""

    photo: Any                 # sr_core.imageio.Photo
    display: DisplayImage
    name: str                  # file name, or e.g. "Pasted picture"
    path: Path | None = None   # None for a picture pasted from the clipboard


@dataclass(frozen=True)
class PreviewKey:
    """What a preview depends on besides the region: a change of any of them re-runs it."""

    model: str
    clean_up: float | None
    device: str


@dataclass
class WarmUp:
    """Import the engine (torch) in the worker's thread, so the first upscale starts at once."""

    id: int = field(default_factory=_next_id)
    cancel: threading.Event = field(default_factory=threading.Event)

    def run(self, send: Send) -> None:
        """Import :mod:`sr_core.engine`."""
        import sr_core.engine  # noqa: F401


@dataclass
class LoadRequest:
    """Open a file (``path``) or prepare a pasted picture (``photo`` + ``name``); with a
    ``result`` (a batch row's output), open that too: ``run`` returns (picture, result)."""

    path: Path | None = None
    photo: Any = None
    name: str = ""
    result: Path | None = None
    engines: Engines | None = None  # their kept tiles belong to the old picture: dropped
    id: int = field(default_factory=_next_id)
    cancel: threading.Event = field(default_factory=threading.Event)

    def run(self, send: Send) -> tuple[Picture, Picture | None]:
        """Read and prepare the picture (and the result) for display."""
        from sr_core.imageio import read_image

        if self.engines is not None:
            self.engines.forget_tiles()

        if self.path is not None:
            photo, name, path = read_image(self.path), self.path.name, self.path
        else:
            photo, name, path = self.photo, self.name or "Pasted picture", None
        picture = Picture(photo, DisplayImage.from_photo(photo), name, path)
        if self.result is None:
            return picture, None
        out = read_image(self.result)
        return picture, Picture(out, DisplayImage.from_photo(out), self.result.name,
                                self.result)


class Engines:
    """The Upscaler of the last job, reused while its model, device, tile and clean-up stay
    the same (with a tile cache, so a full run reuses the preview's tiles), and the two ends
    of a clean-up pair, so a new clean-up value blends them instead of reading both files
    again. Used from the worker's thread only."""

    def __init__(self) -> None:
        self._upscaler: Any = None
        self._key: tuple[Any, ...] | None = None
        self._ends: tuple[tuple[str, str], Any, Any] | None = None
        #: Models read from disk (or downloaded) so far: what the pair cache saves.
        self.loads = 0

    def get(self, job: UpscaleJob | PreviewJob, send: Send) -> Any:
        """The Upscaler for ``job``, loading (and downloading) its model when needed."""
        key = (job.model, job.device, str(job.tile), job.clean_up)
        if self._upscaler is not None and self._key == key:
            return self._upscaler
        self._upscaler = None  # free the previous model before loading another
        from sr_core import Upscaler
        from sr_core.engine import TileCache

        self._upscaler = Upscaler(self._model(job, send), device=job.device, tile=job.tile,
                                  on_message=lambda text: send(Status(text)),
                                  tile_cache=TileCache())
        self._key = key
        return self._upscaler

    def forget_tiles(self) -> None:
        """Drop the tiles kept for the picture shown (another one is being opened)."""
        if self._upscaler is not None and self._upscaler.tile_cache is not None:
            self._upscaler.tile_cache.clear()

    def _model(self, job: UpscaleJob | PreviewJob, send: Send) -> Any:
        """``job``'s model; a clean-up pair's value is blended from the ends kept here,
        which gives the very weights :func:`prepare_model` would load."""
        from sr_core.cleanup import blend, default_clean_up

        def load(model: str, clean_up: float | None) -> Any:
            self.loads += 1
            return prepare_model(model, job.cancel, lambda text: send(Status(text)),
                                 lambda done, total: send(Download(done, total)), clean_up)

        pair = None if Path(job.model).exists() else catalog.clean_up_pair(job.model)
        t = job.clean_up if job.clean_up is not None else default_clean_up(job.model)
        if pair is None or t is None:
            return load(job.model, job.clean_up)
        if self._ends is None or self._ends[0] != pair:
            self._ends = None
            self._ends = (pair, load(pair[0], None), load(pair[1], 1.0))
        send(Status("Blending the model..."))
        return blend(self._ends[1], self._ends[2], t)


@dataclass
class UpscaleJob:
    """Upscale ``picture`` with ``model`` and write the result into ``out_dir``.

    ``model`` is a catalogue id (downloaded first if needed) or a checkpoint path;
    ``out_format`` None keeps the input's format; at most one of ``scale``, ``width`` and
    ``height`` sets the output size (none: the model's scale).
    """

    picture: Picture
    model: str
    out_dir: Path
    out_format: str | None = None
    quality: int = 95
    scale: float | None = None
    width: int | None = None
    height: int | None = None
    device: str = "auto"
    tile: int | str = "auto"
    clean_up: float | None = None  # detail <-> clean-up; None: the model's own default
    engines: Engines | None = None
    id: int = field(default_factory=_next_id)
    cancel: threading.Event = field(default_factory=threading.Event)

    def run(self, send: Send) -> UpscaleResult:
        """Upscale, write the result under a free name, and return it."""
        from sr_core.device import dtype_name
        from sr_core.imageio import write_image

        started = time.perf_counter()
        up = (self.engines or Engines()).get(self, send)
        photo = self.picture.photo
        send(Status(f"Upscaling with {up.model.name} in {dtype_name(up.dtype)}..."))
        out = up.upscale(photo, progress=lambda d, t, eta: send(Progress(d, t, float(eta))),
                         cancel=self.cancel,
                         on_tile=lambda y0, x0, rgb: send(TileDone(y0, x0, rgb)),
                         scale=self.scale, width=self.width, height=self.height,
                         detail=lambda f, eta: send(Fraction(f, eta)))
        if self.cancel.is_set():
            raise Cancelled()
        fmt = self.out_format or _same_format(photo)
        stem = self.picture.path.stem if self.picture.path else _slug(self.picture.name)
        name = output_name(stem, self, up, out.width, photo.width, EXTENSIONS[fmt])
        send(Status("Saving..."))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = write_free(write_image, out, self.out_dir, name, fmt, self.quality)
        for w in caught:
            send(Status(str(w.message)))
        return UpscaleResult(self, path, out, DisplayImage.from_photo(out),
                             time.perf_counter() - started, up.model.name)


@dataclass
class PreviewJob:
    """Upscale ``region`` = ``(x, y, width, height)`` (input pixels) of ``picture`` with
    ``model``, for the compare view only: nothing is written."""

    picture: Picture
    model: str
    region: tuple[int, int, int, int]
    device: str = "auto"
    clean_up: float | None = None
    tile: int | str = "auto"
    engines: Engines | None = None
    id: int = field(default_factory=_next_id)
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> PreviewKey:
        """The choices this preview shows (a change of any of them re-runs it)."""
        return PreviewKey(self.model, self.clean_up, self.device)

    def run(self, send: Send) -> PreviewResult:
        """Upscale the region (its tiles are kept for a full run) and return it."""
        started = time.perf_counter()
        up = (self.engines or Engines()).get(self, send)
        send(Status(f"Previewing with {up.model.name}..."))
        part = up.upscale_region(self.picture.photo, self.region, cancel=self.cancel,
                                 progress=lambda d, t, eta: send(Progress(d, t, float(eta))),
                                 detail=lambda f, eta: send(Fraction(f, eta)))
        if self.cancel.is_set():
            raise Cancelled()
        rgb = part.pixels[..., :3]
        alpha = part.pixels[..., 3] if part.pixels.shape[2] == 4 else None
        return PreviewResult(self, (part.x, part.y, part.width, part.height), part.scale,
                             DisplayImage(rgb, alpha), time.perf_counter() - started,
                             up.model.name, part.kept_tiles)


@dataclass
class PreviewResult:
    """A finished preview: the region at the model's scale, ready to show."""

    job: PreviewJob
    region: tuple[int, int, int, int]  # x, y, width, height in input pixels (clipped)
    scale: int
    display: DisplayImage
    seconds: float
    model_name: str
    kept_tiles: int = 0  # whole-picture tiles kept for the full run


@dataclass
class UpscaleResult:
    """A finished upscale: where it was written and what to show."""

    job: UpscaleJob | None  # None: a result written earlier (a batch's), opened to compare
    path: Path
    photo: Any
    display: DisplayImage
    seconds: float
    model_name: str


@dataclass
class CatalogRequest:
    """Download (``action="download"``) a catalogue model, or import (``"import"``) a file;
    ``run`` returns the sentence to show."""

    action: str
    model_id: str = ""
    path: Path | None = None
    id: int = field(default_factory=_next_id)
    cancel: threading.Event = field(default_factory=threading.Event)

    def run(self, send: Send) -> str:
        """Download or import the model."""
        if self.action == "download":
            entry = catalog.get(self.model_id)
            installer.install(entry.id, progress=download_progress(
                self.cancel, lambda done, total: send(Download(done, total))))
            return f"{entry.title} is installed."
        if self.action == "import":
            assert self.path is not None
            entry = installer.import_checkpoint(self.path)
            self.model_id = entry.id
            return f"{self.path.name} was imported as {entry.id} ({entry.title})."
        raise ValueError(f"unknown catalogue action {self.action!r}")


@dataclass(frozen=True)
class BatchRow:
    """A report row as plain values, safe to hand to the window's thread; ``pixels`` is the
    input's size (0 when not known), for the row's time estimate."""

    input: str
    status: str
    output: str | None
    reason: str | None
    pixels: int = 0
    seconds: float | None = None

    @classmethod
    def of(cls, row: Any) -> BatchRow:
        """A copy of a :class:`sr_core.batch.FileResult`."""
        w, h = getattr(row, "width", None), getattr(row, "height", None)
        return cls(row.input, row.status, row.output, row.reason,
                   int(w * h) if w and h else 0, getattr(row, "seconds", None))


@dataclass(frozen=True)
class BatchPlanned:
    """The batch's plan: a summary sentence and every row, sent before the first file."""

    summary: str
    rows: list[BatchRow]


@dataclass(frozen=True)
class BatchStep:
    """Batch progress: files and the current file's tiles (``eta`` -1: not measured yet);
    ``finished`` is the row of a file that just ended."""

    files_done: int
    files_total: int
    current: str
    tiles_done: int
    tiles_total: int
    eta: float
    finished: BatchRow | None = None


@dataclass(frozen=True)
class BatchOutcome:
    """How a batch ended: ``state`` ("finished", "cancelled", ...), totals, report path."""

    state: str
    totals: dict[str, int]
    report: str


@dataclass
class BatchRequest:
    """Convert the images of ``in_dir`` into ``out_dir`` with ``model`` (sr_core.batch)."""

    in_dir: Path
    out_dir: Path
    options: Any               # sr_core.batch.BatchOptions
    model: str
    device: str = "auto"
    clean_up: float | None = None
    id: int = field(default_factory=_next_id)
    cancel: threading.Event = field(default_factory=threading.Event)

    def run(self, send: Send) -> BatchOutcome:
        """Plan and run the batch; a cancel ends it with the state "cancelled"."""
        from sr_core import Upscaler
        from sr_core.batch import describe_plan, plan_batch, run_batch

        model = prepare_model(self.model, self.cancel, lambda t: send(Status(t)),
                              lambda done, total: send(Download(done, total)), self.clean_up)
        up = Upscaler(model, device=self.device, on_message=lambda t: send(Status(t)))
        send(Status("Looking at the files..."))
        plan = plan_batch(self.in_dir, self.out_dir, self.options, model=up)
        pixels = {j.result.input: j.pixels for j in plan.jobs}
        send(BatchPlanned(describe_plan(plan),
                          [_with_pixels(BatchRow.of(r), pixels) for r in plan.rows]))

        def progress(p: Any) -> None:
            done = BatchRow.of(p.finished) if p.finished is not None else None
            send(BatchStep(p.files_done, p.files_total, p.current or "", p.tiles_done,
                           p.tiles_total, -1.0 if p.eta is None else float(p.eta), done))

        report = run_batch(plan, up, progress=progress, cancel=self.cancel)
        return BatchOutcome(report.state, report.totals(), str(report.path))


def _with_pixels(row: BatchRow, pixels: dict[str, int]) -> BatchRow:
    n = pixels.get(row.input, row.pixels)
    return row if n == row.pixels else BatchRow(row.input, row.status, row.output, row.reason,
                                                n, row.seconds)


# --- naming and model preparation (the rules live in sr_core.naming and sr_core.loader) ----
def output_name(stem: str, job: UpscaleJob, model: Any, out_width: int, in_width: int,
                ext: str) -> str:
    """The result's file name, as ``finescale upscale`` names it:
    :func:`sr_core.naming.upscaled_name` (e.g. ``beach_x4.jpg``; ``x2.5`` for a chosen
    factor), with ``ext`` (no dot) the extension of the format written."""
    from sr_core.batch import ModelLabel
    from sr_core.naming import output_suffix, upscaled_name

    path, photo = job.picture.path, job.picture.photo
    suffix = output_suffix(path.suffix if path else "", formats.suffix_format(f".{ext}"),
                           job.out_format)
    return upscaled_name(stem, suffix, ModelLabel.of(model).scale, in_width=in_width,
                         in_height=photo.height, scale=job.scale, width=job.width,
                         height=job.height)


def write_free(write_image: Any, photo: Any, folder: Path, name: str, fmt: str,
               quality: int) -> Path:
    """Write ``photo`` under the first free variant of ``name`` in ``folder``."""
    from sr_core.naming import free_path

    for _ in range(100):  # another program may take the free name meanwhile
        path = free_path(folder / name)
        try:
            return write_image(photo, path, format=fmt, quality=quality, overwrite=False)
        except OutputExistsError:
            continue
    raise OutputExistsError(f"Could not find a free file name for {name} in {folder}.")


def unexpected(error: BaseException) -> str:
    """One sentence for a bug (not a user error); the traceback goes to the console."""
    traceback.print_exception(error, file=sys.stderr)
    first = str(error).splitlines()[0] if str(error) else "no message"
    return (f"Something went wrong inside Finescale ({type(error).__name__}: {first}); "
            "the details were printed on the console.")


def prepare_model(model: str, cancel: threading.Event, on_status: Callable[[str], None],
                  on_download: Callable[[int, int], None],
                  clean_up: float | None = None) -> Any:
    """Load ``model`` (a checkpoint path or a catalogue id) through :mod:`sr_core.loader`,
    downloading it first if needed.

    ``on_download(done_bytes, total_bytes or 0)`` is called a few times a second; setting
    ``cancel`` stops the download (the part fetched is kept for next time) with Cancelled.
    A catalogue model with a paper-exact and a photo version is loaded at ``clean_up``
    (both versions are fetched first); None is the model itself, bit for bit. For a model
    without a pair the slider is off and its value does not apply.
    """
    from sr_core.loader import is_catalogue_id, load_model

    if is_catalogue_id(model) and catalog.clean_up_pair(model) is None:
        clean_up = None
    return load_model(model, clean_up=clean_up, cancel=cancel, on_status=on_status,
                      progress=download_progress(cancel, on_download))


def download_progress(cancel: threading.Event,
                      report: Callable[[int, int], None]) -> Callable[[int, int | None], None]:
    """A download callback that reports a few times a second and stops on ``cancel``."""
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        if cancel.is_set():
            raise Cancelled("Download cancelled; it resumes where it stopped next time.")
        now = time.monotonic()
        if now - last[0] >= _DOWNLOAD_TICK or (total and done >= total):
            last[0] = now
            report(done, total or 0)

    return progress


def _same_format(photo: Any) -> str:
    fmt = getattr(photo, "format", None)
    return fmt if fmt in EXTENSIONS else "PNG"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower() or "picture"
