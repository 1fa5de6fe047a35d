"""The upscaling worker: a QObject living in its own QThread, talking to sr_core.

The window never runs engine code itself. It hands the worker requests (open a picture,
upscale it) with :meth:`UpscaleWorker.submit`; the worker runs them one after the other in
its thread and answers with signals, which Qt delivers in the window's thread. A request's
``cancel`` event is set from the window and checked by the engine between tiles (and by the
download between chunks), so Cancel takes effect within one tile and nothing is written.
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

from PySide6.QtCore import QObject, QThread, Signal, Slot

from sr_core import catalog, formats, installer
from sr_core.errors import Cancelled, FinescaleError, OutputExistsError

from .display import DisplayImage
from .session import PreviewKey

_ids = itertools.count(1)

#: File extension written for each output format.
#: Format -> extension of the files the window writes (HEIC and AVIF where this install can).
EXTENSIONS = {f: formats.extension(f)[1:] for f in formats.write_formats()}
#: Seconds between two download-progress signals (the window need not hear every chunk).
_DOWNLOAD_TICK = 0.05


@dataclass
class Picture:
    """A picture ready to show and upscale."""

    photo: Any                 # sr_core.imageio.Photo
    display: DisplayImage
    name: str                  # file name, or e.g. "Pasted picture"
    path: Path | None = None   # None for a picture pasted from the clipboard


@dataclass
class LoadRequest:
    """Open a file (``path``) or prepare a pasted picture (``photo`` + ``name``)."""

    path: Path | None = None
    photo: Any = None
    name: str = ""
    result: Path | None = None  # a finished result of ``path`` to show beside it (batch row)
    id: int = field(default_factory=lambda: next(_ids))
    cancel: threading.Event = field(default_factory=threading.Event)


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
    id: int = field(default_factory=lambda: next(_ids))
    cancel: threading.Event = field(default_factory=threading.Event)


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
    id: int = field(default_factory=lambda: next(_ids))
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> PreviewKey:
        """The choices this preview shows (a change of any of them re-runs it)."""
        return PreviewKey(self.model, self.clean_up, self.device)


@dataclass
class PreviewResult:
    """A finished preview: the region at the model's scale, ready to show."""

    job: PreviewJob
    region: tuple[int, int, int, int]  # x, y, width, height in input pixels (clipped)
    scale: int
    display: DisplayImage
    seconds: float
    model_name: str


@dataclass
class UpscaleResult:
    """A finished upscale: where it was written and what to show."""

    job: UpscaleJob | None  # None: a result written earlier (a batch's), opened to compare
    path: Path
    photo: Any
    display: DisplayImage
    seconds: float
    model_name: str


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


