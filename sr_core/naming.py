"""Output file names: the one home for how upscaled files are named.

One picture (``finescale upscale`` and the window's Upscale) is named by
:func:`upscaled_name`: ``{stem}_x{scale}{suffix}``, e.g. ``photo_x4.jpg``, in the input's
own format unless another is chosen (:func:`output_suffix`). A folder conversion
(``finescale batch`` and the window's Batch tab) names its files from a template, by default
:data:`DEFAULT_TEMPLATE` ``{stem}_x{scale}_{model}.{ext}``, with the fields of
:data:`TEMPLATE_FIELDS` (:func:`check_template`, :func:`render_template`). When a name is
taken, the next free one is ``name_2.png``, ``name_3.png``... (:func:`free_path`).
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import FinescaleError
from .formats import extension, suffix_format, write_formats

__all__ = ["check_template", "DEFAULT_TEMPLATE", "free_path", "output_suffix", "render_template",
           "scale_label", "TEMPLATE_FIELDS", "template_scale", "unnumbered", "upscaled_name"]


#: The batch's default output name template.
DEFAULT_TEMPLATE = "{stem}_x{scale}_{model}.{ext}"

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

_NUMBERED_RE = re.compile(r"^(.*)_(\d+)$")


# --- one picture ----------------------------------------------------------------------------
def scale_label(model_scale: int, *, in_width: int, in_height: int, scale: float | None = None,
                width: int | None = None, height: int | None = None) -> str:
    """The ``x`` part of a single picture's name: ``4``, ``2.5``, or the requested size's
    factor to two decimals (``1.33``)."""
    if scale is not None:
        return f"{scale:g}"
    if width is not None:
        return f"{width / in_width:.2f}".rstrip("0").rstrip(".")
    if height is not None:
        return f"{height / in_height:.2f}".rstrip("0").rstrip(".")
    return str(model_scale)


def output_suffix(in_suffix: str, in_format: str | None, out_format: str | None = None) -> str:
    """The upscaled file's suffix, with the dot.

    ``out_format`` (``"PNG"``, ``"JPEG"``...) chosen: its extension. Otherwise the input's
    format where Finescale writes it (HEIC needs pillow-heif's encoder), under the input's
    own suffix in lower case (``.jpeg`` stays ``.jpeg``) when that suffix names the format;
    a format Finescale cannot write becomes PNG.
    """
    if out_format is not None:
        return extension(out_format)
    if in_format in write_formats():
        if in_suffix and suffix_format(in_suffix) == in_format:
            return in_suffix.lower()
        return extension(in_format)
    return extension("PNG")


def upscaled_name(stem: str, suffix: str, model_scale: int, *, in_width: int, in_height: int,
                  scale: float | None = None, width: int | None = None,
                  height: int | None = None) -> str:
    """The name of one upscaled picture: ``photo_x4.png`` (``photo_x2.5.png``,
    ``photo_x1.33.png`` for a chosen factor or size).

    ``suffix`` comes from :func:`output_suffix`; at most one of ``scale``, ``width`` and
    ``height`` is given, as for :meth:`~sr_core.engine.Upscaler.upscale`.
    """
    label = scale_label(model_scale, in_width=in_width, in_height=in_height, scale=scale,
                        width=width, height=height)
    return f"{stem}_x{label}{suffix}"


# --- templates ------------------------------------------------------------------------------
def template_scale(model_scale: int, *, scale: float | None, resized: bool, in_width: int,
                   out_width: int) -> str:
    """The template's ``{scale}`` field: ``4``, ``2.5``, or for a requested width or height
    the output's width factor to two decimals.

    It differs from :func:`scale_label` only for a requested height (the width factor, not
    the height's) and in rounding: batch names already on disk must stay the same.
    """
    if scale is not None:
        return f"{scale:g}"
    if not resized:
        return str(model_scale)
    return f"{round(out_width / in_width, 2):g}"


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
        render_template(template, sample)
    except (ValueError, IndexError, KeyError) as e:
        raise FinescaleError(f"The name template '{template}' is not valid ({e}).") from None


def render_template(template: str, fields: Mapping[str, Any]) -> str:
    """The file name ``template`` gives for ``fields``; ``.{ext}`` is appended when the
    template has no ``{ext}``. Raises :class:`FinescaleError` for a name with a folder in it
    or a hidden name."""
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


# --- free names -----------------------------------------------------------------------------
def free_path(path: Path, taken: Callable[[Path], bool] = os.path.lexists) -> Path:
    """``path`` itself when it is not ``taken``, else the first free ``stem_2.ext``,
    ``stem_3.ext``... beside it.

    ``taken`` defaults to "something is there", links to nothing included: such a name
    cannot be written without replacing the link.
    """
    if not taken(path):
        return path
    n = 2
    while True:
        cand = path.with_name(f"{path.stem}_{n}{path.suffix}")
        if not taken(cand):
            return cand
        n += 1


def unnumbered(path: Path) -> Path | None:
    """The name ``path`` would be a numbered copy of (``name_2.png`` -> ``name.png``), or
    None when its stem does not end in ``_<digits>``."""
    m = _NUMBERED_RE.match(path.stem)
    return path.with_name(m.group(1) + path.suffix) if m else None
