"""Planning: each file found becomes a job with its output name, or a row that says why not;
the existing-output policy, our own outputs among the inputs, and what a resumed run keeps."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FinescaleError, UnsupportedFormatError, WriteError
from ..formats import extension, suffix_format, write_formats
from ..imageio import probe_image
from ..naming import free_path, render_template, template_scale, unnumbered
from .discovery import _discover, _Found, _key, _rel, _same_file, _same_place
from .options import OUTPUT_FORMATS, BatchOptions, ExistingPolicy, ModelLabel
from .report import BatchPlan, FileResult, FileStatus, Job, ReportState, _now, load_report


def _out_format(option: str, suffix: str, fmt: str) -> tuple[str, str]:
    chosen = OUTPUT_FORMATS[option.lower()]
    if chosen is not None:
        return chosen
    if fmt not in write_formats():  # read here but not written (no encoder): PNG keeps it all
        fmt = "PNG"
    ext = suffix[1:] if suffix_format(suffix) == fmt else extension(fmt)[1:]
    return fmt, ext


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
               if isinstance(d, dict) and d.get("status") == FileStatus.DONE and d.get("output")}
    own = {c.found.rel: why for c in cands
           for why in [_own_output(c, outputs, earlier)] if why is not None}
    # Every other file found is an input: no output may take its path.
    inputs = {_key(src / r) for r in seen if r not in own}
    claimed: set[str] = set()
    for c in cands:
        if c.found.rel in own:
            c.row.status, c.row.reason = FileStatus.SKIPPED, own[c.found.rel]
            rows.append(c.row)
            continue
        prev = old_rows.get(c.found.rel)
        if prev is not None and _finished_before(prev, c, dst):
            if prev.status != FileStatus.DONE:
                prev.status, prev.reason = FileStatus.DONE, None
                prev.notes = [*prev.notes, "finished just before the previous run stopped"]
            claimed.add(_key(dst / str(prev.output)))
            rows.append(prev)
            continue
        rows.append(c.row)
        _apply_policy(c, dst, options.existing, claimed, inputs)
        if c.row.status == FileStatus.PENDING:
            plan.jobs.append(Job(c.found.path, c.target, c.format,
                                 int(c.row.width or 0) * int(c.row.height or 0), c.row))
    order = {r: i for i, r in enumerate(seen)}
    rows.sort(key=lambda r: order.get(r.input, -1))
    plan.rows = rows
    return plan


def _probe(f: _Found, dst: Path, options: BatchOptions,
           label: ModelLabel) -> _Candidate | FileResult:
    from ..engine import output_size

    try:
        info = probe_image(f.path)
        st = f.path.stat()
    except UnsupportedFormatError as e:
        return FileResult(f.rel, FileStatus.SKIPPED, reason=str(e))
    except FinescaleError as e:  # a damaged header: counted as a failure, not skipped
        return FileResult(f.rel, FileStatus.FAILED, reason=str(e), finished=_now())
    except OSError as e:
        return FileResult(f.rel, FileStatus.FAILED, reason=f"Cannot read {f.path}: "
                                                  f"{(e.strerror or str(e)).lower()}.")
    w, h = int(info["width"]), int(info["height"])
    oh, ow = output_size(h, w, label.scale, scale=options.scale, out_width=options.width,
                         out_height=options.height)
    fmt, ext = _out_format(options.format, f.path.suffix, str(info["format"]))
    fields = {"stem": f.path.stem, "ext": ext, "in_ext": f.path.suffix[1:],
              "scale": template_scale(label.scale, scale=options.scale,
                                      resized=options.width is not None
                                      or options.height is not None, in_width=w, out_width=ow),
              "model": label.name,
              "width": ow, "height": oh, "in_width": w, "in_height": h,
              "folder": f.path.parent.name}
    target = (dst / f.rel).parent / render_template(options.template, fields)
    row = FileResult(f.rel, FileStatus.PENDING, output=_rel(target, dst), width=w, height=h,
                     out_width=ow, out_height=oh, input_bytes=st.st_size,
                     input_mtime_ns=st.st_mtime_ns)
    return _Candidate(f, row, fmt, target)


def _own_output(c: _Candidate, outputs: Mapping[str, str], earlier: set[str]) -> str | None:
    """Why ``c`` is an output of this batch rather than an input, or None."""
    path = c.found.path
    names = [path]
    original = unnumbered(path)
    if original is not None:  # a numbered copy "name_2.png" of the output "name.png"
        names.append(original)
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
    if prev.status == FileStatus.DONE:
        return True
    # A pending file whose output exists: the rename is atomic, so the output is whole; it is
    # ours unless it is the untouched file the overwrite policy was about to replace.
    return prev.status == FileStatus.PENDING and out_mtime != prev.replaces_mtime_ns


def _apply_policy(c: _Candidate, dst: Path, policy: ExistingPolicy | str, claimed: set[str],
                  inputs: set[str]) -> None:
    """Settle ``c.target`` by the existing-output policy; mark the row skipped if it must."""
    def exists(p: Path) -> bool:
        return os.path.lexists(p)

    def taken(p: Path) -> bool:
        return _key(p) in claimed or _key(p) in inputs or exists(p)

    t = c.target
    if policy == ExistingPolicy.NUMBER:
        t = free_path(t, taken)
    elif _key(t) in inputs or _same_file(t, c.found.path):
        c.row.status = FileStatus.SKIPPED
        c.row.reason = (f"Skipped {c.found.path}: its output name {t.name} is an input file, "
                        "and originals are never overwritten (change the name template).")
        return
    elif _key(t) in claimed:
        c.row.status = FileStatus.SKIPPED
        c.row.reason = (f"Skipped {c.found.path}: another file of this batch has the output "
                        f"name {t.name} (put {{in_ext}} in the name template).")
        return
    elif exists(t):
        if policy == ExistingPolicy.SKIP:
            c.row.status = FileStatus.SKIPPED
            c.row.reason = f"Skipped {c.found.path}: the output {t} already exists."
            return
        with contextlib.suppress(OSError):
            c.row.replaces_mtime_ns = t.stat().st_mtime_ns
    c.target = t
    c.row.output = _rel(t, dst)
    claimed.add(_key(t))


def _report_data(plan: BatchPlan) -> dict[str, Any] | None:
    return load_report(plan.report_path)


def _resumable(plan: BatchPlan) -> dict[str, Any] | None:
    """The report of an unfinished run of the same batch in the output folder, or None."""
    data = _report_data(plan)
    if data is None or data.get("state") == ReportState.FINISHED:
        return None
    if data.get("settings") != plan.settings():
        return None
    if not _same_place(Path(str(data.get("input_dir", ""))), plan.in_dir):
        return None
    return data




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

