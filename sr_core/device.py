"""Device and precision choice, memory budgets, and out-of-memory recognition.

The engine asks four questions here: where to run (:func:`choose_device`), in which
floating-point type (:func:`choose_dtype`, with :func:`cpu_has_fast_bf16` for the CPU), how
many CPU threads one forward pass should use now (:func:`choose_cpu_threads`), and how many
bytes one tile may use (:func:`memory_budget`). :func:`is_out_of_memory` tells an allocation
failure (which the engine answers with smaller tiles) from any other error.

It is also the one home of the device and precision words (:data:`DEVICE_CHOICES`,
:data:`PRECISION_CHOICES`) that the CLI's options and the window's menus offer; torch loads
on first use, so that building the command line stays light.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import DeviceError

if TYPE_CHECKING:
    import torch
else:
    class _Torch:
        """torch, imported on first attribute access (then the module itself takes over)."""

        def __getattr__(self, name: str) -> Any:
            import torch as module

            globals()["torch"] = module
            return getattr(module, name)

    torch = _Torch()

__all__ = ["available_ram", "BF16_CPU_FLAGS", "choose_cpu_threads", "choose_device",
           "choose_dtype", "CPU_BF16_ENV", "CPU_BUDGET_CAP", "CPU_BUDGET_FRACTION",
           "cpu_has_fast_bf16",
           "CUDA_BUDGET_FRACTION", "describe", "DEVICE_CHOICES", "dtype_name", "is_out_of_memory",
           "memory_budget", "MMAP_THRESHOLD", "omp_waits_sleep", "PRECISION_CHOICES",
           "release_cached_memory", "release_freed_memory_promptly", "usable_cores"]


DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")

#: ``0`` keeps ``--precision auto`` in exact fp32 on every CPU (explicit ``bf16`` still
#: works where the CPU has the instructions). The test suite sets it, so that its results do
#: not depend on the CPU it runs on; the tests of the bf16 choice clear it.
CPU_BF16_ENV = "FINESCALE_AUTO_CPU_BF16"

#: Precision words -> torch dtype names.
_DTYPES = {
    "fp32": "float32", "float32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16",
}

#: Share of the free GPU memory a tile may use: the CUDA caching allocator fragments, and
#: cuDNN / cuBLAS workspaces come on top of what a memory model counts.
CUDA_BUDGET_FRACTION = 0.7
#: On the CPU a tile may use this share of the available RAM, but never more than
#: CPU_BUDGET_CAP: beyond ~1 GiB tiles are no faster and the desktop starts to swap.
CPU_BUDGET_FRACTION = 0.4
CPU_BUDGET_CAP = 1 << 30
#: Assumed available RAM when the platform does not tell.
_FALLBACK_RAM = 4 << 30


def _cuda_usable() -> tuple[bool, str]:
    """Whether CUDA is present and actually initialises; the reason if not."""
    try:
        if not torch.cuda.is_available():
            return False, "no CUDA device is available"
        torch.zeros(1, device="cuda")
        return True, ""
    except Exception as e:  # driver / runtime mismatch, busy device, broken install
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        return False, f"CUDA failed to initialise ({first_line})"


def _mps_usable() -> bool:
    mps = getattr(torch.backends, "mps", None)
    try:
        return bool(mps is not None and mps.is_available())
    except Exception:
        return False


def choose_device(request: str | torch.device = "auto") -> torch.device:
    """Return the device to run on.

    ``"auto"`` takes CUDA, then Apple's MPS, then the CPU; a CUDA device that is present but
    fails to initialise gives one warning and the CPU. An explicit ``"cuda"`` / ``"mps"``
    that cannot be used raises :class:`DeviceError`.
    """
    if isinstance(request, torch.device):
        return request
    req = str(request).strip().lower()
    if req == "auto":
        ok, why = _cuda_usable()
        if ok:
            return torch.device("cuda")
        if torch.cuda.is_available():  # present but broken: say so once, then carry on
            warnings.warn(f"{why}; running on the CPU instead.", RuntimeWarning, stacklevel=2)
        if _mps_usable():
            return torch.device("mps")
        return torch.device("cpu")
    if req == "cpu":
        return torch.device("cpu")
    if req.startswith("cuda"):
        ok, why = _cuda_usable()
        if not ok:
            raise DeviceError(f"Device '{request}' cannot be used: {why}.")
        dev = torch.device(req)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"Device '{request}' does not exist: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s).")
        return dev
    if req == "mps":
        if not _mps_usable():
            raise DeviceError("Device 'mps' cannot be used: Apple's Metal backend is not "
                              "available here.")
        return torch.device("mps")
    raise DeviceError(f"Unknown device '{request}'; choose one of {', '.join(DEVICE_CHOICES)}.")


#: CPU flags (``/proc/cpuinfo``) of instructions that compute bf16 dot products natively.
#: Without them oneDNN converts bf16 to fp32 and back around every kernel, which is slower
#: than fp32 alone.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU runs bf16 matrix products natively (``avx512_bf16`` or AMX).

    Both the CPU's flags and torch must agree: torch's dispatch level
    (``torch.backends.cpu.get_cpu_capability()``) has to be AVX-512 (or AMX) for its bf16
    kernels to use the instructions, which a hypervisor may hide even where the flag shows.
    Platforms without ``/proc/cpuinfo`` answer False (fp32 stays the safe choice there).
    """
    try:
        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:  # very old or unusual builds
        return False
    if "AVX512" not in capability and "AMX" not in capability:
        return False
    return any(flag in _cpu_flags() for flag in BF16_CPU_FLAGS)


