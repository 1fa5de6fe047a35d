"""Each family's CPU speed against the machine's roofline, and the thread check.

    python benchmarks/bench_roofline.py                          # every family, 128 and 256
    python benchmarks/bench_roofline.py --families asid --threads 1 --precisions fp32,bf16
    python benchmarks/bench_roofline.py --thread-check --busy    # 1 vs N threads, a busy
                                                                 # process beside

Roofline table: per family, precision and input size, ms per x4 forward (median of
``--repeat``), the honest FLOP count (``FlopCounterMode`` with the CPU SDPA kernel counted,
``sr_core.bench.sdpa_flop_mapping``), achieved GFLOP/s, and the share of a 2048 x 2048 GEMM
in the same precision, timed interleaved with the forwards (GEMM, forward, GEMM, forward...)
in the same process at the same thread count, so that both see the same machine load.

Thread check (``--thread-check``): forwards at 1 thread, at ``--threads`` and at the engine's
per-forward choice (``device.choose_cpu_threads``), interleaved; with ``--busy`` a spinning
process runs beside for the whole measurement. The claim it checks: the engine's choice is
never slower than 1 thread.

Weights: the embedded ASID photo and SPIN models, HPINet-M from ``--hpinet-weights`` if
given; otherwise (and for HAT-S) random weights. FLOPs do not depend on them; HPINet's and
SPIN's data-dependent steps see a synthetic photo either way.

There is no ``--official``: the per-family scripts (``bench_asid.py``, ``bench_hat.py``,
``bench_spin.py``, ``bench_hpinet.py``) each take ``--official DIR`` and compare against the
authors' code on the same weights; that code is not available on every machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

importlib.import_module("sr_core")  # sets the OpenMP wait policy before torch loads

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from sr_core.bench import sdpa_flop_mapping, synthetic_photo  # noqa: E402
from sr_core.device import choose_cpu_threads, cpu_has_fast_bf16  # noqa: E402
from sr_core.models import SRModel, load_model  # noqa: E402

WEIGHTS = REPO / "resources" / "weights"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GEMM_N = 2048


def make_model(family: str, hpinet_weights: Path | None) -> SRModel:
    """The x4 model of ``family`` this benchmark times (see the module docstring)."""
    if family == "asid":
        return load_model(WEIGHTS / "finescale-asid-x4-photo.safetensors")
    if family == "spin":
        return load_model(WEIGHTS / "finescale-spin-x4.safetensors")
    if family == "hpinet":
        if hpinet_weights is not None:
            return load_model(hpinet_weights)
        from sr_core.archs import hpinet
        return load_model(hpinet.build(hpinet.config("M", 4)).state_dict())
    if family == "hat":
        from sr_core.archs import hat
        torch.manual_seed(0)
        return load_model(hat.build(hat.config("HAT-S", 4)).state_dict())
    raise SystemExit(f"bench_roofline: unknown family {family!r}")


def picture(size: int) -> torch.Tensor:
    """A synthetic photo as ``(1, 3, size, size)`` in [0, 1]."""
    img = synthetic_photo(size, size)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).contiguous()


def count_flops(model: SRModel, x: torch.Tensor) -> int:
    """FLOPs of one forward, the CPU SDPA kernel included."""
    with torch.inference_mode(), FlopCounterMode(display=False,
                                                 custom_mapping=sdpa_flop_mapping()) as c:
        model(x)
    return int(c.get_total_flops())


def timed(fn: Callable[..., object], *args: object) -> float:
    """Seconds ``fn(*args)`` took (wall clock)."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def roofline_rows(families: list[str], sizes: list[int], precisions: list[str], threads: int,
                  repeat: int, hpinet_weights: Path | None) -> list[dict]:
    """The roofline table (see the module docstring)."""
    torch.set_num_threads(threads)
    rows = []
    for family in families:
        base = make_model(family, hpinet_weights).eval()
        for prec in precisions:
            dtype = DTYPES[prec]
            model = base.to(dtype)
            a = torch.randn(GEMM_N, GEMM_N).to(dtype)
            b = torch.randn(GEMM_N, GEMM_N).to(dtype)
            for size in sizes:
                x = picture(size).to(dtype)
                flops = count_flops(model, x)
                gemm_t, fwd_t = [], []
                with torch.inference_mode():
                    model(x)  # warm-up: allocator, oneDNN primitives
                    a @ b
                    for _ in range(repeat):
                        gemm_t.append(timed(torch.matmul, a, b))
                        fwd_t.append(timed(model, x))
                gemm = 2 * GEMM_N ** 3 / statistics.median(gemm_t) / 1e9
                ms = statistics.median(fwd_t) * 1e3
                achieved = flops / 1e9 / (ms / 1e3)
                rows.append(dict(family=family, model=base.name, precision=prec, size=size,
                                 threads=threads, ms=ms, gflop=flops / 1e9,
                                 gflop_per_s=achieved, gemm_gflop_per_s=gemm,
                                 share=achieved / gemm))
            base = base.float()
    return rows


