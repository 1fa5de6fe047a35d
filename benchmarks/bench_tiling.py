"""Tiling overhead and fidelity: the same picture through each architecture whole and in tiles.

    python benchmarks/bench_tiling.py                       # every family, 512x512, CPU
    python benchmarks/bench_tiling.py --family hpinet --size 768 --devices cpu,cuda
    python benchmarks/bench_tiling.py --seams /tmp/seams    # zoomed crops across a tile border

For each family (random weights of its smallest official variant at x4, or ``--weights``) the
picture -- a crop of a Set14/B100 photo when ``../shared`` is there, else a synthetic one -- is
upscaled once whole (``tile=0``) and once in the 2x2 (or smallest) grid of tiles that covers
it, after a warm-up. Printed per family and device: seconds each way, the time overhead of
tiling (target <= 15 %), the extra source pixels the context costs, and the PSNR of tiled
against whole (target >= 50 dB). ``--seams DIR`` writes, per family, a PNG of a crop across a
tile border: whole | tiled | |difference| x 50.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sr_core.engine import Upscaler  # noqa: E402
from sr_core.loader import load_model  # noqa: E402
from sr_core.models import SRModel, families  # noqa: E402

#: Smallest official variant of each family (the benchmark's default network).
SMALLEST = {"hpinet": "S", "hat": "HAT-S", "spin": "light", "asid": "ASID"}


def shared_dir() -> Path | None:
    import os

    for cand in [os.environ.get("FINESCALE_SHARED"), REPO.parent / "shared"]:
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


def test_picture(size: int) -> np.ndarray:
    """A ``size x size`` float32 RGB picture: a real photo crop if one is at hand."""
    from PIL import Image

    shared = shared_dir()
    if shared is not None:
        for name in ("benchmark/B100", "benchmark/Set14", "train/BSD200"):
            for f in sorted((shared / "datasets" / name).glob("*.png")):
                with Image.open(f) as im:
                    if min(im.size) >= size:
                        rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
                        y0, x0 = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
                        return np.ascontiguousarray(rgb[y0:y0 + size, x0:x0 + size])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rng = np.random.default_rng(0)
    img = np.stack([np.sin(yy / 17) * np.cos(xx / 23), np.sin((yy + xx) / 31),
                    np.cos(yy / 7) * 0.3], -1) * 0.4 + 0.5
    return np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1).astype(np.float32)


def random_model(family: str, scale: int) -> SRModel:
    fam = next(f for f in families() if f.INFO.name == family)
    torch.manual_seed(0)
    net = fam.build(fam.config(SMALLEST[family], scale))
    return load_model(net.state_dict(), arch=family)


def two_by_two_tile(up: Upscaler, size: int) -> int:
    """The smallest tile whose plan cuts a ``size x size`` picture into at most 2x2 tiles."""
    tile = up.min_tile
    while up._plan(size, size, tile).rows > 2:
        tile += up.multiple
    return tile


def timed(up: Upscaler, img: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeat):
        if up.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = up.upscale(img)
        if up.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def write_seam(path: Path, whole: np.ndarray, tiled: np.ndarray, border_hr: int) -> None:
    """Whole | tiled | 50x difference, over a 96-px crop centred on a vertical tile border."""
    from PIL import Image

    h = whole.shape[0]
    x0 = max(0, border_hr - 48)
    y0 = h // 2 - 48
    crops = [whole[y0:y0 + 96, x0:x0 + 96], tiled[y0:y0 + 96, x0:x0 + 96]]
    crops.append(np.clip(np.abs(crops[0] - crops[1]) * 50, 0, 1))
    framed = [np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=1) for c in crops]
    strip = np.concatenate(framed, 1)
    im = Image.fromarray((np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8))
    im.resize((im.width * 3, im.height * 3), Image.NEAREST).save(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="all", help="hpinet, hat, spin, asid or all")
    ap.add_argument("--weights", help="a checkpoint instead of random weights (one family)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--size", type=int, default=512, help="picture side in pixels")
    ap.add_argument("--tile", type=int, default=0, help="tile size (default: a 2x2 grid)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs each way (best is kept)")
    ap.add_argument("--devices", default="cpu" + (",cuda" if torch.cuda.is_available() else ""))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--seams", type=Path, help="folder for zoomed crops across a tile border")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [f.INFO.name for f in families()] if args.family == "all" else [args.family]
    img = test_picture(args.size)
    if args.seams:
        args.seams.mkdir(parents=True, exist_ok=True)
    print(f"picture {args.size}x{args.size}, x{args.scale}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'model':<16}{'device':<8}{'tile':>6}{'grid':>6}{'whole s':>10}{'tiled s':>10}"
          f"{'overhead':>10}{'ctx px':>8}{'PSNR dB':>9}")
    for name in names:
        model = load_model(args.weights) if args.weights else random_model(name, args.scale)
        for dev in args.devices.split(","):
            whole_up = Upscaler(model, device=dev, tile=0)
            tile = args.tile or two_by_two_tile(whole_up, args.size)
            tiled_up = Upscaler(model, device=dev, tile=tile)
            plan = tiled_up.plan(args.size, args.size)
            whole_up.upscale(img[:64, :64])  # warm-up (allocator, kernels, caches)
            t_whole, whole = timed(whole_up, img, args.repeat)
            t_tiled, tiled = timed(tiled_up, img, args.repeat)
            extra = sum(t.src_pixels for t in plan.tiles) / args.size ** 2 - 1
            print(f"{model.name:<16}{dev:<8}{tile:>6}{f'{plan.rows}x{plan.cols}':>6}"
                  f"{t_whole:>10.2f}{t_tiled:>10.2f}{(t_tiled / t_whole - 1) * 100:>9.1f}%"
                  f"{extra * 100:>7.0f}%{psnr(tiled, whole):>9.2f}", flush=True)
            if args.seams and dev == "cpu":
                border = plan.col_cores[0].hi * model.scale
                write_seam(args.seams / f"seam_{name}.png", whole, tiled, border)
    return 0


if __name__ == "__main__":
    sys.exit(main())
