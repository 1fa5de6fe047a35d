"""HAT speed (and memory) benchmark: Finescale's HAT against the official implementation.

    python benchmarks/bench_hat.py                         # HAT-S x4, 128x128, CPU
    python benchmarks/bench_hat.py --official /tmp/official_hat/hat_arch.py
    python benchmarks/bench_hat.py --memory                # peak RSS vs estimate_memory()

``--official`` takes the official ``hat/archs/hat_arch.py`` (XPixelGroup/HAT, commit
1638a9a8) or a checkout holding it. It is imported at run time from where it lies; BasicSR
(not installable here) and, when absent, einops are replaced by tiny shims written to a
temporary folder for the run. Both networks get the same random weights; the script prints
their max abs difference, ms per forward and the speed-up. Where CUDA is available it also
times float32 against bfloat16 (HAT overflows in float16) and prints their max abs diff.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sr_core.archs import hat

_SHIMS = {
    "basicsr/__init__.py": "",
    "basicsr/utils/__init__.py": "",
    "basicsr/archs/__init__.py": "",
    "basicsr/utils/registry.py": (
        "class _Registry:\n"
        "    def register(self, *args, **kwargs):\n"
        "        return lambda obj: obj\n\n"
        "ARCH_REGISTRY = _Registry()\n"
    ),
    "basicsr/archs/arch_util.py": (
        "import torch\n\n"
        "def to_2tuple(x):\n"
        "    return tuple(x) if isinstance(x, (list, tuple)) else (x, x)\n\n"
        "def trunc_normal_(tensor, std=1.0, **kwargs):\n"
        "    with torch.no_grad():\n"
        "        return torch.nn.init.trunc_normal_(tensor, std=std)\n"
    ),
}
# Only the one pattern the official OCAB uses; einops itself is used when installed.
_EINOPS_SHIM = (
    "def rearrange(t, pattern, nc, ch, owh, oww):\n"
    "    if pattern != 'b (nc ch owh oww) nw -> nc (b nw) (owh oww) ch':\n"
    "        raise NotImplementedError(pattern)\n"
    "    b, _, nw = t.shape\n"
    "    t = t.view(b, nc, ch, owh * oww, nw).permute(1, 0, 4, 3, 2)\n"
    "    return t.reshape(nc, b * nw, owh * oww, ch)\n"
)


def load_official(path: Path, shim_dir: Path):
    """Import the official ``hat_arch`` module from ``path`` with shims in ``shim_dir``."""
    if path.is_dir():
        path = path / "hat" / "archs" / "hat_arch.py"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (give hat_arch.py or a HAT checkout)")
    files = dict(_SHIMS)
    if importlib.util.find_spec("einops") is None:
        files["einops/__init__.py"] = _EINOPS_SHIM
    for rel, text in files.items():
        (shim_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (shim_dir / rel).write_text(text)
    sys.path.insert(0, str(shim_dir))
    spec = importlib.util.spec_from_file_location("official_hat_arch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_net(module, cfg: hat.HATConfig) -> torch.nn.Module:
    return module.HAT(
        img_size=64, patch_size=1, in_chans=3, embed_dim=cfg.embed_dim, depths=list(cfg.depths),
        num_heads=list(cfg.num_heads), window_size=cfg.window_size,
        compress_ratio=cfg.compress_ratio, squeeze_factor=cfg.squeeze_factor,
        conv_scale=cfg.conv_scale, overlap_ratio=cfg.overlap_ratio, mlp_ratio=cfg.mlp_ratio,
        upscale=cfg.scale, img_range=cfg.img_range, upsampler="pixelshuffle",
        resi_connection="1conv")


def random_net(cfg: hat.HATConfig, seed: int = 0) -> torch.nn.Module:
    """Our network with random weights large enough to exercise every path."""
    net = hat.build(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return net


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_forward(nets: dict[str, torch.nn.Module], x: torch.Tensor,
                 repeat: int) -> dict[str, dict[str, list[float]]]:
    """Wall and process-CPU ms per forward, the nets interleaved so that machine load
    hits them alike (CPU time is the fairer figure on a shared machine)."""
    times = {name: {"wall": [], "cpu": []} for name in nets}
    with torch.inference_mode():
        for net in nets.values():
            net(x)  # warm-up
        for _ in range(repeat):
            for name, net in nets.items():
                if x.is_cuda:
                    torch.cuda.synchronize()
                c, t = _cpu_seconds(), time.perf_counter()
                net(x)
                if x.is_cuda:
                    torch.cuda.synchronize()
                times[name]["wall"].append((time.perf_counter() - t) * 1000)
                times[name]["cpu"].append((_cpu_seconds() - c) * 1000)
    return times


def _fmt(ms: dict[str, list[float]]) -> str:
    wall, cpu = ms["wall"], ms["cpu"]
    return (f"wall median {statistics.median(wall):9.1f} ms  min {min(wall):9.1f} ms   "
            f"cpu median {statistics.median(cpu):9.1f} ms")


def bench_cpu(args: argparse.Namespace, cfg: hat.HATConfig) -> None:
    ours = random_net(cfg)
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    nets = {"finescale": ours}
    with tempfile.TemporaryDirectory(prefix="hat_shims_") as shim_dir:
        if args.official:
            module = load_official(Path(args.official), Path(shim_dir))
            off = official_net(module, cfg).eval()
            off.load_state_dict(ours.state_dict(), strict=True)
            with torch.inference_mode():
                diff = (off(x) - ours(x)).abs().max().item()
            print(f"max |official - finescale| = {diff:.3g}")
            nets["official"] = off
        print(f"{cfg.variant} x{cfg.scale}, {args.size}x{args.size}, CPU, "
              f"{torch.get_num_threads()} threads, {args.repeat} runs each")
        times = time_forward(nets, x, args.repeat)
    for name, ms in times.items():
        print(f"  {name:10s} {_fmt(ms)}")
    if "official" in times:
        off, ours = times["official"], times["finescale"]
        wall = statistics.median(off["wall"]) / statistics.median(ours["wall"])
        best = min(off["wall"]) / min(ours["wall"])
        cpu = statistics.median(off["cpu"]) / statistics.median(ours["cpu"])
        print(f"  speed-up: {wall:.2f}x (median wall), {best:.2f}x (min wall), {cpu:.2f}x (cpu)")


def bench_cuda(args: argparse.Namespace, cfg: hat.HATConfig) -> None:
    net = random_net(cfg).cuda()
    half = copy.deepcopy(net).to(torch.bfloat16)
    x = torch.rand(1, 3, args.size, args.size, device="cuda")
    times = time_forward({"float32": net}, x, args.repeat)
    times |= time_forward({"bfloat16": half}, x.to(torch.bfloat16), args.repeat)
    with torch.inference_mode():
        diff = (net(x) - half(x.to(torch.bfloat16)).float()).abs().max().item()
    print(f"{cfg.variant} x{cfg.scale}, {args.size}x{args.size}, {torch.cuda.get_device_name()}")
    for name, ms in times.items():
        print(f"  {name:10s} {_fmt(ms)}")
    print(f"  max |float32 - bfloat16| = {diff:.3g}")


# --- memory ---------------------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory_child(variant: str, scale: int, size: int) -> None:
    """Print the peak RSS growth of one forward (run in a fresh process)."""
    net = random_net(hat.config(variant, scale))
    with torch.inference_mode():
        net(torch.rand(1, 3, 16, 16))
        before = _rss_bytes()
        net(torch.rand(1, 3, size, size))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"working": peak - before}))


def bench_memory(args: argparse.Namespace) -> None:
    """Measured peak working memory against ``estimate_memory`` (float32, CPU)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    print(f"{'model':10s} {'size':>5s} {'measured MiB':>13s} {'estimate MiB':>13s} {'ratio':>6s}")
    for variant, scale in (("HAT-S", 4), ("HAT", 4), ("HAT", 2), ("HAT", 3)):
        for size in args.memory_sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", variant, str(scale), str(size)],
                capture_output=True, text=True, env=env, check=True).stdout
            measured = json.loads(out.strip().splitlines()[-1])["working"]
            est = hat.estimate_memory(hat.config(variant, scale), size, size)
            print(f"{variant:6s} x{scale}  {size:5d} {measured / 2**20:13.1f} {est / 2**20:13.1f} "
                  f"{est / measured:6.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="HAT-S", choices=("HAT-S", "HAT", "HAT-L"))
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--size", type=int, default=128, help="input side in pixels")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--official", metavar="PATH", help="official hat_arch.py or HAT checkout")
    p.add_argument("--memory", action="store_true", help="calibrate estimate_memory()")
    p.add_argument("--memory-sizes", type=int, nargs="+", default=[64, 128, 192])
    p.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        variant, scale, size = args.memory_child
        _memory_child(variant, int(scale), int(size))
        return
    if args.memory:
        bench_memory(args)
        return
    cfg = hat.config(args.variant, args.scale)
    bench_cpu(args, cfg)
    if torch.cuda.is_available():
        bench_cuda(args, cfg)


if __name__ == "__main__":
    main()