def _free_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name`` with ``_2``, ``_3``... when that exists."""
    from sr_core.naming import free_path

    return free_path(folder / name)


def unexpected(error: BaseException) -> str:
    """One sentence for a bug (not a user error); the traceback goes to the console."""
    traceback.print_exception(error, file=sys.stderr)
    first = str(error).splitlines()[0] if str(error) else "no message"
    return (f"Something went wrong inside Finescale ({type(error).__name__}: {first}); "
            "the details were printed on the console.")


def prepare_model(model: str, cancel: threading.Event, on_status: Callable[[str], None],
                  on_download: Callable[[int, int], None],
                  clean_up: float | None = None) -> Any:
    """Load ``model`` (a checkpoint path or a catalogue id), downloading it first if needed.

    ``on_download(done_bytes, total_bytes or 0)`` is called a few times a second; setting
    ``cancel`` stops the download (the part fetched is kept for next time) with Cancelled.
    A catalogue model with a paper-exact and a photo version is loaded at ``clean_up``
    (both versions are fetched first); None is the model's own default.
    """
    from sr_core.cleanup import default_clean_up
    from sr_core.loader import is_catalogue_id, load_model

    if is_catalogue_id(model) and catalog.clean_up_pair(model) is None:
        clean_up = None  # the slider is off for this model; its value does not apply
    elif clean_up is None:
        clean_up = default_clean_up(model)
    return load_model(model, clean_up=clean_up, cancel=cancel, on_status=on_status,
                      progress=_download_progress(cancel, on_download))


def _download_progress(cancel: threading.Event,
                       report: Callable[[int, int], None]) -> Callable[[int, int | None], None]:
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        if cancel.is_set():
            raise Cancelled("Download cancelled; it resumes where it stopped next time.")
        now = time.monotonic()
        if now - last[0] >= _DOWNLOAD_TICK or (total and done >= total):
            last[0] = now
            report(done, total or 0)

    return progress


class UpscaleWorker(QObject):
    """Runs :class:`LoadRequest` and :class:`UpscaleJob` requests in its thread.

    Signals (the first argument is always the request id):
        loaded(id, Picture); paired(id, Picture, result Picture) -- a request with a
        ``result``; status(id, text) -- what is happening, one sentence;
        download(id, done_bytes, total_bytes) -- total 0 when unknown;
        progress(id, done_tiles, total_tiles, eta_seconds);
        fraction(id, fraction_done, eta_seconds or -1) -- as the network's layers finish;
        tile(id, y0, x0, rgb_uint8) -- a finished tile at the input's resolution;
        finished(id, UpscaleResult); previewed(id, PreviewResult); failed(id, sentence);
        cancelled(id).
    """

    loaded = Signal(int, object)
    paired = Signal(int, object, object)
    status = Signal(int, str)
    download = Signal(int, object, object)
    progress = Signal(int, int, int, float)
    fraction = Signal(int, float, float)
    tile = Signal(int, int, int, object)
    finished = Signal(int, object)
    previewed = Signal(int, object)
    failed = Signal(int, str)
    cancelled = Signal(int)
    _request = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self._upscaler: Any = None
        self._upscaler_key: tuple[str, str, str] | None = None
        self._request.connect(self._handle)

    def submit(self, request: LoadRequest | UpscaleJob | PreviewJob | None) -> None:
        """Queue a request; it runs in the worker's thread after the ones before it.

        ``None`` only imports the engine (torch), so that the first upscale starts at once.
        """
        self._request.emit(request)

    @Slot(object)
    def _handle(self, request: LoadRequest | UpscaleJob | PreviewJob | None) -> None:
        if request is None:  # warm-up: pay for importing torch before the first upscale
            import sr_core.engine  # noqa: F401

            return
        try:
            if request.cancel.is_set():
                raise Cancelled()
            if isinstance(request, LoadRequest):
                self._load(request)
            elif isinstance(request, PreviewJob):
                self._preview(request)
            else:
                self._upscale(request)
        except Cancelled:
            self.cancelled.emit(request.id)
        except FinescaleError as e:
            self.failed.emit(request.id, str(e))
        except MemoryError:
            self.failed.emit(request.id, "There is not enough memory for this picture; close "
                                         "other programs or choose a smaller output size.")
        except Exception as e:  # a bug: keep the window alive, leave the details on stderr
            self.failed.emit(request.id, unexpected(e))

    # --- opening ----------------------------------------------------------------------------
    def _load(self, req: LoadRequest) -> None:
        from sr_core.imageio import read_image

        if req.path is not None:
            photo = read_image(req.path)
            name, path = req.path.name, req.path
        else:
            photo, name, path = req.photo, req.name or "Pasted picture", None
        display = DisplayImage.from_photo(photo)
        picture = Picture(photo, display, name, path)
        if req.result is None:
            self.loaded.emit(req.id, picture)
            return
        out = read_image(req.result)
        self.paired.emit(req.id, picture, Picture(out, DisplayImage.from_photo(out),
                                                  req.result.name, req.result))

    # --- upscaling --------------------------------------------------------------------------
    def _model(self, job: UpscaleJob | PreviewJob) -> Any:
        """The Upscaler for the job's model and device, reused while they stay the same."""
        key = (job.model, job.device, str(job.tile), job.clean_up)
        if self._upscaler is not None and self._upscaler_key == key:
            return self._upscaler
        self._upscaler = None  # free the previous model before loading another
        from sr_core import Upscaler

        model = prepare_model(job.model, job.cancel,
                              lambda text: self.status.emit(job.id, text),
                              lambda done, total: self.download.emit(job.id, done, total),
                              job.clean_up)
        self._upscaler = Upscaler(model, device=job.device, tile=job.tile,
                                  on_message=lambda text: self.status.emit(job.id, text))
        self._upscaler_key = key
        return self._upscaler

    def _upscale(self, job: UpscaleJob) -> None:
        from sr_core.imageio import write_image

        started = time.perf_counter()
        up = self._model(job)
        photo = job.picture.photo
        self.status.emit(job.id, f"Upscaling with {up.model.name} in {str(up.dtype)[6:]}...")

        def progress(done: int, total: int, eta: float) -> None:
            self.progress.emit(job.id, done, total, float(eta))

        def on_tile(y0: int, x0: int, rgb: Any) -> None:
            self.tile.emit(job.id, y0, x0, rgb)

        def detail(fraction: float, eta: float) -> None:
            self.fraction.emit(job.id, fraction, eta)

        out = up.upscale(photo, progress=progress, cancel=job.cancel, on_tile=on_tile,
                         scale=job.scale, width=job.width, height=job.height, detail=detail)
        if job.cancel.is_set():
            raise Cancelled()
        fmt = job.out_format or _same_format(photo)
        stem = job.picture.path.stem if job.picture.path else _slug(job.picture.name)
        name = output_name(stem, job, up, out.width, photo.width, EXTENSIONS[fmt])
        self.status.emit(job.id, "Saving...")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = self._write(write_image, out, job.out_dir, name, fmt, job.quality)
        for w in caught:
            self.status.emit(job.id, str(w.message))
        display = DisplayImage.from_photo(out)
        self.finished.emit(job.id, UpscaleResult(job, path, out, display,
                                                 time.perf_counter() - started, up.model.name))

    def _preview(self, job: PreviewJob) -> None:
        started = time.perf_counter()
        up = self._model(job)
        self.status.emit(job.id, f"Previewing with {up.model.name}...")
        part = up.upscale_region(job.picture.photo, job.region, cancel=job.cancel,
                                 detail=lambda f, eta: self.fraction.emit(job.id, f, eta))
        if job.cancel.is_set():
            raise Cancelled()
        rgb = part.pixels[..., :3]
        alpha = part.pixels[..., 3] if part.pixels.shape[2] == 4 else None
        display = DisplayImage(rgb, alpha)
        region = (part.x, part.y, part.width, part.height)
        self.previewed.emit(job.id, PreviewResult(job, region, part.scale, display,
                                                  time.perf_counter() - started,
                                                  up.model.name))

    @staticmethod
    def _write(write_image: Any, photo: Any, folder: Path, name: str, fmt: str,
               quality: int) -> Path:
        for _ in range(100):  # another program may take the free name meanwhile
            path = _free_path(folder, name)
            try:
                return write_image(photo, path, format=fmt, quality=quality, overwrite=False)
            except OutputExistsError:
                continue
        raise OutputExistsError(f"Could not find a free file name for {name} in {folder}.")


