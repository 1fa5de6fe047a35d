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
fields (see :data:`sr_core.naming.TEMPLATE_FIELDS`):

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

The package's modules, each one job: :mod:`.options` (options, policies, formats, the model
label), :mod:`.report` (rows, the plan and the report, statuses), :mod:`.discovery`,
:mod:`.planning`, :mod:`.safety` (lock, report writer, temporaries) and :mod:`.running`.
Output naming lives in :mod:`sr_core.naming`.
"""

from __future__ import annotations

from ..naming import DEFAULT_TEMPLATE, TEMPLATE_FIELDS, check_template
from .options import (
    OUTPUT_FORMATS,
    POLICIES,
    SAME_FORMAT,
    BatchOptions,
    ExistingPolicy,
    ModelLabel,
    StrEnum,
)
from .planning import check_folders, describe_plan, plan_batch
from .report import (
    REPORT_NAME,
    STATUSES,
    BatchPlan,
    BatchReport,
    FileResult,
    FileStatus,
    Job,
    ReportState,
    load_report,
    report_bytes,
)
from .running import (
    BatchProgress,
    CancelToken,
    EtaEstimator,
    place_output,
    run_batch,
    run_plan,
)
from .safety import LOCK_NAME, remove_stale_temporaries

__all__ = [
    "DEFAULT_TEMPLATE",
    "LOCK_NAME",
    "OUTPUT_FORMATS",
    "POLICIES",
    "REPORT_NAME",
    "SAME_FORMAT",
    "STATUSES",
    "TEMPLATE_FIELDS",
    "BatchOptions",
    "BatchPlan",
    "BatchProgress",
    "BatchReport",
    "CancelToken",
    "EtaEstimator",
    "ExistingPolicy",
    "FileResult",
    "FileStatus",
    "Job",
    "ModelLabel",
    "ReportState",
    "StrEnum",
    "check_folders",
    "check_template",
    "describe_plan",
    "load_report",
    "place_output",
    "plan_batch",
    "remove_stale_temporaries",
    "report_bytes",
    "run_batch",
    "run_plan",
]
