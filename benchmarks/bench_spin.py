"""SPIN speed and peak memory per input size on the CPU, optionally against the official code.

    python benchmarks/bench_spin.py [--scale 4] [--sizes 64,128,256,384,512] [--threads 2]
                                    [--repeat N] [--official PATH/TO/models/spin.py] [--check]
                                    [--json]

Every measurement runs in a fresh subprocess: one warm-up forward at 32x32, then one timed
forward at the size; with ``--repeat N`` ours and the official alternate N times and the
fastest run of each is kept (the machine may be shared). "peak" is the process's peak
resident memory during that forward minus its resident memory just before it (the
high-water mark is reset first), so it counts everything torch allocates, which tracemalloc
cannot see. ``estimate`` is
``spin.estimate_memory`` for the same size (the engine sizes tiles with it).

``--official`` imports the authors' ``spin.py`` from that path at run time (it is never
copied into this repository; it needs ``einops``). Its CUDA-only distance extension is
replaced by :class:`CPUPairwiseDistance` below, a vectorised CPU equivalent. Both networks
get the same random weights. ``--check`` also compares the two outputs at 64x64.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sr_core.archs import spin  # noqa: E402


class CPUPairwiseDistance(torch.autograd.Function):
    """CPU stand-in for the official ``PairwiseDistFunction`` (forward only).

    ``out[b, k, p] = sum_c (pix[b, c, p] - spix[b, c, label(p) + dx + dy * nW])^2`` for the 9
    neighbours ``dy = k // 3 - 1``, ``dx = k % 3 - 1``; ``1e16`` outside the superpixel grid.
    """

    @staticmethod
    def forward(ctx, pix, spix, labels, n_w, n_h):  # noqa: ANN001, ANN205 - autograd signature
        b, c, n = pix.shape
        lab = labels.long()
        gx, gy = lab % n_w, lab // n_w
        out = pix.new_empty(b, 9, n)
        for k in range(9):
            dy, dx = k // 3 - 1, k % 3 - 1
            ok = (gx + dx >= 0) & (gx + dx < n_w) & (gy + dy >= 0) & (gy + dy < n_h)
            idx = (lab + dx + dy * n_w).clamp(0, n_w * n_h - 1)
            cand = spix.gather(2, idx[:, None, :].expand(-1, c, -1))
            out[:, k] = (pix - cand).square().sum(1).masked_fill(~ok, 1e16)
        return out


def load_official(path: str) -> types.ModuleType:
    """Import the official ``spin.py`` with the CPU distance in place of its CUDA extension."""
    src = Path(path).resolve()
    if src.is_dir():
        src = src / "models" / "spin.py" if (src / "models").is_dir() else src / "spin.py"
    pkg = types.ModuleType("_official_spin")
    pkg.__path__ = [str(src.parent)]
    sys.modules["_official_spin"] = pkg
    shim = types.ModuleType("_official_spin.pair_wise_distance")
    shim.PairwiseDistFunction = CPUPairwiseDistance
    sys.modules["_official_spin.pair_wise_distance"] = shim
    spec = importlib.util.spec_from_file_location("_official_spin.spin", src)
    module = importlib.util.module_from_spec(spec)
    sys.modules["_official_spin.spin"] = module
    spec.loader.exec_module(module)
    return module


def make_nets(scale: int, official: str | None) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    torch.manual_seed(0)
    ours = spin.build(spin.config("light", scale))
    if official is None:
        return ours, None
    mod = load_official(official)
    c = ours.cfg
    theirs = mod.SPIN(colors=c.in_chans, dim=c.dim, block_num=c.num_blocks, heads=c.heads,
                      qk_dim=c.qk_dim, mlp_dim=c.mlp_dim, stoken_size=list(c.stoken_sizes),
                      upscale=scale)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs.eval()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(which: str, size: int, scale: int, official: str | None) -> dict:
    """One measurement in this (fresh) process."""
    import gc

    ours, theirs = make_nets(scale, official if which == "official" else None)
    net = theirs if which == "official" else ours
    with torch.inference_mode():
        net(torch.rand(1, 3, 32, 32) * 255)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size)) * 255
    gc.collect()
    _reset_peak()
    before = _rss()
    t0 = time.perf_counter()
    with torch.inference_mode():
        y = net(x)
    seconds = time.perf_counter() - t0
    peak = _peak() - before
    del y
    return {"which": which, "size": size, "seconds": seconds, "peak_bytes": peak}


def run_child(which: str, size: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--sizes", str(size), "--scale",
           str(args.scale), "--threads", str(args.threads)]
    if args.official:
        cmd += ["--official", args.official]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"which": which, "size": size, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _best(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    return min(ok, key=lambda r: r["seconds"]) if ok else runs[0]


def check(args: argparse.Namespace) -> float:
    ours, theirs = make_nets(args.scale, args.official)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255
    with torch.inference_mode():
        a = ours(x.clone())
        b = theirs(x.clone())
    return float((a - b).abs().max())


def fit(rows: list[dict]) -> tuple[float, float]:
    """Least-squares ``peak = a * pixels + b`` over the measured sizes."""
    pts = [(r["size"] ** 2, r["peak_bytes"]) for r in rows if "peak_bytes" in r]
    n = len(pts)
    if n < 2:
        return float("nan"), float("nan")
    mx = sum(p for p, _ in pts) / n
    my = sum(m for _, m in pts) / n
    a = sum((p - mx) * (m - my) for p, m in pts) / sum((p - mx) ** 2 for p, _ in pts)
    return a, my - a * mx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=4, choices=spin.SCALES)
    ap.add_argument("--sizes", default="64,128,256,384,512")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--official", help="path of the official models/spin.py (or its repo)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per size (alternating); the fastest one is reported")
    ap.add_argument("--check", action="store_true", help="compare outputs with the official")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=("ours", "official"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        print(json.dumps(child(args.child, sizes[0], args.scale, args.official)))
        return

    rows = []
    for size in sizes:
        runs: dict[str, list[dict]] = {"ours": [], "official": []}
        for _ in range(args.repeat):  # alternate, so both see the same machine load
            runs["ours"].append(run_child("ours", size, args))
            if args.official:
                runs["official"].append(run_child("official", size, args))
        row = {"size": size, "ours": _best(runs["ours"])}
        if args.official:
            row["official"] = _best(runs["official"])
        rows.append(row)
        if not args.json:
            print(_format(row, args.scale), flush=True)
    a, b = fit([r["ours"] for r in rows])
    result = {"scale": args.scale, "threads": args.threads, "rows": rows,
              "fit_bytes_per_pixel": a, "fit_base_bytes": b}
    if args.official and args.check:
        result["max_abs_diff_0_255"] = check(args)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"fit: peak ~= {a:.0f} B/pixel * H*W + {b / 2**20:.1f} MiB")
    if "max_abs_diff_0_255" in result:
        print(f"max |ours - official| at 64x64 (0..255 units): {result['max_abs_diff_0_255']:.2e}")


def _format(row: dict, scale: int) -> str:
    size = row["size"]
    est = spin.estimate_memory(spin.config("light", scale), size, size) / 2**20
    ours = row["ours"]
    if "error" in ours:
        return f"{size:4d}^2  ours failed: {ours['error']}"
    text = (f"{size:4d}^2  ours {ours['seconds']:7.2f} s {ours['peak_bytes'] / 2**20:8.0f} MiB"
            f"  (estimate {est:6.0f} MiB)")
    off = row.get("official")
    if off is None:
        return text
    if "error" in off:
        return text + f"  official failed: {off['error']}"
    return (text + f"  | official {off['seconds']:7.2f} s {off['peak_bytes'] / 2**20:8.0f} MiB"
            f"  | speed-up {off['seconds'] / ours['seconds']:5.2f}x"
            f"  memory / {off['peak_bytes'] / max(ours['peak_bytes'], 1):5.1f}")


if __name__ == "__main__":
    main()
