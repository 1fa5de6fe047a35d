"""HPINet speed (and memory) table: ms per forward of our implementation, optionally beside
the official one.

    python benchmarks/bench_hpinet.py                       # S and M x4, 128^2 and 256^2
    python benchmarks/bench_hpinet.py --official /tmp/official_hpinet
    python benchmarks/bench_hpinet.py --memory              # measured peak vs estimate_memory

``--official`` names a folder holding the authors' ``HPINet.py`` (github.com/passerer/HPINet,
needs ``einops`` importable, e.g. ``pip install --target FOLDER einops``). It is imported from
there at run time and never copied into this repository. Both networks get the same weights
and the table prints their largest output difference as a sanity check. Use ``--weights DIR``
(a folder with the released ``HPINet-M-x4.pth`` etc.) for that check: freshly initialised
weights give near-tied patch matches, which float rounding may resolve either way.
Timings are the best of ``--repeat`` runs after one warm-up, ours and official interleaved so
that background load hits both alike.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sr_core.archs import hpinet


def _devices(choice: str) -> list[str]:
    if choice == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [choice]


def _load_official(folder: str) -> Any:
    path = Path(folder).resolve()
    if not (path / "HPINet.py").is_file():
        sys.exit(f"{path}: no HPINet.py there (clone github.com/passerer/HPINet into it).")
    sys.path.insert(0, str(path))
    try:
        return importlib.import_module("HPINet")
    except ImportError as e:
        sys.exit(f"{path}/HPINet.py could not be imported ({e}); install einops next to it.")


def _network(variant: str, scale: int, weights: str | None) -> torch.nn.Module:
    """Our network, with the released weights when ``weights`` holds them."""
    path = Path(weights or "") / f"HPINet-{variant}-x{scale}.pth"
    if weights and path.is_file():
        from sr_core import load_model

        return load_model(path).net.eval()
    return hpinet.build(hpinet.config(variant, scale)).eval()


def _time(fn: Any, x: torch.Tensor, device: str, clock: str = "wall") -> float:
    # "cpu" (process CPU time) stays meaningful on a machine others are loading too.
    now = time.process_time if clock == "cpu" and device == "cpu" else time.perf_counter
    if device == "cuda":
        torch.cuda.synchronize()
    start = now()
    fn(x)
    if device == "cuda":
        torch.cuda.synchronize()
    return (now() - start) * 1000.0


def bench_speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time every (variant, size, device); returns the table rows."""
    official = _load_official(args.official) if args.official else None
    rows = []
    for device in _devices(args.device):
        for variant in args.variants:
            ours = _network(variant, args.scale, args.weights).to(device)
            theirs = None
            if official is not None:
                theirs = official.HPINet(variant, args.scale).eval()
                theirs.load_state_dict(ours.state_dict())
                theirs.to(device)
            for size in args.sizes:
                torch.manual_seed(size)
                x = torch.rand(1, 3, size, size, device=device)
                row: dict[str, Any] = {"model": f"HPINet-{variant} x{args.scale}",
                                       "size": size, "device": device}
                with torch.no_grad():
                    y = ours(x)
                    if theirs is not None:
                        row["max_abs_diff"] = float((theirs(x) - y).abs().max())
                    best_ours = best_theirs = float("inf")
                    for _ in range(args.repeat):
                        best_ours = min(best_ours, _time(ours, x, device, args.clock))
                        if theirs is not None:
                            best_theirs = min(best_theirs, _time(theirs, x, device, args.clock))
                row["ours_ms"] = round(best_ours, 1)
                if theirs is not None:
                    row["official_ms"] = round(best_theirs, 1)
                    row["speedup"] = round(best_theirs / best_ours, 2)
                rows.append(row)
                _print_row(row, official is not None)
    return rows


def _print_header(with_official: bool) -> None:
    head = f"{'model':<14} {'size':>5} {'device':<6} {'ours ms':>10}"
    if with_official:
        head += f" {'official ms':>12} {'speed-up':>9} {'max|diff|':>10}"
    print(head)
    print("-" * len(head))


def _print_row(row: dict[str, Any], with_official: bool) -> None:
    line = f"{row['model']:<14} {row['size']:>5} {row['device']:<6} {row['ours_ms']:>10.1f}"
    if with_official:
        line += (f" {row['official_ms']:>12.1f} {row['speedup']:>8.2f}x"
                 f" {row['max_abs_diff']:>10.1e}")
    print(line, flush=True)


# --- memory -------------------------------------------------------------------------------
def _measure_memory(variant: str, scale: int, size: int, device: str) -> int:
    """Peak working bytes of one forward (run in a fresh process for CPU)."""
    cfg = hpinet.config(variant, scale)
    net = hpinet.build(cfg).eval().to(device)
    x = torch.rand(1, 3, size, size, device=device)
    with torch.no_grad():
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            net(x)
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - base
        net(torch.rand(1, 3, 32, 32))  # load kernels and libraries before the baseline
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
        base = _proc_status("VmRSS")
        net(x)
        return _proc_status("VmHWM") - base


def _proc_status(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) * 1024


def bench_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measured peak vs ``estimate_memory`` for every (variant, size, device)."""
    print(f"{'model':<14} {'size':>5} {'device':<6} {'peak MiB':>9} {'estimate MiB':>13}")
    rows = []
    for device in _devices(args.device):
        for variant in args.variants:
            for size in args.sizes:
                if device == "cpu":
                    if not Path("/proc/self/clear_refs").exists():
                        sys.exit("CPU memory measurement needs Linux /proc.")
                    # Large blocks straight from mmap, so freed memory leaves the RSS at once.
                    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
                    out = subprocess.run(
                        [sys.executable, __file__, "--_measure", variant, str(args.scale),
                         str(size)], env=env, check=True, capture_output=True, text=True)
                    peak = int(out.stdout.strip().splitlines()[-1])
                else:
                    peak = _measure_memory(variant, args.scale, size, device)
                est = hpinet.estimate_memory(hpinet.config(variant, args.scale), size, size)
                row = {"model": f"HPINet-{variant} x{args.scale}", "size": size,
                       "device": device, "peak_bytes": peak, "estimate_bytes": est}
                rows.append(row)
                print(f"{row['model']:<14} {size:>5} {device:<6} {peak / 2**20:>9.1f}"
                      f" {est / 2**20:>13.1f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and print the speed or memory table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--variants", nargs="+", default=["S", "M"], choices=["S", "M", "L"])
    p.add_argument("--scale", type=int, default=4, choices=[2, 3, 4])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--official", metavar="PATH", help="folder with the official HPINet.py")
    p.add_argument("--weights", metavar="DIR", help="folder with released HPINet-*.pth files")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="wall time, or process CPU time (robust to other load; CPU only)")
    p.add_argument("--memory", action="store_true", help="peak memory instead of speed")
    p.add_argument("--json", action="store_true", help="also print the rows as JSON")
    p.add_argument("--_measure", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._measure:
        variant, scale, size = args._measure
        print(_measure_memory(variant, int(scale), int(size), "cpu"))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.clock} clock"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    if args.memory:
        rows = bench_memory(args)
    else:
        _print_header(args.official is not None)
        rows = bench_speed(args)
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