def choose_dtype(request: str | torch.dtype, device: torch.device,
                 half_dtypes: Sequence[str] = (), *, cpu_bf16_ok: bool = False) -> torch.dtype:
    """Return the floating-point type to run in.

    ``"auto"`` on CUDA is the first of the architecture's ``half_dtypes`` the GPU supports
    (HAT lists only bfloat16 because it overflows in float16); an architecture with none runs
    in float32. ``"auto"`` on the CPU is bfloat16 when the family passed the CPU accuracy
    gate (``cpu_bf16_ok``: bf16 against fp32 on a real photo >= 45 dB PSNR) and the CPU has
    native bf16 instructions (:func:`cpu_has_fast_bf16`); float32 otherwise. Explicit
    requests are honoured, except float16 on the CPU and bfloat16 on a CPU without the
    instructions, which PyTorch runs slower than float32.
    """
    if isinstance(request, torch.dtype):
        return request
    req = str(request).strip().lower()
    if req == "auto":
        if device.type == "cuda":
            for name in half_dtypes:
                dt = getattr(torch, _DTYPES[name]) if name in _DTYPES else None
                if dt is torch.bfloat16 and not torch.cuda.is_bf16_supported():
                    continue
                if dt is not None:
                    return dt
        if device.type == "cpu" and cpu_bf16_ok and cpu_has_fast_bf16() \
                and os.environ.get(CPU_BF16_ENV, "").strip() != "0":
            return torch.bfloat16
        return torch.float32
    if req not in _DTYPES:
        raise DeviceError(f"Unknown precision '{request}'; choose one of "
                          f"{', '.join(PRECISION_CHOICES)}.")
    dt = getattr(torch, _DTYPES[req])
    if device.type == "cpu" and dt is torch.float16:
        raise DeviceError(f"Precision '{request}' is not offered on the CPU (it is slower there "
                          "than fp32); use fp32, bf16 on a CPU with bf16 instructions, or a GPU.")
    if device.type == "cpu" and dt is torch.bfloat16 and not cpu_has_fast_bf16():
        raise DeviceError(f"Precision '{request}' is not offered on this CPU: it has no bf16 "
                          "instructions (avx512_bf16 or AMX), so bf16 would be slower than "
                          "fp32; use fp32 or a GPU.")
    return dt


# --- CPU threads ----------------------------------------------------------------------------
def _running_tasks() -> int | None:
    """Runnable tasks on the whole system right now (``/proc/loadavg``), or None."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def omp_waits_sleep() -> bool:
    """True when OpenMP's idle threads sleep rather than spin (see ``sr_core/__init__.py``)."""
    from . import OMP_WAITS_SLEEP

    return OMP_WAITS_SLEEP


