"""ASID speed (and memory) benchmark: Finescale's ASID against the official implementation.

    python benchmarks/bench_asid.py                                  # ASID x4, 128 and 256, CPU
    python benchmarks/bench_asid.py --official /tmp/official_asid --omnisr /tmp/official_omnisr
    python benchmarks/bench_asid.py --memory --sizes 64,128,37x53    # live bytes vs estimate

``--official`` is a folder holding the authors' ``components/ASID.py``, ``ASIDd8.py`` and
``ops/IDSA.py``, ``IDSG.py``, ``IDSG_A.py`` (saturnian77/ASID, e488abcf / eb5af3b4);
``--omnisr`` a folder holding ``ops/esa.py``, ``ops/layernorm.py`` and
``ops/pixelshuffle.py`` from Francis0625/Omni-SR (9f45e7a0), which ASID imports but does not
ship. Both are imported at run time from where they lie (never copied here); the official
code needs ``einops`` importable (``pip install einops`` or ``PYTHONPATH``). Both networks
get the same random weights; the script prints their max abs difference, ms per forward
(best wall-clock and best CPU time of ``--repeat`` runs; on a shared machine the CPU time is
the steadier figure) and the speed-up official / ours.

``--memory`` counts the bytes of live tensors during one forward (peak), for ours against
``asid.estimate_memory`` and, with ``--official``, for the official code too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sr_core.archs import asid  # noqa: E402
from sr_core.bench import peak_live_bytes as live_peak  # noqa: E402


def load_official(asid_dir: Path, omnisr_dir: Path, variant: str, scale: int) -> torch.nn.Module:
    """Build the authors' network for ``variant`` / ``scale`` from the two folders."""
    for d, files in ((asid_dir, ("components/ASID.py", "ops/IDSA.py")),
                     (omnisr_dir, ("ops/esa.py", "ops/layernorm.py", "ops/pixelshuffle.py"))):
        missing = [f for f in files if not (d / f).is_file()]
        if missing:
            sys.exit(f"bench_asid: {d} lacks {', '.join(missing)}")
    try:
        import einops  # noqa: F401
    except ImportError:
        sys.exit("bench_asid: the official ASID code needs einops (pip install einops)")
    # Both repositories put their modules in a package called ``ops``: merge the two folders.
    ops = types.ModuleType("ops")
    ops.__path__ = [str(asid_dir / "ops"), str(omnisr_dir / "ops")]
    sys.modules["ops"] = ops
    sys.path.insert(0, str(asid_dir))
    import importlib

    module = "components.ASIDd8" if variant == "ASID-D8" else "components.ASID"
    cls = getattr(importlib.import_module(module), "ASIDd8" if variant == "ASID-D8" else "ASID")
    kwargs = dict(upsampling=scale, res_num=8 if variant == "ASID-D8" else 3, block_num=1,
                  bias=True, block_script_name="IDSA", block_class_name="IDSA_Block2",
                  window_size=8, pe=True, ffn_bias=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.meshgrid indexing notice in the official code
        return cls(3, 3, 48, **kwargs).eval()


def time_forward(net: torch.nn.Module, x: torch.Tensor, repeat: int) -> tuple[float, float]:
    """Best wall-clock and best CPU milliseconds of ``repeat`` forwards (after a warm-up)."""
    walls, cpus = [], []
    with torch.inference_mode():
        net(x)
        for _ in range(repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            net(x)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    return min(walls) * 1e3, min(cpus) * 1e3


def peak_live_bytes(net: torch.nn.Module, x: torch.Tensor) -> int:
    """Peak bytes of tensors created during one forward (live tensors, not the allocator)."""
    with torch.inference_mode():
        return live_peak(lambda: net(x))


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="ASID", choices=["ASID", "ASID-D8"])
    ap.add_argument("--scale", type=int, default=4, choices=[2, 3, 4])
    ap.add_argument("--sizes", default="128,256", help="comma-separated, N or HxW")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--official", type=Path, help="folder with the authors' components/ and ops/")
    ap.add_argument("--omnisr", type=Path, help="folder with Omni-SR's ops/ (esa, layernorm, ...)")
    ap.add_argument("--memory", action="store_true", help="peak live tensor bytes, not speed")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.official and not args.omnisr:
        ap.error("--official needs --omnisr (ASID imports Omni-SR's esa/layernorm/pixelshuffle)")
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = asid.config(args.variant, args.scale)
    ours = asid.build(cfg)
    with torch.no_grad():  # random but not degenerate: perturb norms, biases, tables too
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    official = None
    if args.official:
        official = load_official(args.official, args.omnisr, args.variant, args.scale)
        official.load_state_dict(ours.state_dict())

    rows = []
    for size in args.sizes.split(","):
        h, w = parse_size(size)
        x = torch.rand(1, 3, h, w) * 2 - 1
        row: dict = {"size": f"{h}x{w}"}
        if official is not None:
            with torch.inference_mode():
                row["max_abs_diff"] = (ours(x) - official(x)).abs().max().item()
        if args.memory:
            row["ours_mb"] = peak_live_bytes(ours, x) / 2**20
            row["estimate_mb"] = asid.estimate_memory(cfg, h, w) / 2**20
            if official is not None:
                row["official_mb"] = peak_live_bytes(official, x) / 2**20
        else:
            row["ours_ms"], row["ours_cpu_ms"] = time_forward(ours, x, args.repeat)
            if official is not None:
                row["official_ms"], row["official_cpu_ms"] = time_forward(official, x, args.repeat)
                row["speedup"] = row["official_ms"] / row["ours_ms"]
                row["speedup_cpu"] = row["official_cpu_ms"] / row["ours_cpu_ms"]
        rows.append(row)

    head = {"variant": args.variant, "scale": args.scale, "threads": torch.get_num_threads(),
            "torch": torch.__version__}
    if args.json:
        print(json.dumps({**head, "rows": rows}, indent=2))
        return 0
    print(f"{args.variant} x{args.scale}, CPU, {head['threads']} threads, torch {head['torch']}")
    for r in rows:
        parts = [f"{r['size']:>9}"]
        if args.memory:
            parts.append(f"ours {r['ours_mb']:8.1f} MB  estimate {r['estimate_mb']:8.1f} MB")
            if "official_mb" in r:
                parts.append(f"official {r['official_mb']:8.1f} MB")
        else:
            parts.append(f"ours {r['ours_ms']:8.1f} ms (cpu {r['ours_cpu_ms']:8.1f})")
            if "official_ms" in r:
                parts.append(f"official {r['official_ms']:8.1f} ms "
                             f"(cpu {r['official_cpu_ms']:8.1f})  speed-up {r['speedup']:.2f}x "
                             f"(cpu {r['speedup_cpu']:.2f}x)")
        if "max_abs_diff" in r:
            parts.append(f"max|diff| {r['max_abs_diff']:.1e}")
        print("  ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
