"""ASID / ASID-D8: conformance with the official outputs (whole image and the official tiled
harness), official sizes, checkpoint handling, and the fast paths against plain references."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reference import golden_case

from sr_core import load_model
from sr_core.archs import asid
from sr_core.bench import peak_live_bytes
from sr_core.errors import CheckpointError, ImageTooSmallError
from sr_core.protocol import official_tiled, tile_starts

# ARCHITECTURES.md section 0: official classes instantiated by the reference's authors.
OFFICIAL_PARAMS = {
    ("ASID", 2): 297_516, ("ASID", 3): 304_011, ("ASID", 4): 313_104,
    ("ASID-D8", 2): 732_146, ("ASID-D8", 3): 738_641, ("ASID-D8", 4): 747_734,
}
# ARCHITECTURES.md section 4.2: tensors in an official checkpoint (any scale).
OFFICIAL_TENSORS = {"ASID": 366, "ASID-D8": 956}
TOL = 1e-4  # golden tolerance, [-1, 1] units
FAST_TOL = 1e-5  # fast paths against the plain references below


def _rand_net(variant: str = "ASID", scale: int = 2, seed: int = 0, **changes) -> asid.ASID:
    """A network with every floating tensor perturbed (norm scales, biases, tables too)."""
    torch.manual_seed(seed)
    net = asid.build(dataclasses.replace(asid.config(variant, scale), **changes))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net


# --- conformance ---------------------------------------------------------------------------
@pytest.mark.parametrize("case_id, variant, scale", [
    ("asid_x2_37x53", "ASID", 2),
    ("asidd8_x4_30x20", "ASID-D8", 4),
])
def test_golden_whole_image_matches_official(golden: Path, case_id: str, variant: str,
                                             scale: int) -> None:
    weights, io = golden_case(golden, case_id)
    model = load_model(weights)
    assert (model.arch, model.variant, model.scale) == ("asid", variant, scale)
    assert model.num_params == OFFICIAL_PARAMS[(variant, scale)]
    x = io["input"].clone()
    with torch.inference_mode():
        y = model(x)
    assert torch.equal(x, io["input"]), "the caller's tensor was modified"
    assert y.shape == io["output"].shape
    assert (y * 2 - 1 - io["output"]).abs().max().item() <= TOL


def test_golden_official_tiled_protocol(golden: Path) -> None:
    weights, io = golden_case(golden, "asid_x3_TILED_70x90")
    model = load_model(weights)
    y = official_tiled(model, io["input"])
    assert y.shape == io["output"].shape == (1, 3, 210, 270)
    assert (y * 2 - 1 - io["output"]).abs().max().item() <= TOL
    # The tiles see only 64x64 of the picture, so whole-image inference really differs.
    with torch.inference_mode():
        whole = model(io["input"])
    assert (whole * 2 - 1 - io["output"]).abs().max().item() > 100 * TOL


def test_listed_half_precision_stays_within_a_grey_level(golden: Path) -> None:
    weights, io = golden_case(golden, "asid_x2_37x53")
    assert asid.INFO.half_dtypes == ("bfloat16",)
    with torch.inference_mode():
        ref = load_model(weights)(io["input"])
        half = load_model(weights).to(torch.bfloat16)(io["input"].bfloat16()).float()
    assert (half - ref).abs().max().item() <= 1.5 / 255


def test_tile_origins_follow_the_official_tester() -> None:
    assert tile_starts(70, 64, 24) == [0, 6]          # the golden case's h_idx_list
    assert tile_starts(90, 64, 24) == [0, 26]         # ... and w_idx_list
    assert tile_starts(64, 64, 24) == [0]
    assert tile_starts(150, 64, 24) == [0, 40, 80, 86]
    # Where the official script divides by zero coverage or fails, every pixel is still covered.
    for size, tile in [(30, 20), (50, 24), (24, 24)]:
        starts = tile_starts(size, tile, 24)
        covered = {p for s in starts for p in range(s, s + tile)}
        assert covered == set(range(size))


def test_tiled_protocol_on_small_and_odd_images_is_finite() -> None:
    model = load_model(_rand_net().state_dict())
    for h, w in [(20, 30), (9, 9), (24, 70)]:
        y = official_tiled(model, torch.rand(1, 3, h, w))
        assert y.shape == (1, 3, 2 * h, 2 * w) and torch.isfinite(y).all()


@pytest.mark.parametrize("variant", ["ASID", "ASID-D8"])
def test_parameter_counts_equal_the_paper(variant: str) -> None:
    for scale in (2, 3, 4):
        net = asid.build(asid.config(variant, scale))
        assert sum(p.numel() for p in net.parameters()) == OFFICIAL_PARAMS[(variant, scale)]
        assert len(net.state_dict()) == OFFICIAL_TENSORS[variant]


def test_detect_reads_variant_and_scale_and_claims_nothing_else() -> None:
    for variant in ("ASID", "ASID-D8"):
        for scale in (2, 3, 4):
            sd = asid.build(asid.config(variant, scale)).state_dict()
            assert asid.detect(sd) == asid.config(variant, scale)
    sd = asid.build(asid.config("ASID", 4)).state_dict()
    assert asid.detect({k: v for k, v in sd.items() if not k.startswith("up.")}) is None
    assert asid.detect({"conv_first.weight": torch.zeros(64, 3, 3, 3)}) is None
    with pytest.raises(ValueError):
        asid.config("ASID-D4", 2)


def test_size_limits() -> None:
    model = load_model(_rand_net().state_dict())
    with torch.inference_mode():
        y = model(torch.rand(1, 3, 9, 9))
        assert y.shape == (1, 3, 18, 18) and torch.isfinite(y).all()
        assert model(torch.rand(1, 3, 9, 40)).shape == (1, 3, 18, 80)
    for h, w in [(8, 8), (8, 40), (40, 8)]:
        with pytest.raises(ImageTooSmallError, match="at least 9x9"):
            model(torch.rand(1, 3, h, w))


def test_batch_items_are_independent() -> None:
    model = load_model(_rand_net(scale=3).state_dict())
    x = torch.rand(2, 3, 21, 30)
    with torch.inference_mode():
        both = model(x)
        one = model(x[1:])
    assert (both[1:] - one).abs().max().item() <= FAST_TOL


# --- loading -------------------------------------------------------------------------------
def test_index_buffers_in_a_checkpoint_are_skipped_and_reported(tmp_path: Path) -> None:
    net = _rand_net()
    sd = dict(net.state_dict())
    buffers = {k: v for k, v in net.named_buffers() if k.endswith("rel_pos_indices")}
    assert len(buffers) == 6 and all(v.dtype == torch.int64 for v in buffers.values())
    sd.update(buffers)
    path = tmp_path / "epoch0_ASID.pth"
    torch.save(sd, path)
    with pytest.warns(UserWarning, match="ignored 6 non-weight entries"):
        model = load_model(path)
    assert sorted(model.skipped_keys) == sorted(buffers)
    x = torch.rand(1, 3, 16, 24)
    with torch.inference_mode():
        assert torch.equal(model(x), load_model(net.state_dict())(x))


def test_missing_or_misshapen_weight_is_refused(tmp_path: Path) -> None:
    sd = dict(asid.build(asid.config("ASID", 2)).state_dict())
    key = "block1.residual_layer.SGA2.attn.to_v.weight"
    missing = {k: v for k, v in sd.items() if k != key}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing weight.*" + key.replace(".", r"\.")):
        load_model(tmp_path / "missing.pth")
    bad = dict(sd, **{"block0.esa.conv4.weight": torch.zeros(48, 8, 1, 1)})
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="block0.esa.conv4.weight"):
        load_model(tmp_path / "bad.pth")


# --- fast paths against plain references ---------------------------------------------------
def _loop_groups(x: torch.Tensor, kind: str, win: int) -> list[list[tuple[int, int]]]:
    """Pixel coordinates of every token group, written out one pixel at a time."""
    _, hh, ww, _ = x.shape
    gh, gw = hh // win, ww // win
    groups = []
    if kind == asid.WINDOW:
        for gy in range(gh):
            for gx in range(gw):
                groups.append([(gy * win + ty, gx * win + tx)
                               for ty in range(win) for tx in range(win)])
    elif kind == asid.GRID:
        for gy in range(gh):
            for gx in range(gw):
                groups.append([(ty * gh + gy, tx * gw + gx)
                               for ty in range(win) for tx in range(win)])
    else:
        for gy in range(win):
            for gx in range(win):
                groups.append([(ty * win + gy, tx * win + gx)
                               for ty in range(gh) for tx in range(gw)])
    return groups


@pytest.mark.parametrize("kind", [asid.WINDOW, asid.GRID, asid.STRIDE])
def test_vectorised_partitions_equal_a_pixel_loop(kind: str) -> None:
    x = torch.randn(1, 24, 40, 5)
    groups = _loop_groups(x, kind, 8)
    ref = torch.stack([torch.stack([x[0, r, q] for r, q in g]) for g in groups])
    t = asid.to_groups(x, kind, 8)
    assert torch.equal(t, ref)
    assert torch.equal(asid.from_groups(t, tuple(x.shape), kind, 8), x)
    assert torch.equal(asid.add_from_groups(x, t, kind, 8), 2 * x)


def _plain_spatial(layer: asid.SpatialAttention, x: torch.Tensor,
                   maps: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list]:
    """SLA/SGA written the official way, every group on its own with explicit projections.

    Without ``maps`` it is the first block's kind and returns the maps it computed; with
    them it is a later block's kind, which only projects values.
    """
    y = F.layer_norm(x, x.shape[-1:], layer.norm.weight, layer.norm.bias, 1e-5)
    out = torch.zeros_like(x)
    idx = asid.relative_position_index(8)
    computed = []
    for i, g in enumerate(_loop_groups(x, layer.kind, 8)):
        rows, cols = (list(t) for t in zip(*g, strict=True))
        tok = y[0, rows, cols]  # (64, d)
        if maps is None:
            q, k, v = (tok @ w.t() for w in layer.attn.to_qkv.weight.chunk(3))
            logits = (q * q.shape[-1] ** -0.5) @ k.t() + layer.attn.rel_pos_bias.weight[idx, 0]
            a = logits.softmax(-1)
            computed.append(a)
        else:
            a, v = maps[i], tok @ layer.attn.to_v.weight.t()
        out[0, rows, cols] = (a @ v) @ layer.attn.to_out[0].weight.t()
    x = x + out
    z = F.layer_norm(x, x.shape[-1:], layer.cnorm.weight, layer.cnorm.bias, 1e-6)
    return x + _plain_ffn(layer.gfn, z), computed


def _plain_ffn(ffn: asid.GatedFFN, z: torch.Tensor) -> torch.Tensor:
    z = z.permute(0, 3, 1, 2)
    a, g = ffn.dwconv(ffn.project_in(z)).chunk(2, dim=1)
    return ffn.project_out(F.gelu(a) * g).permute(0, 2, 3, 1)


@pytest.mark.parametrize("grid", [False, True])
def test_spatial_attention_and_map_sharing_equal_plain_reference(grid: bool) -> None:
    torch.manual_seed(1)
    first = asid.SpatialAttention(12, grid=grid, shares=False)
    later = asid.SpatialAttention(12, grid=grid, shares=True)
    for m in (first, later):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.2)
    x1, x2 = torch.randn(1, 24, 40, 12), torch.randn(1, 24, 40, 12)
    with torch.inference_mode():
        y1, a = first(x1)
        y2, _ = later(x2, a)
        ref1, maps = _plain_spatial(first, x1)
        ref2, _ = _plain_spatial(later, x2, maps)
        assert (a - torch.stack(maps)).abs().max().item() <= FAST_TOL
        assert (y1 - ref1).abs().max().item() <= FAST_TOL
        assert (y2 - ref2).abs().max().item() <= FAST_TOL


@pytest.mark.parametrize("grid", [False, True])
def test_channel_attention_equals_plain_reference(grid: bool) -> None:
    torch.manual_seed(2)
    m = asid.ChannelAttention(16, grid=grid, win=8)
    norm = torch.nn.LayerNorm(16, eps=1e-6)
    with torch.no_grad():
        for p in [*m.parameters(), *norm.parameters()]:
            p.add_(torch.randn_like(p) * 0.2)
    x = torch.randn(1, 24, 40, 16)
    with torch.inference_mode():
        y = m(x, norm)
        z = norm(x).permute(0, 3, 1, 2)
        q, k, v = (t.permute(0, 2, 3, 1) for t in m.qkv_dwconv(m.qkv(z)).chunk(3, dim=1))
        out = torch.zeros_like(x)
        for g in _loop_groups(x, asid.STRIDE if grid else asid.WINDOW, 8):
            rows, cols = (list(t) for t in zip(*g, strict=True))
            qc, kc, vc = (t[0, rows, cols].t() for t in (q, k, v))  # (C, L)
            a = (F.normalize(qc, dim=-1) @ F.normalize(kc, dim=-1).t()) * m.temperature[0]
            out[0, rows, cols] = (a.softmax(-1) @ vc).t()
        ref = x + F.linear(out, m.project_out.weight.flatten(1))
        assert (y - ref).abs().max().item() <= FAST_TOL


def test_local_block_excitation_fold_equals_plain_reference() -> None:
    torch.manual_seed(3)
    lb = asid.LocalBlock(24)
    x = torch.randn(2, 16, 24, 24)
    with torch.inference_mode():
        fn = lb.net.fn
        z = x.permute(0, 3, 1, 2)
        y = F.gelu(fn[2](F.gelu(fn[0](z))))
        y = y * torch.sigmoid(fn[4].gate[3](F.silu(fn[4].gate[1](y.mean((2, 3))))))[..., None, None]
        ref = (fn[5](y) + z).permute(0, 2, 3, 1)
        assert (lb(x) - ref).abs().max().item() <= FAST_TOL


# --- memory estimate -----------------------------------------------------------------------
def _peak_live_bytes(fn) -> int:
    """Peak bytes of the tensors created while ``fn`` runs (live tensors, not the allocator)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peak_live_bytes(fn)


@pytest.mark.parametrize("variant, scale, feat, h, w", [
    ("ASID", 4, 48, 37, 53), ("ASID-D8", 2, 48, 64, 96), ("ASID", 4, 16, 96, 80),
])
def test_memory_estimate_covers_the_measured_peak(variant: str, scale: int, feat: int,
                                                  h: int, w: int) -> None:
    cfg = dataclasses.replace(asid.config(variant, scale), num_feat=feat)
    net = asid.build(cfg)
    x = torch.rand(1, 3, h, w) * 2 - 1
    with torch.inference_mode():
        peak = _peak_live_bytes(lambda: net(x))
    assert peak <= asid.estimate_memory(cfg, h, w) <= 1.2 * peak
