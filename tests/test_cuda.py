"""The CUDA paths: official outputs reproduced on the GPU, half precision against the float32
reference, and a real out-of-memory error recovered from by smaller tiles.

CI has no GPU, so this module is skipped there; it runs wherever ``torch.cuda.is_available()``
(``python -m pytest tests/test_cuda.py`` on a CUDA machine). The CPU side of the same
behaviour (fallbacks, simulated OOM, precision choice) is tested in test_engine.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import golden_case, golden_ids, shared_dir_or_none

from sr_core import Upscaler, load_model
from sr_core.metrics import psnr

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

_SHARED = shared_dir_or_none()
_GOLDEN = _SHARED / "reference" / "golden" if _SHARED else None
# Every golden case that runs as one whole image (the tiled ASID case needs the official
# tile protocol, covered on the CPU).
CASES = [c for p in ("hpinet_", "hat_", "spin_", "asid") for c in golden_ids(_GOLDEN, p)
         if "TILED" not in c]
# (scale, offset) from our [0, 1] output to the official code's domain, and the golden
# tolerance in that domain.
DOMAIN = {"hpinet": (1.0, 0.0, 1e-4), "hat": (1.0, 0.0, 1e-4), "spin": (255.0, 0.0, 1e-2),
          "asid": (2.0, -1.0, 1e-4)}


@pytest.mark.parametrize("case_id", CASES or ["golden_cases_missing"])
def test_golden_case_reproduced_on_cuda_in_fp32(golden, case_id):
    if not CASES:
        pytest.fail("no golden cases found")
    weights, io = golden_case(golden, case_id)
    model = load_model(weights).to("cuda")
    with torch.no_grad():
        y = model(io["input"].cuda()).cpu()
    a, b, tol = DOMAIN[model.arch]
    diff = (y * a + b - io["output"]).abs().max().item()
    assert diff <= tol, f"{case_id}: max |diff| {diff} on CUDA"


def _photo() -> np.ndarray:
    from sr_core.imageio import read_image
    from sr_core.paths import resources_dir

    return read_image(resources_dir() / "sample.png").rgb


# Precisions each family runs in by default on CUDA (INFO.half_dtypes) against float32 on the
# CPU, on a real photo, after rounding to 8 bits as the user sees it.
HALF = [(stem, dt) for stem, dts in (("hpinet_S_x4_37x53", ("bf16", "fp16")),
                                     ("hat_reduced_x4", ("bf16",)),
                                     ("asid_x2_37x53", ("bf16",))) for dt in dts]
HALF_MIN_PSNR = 45.0


@pytest.mark.parametrize(("stem", "precision"), HALF)
def test_half_precision_matches_the_fp32_reference_on_a_photo(golden, stem, precision):
    weights = golden / f"{stem}.weights.safetensors"
    if not weights.exists():
        weights = next(golden.glob(f"{stem}*.weights.safetensors"))
    rgb = _photo()
    ref = Upscaler(load_model(weights), device="cpu", precision="fp32", tile=0).upscale(rgb)
    half = Upscaler(load_model(weights), device="cuda", precision=precision,
                    tile=0).upscale(rgb)
    assert half.shape == ref.shape
    value = psnr(half, ref, shave=0)
    assert value >= HALF_MIN_PSNR, f"{stem} {precision}: {value:.2f} dB from the fp32 output"


def test_fp32_on_cuda_matches_the_cpu_through_the_engine(golden):
    weights, _ = golden_case(golden, "spin_x4_50x56")
    rgb = _photo()
    cpu = Upscaler(load_model(weights), device="cpu", tile=0).upscale(rgb)
    gpu = Upscaler(load_model(weights), device="cuda", precision="auto", tile=0).upscale(rgb)
    # SPIN declares no half precision: "auto" is float32 on CUDA too.
    assert np.abs(cpu.astype(int) - gpu.astype(int)).max() <= 1


def test_a_real_cuda_out_of_memory_is_recovered_by_smaller_tiles(golden):
    weights, _ = golden_case(golden, "hpinet_S_x4_37x53")
    rng = np.random.default_rng(0)
    rgb = (rng.random((768, 768, 3)) * 255).astype(np.uint8)
    up = Upscaler(load_model(weights), device="cuda", precision="fp32", tile=0)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    used = total - free
    # Leave about 400 MB beyond what is in use: far too little for the whole 768x768 image.
    torch.cuda.set_per_process_memory_fraction(min(1.0, (used + 4e8) / total))
    try:
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().cuda() / 255
        with pytest.raises(torch.cuda.OutOfMemoryError), torch.no_grad():
            up.model(x)  # the whole image in one pass really does not fit
        del x
        torch.cuda.empty_cache()
        out = up.upscale(rgb)  # the engine splits the tile and finishes on the GPU
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert out.shape == (768 * 4, 768 * 4, 3)
    assert up.device.type == "cuda"
    ref = Upscaler(load_model(weights), device="cuda", precision="fp32",
                   tile=256).upscale(rgb)
    assert psnr(out, ref, shave=0) >= 40.0