def _same_format(photo: Any) -> str:
    fmt = getattr(photo, "format", None)
    return fmt if fmt in EXTENSIONS else "PNG"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower() or "picture"


class WorkerThread:
    """A worker object and the QThread it lives in, started at once.

    :meth:`stop` cancels what runs, ends the thread's event loop and waits for it, so the
    QThread is never destroyed while running.
    """

    def __init__(self, worker: QObject, name: str) -> None:
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self, cancel: list[threading.Event] | None = None) -> None:
        """Set every event in ``cancel``, then end the thread and wait for it to finish."""
        for event in cancel or ():
            event.set()
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait()


@dataclass
class CatalogRequest:
    """Download (``action="download"``) a catalogue model, or import (``"import"``) a file."""

    action: str
    model_id: str = ""
    path: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


class CatalogWorker(QObject):
    """Downloads and imports models in its own thread (the model manager's worker).

    Signals carry the request: progress(req, done_bytes, total_bytes or 0),
    done(req, sentence), failed(req, sentence), cancelled(req).
    """

    progress = Signal(object, object, object)
    done = Signal(object, str)
    failed = Signal(object, str)
    cancelled = Signal(object)
    _request = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self._request.connect(self._handle)

    def submit(self, request: CatalogRequest) -> None:
        """Queue a request for the worker's thread."""
        self._request.emit(request)

    @Slot(object)
    def _handle(self, req: CatalogRequest) -> None:
        try:
            if req.cancel.is_set():
                raise Cancelled()
            if req.action == "download":
                self._download(req)
            elif req.action == "import":
                entry = installer.import_checkpoint(req.path)
                req.model_id = entry.id
                self.done.emit(req, f"{req.path.name} was imported as {entry.id} "
                                    f"({entry.title}).")
            else:
                raise ValueError(f"unknown catalogue action {req.action!r}")
        except Cancelled:
            self.cancelled.emit(req)
        except FinescaleError as e:
            self.failed.emit(req, str(e))
        except Exception as e:  # a bug: keep the dialog alive, leave the details on stderr
            self.failed.emit(req, unexpected(e))

    def _download(self, req: CatalogRequest) -> None:
        entry = catalog.get(req.model_id)
        installer.install(entry.id, progress=_download_progress(
            req.cancel, lambda done, total: self.progress.emit(req, done, total)))
        self.done.emit(req, f"{entry.title} is installed.")


