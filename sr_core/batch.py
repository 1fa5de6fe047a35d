"""Folder conversion that never loses work.

``plan_batch`` looks at a folder (optionally recursively) and decides, file by file, what
will happen: upscale it to which output name, or skip it and why. ``run_batch`` carries the
plan out with a loaded :class:`~sr_core.engine.Upscaler`::

    up = Upscaler("hpinet-m-x4")
    plan = plan_batch("photos", "photos-x4", BatchOptions(recursive=True), model=up.model)
    report = run_batch(plan, up, progress=print, cancel=threading.Event())

Discovery: hidden and system files (dot-files, Thumbs.db, .DS_Store, desktop.ini) are
ignored and only counted; files that are not PNG, JPEG, WebP, TIFF or BMP images are listed
as skipped with the reason; sub-folders are mirrored under the output folder; folders are
tracked by their real path, so symbolic-link loops end. When the output folder lies inside
the input folder it is not searched, and when both are the same folder, files that are this
batch's own outputs are recognised and skipped.

Output names come from a template, by default ``{stem}_x{scale}_{model}.{ext}``, with these
fields (see :data:`TEMPLATE_FIELDS`):

``{stem}``      the input file name without its extension (``IMG_0042``)
``{ext}``       the output extension without the dot (``png``; the input's own with format
                "same")
``{in_ext}``    the input's extension without the dot
``{scale}``     the upscale factor (``4``; ``2.5`` for a requested scale of 2.5)
``{model}``     the model's short name (``HPINet-M``, ``SPIN-light``)
``{width}``, ``{height}``        the output size in pixels
``{in_width}``, ``{in_height}``  the input size in pixels
``{folder}``    the name of the folder that holds the input

Python format specifications work (``{width:05d}``); a template without ``{ext}`` gets
``.{ext}`` appended. Existing outputs are skipped (the default), overwritten, or kept with
a numbered new name (``name_2.png``). An output never replaces an input file.

Crash safety: every image is written to a temporary file and renamed into place
(:func:`sr_core.imageio.write_image`), so an output either exists whole or not at all. The
report ``OUT_DIR/finescale-report.json`` (also written atomically) lists every file as done,
skipped, failed or pending, with reasons and times; it is written when the run starts,
after files finish, and at the end. Running the same batch again after a crash, a kill or a
cancel resumes: files already done are not redone, and a pending file whose output exists
was finished just before the interruption. Stale temporary files of our naming pattern are
removed from the output folder at the start (a lock keeps two batches out of one folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import stat
import string
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from . import __version__
from .errors import Cancelled, FinescaleError, OutputExistsError, UnsupportedFormatError, WriteError
from .formats import describe as describe_formats
from .formats import extension, read_suffixes, suffix_format, write_formats
from .imageio import Photo, probe_image, read_image, write_image

DEFAULT_TEMPLATE = "{stem}_x{scale}_{model}.{ext}"
REPORT_NAME = "finescale-report.json"
LOCK_NAME = ".finescale-batch.lock"
POLICIES = ("skip", "overwrite", "number")

#: Template fields and what they hold (the CLI's --help lists the same).
TEMPLATE_FIELDS: dict[str, str] = {
    "stem": "input file name without its extension",
    "ext": "output extension without the dot",
    "in_ext": "input extension without the dot",
    "scale": "upscale factor",
    "model": "model short name, e.g. HPINet-M",
    "width": "output width in pixels",
    "height": "output height in pixels",
    "in_width": "input width in pixels",
    "in_height": "input height in pixels",
    "folder": "name of the input's folder",
}

#: Output format names -> (writer format, extension); "same" keeps each input's format.
OUTPUT_FORMATS: dict[str, tuple[str, str] | None] = {
    "same": None, "png": ("PNG", "png"), "jpeg": ("JPEG", "jpg"), "jpg": ("JPEG", "jpg"),
    "webp": ("WEBP", "webp"), "tiff": ("TIFF", "tif"), "tif": ("TIFF", "tif"),
    "bmp": ("BMP", "bmp"), "avif": ("AVIF", "avif"), "heic": ("HEIF", "heic"),
}
_SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini",
                           "icon\r", "$recycle.bin", "system volume information"})
_WINDOWS_HIDDEN = getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 2) | getattr(
    stat, "FILE_ATTRIBUTE_SYSTEM", 4)
# imageio.write_image's temporary files: ".<final name>.<8 hex digits>.part" beside the output.
_TEMP_RE = re.compile(r"^\..+\.[0-9a-f]{8}\.part$")
_NUMBERED_RE = re.compile(r"^(.*)_(\d+)$")
# The report is rewritten at most this often, or less when writing it gets slow (huge batches).
_REPORT_MIN_INTERVAL = 0.2


# --- options and the model label ------------------------------------------------------------
@dataclass(frozen=True)
class BatchOptions:
    """What a batch does with each file.

    Attributes:
        recursive: also convert the images in sub-folders (mirrored under the output folder).
        template: output name template (fields in the module docstring / TEMPLATE_FIELDS).
        format: ``"same"`` as the input, or ``"png"``, ``"jpeg"``, ``"webp"``, ``"tiff"``,
            ``"bmp"``.
        existing: when the output exists: ``"skip"`` it, ``"overwrite"`` it, or ``"number"``
            (keep both; the new one is named ``..._2.ext``).
        quality: JPEG / WebP quality, 1..100.
        scale, width, height: at most one; the output size (default: the model's scale).
        resume: continue an interrupted batch recorded in the output folder's report.
    """

    recursive: bool = False
    template: str = DEFAULT_TEMPLATE
    format: str = "same"
    existing: str = "skip"
    quality: int = 95
    scale: float | None = None
    width: int | None = None
    height: int | None = None
    resume: bool = True

    def validate(self) -> None:
        """Raise a one-sentence :class:`FinescaleError` for an unusable option."""
        if self.format.lower() not in OUTPUT_FORMATS:
            raise FinescaleError(f"Output format '{self.format}' is not one of "
                                 f"{', '.join(OUTPUT_FORMATS)}.")
        if self.existing not in POLICIES:
            raise FinescaleError(f"Policy for existing outputs '{self.existing}' is not one of "
                                 f"{', '.join(POLICIES)}.")
        if not 1 <= self.quality <= 100:
            raise FinescaleError(f"Quality {self.quality} is outside 1..100.")
        if sum(v is not None for v in (self.scale, self.width, self.height)) > 1:
            raise FinescaleError("Give at most one of scale, width and height.")
        if self.scale is not None and not (self.scale > 0 and math.isfinite(self.scale)):
            raise FinescaleError(f"Scale {self.scale} is not a positive number.")
        for name, v in (("Width", self.width), ("Height", self.height)):
            if v is not None and v < 1:
                raise FinescaleError(f"{name} {v} is not a positive number of pixels.")
        check_template(self.template)


@dataclass(frozen=True)
class ModelLabel:
    """What output names need to know about the model: its short name and scale."""

    name: str
    scale: int

    @classmethod
    def of(cls, model: Any) -> ModelLabel:
        """The label of a ModelLabel, an SRModel (``.name``, ``.scale``) or an Upscaler."""
        if isinstance(model, ModelLabel):
            return model
        model = getattr(model, "model", model)  # an Upscaler holds its SRModel
        scale = int(model.scale)
        # "HPINet-M x4" -> "HPINet-M": the scale has its own field.
        name = re.sub(rf"\s*[x×]{scale}$", "", str(model.name)).strip()
        name = re.sub(r"[^\w.+-]+", "-", name).strip("-.") or "model"
        return cls(name, scale)


def check_template(template: str) -> None:
    """Raise a one-sentence :class:`FinescaleError` if ``template`` cannot name files."""
    sample = {"stem": "photo", "ext": "png", "in_ext": "jpg", "scale": 4, "model": "M",
              "width": 400, "height": 300, "in_width": 100, "in_height": 75,
              "folder": "photos"}
    try:
        for _, name, _, _ in string.Formatter().parse(template):
            if name is not None and name not in TEMPLATE_FIELDS:
                raise FinescaleError(
                    f"The name template '{template}' has an unknown field {{{name}}}; the "
                    f"fields are {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}.")
        _render(template, sample)
    except (ValueError, IndexError, KeyError) as e:
        raise FinescaleError(f"The name template '{template}' is not valid ({e}).") from None


def _render(template: str, fields: Mapping[str, Any]) -> str:
    if "{ext}" not in template.replace("{{", "").replace("}}", ""):
        template += ".{ext}"
    name = template.format_map(dict(fields))
    if not name or name in (".", "..") or any(s in name for s in ("/", "\\", os.sep, "\0")):
        raise FinescaleError(f"The name template '{template}' gives '{name}', which is not a "
                             "file name (no folders in names).")
    if name.startswith("."):
        raise FinescaleError(f"The name template '{template}' gives '{name}', a hidden file "
                             "name.")
    return name


# --- plan, results and the report -----------------------------------------------------------
@dataclass
class FileResult:
    """One row of the report: what happened (or will happen) to one input file.

    ``input`` is relative to the input folder and ``output`` to the output folder, both with
    ``/`` separators. ``status`` is ``pending``, ``done``, ``skipped`` or ``failed``.
    """

    input: str
    status: str
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
        return cls(**{k: v for k, v in d.items() if k in names})


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

    def with_status(self, status: str) -> list[FileResult]:
        """Rows with this status (in a plan, the jobs still to run are ``pending``)."""
        return [r for r in self.rows if r.status == status]

    @property
    def skipped(self) -> list[FileResult]:
        return self.with_status("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self.with_status("failed")


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
        return self.with_status("done")

    def settings(self) -> dict[str, Any]:
        """What decides the outputs; a resumed run must have the same."""
        o = self.options
        return {"model": self.model.name, "model_scale": self.model.scale, "scale": o.scale,
                "width": o.width, "height": o.height, "template": o.template,
                "format": o.format.lower(), "quality": o.quality}


@dataclass
class BatchReport(_RowsByStatus):
    """The state of a batch as written to ``OUT_DIR/finescale-report.json``.

    ``state`` is ``running``, ``finished``, ``cancelled`` or ``interrupted`` (an error or
    Ctrl-C stopped it); a killed run leaves ``running``.
    """

    path: Path
    in_dir: Path
    out_dir: Path
    settings: dict[str, Any]
    rows: list[FileResult]
    state: str = "running"
    started: str = ""
    updated: str = ""
    finished: str | None = None
    hidden: int = 0
    resumed: int = 0
    removed_temporaries: int = 0

    @property
    def done(self) -> list[FileResult]:
        return self.with_status("done")

    @property
    def pending(self) -> list[FileResult]:
        return self.with_status("pending")

    def totals(self) -> dict[str, int]:
        """How many files are in each status."""
        counts = {s: 0 for s in ("done", "skipped", "failed", "pending")}
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


# --- discovery ------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _is_hidden(entry: os.DirEntry[str]) -> bool:
    if entry.name.startswith(".") or entry.name.lower() in _SYSTEM_FILES:
        return True
    if sys.platform == "win32":
        with contextlib.suppress(OSError):
            return bool(getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
                        & _WINDOWS_HIDDEN)
    return False


def _same_place(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


@dataclass
class _Found:
    path: Path
    rel: str


def _not_a_file(entry: os.DirEntry[str], path: Path) -> str:
    """Why a directory entry that is neither a folder nor a regular file was skipped."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"Skipped {path}: it is a link to nothing (broken link)."
    except OSError as e:
        return f"Skipped {path}: {(e.strerror or str(e)).lower()}."
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    elif stat.S_ISFIFO(mode):
        kind = "a named pipe (FIFO)"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    else:
        kind = "not a regular file"
    via = " (through a link)" if entry.is_symlink() else ""
    return f"Skipped {path}: it is {kind}{via}, not an image file."


def _discover(in_dir: Path, out_dir: Path, recursive: bool
              ) -> tuple[list[_Found], list[FileResult], int, list[str]]:
    """Image files, rows for files skipped here, the hidden count, and every relative path
    in the order found (depth first, files before sub-folders, sorted by name)."""
    found: list[_Found] = []
    seen: list[str] = []
    rows: list[FileResult] = []
    hidden = 0
    key = lambda p: os.path.normcase(os.path.realpath(p))  # noqa: E731
    visited_dirs = {key(in_dir)}
    out_key = key(out_dir)
    separate_out = out_key != key(in_dir)
    seen_files: dict[str, str] = {}
    stack: list[tuple[Path, str]] = [(in_dir, "")]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: (e.name.lower(), e.name))
        except OSError as e:
            rows.append(FileResult(rel_folder or ".", "skipped",
                                   reason=f"Cannot open the folder {folder}: "
                                          f"{(e.strerror or str(e)).lower()}."))
            continue
        subfolders: list[tuple[Path, str]] = []
        for entry in entries:
            rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
            path = Path(entry.path)
            if _is_hidden(entry):
                hidden += 1
                continue
            seen.append(rel)
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                is_dir = is_file = False
            if is_dir:
                k = key(path)
                # Each real folder once: a symbolic-link loop ends here.
                if recursive and k not in visited_dirs and not (separate_out and k == out_key):
                    visited_dirs.add(k)
                    subfolders.append((path, rel))
                elif not recursive and suffix_format(path.suffix) is not None:
                    rows.append(FileResult(rel, "skipped", reason=(
                        f"Skipped {path}: it is a folder, not an image file (pass --recursive "
                        "to convert the images inside it).")))
                continue
            if not is_file:
                rows.append(FileResult(rel, "skipped", reason=_not_a_file(entry, path)))
                continue
            if entry.name == REPORT_NAME:
                continue
            suffix = path.suffix.lower()
            if suffix not in read_suffixes():
                what = f"'{path.suffix}' files" if path.suffix else "files without an extension"
                if suffix_format(suffix) == "HEIF":
                    what += " need the pillow-heif package and"
                rows.append(FileResult(rel, "skipped", reason=(
                    f"Skipped {path}: {what} are not images Finescale reads "
                    f"({describe_formats()}).")))
                continue
            k = key(path)
            if k in seen_files:
                rows.append(FileResult(rel, "skipped", reason=(
                    f"Skipped {path}: it is the same file as {seen_files[k]}.")))
                continue
            seen_files[k] = rel
            found.append(_Found(path, rel))
        stack.extend(reversed(subfolders))
    return found, rows, hidden, seen