def choose_cpu_threads(limit: int, *, samples: int = 3,
                       running: Callable[[], int | None] = _running_tasks,
                       waits_sleep: bool | None = None) -> int:
    """Intra-op threads for the next forward pass on the CPU.

    Each operation of a forward pass ends with all its threads meeting. When idle threads
    sleep there (``OMP_WAIT_POLICY=PASSIVE``, which importing ``sr_core`` before torch sets)
    every thread is worth having: beside one busy process on 2 cores, 2 threads ran ASID x4
    (128x128) in 1.28 s and SPIN in 4.8 s, 1 thread in 1.95 s and 6.1 s. So the answer is
    ``limit``. When they spin (torch was loaded first), a waiting thread holds a core the
    late thread needs, and 2 threads took 6.6 s against 1.9 s for 1; then the threads are the
    cores not already busy: the runnable tasks seen from here, less this thread, sampled
    ``samples`` times a moment apart and the least taken, so that a passing process does not
    count.
    """
    limit = max(1, int(limit))
    if waits_sleep is None:
        waits_sleep = omp_waits_sleep()
    if limit == 1 or waits_sleep:
        return limit
    others: int | None = None
    for i in range(max(1, samples)):
        if i:
            time.sleep(0.002)
        n = running()
        if n is None:
            return limit
        seen = max(0, n - 1)  # this thread is running while it reads
        others = seen if others is None else min(others, seen)
    free = usable_cores() - (others or 0)
    return max(1, min(limit, free))


def dtype_name(dtype: torch.dtype) -> str:
    """Short name of a dtype as the CLI spells it (``fp32``, ``bf16``, ``fp16``)."""
    names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return names.get(dtype, str(dtype))


def is_out_of_memory(error: BaseException) -> bool:
    """True when ``error`` is an allocation failure (CUDA, MPS or CPU), not a bug."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    if isinstance(error, RuntimeError):
        msg = str(error).lower()
        return ("out of memory" in msg or "can't allocate memory" in msg
                or "cudnn_status_alloc_failed" in msg or "cublas_status_alloc_failed" in msg)
    return False


def release_cached_memory(device: torch.device) -> None:
    """Give cached allocator blocks back after an out-of-memory error."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        with contextlib.suppress(Exception):
            torch.mps.empty_cache()


_PROMPT_RELEASE_DONE = False
#: Allocations of at least this many bytes are mapped and unmapped directly by glibc.
MMAP_THRESHOLD = 1 << 20


def release_freed_memory_promptly() -> None:
    """Have glibc hand large freed blocks straight back to the system (Linux; once).

    By default glibc keeps freed blocks below a threshold that grows up to 32 MiB for reuse.
    Tiles of different sizes fragment that pool and the process swells by hundreds of MB
    from tile to tile (measured on ASID x4, 1 MP: peak RSS 1.9 GB, and 1.15 GB with this).
    A fixed threshold maps big tensors directly; their page faults cost little next to a
    tile's compute. This affects the whole process; elsewhere (macOS, Windows) it does nothing.
    """
    global _PROMPT_RELEASE_DONE
    if _PROMPT_RELEASE_DONE or not sys.platform.startswith("linux"):
        return
    _PROMPT_RELEASE_DONE = True
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        pass


def available_ram() -> int:
    """Bytes of RAM the system can give this process without swapping (best effort)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if sys.platform == "win32":
        return _windows_available_ram()
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return _FALLBACK_RAM


def _windows_available_ram() -> int:
    import ctypes

    class _MemStatus(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong)] + [
            (name, ctypes.c_ulonglong) for name in (
                "ullTotalPhys", "ullAvailPhys", "ullTotalPageFile", "ullAvailPageFile",
                "ullTotalVirtual", "ullAvailVirtual", "ullAvailExtendedVirtual")]

    st = _MemStatus()
    st.dwLength = ctypes.sizeof(_MemStatus)
    if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(st)):  # type: ignore[attr-defined]
        return int(st.ullAvailPhys)
    return _FALLBACK_RAM


def memory_budget(device: torch.device) -> int:
    """Bytes one tile's forward pass (plus the stitcher's row band) may use on ``device``.

    CUDA: a share of the currently free VRAM. CPU (and MPS, whose memory is the system's):
    a share of the available RAM, capped so that the process stays small.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_BUDGET_FRACTION)
    return int(min(available_ram() * CPU_BUDGET_FRACTION, CPU_BUDGET_CAP))


def describe(device: torch.device) -> str:
    """A human-readable device name for messages and reports."""
    if device.type == "cuda":
        try:
            return f"CUDA ({torch.cuda.get_device_name(device)})"
        except Exception:
            return "CUDA"
    if device.type == "mps":
        return "Apple MPS"
    return "CPU"
