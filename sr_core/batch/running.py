"""Running a plan: the conversions (one at a time, the next file decoded meanwhile), progress
with an ETA, cancel, and everything around them (:func:`run_plan`), which the Ray runner of
:mod:`sr_core.cluster` shares."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import Cancelled, FinescaleError, OutputExistsError, WriteError
from ..imageio import Photo, read_image, write_image
from ..naming import free_path
from .discovery import _key, _rel
from .options import ExistingPolicy, ModelLabel
from .report import BatchPlan, BatchReport, FileResult, FileStatus, Job, ReportState, _now
from .safety import _BatchLock, _ReportWriter, remove_stale_temporaries


class CancelToken(Protocol):
    """Anything with ``is_set()``; :class:`threading.Event` is one."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class BatchProgress:
    """One progress event: sent when a file starts, after every tile, and when a file ends.

    ``files_done`` counts this run's finished files (done or failed) of ``files_total``;
    ``current`` is the input being upscaled (relative path) and ``tiles_done`` /
    ``tiles_total`` its tiles; ``eta`` is seconds left from the pixels still to process at
    the measured pixels per second (None until measured); ``finished`` is the row of a file
    that just ended.
    """

    files_done: int
    files_total: int
    current: str | None
    tiles_done: int = 0
    tiles_total: int = 0
    eta: float | None = None
    finished: FileResult | None = None


class EtaEstimator:
    """Seconds left from input pixels: remaining pixels / measured pixels per second.

    A big photo left counts for more than a small one, so the estimate holds for folders
    of mixed sizes. The clock starts at the first :meth:`seconds_left` call with work done
    or at :meth:`start`.
    """

    def __init__(self, total_pixels: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(0, int(total_pixels))
        self.clock = clock
        self.t0: float | None = None

    def start(self) -> None:
        """Start measuring (when the first file starts)."""
        if self.t0 is None:
            self.t0 = self.clock()

    def drop(self, pixels: int) -> None:
        """Forget a file that will not be processed (it failed)."""
        self.total = max(0, self.total - int(pixels))

    def seconds_left(self, done_pixels: float) -> float | None:
        """The estimate after ``done_pixels`` of the total, or None before any measurement."""
        if self.t0 is None or done_pixels <= 0:
            return None
        elapsed = self.clock() - self.t0
        if elapsed <= 0:
            return None
        return max(0.0, (self.total - done_pixels) * elapsed / done_pixels)


def _read(job: Job) -> Photo:
    return read_image(job.source)


def run_batch(plan: BatchPlan, upscaler: Any, *,
              progress: Callable[[BatchProgress], None] | None = None,
              cancel: CancelToken | None = None) -> BatchReport:
    """Carry out ``plan`` with ``upscaler`` (an :class:`~sr_core.engine.Upscaler`).

    One bad file becomes a failed row and the batch goes on. The next image is decoded on a
    background thread while the current one is upscaled. ``cancel`` is checked between
    tiles; a cancelled file writes nothing and stays pending for the next run. The report
    is written at the start, after files finish and at the end, and returned. Raises
    :class:`FinescaleError` only for the folder as a whole (not writable, locked).
    """
    if ModelLabel.of(upscaler) != plan.model:
        raise ValueError(f"the plan was made for {plan.model}, not {ModelLabel.of(upscaler)}")
    return run_plan(plan, lambda writer: _run_jobs(plan, upscaler, writer, progress, cancel))


def run_plan(plan: BatchPlan, run_jobs: Callable[[_ReportWriter], str]) -> BatchReport:
    """Everything around the conversions: the folder, its lock, the report, the end state.

    ``run_jobs(writer)`` converts ``plan.jobs`` (updating their rows, calling
    ``writer.write()`` after each file) and returns ``"finished"`` or ``"cancelled"``;
    :func:`run_batch` runs them here, :mod:`sr_core.cluster` on a Ray cluster.
    """
    try:
        plan.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"Cannot create the folder {plan.out_dir}: "
                         f"{(e.strerror or str(e)).lower()}.") from None
    with _BatchLock(plan.out_dir):
        report = BatchReport(plan.report_path, plan.in_dir, plan.out_dir, plan.settings(),
                             plan.rows, started=plan.started, hidden=plan.hidden)
        report.resumed = plan.previous_resumes + 1 if plan.resumed else 0
        report.removed_temporaries = remove_stale_temporaries(plan.out_dir)
        writer = _ReportWriter(report)
        writer.write(force=True)
        try:
            report.state = ReportState(run_jobs(writer))
        except BaseException:
            report.state = ReportState.INTERRUPTED
            raise
        finally:
            if report.state != ReportState.RUNNING:
                report.finished = _now() if report.state == ReportState.FINISHED else None
            writer.write(force=True)
    return report