# --- planning -------------------------------------------------------------------------------
def _out_format(option: str, suffix: str, fmt: str) -> tuple[str, str]:
    chosen = OUTPUT_FORMATS[option.lower()]
    if chosen is not None:
        return chosen
    if fmt not in write_formats():  # read here but not written (no encoder): PNG keeps it all
        fmt = "PNG"
    ext = suffix[1:] if suffix_format(suffix) == fmt else extension(fmt)[1:]
    return fmt, ext


def _scale_text(options: BatchOptions, label: ModelLabel, in_w: int, out_w: int) -> str:
    if options.scale is not None:
        return f"{options.scale:g}"
    if options.width is None and options.height is None:
        return str(label.scale)
    return f"{round(out_w / in_w, 2):g}"


def _key(p: Path) -> str:
    return os.path.normcase(os.path.abspath(p))


def _numbered(path: Path, taken: Callable[[Path], bool]) -> Path:
    n = 2
    while True:
        cand = path.with_name(f"{path.stem}_{n}{path.suffix}")
        if not taken(cand):
            return cand
        n += 1


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


@dataclass
class _Candidate:
    found: _Found
    row: FileResult
    format: str
    target: Path


def check_folders(in_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]
                  ) -> tuple[Path, Path]:
    """Absolute input and output folders; a one-sentence error if they cannot be used."""
    src = Path(in_dir).expanduser().absolute()
    dst = Path(out_dir).expanduser().absolute()
    if not src.is_dir():
        raise FinescaleError(f"Cannot read the folder {src}: "
                             f"{'it is a file' if src.exists() else 'no such folder'}.")
    if dst.exists() and not dst.is_dir():
        raise WriteError(f"Cannot write into {dst}: it is a file, not a folder.")
    return src, dst


