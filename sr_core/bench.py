"""Speed and memory of the upscaling path a user gets (``finescale bench``).

One synthetic picture goes through :class:`~sr_core.engine.Upscaler` -- device and precision
choice, tile plan, stitching -- ``repeat`` times. Reported: the median wall time, output
megapixels per second, the peak memory of the runs (resident set size on the CPU, peak
allocated bytes on CUDA) and the achieved GFLOP/s, the FLOPs being counted once with
:class:`torch.utils.flop_counter.FlopCounterMode` over the same engine call (tile overlaps
included), so that speed can be set against the machine's roofline.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import FinescaleError

#: ``progress(done, total)`` after each run (the FLOP-counting and warm-up runs included).
Progress = Callable[[int, int], None]


def peak_live_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes of the tensors created while ``fn`` runs: live tensor storages, counted as
    they are made and freed (not the allocator's caches), so a memory model can be checked
    against what a forward really holds at once."""
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    live: dict[int, list[int]] = {}  # storage pointer -> [bytes, tensors still using it]
    state = {"cur": 0, "peak": 0}

    def release(ptr: int) -> None:
        entry = live[ptr]
        entry[1] -= 1
        if entry[1] == 0:
            state["cur"] -= entry[0]
            del live[ptr]

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    st = t.untyped_storage()
                    ptr = st.data_ptr()
                    if ptr not in live:
                        live[ptr] = [st.nbytes(), 0]
                        state["cur"] += st.nbytes()
                        state["peak"] = max(state["peak"], state["cur"])
                    live[ptr][1] += 1
                    weakref.finalize(t, release, ptr)
            return out

    with Track():
        fn()
    return state["peak"]


@dataclass(frozen=True)
class BenchResult:
    """What one ``finescale bench`` measured."""

    model: str
    device: str
    precision: str
    tile: int                 # tile side the engine used (0 = the whole image in one pass)
    tiles: int                # tiles per picture
    input: tuple[int, int]    # (height, width)
    output: tuple[int, int]
    repeat: int
    latency_s: float          # median over the timed runs
    latencies_s: tuple[float, ...]
    mpix_per_s: float         # output megapixels per second at the median
    peak_memory_bytes: int | None
    base_memory_bytes: int | None  # the same measure before the first run (model loaded)
    memory: str               # "rss" (process peak resident set) or "cuda_allocated"
    gflop: float              # work of one picture
    gflop_per_s: float
    threads: int              # intra-op threads of the last timed run (engine's choice)

    def to_dict(self) -> dict[str, Any]:
        """The ``finescale bench --json`` object."""
        d = asdict(self)
        d["input"], d["output"] = list(self.input), list(self.output)
        d["latencies_s"] = list(self.latencies_s)
        return d


def sdpa_flop_mapping() -> dict[Any, Callable[..., int]]:
    """FLOP formulas for the SDPA kernels torch's counter has no entry for.

    ``FlopCounterMode`` knows the CUDA flash / efficient / cuDNN kernels, but not the CPU one
    (``aten._scaled_dot_product_flash_attention_for_cpu``), so a CPU count silently left out
    every attention matmul (HPINet-M's 128x128 forward: 45.1 of 83.5 GFLOP). Its cost is
    torch's own :func:`~torch.utils.flop_counter.sdpa_flop_count` of the q/k/v shapes.
    """
    import torch
    from torch.utils.flop_counter import sdpa_flop_count

    def cpu_flash(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                  **kwargs: Any) -> int:
        return int(sdpa_flop_count(query, key, value))

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: cpu_flash} if op is not None else {}


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (or one number for a square) -> ``(height, width)``."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[x×*,]\s*(\d+))?\s*", text)
    if not m or int(m.group(1)) < 1 or (m.group(2) and int(m.group(2)) < 1):
        raise FinescaleError(f"Size '{text}' is not HEIGHTxWIDTH in pixels (e.g. 256x256).")
    h = int(m.group(1))
    return h, int(m.group(2) or h)