class _Runner:
    """Progress bookkeeping of one run."""

    def __init__(self, plan: BatchPlan, callback: Callable[[BatchProgress], None] | None) -> None:
        self.total = len(plan.jobs)
        self.callback = callback
        self.eta = EtaEstimator(sum(j.pixels for j in plan.jobs))
        self.files_done = 0
        self.pixels_done = 0.0

    def send(self, current: str | None, tiles: tuple[int, int] = (0, 0), pixels: float = 0.0,
             finished: FileResult | None = None) -> None:
        if self.callback is None:
            return
        eta = self.eta.seconds_left(self.pixels_done + pixels)
        self.callback(BatchProgress(self.files_done, self.total, current, tiles[0], tiles[1],
                                    eta, finished))


def _run_jobs(plan: BatchPlan, upscaler: Any, writer: _ReportWriter,
              progress: Callable[[BatchProgress], None] | None,
              cancel: CancelToken | None) -> str:
    run = _Runner(plan, progress)
    jobs = plan.jobs
    claimed = {_key(plan.out_dir / r.output) for r in plan.rows
               if r.output and r.status in (FileStatus.DONE, FileStatus.PENDING)}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="finescale-prefetch") as pool:
        nxt: Future[Photo] | None = pool.submit(_read, jobs[0]) if jobs else None
        try:
            for i, job in enumerate(jobs):
                if cancel is not None and cancel.is_set():
                    return ReportState.CANCELLED
                current, nxt = nxt, None
                assert current is not None
                run.eta.start()
                run.send(job.result.input)
                try:
                    outcome = _one(plan, job, upscaler, current, run, cancel, claimed,
                                   prefetch=lambda i=i: pool.submit(_read, jobs[i + 1])
                                   if i + 1 < len(jobs) else None)
                except Cancelled:
                    return ReportState.CANCELLED
                nxt = outcome
                run.files_done += 1
                if job.result.status == FileStatus.DONE:
                    run.pixels_done += job.pixels
                else:
                    run.eta.drop(job.pixels)
                writer.write()
                run.send(None, finished=job.result)
        finally:
            if nxt is not None:
                nxt.cancel()
    return ReportState.FINISHED


def _one(plan: BatchPlan, job: Job, upscaler: Any, photo_future: Future[Photo], run: _Runner,
         cancel: CancelToken | None, claimed: set[str],
         prefetch: Callable[[], Future[Photo] | None]) -> Future[Photo] | None:
    """Upscale and write one job, recording the outcome in its row; returns the prefetch."""
    row, o = job.result, plan.options
    t0 = time.monotonic()
    nxt: Future[Photo] | None = None
    try:
        try:
            photo = photo_future.result()
        finally:
            nxt = prefetch()  # the next file decodes while this one is upscaled

        def on_tile(done: int, total: int, _eta: float = 0.0) -> None:
            run.send(row.input, (done, total), job.pixels * done / max(total, 1))

        out = upscaler.upscale(photo, progress=on_tile, cancel=cancel, scale=o.scale,
                               width=o.width, height=o.height)
        del photo
        _write(plan, job, out, claimed)
    except Cancelled:
        if nxt is not None:
            nxt.cancel()
        raise
    except FinescaleError as e:
        row.status, row.reason, row.output = FileStatus.FAILED, str(e), None
    except Exception as e:  # a bug or a library's surprise must not stop the other files
        row.status, row.output = FileStatus.FAILED, None
        row.reason = (f"Could not upscale {job.source}: unexpected {type(e).__name__} "
                      f"({str(e).splitlines()[0] if str(e) else 'no message'}).")
    row.seconds = round(time.monotonic() - t0, 3)
    row.finished = _now()
    return nxt


def _write(plan: BatchPlan, job: Job, out: Photo, claimed: set[str]) -> None:
    row, o = job.result, plan.options
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if not place_output(plan, job, claimed, lambda path, overwrite: write_image(
                out, path, format=job.format, quality=o.quality, overwrite=overwrite)):
            return
    row.notes = [str(w.message) for w in caught]
    row.status, row.reason = FileStatus.DONE, None
    row.out_height, row.out_width = out.height, out.width


def place_output(plan: BatchPlan, job: Job, claimed: set[str],
                 write: Callable[[Path, bool], object]) -> bool:
    """Write ``job``'s output by the existing-output policy; False if the row became skipped.

    ``write(path, overwrite)`` writes atomically and raises :class:`OutputExistsError` when
    ``overwrite`` is False and ``path`` exists; with the "number" policy the next free
    numbered name is tried (``job.output`` and the row follow it).
    """
    row, o = job.result, plan.options
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"Cannot create the folder {job.output.parent}: "
                         f"{(e.strerror or str(e)).lower()}.") from None
    while True:
        try:
            write(job.output, o.existing == ExistingPolicy.OVERWRITE)
            break
        except OutputExistsError:
            if o.existing != ExistingPolicy.NUMBER:  # someone else wrote it since planning
                row.status = FileStatus.SKIPPED
                row.reason = f"Skipped {job.source}: the output {job.output} appeared " \
                             "while the batch ran."
                return False
            claimed.add(_key(job.output))
            job.output = free_path(job.output, lambda p: _key(p) in claimed
                                   or os.path.lexists(p))
            row.output = _rel(job.output, plan.out_dir)
    claimed.add(_key(job.output))
    return True