def plan_batch(in_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
               options: BatchOptions | None = None, *, model: Any) -> BatchPlan:
    """Find the images under ``in_dir`` and decide each one's fate.

    ``model`` is the model that will run (an SRModel, an Upscaler or a :class:`ModelLabel`):
    output names need its name and scale. Nothing is written. Headers are read to learn
    sizes (for names and the ETA); a file whose header is damaged is a failed row, one that
    is not a supported image a skipped row. When the output folder holds the report of an
    interrupted run with the same settings, its finished files are kept as done.
    """
    options = options or BatchOptions()
    options.validate()
    label = ModelLabel.of(model)
    src, dst = check_folders(in_dir, out_dir)
    found, rows, hidden, seen = _discover(src, dst, options.recursive)

    plan = BatchPlan(src, dst, options, label, rows=[], jobs=[], hidden=hidden, started=_now())
    old = _resumable(plan) if options.resume else None
    old_rows: dict[str, FileResult] = {}
    if old is not None:
        plan.resumed, plan.started = True, str(old.get("started") or plan.started)
        plan.previous_resumes = int(old.get("resumed") or 0)
        old_rows = {r.input: r for r in map(FileResult.from_dict, old["files"])}

    cands: list[_Candidate] = []
    for f in found:
        cand = _probe(f, dst, options, label)
        if isinstance(cand, FileResult):
            rows.append(cand)
        else:
            cands.append(cand)

    # Our own outputs (and numbered copies) found among the inputs when OUT_DIR is IN_DIR.
    outputs = {_key(c.target): c.found.rel for c in cands}
    last = old or _report_data(plan) or {"files": []}
    earlier = {_key(dst / str(d["output"])) for d in last["files"]
               if isinstance(d, dict) and d.get("status") == "done" and d.get("output")}
    own = {c.found.rel: why for c in cands
           for why in [_own_output(c, outputs, earlier)] if why is not None}
    # Every other file found is an input: no output may take its path.
    inputs = {_key(src / r) for r in seen if r not in own}
    claimed: set[str] = set()
    for c in cands:
        if c.found.rel in own:
            c.row.status, c.row.reason = "skipped", own[c.found.rel]
            rows.append(c.row)
            continue
        prev = old_rows.get(c.found.rel)
        if prev is not None and _finished_before(prev, c, dst):
            if prev.status != "done":
                prev.status, prev.reason = "done", None
                prev.notes = [*prev.notes, "finished just before the previous run stopped"]
            claimed.add(_key(dst / str(prev.output)))
            rows.append(prev)
            continue
        rows.append(c.row)
        _apply_policy(c, dst, options.existing, claimed, inputs)
        if c.row.status == "pending":
            plan.jobs.append(Job(c.found.path, c.target, c.format,
                                 int(c.row.width or 0) * int(c.row.height or 0), c.row))
    order = {r: i for i, r in enumerate(seen)}
    rows.sort(key=lambda r: order.get(r.input, -1))
    plan.rows = rows
    return plan


