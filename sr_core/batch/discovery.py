"""Discovery: the files of a folder (tree), hidden and system files counted, the rest sorted
into images to plan and rows for files skipped with the reason; and how paths are compared."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from ..formats import describe as describe_formats
from ..formats import read_suffixes, suffix_format
from .report import REPORT_NAME, FileResult, FileStatus

_SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini",
                           "icon\r", "$recycle.bin", "system volume information"})
_WINDOWS_HIDDEN = getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 2) | getattr(
    stat, "FILE_ATTRIBUTE_SYSTEM", 4)


def _key(p: Path) -> str:
    """A path's identity for "is this name taken": absolute, case-folded where the OS is."""
    return os.path.normcase(os.path.abspath(p))


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


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
            rows.append(FileResult(rel_folder or ".", FileStatus.SKIPPED,
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
                    rows.append(FileResult(rel, FileStatus.SKIPPED, reason=(
                        f"Skipped {path}: it is a folder, not an image file (pass --recursive "
                        "to convert the images inside it).")))
                continue
            if not is_file:
                rows.append(FileResult(rel, FileStatus.SKIPPED, reason=_not_a_file(entry, path)))
                continue
            if entry.name == REPORT_NAME:
                continue
            suffix = path.suffix.lower()
            if suffix not in read_suffixes():
                what = f"'{path.suffix}' files" if path.suffix else "files without an extension"
                if suffix_format(suffix) == "HEIF":
                    what += " need the pillow-heif package and"
                rows.append(FileResult(rel, FileStatus.SKIPPED, reason=(
                    f"Skipped {path}: {what} are not images Finescale reads "
                    f"({describe_formats()}).")))
                continue
            k = key(path)
            if k in seen_files:
                rows.append(FileResult(rel, FileStatus.SKIPPED, reason=(
                    f"Skipped {path}: it is the same file as {seen_files[k]}.")))
                continue
            seen_files[k] = rel
            found.append(_Found(path, rel))
        stack.extend(reversed(subfolders))
    return found, rows, hidden, seen

