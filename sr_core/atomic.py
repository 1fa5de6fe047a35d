"""Durable atomic replacement of a file: the one "temporary file + rename" in Finescale.

Everything Finescale writes (pictures, reports, the model cache and its records, training
checkpoints, calibration) goes through :func:`replacing`: the data is written to a new hidden
file in the target folder (the same file system, so the rename is atomic), flushed and
fsynced, renamed into place, and the folder is fsynced so that the rename itself survives a
power cut. Readers see the old file or the new one whole, never a part; a failure leaves the
old file untouched and no temporary behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMPORARY_PATTERN", "fsync_folder", "new_temporary", "replacing", "write_bytes",
           "write_with"]

#: The names of our temporaries (``.<name>.<8 hex>.part``), so that a later run can tell a
#: stale one left by a crash from the user's files.
TEMPORARY_PATTERN = re.compile(r"^\..+\.[0-9a-f]{8}\.part$")


def new_temporary(path: Path) -> Path:
    """A new, empty hidden file beside ``path``, created exclusively (never another's)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            # Mode 0o666 lets the umask decide, as for any new file (mkstemp would give 0o600).
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the platform allows (not on Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str], *,
              install: Callable[[Path, Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends normally, fsync it and
    rename it onto ``path`` (then fsync the folder). On an exception it is removed.

    ``install(tmp, path)`` replaces the plain rename where a caller needs another rule (e.g.
    never replacing a file that appeared meanwhile); it must move or link ``tmp`` to ``path``.
    """
    dest = Path(path)
    tmp = new_temporary(dest)
    try:
        yield tmp
        _fsync_file(tmp)
        if install is None:
            os.replace(tmp, dest)
        else:
            install(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_folder(dest.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` by ``data`` durably and atomically (OSError on failure)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_with(path: str | os.PathLike[str], encode: Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` by what ``encode`` writes into an open binary file."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        encode(f)