def _probe(f: _Found, dst: Path, options: BatchOptions,
           label: ModelLabel) -> _Candidate | FileResult:
    from .engine import output_size

    try:
        info = probe_image(f.path)
        st = f.path.stat()
    except UnsupportedFormatError as e:
        return FileResult(f.rel, "skipped", reason=str(e))
    except FinescaleError as e:  # a damaged header: counted as a failure, not skipped
        return FileResult(f.rel, "failed", reason=str(e), finished=_now())
    except OSError as e:
        return FileResult(f.rel, "failed", reason=f"Cannot read {f.path}: "
                                                  f"{(e.strerror or str(e)).lower()}.")
    w, h = int(info["width"]), int(info["height"])
    oh, ow = output_size(h, w, label.scale, scale=options.scale, out_width=options.width,
                         out_height=options.height)
    fmt, ext = _out_format(options.format, f.path.suffix, str(info["format"]))
    fields = {"stem": f.path.stem, "ext": ext, "in_ext": f.path.suffix[1:],
              "scale": _scale_text(options, label, w, ow), "model": label.name,
              "width": ow, "height": oh, "in_width": w, "in_height": h,
              "folder": f.path.parent.name}
    target = (dst / f.rel).parent / _render(options.template, fields)
    row = FileResult(f.rel, "pending", output=_rel(target, dst), width=w, height=h,
                     out_width=ow, out_height=oh, input_bytes=st.st_size,
                     input_mtime_ns=st.st_mtime_ns)
    return _Candidate(f, row, fmt, target)


