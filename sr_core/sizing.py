"""Job sizing: what an upscale will cost, known before it starts.

:func:`estimate` gives the output size, the memory the job needs (the model's working
memory for its largest tile plus the output picture), the bytes the file may take on disk,
and an ETA from a per-family cost model. :func:`default_output_limit` is the largest output
that fits the RAM and disk at hand; :func:`check_job` refuses a job above a limit with one
sentence that gives the numbers. No Qt, no torch at import: the window can use it too.

The cost model is seconds per *input* megapixel at the model's scale on this kind of
device. The CPU figures were measured on a 2-core laptop-class CPU (``finescale bench
--size 256x256``; ASID x4 takes about a minute per megapixel, as the README says); a GPU is
taken as 40 times faster. :func:`calibrate` replaces a family's figure with a measurement
(``finescale bench`` does), so the ETA follows the machine.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import atomic
from .errors import JobTooLargeError
from .units import format_bytes, format_seconds

__all__ = ["ASK_ABOVE_SECONDS", "JobSize", "JobTooLargeError", "calibrate", "check_job",
           "default_output_limit", "estimate", "free_disk", "load_calibration",
           "record_measurement", "seconds_per_megapixel"]

#: CPU seconds per input megapixel at x4, per family (x2 and x3 cost about the same: the
#: body runs at the input resolution; the upsampler is a small share).
CPU_SECONDS_PER_MEGAPIXEL: dict[str, float] = {"asid": 60.0, "spin": 90.0, "hpinet": 120.0,
                                               "hat": 400.0}
#: How much faster than the CPU figures a CUDA / MPS device is taken to be.
GPU_SPEEDUP = {"cuda": 40.0, "mps": 8.0}
_DEFAULT_SECONDS = 150.0  # a family not in the table (community models)
_calibrated: dict[tuple[str, str], float] = {}
_loaded_from: set[str] = set()
#: Where ``finescale bench`` keeps its measurements, in the model cache folder.
CALIBRATION_NAME = "sizing-calibration.json"

#: Bytes per output pixel and channel of the picture held in memory (uint8; uint16 doubles
#: it), counted twice: the stitched result and the encoder's converted copy.
_COPIES = 2
#: Share of the free RAM / disk the default limit may use.
_HEADROOM = 0.8
#: "A few minutes": jobs whose ETA is above this are worth a question in the window.
ASK_ABOVE_SECONDS = 180.0


@dataclass(frozen=True)
class JobSize:
    """What one upscale will need.

    Attributes:
        in_width, in_height: the source picture.
        out_width, out_height: the picture written.
        channels: 3, or 4 with alpha.
        bits: 8 or 16 per channel in the output.
        memory_bytes: the model's working memory for its largest tile plus the output picture
            (twice: stitched, and converted for the encoder).
        disk_bytes: the most the file can take on disk (uncompressed size).
        seconds: estimated running time, or None when the family is unknown.
    """

    in_width: int
    in_height: int
    out_width: int
    out_height: int
    channels: int
    bits: int
    memory_bytes: int
    disk_bytes: int
    seconds: float | None

    @property
    def out_megapixels(self) -> float:
        """Output pixels in millions."""
        return self.out_width * self.out_height / 1e6

    def describe(self) -> str:
        """``"4000x3000 (12.0 MP), about 1.2 GB of memory and 3 min"``."""
        eta = f" and {format_seconds(self.seconds)}" if self.seconds is not None else ""
        return (f"{self.out_width}x{self.out_height} ({self.out_megapixels:.3g} MP), about "
                f"{format_bytes(self.memory_bytes)} of memory{eta}")


def calibrate(family: str, device_type: str, seconds_per_megapixel: float) -> None:
    """Use a measured cost (seconds per input megapixel) for ``family`` on ``device_type``."""
    if not (seconds_per_megapixel > 0 and math.isfinite(seconds_per_megapixel)):
        raise ValueError(f"seconds_per_megapixel must be a positive number, not "
                         f"{seconds_per_megapixel}")
    _calibrated[(family.lower(), device_type)] = float(seconds_per_megapixel)


def _calibration_file(folder: str | os.PathLike[str] | None) -> Path:
    if folder is None:
        from .paths import cache_dir

        folder = cache_dir()
    return Path(folder) / CALIBRATION_NAME


def load_calibration(folder: str | os.PathLike[str] | None = None) -> int:
    """Use the measurements ``finescale bench`` stored (once per folder); return how many.

    A missing or unreadable file is no measurement: the table's figures stay.
    """
    path = _calibration_file(folder)
    if str(path) in _loaded_from:
        return 0
    _loaded_from.add(str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    n = 0
    for key, value in (data.items() if isinstance(data, dict) else ()):
        family, _, device_type = str(key).partition("/")
        with contextlib.suppress(TypeError, ValueError):
            calibrate(family, device_type or "cpu", float(value))
            n += 1
    return n


def record_measurement(family: str, device_type: str, input_pixels: int, seconds: float,
                       folder: str | os.PathLike[str] | None = None) -> float:
    """Store a measured run (``finescale bench``) as the family's cost; return s/MP.

    Written atomically beside the model cache; a cache that cannot be written keeps the
    measurement for this process only.
    """
    rate = seconds / (input_pixels / 1e6)
    calibrate(family, device_type, rate)
    path = _calibration_file(folder)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[f"{family.lower()}/{device_type}"] = round(rate, 4)
    with contextlib.suppress(OSError):  # a calibration that cannot be saved is only lost
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode())
    return rate


def seconds_per_megapixel(family: str, device_type: str = "cpu") -> float | None:
    """The cost model's seconds per input megapixel, or None for an unknown family.

    A figure ``finescale bench`` measured on this machine wins over the table's."""
    with contextlib.suppress(Exception):  # a broken cache path only loses the calibration
        load_calibration()
    fam = family.lower()
    if (fam, device_type) in _calibrated:
        return _calibrated[(fam, device_type)]
    base = CPU_SECONDS_PER_MEGAPIXEL.get(fam)
    if base is None:
        return None
    return base / GPU_SPEEDUP.get(device_type, 1.0)


