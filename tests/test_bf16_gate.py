"""The CPU bf16 accuracy gate: every family marked ``cpu_bf16_ok`` keeps bf16 within 45 dB
PSNR of fp32 on a real photo, and ``--precision auto`` follows the gate and the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_core import device as devmod
from sr_core import load_model
from sr_core.archs import asid, hat, hpinet, spin
from sr_core.models import families

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
GATE_DB = 45.0

#: The weights each gated family is checked with: real, trained weights, so that the
#: activations (and any data-dependent choice inside) are those a user's photo produces.
#: A family marked ``cpu_bf16_ok`` without an entry here fails below: the mark needs evidence.
GATE_WEIGHTS = {
    "asid": RESOURCES / "weights" / "finescale-asid-x4-photo.safetensors",  # the default
}


def _photo_crop(size: int) -> torch.Tensor:
    """A ``size x size`` crop of the sample photo (textured: leaves, edges, sky), NCHW [0,1]."""
    rgb = np.asarray(Image.open(RESOURCES / "sample.png").convert("RGB"), dtype=np.float32)
    crop = rgb[40:40 + size, 60:60 + size] / 255.0
    return torch.from_numpy(crop).permute(2, 0, 1)[None].contiguous()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def test_gate_marks_are_the_measured_ones() -> None:
    # Measured bf16 vs fp32 on resources/sample.png: ASID x4 photo 57.4 dB (64x64 crop) and
    # 56.9 dB (whole picture). SPIN cannot run in bf16 (its superpixel tie-break reads the
    # float bits). HAT: no trained weights here to measure with. HPINet-M x4 gave 55.2 dB on
    # the sample and 55.5 dB on a 96x96 synthetic photo, but its patch matching is an argmax
    # that bf16 flips on other inputs (a max difference of 2.3 reported in issue 17), which
    # a gate on a few pictures cannot rule out: it stays fp32.
    assert asid.INFO.cpu_bf16_ok
    assert not spin.INFO.cpu_bf16_ok and not hat.INFO.cpu_bf16_ok
    assert not hpinet.INFO.cpu_bf16_ok


@pytest.mark.parametrize("family", [f for f in families() if f.INFO.cpu_bf16_ok],
                         ids=lambda f: f.INFO.name)
def test_bf16_stays_within_the_gate_on_a_real_photo(family) -> None:
    weights = GATE_WEIGHTS.get(family.INFO.name)
    assert weights is not None, f"{family.INFO.name} is marked cpu_bf16_ok without gate weights"
    x = _photo_crop(48)  # small: on a CPU without bf16 instructions bf16 runs emulated
    with torch.inference_mode():
        ref = load_model(weights)(x)
        half = load_model(weights).to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    assert _psnr(half, ref) >= GATE_DB


def _gated(monkeypatch, fast: bool) -> None:
    monkeypatch.setattr(devmod, "cpu_has_fast_bf16", lambda: fast)
    monkeypatch.delenv(devmod.CPU_BF16_ENV, raising=False)  # conftest keeps auto in fp32


def test_auto_uses_bf16_only_for_gated_families_on_a_bf16_cpu(monkeypatch) -> None:
    cpu = torch.device("cpu")
    _gated(monkeypatch, True)
    assert devmod.choose_dtype("auto", cpu, (), cpu_bf16_ok=True) is torch.bfloat16
    assert devmod.choose_dtype("auto", cpu, ("bfloat16",), cpu_bf16_ok=False) is torch.float32
    assert devmod.choose_dtype("fp32", cpu, (), cpu_bf16_ok=True) is torch.float32
    assert devmod.choose_dtype("bf16", cpu) is torch.bfloat16


def test_auto_stays_fp32_on_a_cpu_without_bf16(monkeypatch) -> None:
    cpu = torch.device("cpu")
    _gated(monkeypatch, False)
    assert devmod.choose_dtype("auto", cpu, ("bfloat16",), cpu_bf16_ok=True) is torch.float32
    with pytest.raises(devmod.DeviceError):
        devmod.choose_dtype("bf16", cpu)
    with pytest.raises(devmod.DeviceError):
        devmod.choose_dtype("fp16", cpu)


@pytest.mark.parametrize(("capability", "flags", "fast"), [
    ("AVX512", {"avx512f", "avx512_bf16"}, True),
    ("AVX512", {"avx512f", "amx_bf16", "amx_tile"}, True),
    ("AVX512", {"avx512f", "avx512bw"}, False),         # AVX-512 without bf16 (Skylake-X, Zen 3)
    ("AVX2", {"avx2", "avx512_bf16"}, False),           # torch would not dispatch to it
    ("AVX2", {"avx2", "fma"}, False),
])
def test_bf16_detection(monkeypatch, capability, flags, fast) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(devmod, "_cpu_flags", lambda: frozenset(flags))
    devmod.cpu_has_fast_bf16.cache_clear()
    try:
        assert devmod.cpu_has_fast_bf16() is fast
    finally:
        devmod.cpu_has_fast_bf16.cache_clear()


def test_the_engine_reports_the_precision_it_chose(monkeypatch) -> None:
    from sr_core.engine import Upscaler

    weights = GATE_WEIGHTS["asid"]
    _gated(monkeypatch, True)
    assert Upscaler(str(weights), device="cpu").dtype is torch.bfloat16
    assert Upscaler(str(weights), device="cpu", precision="fp32").dtype is torch.float32
    _gated(monkeypatch, False)
    assert Upscaler(str(weights), device="cpu").dtype is torch.float32