def _own_output(c: _Candidate, outputs: Mapping[str, str], earlier: set[str]) -> str | None:
    """Why ``c`` is an output of this batch rather than an input, or None."""
    path = c.found.path
    names = [path]
    m = _NUMBERED_RE.match(path.stem)
    if m:  # a numbered copy "name_2.png" of the output "name.png"
        names.append(path.with_name(m.group(1) + path.suffix))
    for p in names:
        origin = outputs.get(_key(p))
        if origin is not None and origin != c.found.rel:
            return f"Skipped {path}: it is the upscaled output of {origin}."
    if _key(path) in earlier:
        return f"Skipped {path}: it is an output of an earlier run of this batch."
    return None


def _finished_before(prev: FileResult, c: _Candidate, dst: Path) -> bool:
    """Did the interrupted run finish this file (unchanged since), its output still there?"""
    if not prev.output or (prev.input_bytes, prev.input_mtime_ns) != (
            c.row.input_bytes, c.row.input_mtime_ns):
        return False
    try:
        out_mtime = (dst / prev.output).stat().st_mtime_ns
    except OSError:
        return False
    if prev.status == "done":
        return True
    # A pending file whose output exists: the rename is atomic, so the output is whole; it is
    # ours unless it is the untouched file the overwrite policy was about to replace.
    return prev.status == "pending" and out_mtime != prev.replaces_mtime_ns