def _spin() -> None:
    while True:
        pass


def thread_rows(families: list[str], size: int, threads: int, repeat: int,
                hpinet_weights: Path | None) -> list[dict]:
    """Forwards at 1 thread, ``threads`` and the engine's choice, interleaved."""
    rows = []
    for family in families:
        model = make_model(family, hpinet_weights).eval()
        x = picture(size)
        modes: dict[str, Callable[[], int]] = {
            "1": lambda: 1, str(threads): lambda: threads,
            "engine": lambda: choose_cpu_threads(threads),
        }
        times: dict[str, list[float]] = {k: [] for k in modes}
        chosen: list[int] = []
        with torch.inference_mode():
            torch.set_num_threads(1)
            model(x)
            for _ in range(repeat):
                for name, pick in modes.items():
                    n = pick()
                    if name == "engine":
                        chosen.append(n)
                    torch.set_num_threads(n)
                    times[name].append(timed(model, x))
        row = dict(family=family, model=model.name, size=size,
                   engine_threads=chosen, **{f"ms_{k}": [round(t * 1e3) for t in v]
                                             for k, v in times.items()})
        row["median_ms"] = {k: round(statistics.median(v) * 1e3) for k, v in times.items()}
        rows.append(row)
    torch.set_num_threads(threads)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", default="asid,hat,spin,hpinet")
    p.add_argument("--sizes", default="128,256", help="input sides, comma-separated")
    p.add_argument("--precisions", default=None,
                   help="fp32,bf16 (default: fp32, and bf16 where the CPU has bf16 instructions)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--hpinet-weights", type=Path, default=None)
    p.add_argument("--thread-check", action="store_true",
                   help="1 thread vs --threads vs the engine's choice, at the first size")
    p.add_argument("--busy", action="store_true", help="a spinning process runs beside")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    sizes = [int(s) for s in args.sizes.split(",")]
    precisions = (args.precisions.split(",") if args.precisions
                  else ["fp32", "bf16"] if cpu_has_fast_bf16() else ["fp32"])
    busy = None
    if args.busy:
        busy = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
        busy.start()
    try:
        if args.thread_check:
            rows = thread_rows(families, sizes[0], args.threads, args.repeat,
                               args.hpinet_weights)
        else:
            rows = roofline_rows(families, sizes, precisions, args.threads, args.repeat,
                                 args.hpinet_weights)
    finally:
        if busy is not None:
            busy.terminate()
            busy.join()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"# torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, bf16 instructions: "
          f"{cpu_has_fast_bf16()}, busy process beside: {args.busy}")
    if args.thread_check:
        for r in rows:
            med = r["median_ms"]
            shown = "  ".join(f"{k} thr: {v}" for k, v in med.items())
            print(f"{r['model']:<14} {r['size']}^2  median ms {shown}  "
                  f"(engine chose {r['engine_threads']})")
        return 0
    print(f"{'model':<14}{'prec':>5}{'size':>6}{'thr':>4}{'ms':>9}{'GFLOP':>8}"
          f"{'GFLOP/s':>9}{'GEMM':>8}{'share':>7}")
    for r in rows:
        print(f"{r['model']:<14}{r['precision']:>5}{r['size']:>6}{r['threads']:>4}"
              f"{r['ms']:>9.0f}{r['gflop']:>8.1f}{r['gflop_per_s']:>9.1f}"
              f"{r['gemm_gflop_per_s']:>8.1f}{r['share']:>7.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