def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic uint8 RGB picture with smooth areas, edges and fine texture.

    Data-dependent models (HPINet's patch matching, SPIN's superpixels) should see
    photo-like content rather than flat grey or pure noise.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([np.sin(xx / 23.0 + c) * np.cos(yy / 17.0 - c) for c in (0.0, 1.3, 2.6)], -1)
    edges = ((xx // 40 + yy // 40) % 2)[..., None] * 0.5
    img = 110 + 80 * base + 40 * edges + rng.normal(0, 6, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


# --- memory ---------------------------------------------------------------------------------
def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _proc_status(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status in bytes (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss() -> int | None:
    """Peak resident set size of this process in bytes, or None where unknown."""
    peak = _proc_status("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows
        return None
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(ru) if sys.platform == "darwin" else int(ru) * 1024  # bytes vs KiB


# --- the benchmark --------------------------------------------------------------------------
def run_bench(model: Any, size: tuple[int, int] = (256, 256), *, device: str = "auto",
              precision: str = "auto", tile: int | str = "auto", repeat: int = 3,
              progress: Progress | None = None) -> BenchResult:
    """Time ``Upscaler(model, device, precision, tile).upscale`` on a synthetic picture.

    One untimed run counts the FLOPs (and warms up caches and kernels), one more warms up,
    then ``repeat`` runs are timed. The peak memory covers all runs; on the CPU it is the peak
    resident set of the whole process (model, input and output included), reset after the
    model is loaded where the platform allows (Linux), else the lifetime peak.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .device import describe, dtype_name
    from .engine import Upscaler

    if repeat < 1:
        raise FinescaleError(f"--repeat must be at least 1, not {repeat}.")
    up = Upscaler(model, device=device, precision=precision, tile=tile)
    h, w = size
    img = synthetic_photo(h, w)
    plan = up.plan(h, w)
    cuda = up.device.type == "cuda"
    total = repeat + 2
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(up.device)

    # Memory is measured from here (model loaded, picture made) over every run: allocator
    # caches filled by the first run are part of what an upscale costs.
    if cuda:
        torch.cuda.reset_peak_memory_stats(up.device)
        base = int(torch.cuda.memory_allocated(up.device))
    else:
        base = _proc_status("VmRSS") if _reset_peak_rss() else None
    with FlopCounterMode(display=False, custom_mapping=sdpa_flop_mapping()) as counter:
        out = up.upscale(img)
    flops = counter.get_total_flops()
    step()
    up.upscale(img)
    sync()
    step()

    times = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        up.upscale(img)
        sync()
        times.append(time.perf_counter() - t0)
        step()
    peak = int(torch.cuda.max_memory_allocated(up.device)) if cuda else _peak_rss()

    med = statistics.median(times)
    oh, ow = out.shape[:2]
    return BenchResult(
        model=up.model.name, device=describe(up.device), precision=dtype_name(up.dtype),
        tile=plan.tile, tiles=len(plan.tiles),
        input=(h, w), output=(oh, ow), repeat=repeat, latency_s=med,
        latencies_s=tuple(times), mpix_per_s=oh * ow / 1e6 / med,
        peak_memory_bytes=peak, base_memory_bytes=base, memory="cuda_allocated" if cuda else "rss",
        gflop=flops / 1e9, gflop_per_s=flops / 1e9 / med, threads=up.threads_used,
    )


def format_result(r: BenchResult) -> str:
    """The plain-text report ``finescale bench`` prints."""
    tile = "whole image" if r.tile == 0 else f"{r.tile}px tiles"
    lo, hi = min(r.latencies_s), max(r.latencies_s)
    mem = "unknown" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / 2**20:,.0f} MiB"
    if r.peak_memory_bytes is not None and r.base_memory_bytes is not None:
        grown = (r.peak_memory_bytes - r.base_memory_bytes) / 2**20
        mem += f", {grown:,.0f} MiB above the loaded model"
    kind = "peak RSS of the process" if r.memory == "rss" else "peak allocated on the GPU"
    cores = f", {r.threads} threads" if r.device == "CPU" else ""
    return "\n".join([
        f"{r.model} on {r.device}{cores}, {r.precision}, {tile} ({r.tiles} tile"
        f"{'s' if r.tiles != 1 else ''})",
        f"input {r.input[0]}x{r.input[1]} -> output {r.output[0]}x{r.output[1]}, "
        f"{r.repeat} timed run{'s' if r.repeat != 1 else ''}",
        f"latency     {r.latency_s:.3f} s median  ({lo:.3f} .. {hi:.3f})",
        f"throughput  {r.mpix_per_s:.3f} output MP/s",
        f"memory      {mem}  ({kind})",
        f"compute     {r.gflop:.1f} GFLOP per picture -> {r.gflop_per_s:.1f} GFLOP/s",
    ])