def _apply_policy(c: _Candidate, dst: Path, policy: str, claimed: set[str],
                  inputs: set[str]) -> None:
    """Settle ``c.target`` by the existing-output policy; mark the row skipped if it must."""
    def exists(p: Path) -> bool:
        return os.path.lexists(p)

    def taken(p: Path) -> bool:
        return _key(p) in claimed or _key(p) in inputs or exists(p)

    t = c.target
    if policy == "number":
        if taken(t):
            t = _numbered(t, taken)
    elif _key(t) in inputs or _same_file(t, c.found.path):
        c.row.status = "skipped"
        c.row.reason = (f"Skipped {c.found.path}: its output name {t.name} is an input file, "
                        "and originals are never overwritten (change the name template).")
        return
    elif _key(t) in claimed:
        c.row.status = "skipped"
        c.row.reason = (f"Skipped {c.found.path}: another file of this batch has the output "
                        f"name {t.name} (put {{in_ext}} in the name template).")
        return
    elif exists(t):
        if policy == "skip":
            c.row.status = "skipped"
            c.row.reason = f"Skipped {c.found.path}: the output {t} already exists."
            return
        with contextlib.suppress(OSError):
            c.row.replaces_mtime_ns = t.stat().st_mtime_ns
    c.target = t
    c.row.output = _rel(t, dst)
    claimed.add(_key(t))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _report_data(plan: BatchPlan) -> dict[str, Any] | None:
    return load_report(plan.report_path)