@dataclass
class BatchRequest:
    """Convert the images of ``in_dir`` into ``out_dir`` with ``model`` (sr_core.batch)."""

    in_dir: Path
    out_dir: Path
    options: Any               # sr_core.batch.BatchOptions
    model: str
    device: str = "auto"
    clean_up: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class BatchRow:
    """A report row as plain values, safe to hand to the window's thread."""

    input: str
    status: str
    output: str | None
    reason: str | None

    @classmethod
    def of(cls, row: Any) -> BatchRow:
        """A copy of a :class:`sr_core.batch.FileResult`."""
        return cls(row.input, row.status, row.output, row.reason)


class BatchWorker(QObject):
    """Runs folder conversions (:func:`sr_core.batch.run_batch`) in its own thread.

    Signals carry the request first: status(req, text); download(req, done, total);
    planned(req, summary sentence, [BatchRow]); progress(req, files_done, files_total,
    current input or "", tiles_done, tiles_total, eta seconds or -1);
    file_done(req, BatchRow); finished(req, state, totals dict, report path);
    failed(req, sentence).
    """

    status = Signal(object, str)
    download = Signal(object, object, object)
    planned = Signal(object, str, object)
    progress = Signal(object, int, int, str, int, int, float)
    file_done = Signal(object, object)
    finished = Signal(object, str, object, str)
    failed = Signal(object, str)
    _request = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self._request.connect(self._handle)

    def submit(self, request: BatchRequest) -> None:
        """Queue a batch for the worker's thread."""
        self._request.emit(request)

    @Slot(object)
    def _handle(self, req: BatchRequest) -> None:
        try:
            self._run(req)
        except Cancelled:
            self.finished.emit(req, "cancelled", {}, "")
        except FinescaleError as e:
            self.failed.emit(req, str(e))
        except Exception as e:  # a bug: keep the window alive
            self.failed.emit(req, unexpected(e))

    def _run(self, req: BatchRequest) -> None:
        from sr_core import Upscaler
        from sr_core.batch import describe_plan, plan_batch, run_batch

        if req.cancel.is_set():
            raise Cancelled()
        model = prepare_model(req.model, req.cancel, lambda t: self.status.emit(req, t),
                              lambda done, total: self.download.emit(req, done, total),
                              req.clean_up)
        up = Upscaler(model, device=req.device, on_message=lambda t: self.status.emit(req, t))
        self.status.emit(req, "Looking at the files...")
        plan = plan_batch(req.in_dir, req.out_dir, req.options, model=up)
        self.planned.emit(req, describe_plan(plan), [BatchRow.of(r) for r in plan.rows])

        def progress(p: Any) -> None:
            self.progress.emit(req, p.files_done, p.files_total, p.current or "", p.tiles_done,
                               p.tiles_total, -1.0 if p.eta is None else float(p.eta))
            if p.finished is not None:
                self.file_done.emit(req, BatchRow.of(p.finished))

        report = run_batch(plan, up, progress=progress, cancel=req.cancel)
        self.finished.emit(req, report.state, report.totals(), str(report.path))
