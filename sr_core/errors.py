"""User-facing errors.

Every exception here carries one plain sentence that names the file (or thing) and the
problem. The CLI prints ``str(error)`` and exits 1; the window shows it. Anything that is not
a :class:`FinescaleError` is a bug and may show a traceback (only with ``--debug`` in the CLI).
"""

from __future__ import annotations

__all__ = ["Cancelled", "CheckpointError", "ChecksumError", "DeviceError", "DiskFullError",
           "DownloadError", "FinescaleError", "ImageReadError", "ImageTooLargeError",
           "ImageTooSmallError", "JobTooLargeError", "ModelNotFoundError", "OutputExistsError",
           "SameFileError", "UnknownArchitectureError", "UnsafeCheckpointError",
           "UnsupportedFormatError", "WriteError"]


class FinescaleError(Exception):
    """Base class: an error the user caused or can act on; ``str()`` is one sentence."""


# --- images -------------------------------------------------------------------------------
class ImageReadError(FinescaleError):
    """The file exists but cannot be decoded (corrupt, truncated, empty, a directory...)."""


class UnsupportedFormatError(FinescaleError):
    """The file is not in a format Finescale reads or writes."""


class ImageTooLargeError(FinescaleError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class JobTooLargeError(FinescaleError):
    """The output would be larger than the limit (memory, disk or --max-output-megapixels)."""


class ImageTooSmallError(FinescaleError):
    """The image is smaller than the model can process."""


class OutputExistsError(FinescaleError):
    """The output file exists and the policy forbids overwriting it."""


class SameFileError(FinescaleError):
    """The output path is the input file: originals are never overwritten."""


class WriteError(FinescaleError):
    """The output could not be written (permissions, missing folder, ...)."""


class DiskFullError(WriteError):
    """No space left on the target device."""


# --- models -------------------------------------------------------------------------------
class CheckpointError(FinescaleError):
    """A checkpoint cannot be used (unreadable, unsafe, unknown architecture, wrong shapes)."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint holds something other than tensors and plain containers."""


class UnknownArchitectureError(CheckpointError):
    """No supported architecture recognises the checkpoint's keys and shapes."""


class ModelNotFoundError(FinescaleError):
    """A model id that is neither a file nor in the catalogue."""


# --- downloads ----------------------------------------------------------------------------
class DownloadError(FinescaleError):
    """A download failed (network, HTTP status, timeout)."""


class ChecksumError(DownloadError):
    """Downloaded bytes do not match the expected sha256."""


# --- running ------------------------------------------------------------------------------
class DeviceError(FinescaleError):
    """The requested device cannot be used."""


class Cancelled(FinescaleError):
    """The user cancelled the operation; nothing was written."""

    def __init__(self, message: str = "Cancelled; nothing was written.") -> None:
        super().__init__(message)