def _resumable(plan: BatchPlan) -> dict[str, Any] | None:
    """The report of an unfinished run of the same batch in the output folder, or None."""
    data = _report_data(plan)
    if data is None or data.get("state") == "finished":
        return None
    if data.get("settings") != plan.settings():
        return None
    if not _same_place(Path(str(data.get("input_dir", ""))), plan.in_dir):
        return None
    return data


# --- crash safety ---------------------------------------------------------------------------
def remove_stale_temporaries(out_dir: str | os.PathLike[str]) -> int:
    """Delete the temporary files an interrupted write left under ``out_dir``; count them.

    Only names of our own pattern (``.<name>.<8 hex digits>.part``) are touched. Call it
    while holding the batch lock: a running write's temporary file has the same pattern.
    """
    removed = 0
    for folder, dirs, files in os.walk(out_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if _TEMP_RE.match(name):
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
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise WriteError(f"Cannot write the report {path}: "
                             f"{(e.strerror or str(e)).lower()}.") from None
        self.last = time.monotonic()
        self.cost = self.last - now


# --- running --------------------------------------------------------------------------------
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
            report.state = run_jobs(writer)
        except BaseException:
            report.state = "interrupted"
            raise
        finally:
            if report.state != "running":
                report.finished = _now() if report.state == "finished" else None
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
               if r.output and r.status in ("done", "pending")}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="finescale-prefetch") as pool:
        nxt: Future[Photo] | None = pool.submit(_read, jobs[0]) if jobs else None
        try:
            for i, job in enumerate(jobs):
                if cancel is not None and cancel.is_set():
                    return "cancelled"
                current, nxt = nxt, None
                assert current is not None
                run.eta.start()
                run.send(job.result.input)
                try:
                    outcome = _one(plan, job, upscaler, current, run, cancel, claimed,
                                   prefetch=lambda i=i: pool.submit(_read, jobs[i + 1])
                                   if i + 1 < len(jobs) else None)
                except Cancelled:
                    return "cancelled"
                nxt = outcome
                run.files_done += 1
                if job.result.status == "done":
                    run.pixels_done += job.pixels
                else:
                    run.eta.drop(job.pixels)
                writer.write()
                run.send(None, finished=job.result)
        finally:
            if nxt is not None:
                nxt.cancel()
    return "finished"


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
        row.status, row.reason, row.output = "failed", str(e), None
    except Exception as e:  # a bug or a library's surprise must not stop the other files
        row.status, row.output = "failed", None
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
    row.status, row.reason = "done", None
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
            write(job.output, o.existing == "overwrite")
            break
        except OutputExistsError:
            if o.existing != "number":  # someone else wrote it since planning
                row.status = "skipped"
                row.reason = f"Skipped {job.source}: the output {job.output} appeared " \
                             "while the batch ran."
                return False
            claimed.add(_key(job.output))
            job.output = _numbered(job.output, lambda p: _key(p) in claimed
                                   or os.path.lexists(p))
            row.output = _rel(job.output, plan.out_dir)
    claimed.add(_key(job.output))
    return True


def describe_plan(plan: BatchPlan) -> str:
    """One line for people: how many files will be upscaled, skipped, failed, kept."""
    parts = [f"{len(plan.jobs)} to upscale"]
    for label, rows in (("done earlier", plan.done_before), ("skipped", plan.skipped),
                        ("unreadable", plan.failed)):
        if rows:
            parts.append(f"{len(rows)} {label}")
    if plan.hidden:
        parts.append(f"{plan.hidden} hidden or system files ignored")
    return ", ".join(parts)

