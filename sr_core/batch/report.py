"""The plan and the report: one row per input file, what the batch will do and did."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from .. import __version__
from .options import BatchOptions, ModelLabel

REPORT_NAME = "finescale-report.json"


class FileStatus(StrEnum):
    """What happened (or will happen) to one input file; the report's ``status`` words."""

    PENDING = "pending"  # to do, or in flight when the run stopped
    DONE = "done"
    SKIPPED = "skipped"  # decided without upscaling: not an image, the output exists...
    FAILED = "failed"


#: The status words a report may hold.
STATUSES: tuple[str, ...] = tuple(s.value for s in FileStatus)


class ReportState(StrEnum):
    """The report's ``state``: how far the run got."""

    RUNNING = "running"          # still running, or killed
    FINISHED = "finished"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # an error or Ctrl-C stopped it


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class FileResult:
    """One row of the report: what happened (or will happen) to one input file.

    ``input`` is relative to the input folder and ``output`` to the output folder, both with
    ``/`` separators. ``status`` is a :class:`FileStatus`.
    """

    input: str
    status: FileStatus
    output: str | None = None
    reason: str | None = None
    seconds: float | None = None
    finished: str | None = None
    width: int | None = None
    height: int | None = None
    out_width: int | None = None
    out_height: int | None = None
    notes: list[str] = field(default_factory=list)
    # How the input looked when planned, so that a resumed run redoes changed files, and the
    # mtime of the output it replaces (overwrite policy), so that resuming can tell ours.
    input_bytes: int | None = None
    input_mtime_ns: int | None = None
    replaces_mtime_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON row (empty fields left out).

        A name that is not valid UTF-8 stays in ``input``/``output`` as Python's surrogate
        escapes (JSON ``\\udcff``) and is also given exactly as ``name_bytes`` /
        ``output_name_bytes`` (hex of the file system's bytes).
        """
        row = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, [])}
        for key, extra in (("input", "name_bytes"), ("output", "output_name_bytes")):
            raw = _undecodable(row.get(key))
            if raw is not None:
                row[extra] = raw.hex()
        return row

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FileResult:
        """A row read back from a report."""
        names = {f.name for f in dataclasses.fields(cls)}
        row = cls(**{k: v for k, v in d.items() if k in names})
        if row.status in STATUSES:  # another word stays as written: the report is input
            row.status = FileStatus(row.status)
        return row


def _undecodable(name: str | None) -> bytes | None:
    """The file system's bytes of ``name`` when they are not valid UTF-8, else None."""
    if not name:
        return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return None


def report_bytes(data: Mapping[str, Any]) -> bytes:
    """A report as UTF-8 JSON; undecodable names become ``\\udcXX`` escapes, never an error."""
    return json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8", "backslashreplace")


@dataclass
class Job:
    """One image to upscale: where from, where to, and how."""

    source: Path
    output: Path
    format: str
    pixels: int
    result: FileResult


class _RowsByStatus:
    """Rows of the report grouped by status (shared by the plan and the report)."""

    rows: list[FileResult]

    def with_status(self, status: FileStatus) -> list[FileResult]:
        """Rows with this status (in a plan, the jobs still to run are ``pending``)."""
        return [r for r in self.rows if r.status == status]

    @property
    def skipped(self) -> list[FileResult]:
        return self.with_status(FileStatus.SKIPPED)

    @property
    def failed(self) -> list[FileResult]:
        return self.with_status(FileStatus.FAILED)


@dataclass
class BatchPlan(_RowsByStatus):
    """Every file found and its fate: ``jobs`` to run, the rest already decided."""

    in_dir: Path
    out_dir: Path
    options: BatchOptions
    model: ModelLabel
    rows: list[FileResult]
    jobs: list[Job]
    hidden: int = 0
    started: str = ""
    resumed: bool = False
    previous_resumes: int = 0

    @property
    def report_path(self) -> Path:
        """Where the report is written."""
        return self.out_dir / REPORT_NAME

    @property
    def done_before(self) -> list[FileResult]:
        """Files an interrupted earlier run of this batch already finished."""
        return self.with_status(FileStatus.DONE)

    def settings(self) -> dict[str, Any]:
        """What decides the outputs; a resumed run must have the same."""
        o = self.options
        return {"model": self.model.name, "model_scale": self.model.scale, "scale": o.scale,
                "width": o.width, "height": o.height, "template": o.template,
                "format": o.format.lower(), "quality": o.quality}


@dataclass
class BatchReport(_RowsByStatus):
    """The state of a batch as written to ``OUT_DIR/finescale-report.json``.

    ``state`` is a :class:`ReportState`; a killed run leaves ``running``.
    """

    path: Path
    in_dir: Path
    out_dir: Path
    settings: dict[str, Any]
    rows: list[FileResult]
    state: ReportState = ReportState.RUNNING
    started: str = ""
    updated: str = ""
    finished: str | None = None
    hidden: int = 0
    resumed: int = 0
    removed_temporaries: int = 0

    @property
    def done(self) -> list[FileResult]:
        return self.with_status(FileStatus.DONE)

    @property
    def pending(self) -> list[FileResult]:
        return self.with_status(FileStatus.PENDING)

    def totals(self) -> dict[str, int]:
        """How many files are in each status."""
        counts = {s.value: 0 for s in (FileStatus.DONE, FileStatus.SKIPPED, FileStatus.FAILED,
                                       FileStatus.PENDING)}
        for r in self.rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {"finescale": __version__, "state": self.state, "started": self.started,
                "updated": self.updated, "finished": self.finished,
                "input_dir": str(self.in_dir), "output_dir": str(self.out_dir),
                "settings": self.settings, "totals": self.totals(), "hidden_files": self.hidden,
                "resumed": self.resumed, "removed_temporaries": self.removed_temporaries,
                "files": [r.to_dict() for r in self.rows]}


def load_report(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A report's data, or None when the file is missing or not a report."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    return data