def estimate(in_width: int, in_height: int, out_width: int, out_height: int, *,
             family: str, device_type: str = "cpu", channels: int = 3, bits: int = 8,
             model_bytes: int = 0) -> JobSize:
    """Size an upscale of an ``in_width x in_height`` picture to ``out_width x out_height``.

    ``model_bytes`` is the model's working memory for its largest tile (the engine's
    ``Upscaler.plan`` and ``SRModel.estimate_memory`` give it; 0 when unknown).
    """
    out_pixels = out_width * out_height
    per_pixel = channels * (2 if bits > 8 else 1)
    memory = model_bytes + _COPIES * out_pixels * per_pixel
    rate = seconds_per_megapixel(family, device_type)
    seconds = None if rate is None else rate * in_width * in_height / 1e6
    return JobSize(in_width, in_height, out_width, out_height, channels, bits, int(memory),
                   int(out_pixels * per_pixel), seconds)


def free_disk(folder: str | os.PathLike[str]) -> int | None:
    """Free bytes on the disk holding ``folder`` (its nearest existing parent), or None."""
    p = Path(os.path.abspath(folder))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return None


def default_output_limit(folder: str | os.PathLike[str] | None = None, *, channels: int = 3,
                         bits: int = 8, ram: int | None = None,
                         disk: int | None = None) -> int:
    """The largest output (in pixels) that fits the free RAM and, given ``folder``, its disk.

    ``ram`` and ``disk`` default to what the machine has free now.
    """
    if ram is None:
        from .device import available_ram

        ram = available_ram()
    per_pixel = channels * (2 if bits > 8 else 1)
    limit = int(_HEADROOM * ram / (_COPIES * per_pixel))
    if disk is None and folder is not None:
        disk = free_disk(folder)
    if disk is not None:
        limit = min(limit, int(_HEADROOM * disk / per_pixel))
    return max(1, limit)


def check_job(name: str, size: JobSize, limit_pixels: int, *, explicit: bool = False) -> None:
    """Refuse a job whose output has more than ``limit_pixels`` pixels, giving the numbers.

    ``explicit`` says the limit came from ``--max-output-megapixels`` (the sentence then says
    so, rather than pointing at the machine's RAM and disk).
    """
    out = size.out_width * size.out_height
    if out <= limit_pixels:
        return
    why = ("the --max-output-megapixels limit" if explicit
           else "what fits in the free memory and disk here")
    raise JobTooLargeError(
        f"Refusing to upscale {name}: the output would be {size.describe()}, above {why} "
        f"({limit_pixels / 1e6:.3g} MP); pass --max-output-megapixels N or --yes to go on "
        "anyway.")
