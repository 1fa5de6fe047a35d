"""Crash safety: the output folder's lock, the atomic report writer, and the removal of
temporary files an interrupted write left behind."""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

from .. import atomic
from ..errors import FinescaleError, WriteError
from .report import BatchReport, _now, report_bytes

LOCK_NAME = ".finescale-batch.lock"
# The report is rewritten at most this often, or less when writing it gets slow (huge batches).
_REPORT_MIN_INTERVAL = 0.2


def remove_stale_temporaries(out_dir: str | os.PathLike[str]) -> int:
    """Delete the temporary files an interrupted write left under ``out_dir``; count them.

    Only names of our own pattern (``.<name>.<8 hex digits>.part``) are touched. Call it
    while holding the batch lock: a running write's temporary file has the same pattern.
    """
    removed = 0
    for folder, dirs, files in os.walk(out_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if atomic.TEMPORARY_PATTERN.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed


class _BatchLock:
    """An exclusive lock on the output folder for the whole run (two batches, one folder)."""

    def __init__(self, out_dir: Path) -> None:
        from filelock import FileLock

        self.path = out_dir / LOCK_NAME
        self.lock = FileLock(str(self.path), timeout=0)

    def __enter__(self) -> _BatchLock:
        from filelock import Timeout

        try:
            self.lock.acquire()
        except Timeout:
            raise FinescaleError(f"Another Finescale batch is writing into {self.path.parent}; "
                                 "wait for it to finish.") from None
        except OSError as e:
            raise WriteError(f"Cannot write into {self.path.parent}: "
                             f"{(e.strerror or str(e)).lower()}.") from None
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):  # removed while held, so no one else holds it
            self.path.unlink()
        self.lock.release()


class _ReportWriter:
    """Writes the report atomically, at most every few tenths of a second unless forced."""

    def __init__(self, report: BatchReport) -> None:
        self.report = report
        self.last = -math.inf
        self.cost = 0.0

    def write(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < max(_REPORT_MIN_INTERVAL, 20 * self.cost):
            return
        self.report.updated = _now()
        data = report_bytes(self.report.to_dict())
        path = self.report.path
        try:
            atomic.write_bytes(path, data)
        except OSError as e:
            raise WriteError(f"Cannot write the report {path}: "
                             f"{(e.strerror or str(e)).lower()}.") from None
        self.last = time.monotonic()
        self.cost = self.last - now


