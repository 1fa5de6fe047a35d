"""``finescale bench``: what it measures goes through the engine, tiles included."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sr_core.archs.layers import ArchInfo
from sr_core.bench import parse_size, run_bench, synthetic_photo
from sr_core.cli import main
from sr_core.errors import FinescaleError
from sr_core.models import SRModel


def _tiny_model() -> SRModel:
    """A 3x3 conv + PixelShuffle x2 network behind the SRModel convention (fast, exact FLOPs)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    family = SimpleNamespace(
        INFO=ArchInfo(name="tiny", title="Tiny", input_range=(0.0, 1.0)),
        estimate_memory=lambda config, h, w, dtype_bytes=4: 64 * h * w * dtype_bytes,
    )
    return SRModel(net, family, SimpleNamespace(variant="", scale=2)).eval()


def conv_flops(h: int, w: int) -> int:
    return 2 * h * w * 12 * 3 * 9  # multiply-adds of the 3x3 conv, counted as 2 FLOPs each


def test_bench_measures_the_whole_image_path() -> None:
    r = run_bench(_tiny_model(), (40, 56), device="cpu", tile=0, repeat=3)
    assert (r.device, r.precision, r.tile, r.tiles) == ("CPU", "fp32", 0, 1)
    assert r.input == (40, 56) and r.output == (80, 112)
    assert len(r.latencies_s) == 3 and min(r.latencies_s) <= r.latency_s <= max(r.latencies_s)
    assert r.mpix_per_s == pytest.approx(80 * 112 / 1e6 / r.latency_s)
    assert r.gflop == pytest.approx(conv_flops(40, 56) / 1e9)
    assert r.gflop_per_s == pytest.approx(r.gflop / r.latency_s)
    assert r.memory == "rss" and r.peak_memory_bytes > 80 * 112 * 3
    if r.base_memory_bytes is not None:  # Linux: the peak is reset before the first run
        assert 0 < r.base_memory_bytes <= r.peak_memory_bytes


def test_bench_peak_memory_grows_with_the_picture() -> None:
    model = _tiny_model()
    small = run_bench(model, (32, 32), device="cpu", tile=0, repeat=1)
    big = run_bench(model, (1024, 1024), device="cpu", tile=0, repeat=1)
    if small.base_memory_bytes is None:
        pytest.skip("the peak RSS mark cannot be reset on this platform")
    # 2048x2048 output: 48 MiB float32 from the network, 12 MiB uint8, the 12-channel map
    grown = big.peak_memory_bytes - big.base_memory_bytes
    assert grown > 48 * 2**20 > small.peak_memory_bytes - small.base_memory_bytes


def test_bench_counts_the_work_of_every_tile() -> None:
    model = _tiny_model()
    whole = run_bench(model, (300, 300), device="cpu", tile=0, repeat=1)
    tiled = run_bench(model, (300, 300), device="cpu", tile=128, repeat=1)
    assert whole.tiles == 1 and tiled.tiles > 1 and tiled.tile == 128
    # overlapping context is computed more than once
    assert tiled.gflop > whole.gflop == pytest.approx(conv_flops(300, 300) / 1e9)
    assert tiled.output == whole.output == (600, 600)


def test_bench_unusable_model_is_one_sentence(tmp_path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(_tiny_model().net, path)  # a pickled module, not a checkpoint of tensors
    assert main(["bench", "-m", str(path), "--size", "32x32", "--json"]) == 1
    err = capsys.readouterr().err
    assert "tiny.pt" in err and "Traceback" not in err


def test_bench_cli_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import sr_core.engine

    model = _tiny_model()
    real = sr_core.engine.load_model
    monkeypatch.setattr(sr_core.engine, "load_model", lambda m, clean_up=None: real(
        model if m == "tiny" else m, clean_up=clean_up))
    assert main(["bench", "-m", "tiny", "--size", "24x40", "--device", "cpu", "--tile", "0",
                 "--repeat", "2", "--json"]) == 0
    out = capsys.readouterr()
    obj = json.loads(out.out)
    assert obj["output"] == [48, 80] and obj["repeat"] == 2 and len(obj["latencies_s"]) == 2
    for key in ("latency_s", "mpix_per_s", "peak_memory_bytes", "gflop", "gflop_per_s"):
        assert obj[key] > 0, key
    assert "run" in out.err  # the progress bar


def test_parse_size() -> None:
    assert parse_size("256x192") == (256, 192)
    assert parse_size("128") == (128, 128)
    for bad in ("0x10", "axb", "10x", ""):
        with pytest.raises(FinescaleError):
            parse_size(bad)


def test_synthetic_photo_is_deterministic_and_textured() -> None:
    a, b = synthetic_photo(64, 80), synthetic_photo(64, 80)
    assert a.shape == (64, 80, 3) and a.dtype.name == "uint8"
    assert (a == b).all() and a.std() > 30


def test_flop_count_includes_the_cpu_attention_kernel() -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sr_core.bench import sdpa_flop_mapping

    q = torch.rand(1, 2, 64, 16)
    with FlopCounterMode(display=False) as plain:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    with FlopCounterMode(display=False, custom_mapping=sdpa_flop_mapping()) as honest:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    # Two matmuls (q k^T and attn v) of 64x64x16 per head, 2 FLOP per multiply-add.
    assert honest.get_total_flops() == 2 * 2 * (2 * 64 * 64 * 16)
    assert plain.get_total_flops() < honest.get_total_flops()
