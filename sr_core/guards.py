"""Checks the command line makes before any work: option values, output locations, streams.

Everything here turns a bad option or a bad place to write into one sentence (a
:class:`~sr_core.errors.FinescaleError`, or an ``argparse`` usage error for option values),
before a model loads or a pixel is decoded.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import sys
from pathlib import Path
from typing import Any

from .errors import WriteError

#: Largest --width / --height accepted by the option parser (the output-size limit then
#: decides what this machine can do).
MAX_SIDE_OPTION = 1_000_000
#: Largest --scale accepted by the option parser.
MAX_SCALE_OPTION = 64.0


def tolerant_streams() -> None:
    """Make stdout/stderr print any file name: undecodable bytes come out escaped.

    A file name that is not valid UTF-8 reaches Python as surrogate escapes; printing it to a
    strict UTF-8 stream would raise UnicodeEncodeError after the work is done.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors="backslashreplace")


def os_error_sentence(e: OSError) -> str:
    """One sentence for an OSError no handler expected, naming the file when it is known."""
    what = (e.strerror or str(e) or type(e).__name__).rstrip(".")
    name = e.filename if e.filename is not None else None
    if e.errno == errno.ENOSPC:
        what = "no space left on the disk"
    elif e.errno == errno.EROFS:
        what = "the disk is read-only"
    elif e.errno == errno.ENAMETOOLONG:
        what = "the name is too long for the file system"
    if name is None:
        return f"{what[0].upper()}{what[1:]}."
    return f"Cannot use {os.fsdecode(name)}: {what[0].lower()}{what[1:]}."


def _read(kind: type[int] | type[float], text: str, expected: str) -> Any:
    """``kind(text)``, or argparse's error "<expected>, not '<text>'"."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{expected}, not {text!r}") from None


def quality(text: str) -> int:
    """argparse type: a JPEG/WebP/AVIF quality, 1..100."""
    q = _read(int, text, "quality must be a whole number 1-100")
    if not 1 <= q <= 100:
        raise argparse.ArgumentTypeError(f"quality must be 1-100, not {q}")
    return q


def scale(text: str) -> float:
    """argparse type: an output scale, a finite number above 0 and at most 64."""
    s = _read(float, text, "scale must be a number such as 2 or 1.5")
    if not (math.isfinite(s) and 0 < s <= MAX_SCALE_OPTION):
        raise argparse.ArgumentTypeError(f"scale must be above 0 and at most "
                                         f"{MAX_SCALE_OPTION:g}, not {text}")
    return s


def side(text: str) -> int:
    """argparse type: an output width or height in pixels."""
    n = _read(int, text, "expected a whole number of pixels")
    if not 1 <= n <= MAX_SIDE_OPTION:
        raise argparse.ArgumentTypeError(f"{n} pixels is outside 1-{MAX_SIDE_OPTION}")
    return n


def megapixels(text: str) -> float:
    """argparse type: a positive number of megapixels."""
    v = _read(float, text, "expected a number of megapixels")
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"megapixels must be above 0, not {text}")
    return v


def check_out_dir(path: str | os.PathLike[str]) -> Path:
    """Refuse an output folder that is an existing file or cannot be created; return it.

    Nothing is created here: the folder is made when the first output is written.
    """
    p = Path(path)
    try:
        if p.exists() and not p.is_dir():
            raise WriteError(f"Cannot use {p} as the output folder: it is a file, not a "
                             "folder.")
        parent = next((q for q in [p, *p.parents] if q.exists()), None)
    except OSError as e:
        raise WriteError(f"Cannot use {p} as the output folder: "
                         f"{(e.strerror or str(e)).lower()}.") from None
    if parent is not None and not parent.is_dir():
        raise WriteError(f"Cannot use {p} as the output folder: {parent} is a file, not a "
                         "folder.")
    return p


def make_out_dir(path: str | os.PathLike[str]) -> None:
    """Create the output folder (and its parents) or raise one sentence."""
    from .imageio import write_error

    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"Cannot use {path} as the output folder: it is a file, not a "
                         "folder.") from None
    except OSError as e:
        raise write_error(path, e) from None


def check_target(path: str | os.PathLike[str], *, overwrite: bool) -> bool:
    """Refuse an output path that cannot be written; return whether a file is there.

    A name too long for the file system, a device, FIFO, socket or folder, and (without
    ``overwrite``) an existing file are refused with one sentence.
    """
    from .errors import OutputExistsError
    from .imageio import check_replaceable

    p = Path(path)
    name = os.fsencode(p.name)
    if len(name) > 255:
        raise WriteError(f"Cannot write {p}: the name is too long for the file system "
                         f"({len(name)} bytes; most allow 255).")
    exists = check_replaceable(p)
    if exists and not overwrite:
        raise OutputExistsError(f"Refusing to write {p}: the file already exists (pass "
                                "--overwrite to replace it).")
    return exists


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    n = _read(int, text, "expected a whole number")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def count(text: str) -> int:
    """argparse type: a whole number of at least 0."""
    n = _read(int, text, "expected a whole number")
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {n}")
    return n


def positive_number(text: str) -> float:
    """argparse type: a finite number above 0 (learning rates, minutes)."""
    v = _read(float, text, "expected a number")
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return v


def decay(text: str) -> float:
    """argparse type: an EMA decay, 0 <= d < 1."""
    v = _read(float, text, "expected a number")
    if not (math.isfinite(v) and 0 <= v < 1):
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, not {text}")
    return v

