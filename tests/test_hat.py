"""HAT: conformance with the official outputs, official sizes, checkpoint handling, fast path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reference import golden_case, golden_ids, shared_dir_or_none

from sr_core import load_model
from sr_core.archs import hat
from sr_core.errors import CheckpointError, ImageTooSmallError

_SHARED = shared_dir_or_none()
_GOLDEN = _SHARED / "reference" / "golden" if _SHARED else None
HAT_CASES = golden_ids(_GOLDEN, "hat_") or ["hat_reduced_x4_37x53"]

# ARCHITECTURES.md section 0 (official classes instantiated by the reference's authors).
OFFICIAL_PARAMS = {
    ("HAT-S", 2): 9_473_471, ("HAT-S", 3): 9_658_111, ("HAT-S", 4): 9_621_183,
    ("HAT", 2): 20_624_795, ("HAT", 3): 20_809_435, ("HAT", 4): 20_772_507,
    ("HAT-L", 2): 40_698_863, ("HAT-L", 3): 40_883_503, ("HAT-L", 4): 40_846_575,
}
# ARCHITECTURES.md section 2.2: tensors in an official state dict (x2/x3, x4).
OFFICIAL_TENSORS = {"HAT-S": (862, 864), "HAT": (862, 864), "HAT-L": (1708, 1710)}


def _golden_weights(golden: Path, case_id: str = "hat_reduced_x4_37x53") -> tuple[Path, dict]:
    return golden_case(golden, case_id)


def _save_official(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    """Save like BasicSR does: the state dict under ``params_ema``."""
    torch.save({"params_ema": sd}, path)
    return path


@pytest.mark.parametrize("case_id", HAT_CASES)
def test_golden_case_matches_official_output(golden: Path, case_id: str) -> None:
    weights, io = golden_case(golden, case_id)
    model = load_model(weights)
    assert model.arch == "hat"
    x = io["input"].clone()
    with torch.no_grad():
        y = model(x)
    assert torch.equal(x, io["input"]), "the caller's tensor was modified"
    assert y.shape == io["output"].shape
    assert (y - io["output"]).abs().max().item() <= 1e-4


def test_reduced_checkpoints_read_every_hyper_parameter(golden: Path) -> None:
    weights, _ = golden_case(golden, "hat_reduced_x2_20x33")
    m = load_model(weights)
    assert (m.variant, m.scale) == ("custom", 2)
    c = m.config
    assert (c.embed_dim, c.depths, c.num_heads) == (48, (2, 2), (6, 6))
    assert (c.compress_ratio, c.squeeze_factor, c.mlp_ratio) == (24, 24, 2.0)
    assert (c.window_size, c.overlap_ratio, c.conv_scale, c.img_range) == (16, 0.5, 0.01, 1.0)
    assert m.name == "HAT-custom x2"


@pytest.mark.parametrize(("variant", "scale"), sorted(OFFICIAL_PARAMS))
def test_official_configs_have_official_parameter_counts(variant: str, scale: int) -> None:
    net = hat.build(hat.config(variant, scale))
    assert sum(p.numel() for p in net.parameters()) == OFFICIAL_PARAMS[variant, scale]
    assert len(net.state_dict()) == OFFICIAL_TENSORS[variant][scale == 4]


def _random_official_state_dicts(variant: str) -> dict[int, dict[str, torch.Tensor]]:
    """Full-size random weights for x2/x3/x4 from one build (only the upsampler differs)."""
    gen = torch.Generator().manual_seed(0)
    sd4 = {k: (torch.randn(v.shape, generator=gen) * 0.02 if v.is_floating_point() else v)
           for k, v in hat.build(hat.config(variant, 4)).state_dict().items()}
    sd2 = {k: v for k, v in sd4.items() if not k.startswith("upsample.2.")}
    sd3 = dict(sd2)
    sd3["upsample.0.weight"] = torch.randn(576, 64, 3, 3, generator=gen) * 0.02
    sd3["upsample.0.bias"] = torch.randn(576, generator=gen) * 0.02
    return {2: sd2, 3: sd3, 4: sd4}


@pytest.mark.parametrize("variant", ["HAT-S", "HAT", "HAT-L"])
def test_full_size_official_files_are_detected(tmp_path: Path, variant: str) -> None:
    for scale, sd in _random_official_state_dicts(variant).items():
        assert len(sd) == OFFICIAL_TENSORS[variant][scale == 4]
        path = _save_official(tmp_path / f"{variant}_SRx{scale}.pth", sd)
        m = load_model(path)
        assert (m.arch, m.variant, m.scale) == ("hat", variant, scale)
        assert m.num_params == OFFICIAL_PARAMS[variant, scale]
        assert m.name == f"{variant} x{scale}"
        key = "layers.0.residual_group.overlap_attn.relative_position_bias_table"
        assert torch.equal(m.net.state_dict()[key], sd[key])
        path.unlink()


def test_params_ema_is_preferred_over_params(golden: Path, tmp_path: Path) -> None:
    weights, io = golden_case(golden, "hat_reduced_x4_16x16")
    from safetensors.torch import load_file

    sd = load_file(str(weights))
    other = {k: (v + 0.5 if v.is_floating_point() else v) for k, v in sd.items()}
    path = tmp_path / "both.pth"
    torch.save({"params": other, "params_ema": sd}, path)
    with torch.no_grad():
        y = load_model(path)(io["input"])
    assert (y - io["output"]).abs().max().item() <= 1e-4


def test_files_without_index_buffers_give_the_same_output(golden: Path, tmp_path: Path) -> None:
    """The rebuilt buffers (negative OCA entries included) equal the official ones."""
    from safetensors.torch import load_file

    weights, io = golden_case(golden, "hat_reduced_x4_37x53")
    sd = {k: v for k, v in load_file(str(weights)).items()
          if not k.startswith("relative_position_index")}
    with torch.no_grad():
        y = load_model(_save_official(tmp_path / "no_buffers.pth", sd))(io["input"])
    assert (y - io["output"]).abs().max().item() <= 1e-4


def test_oca_index_wraps_like_the_official_one() -> None:
    idx = hat.relative_position_index_oca(16, 24)
    assert idx.shape == (256, 576) and idx.dtype == torch.int64
    # Not "fixed" to start at 0: negative entries address the 1521-row table from its end.
    assert (idx.min().item(), idx.max().item()) == (-880, 640)
    assert torch.remainder(idx, 1521).unique().numel() == 1521
    assert hat.relative_position_index_sa(16).max().item() == 960


@pytest.mark.parametrize("key", ["relative_position_index_SA", "relative_position_index_OCA"])
def test_tampered_index_buffer_is_refused(golden: Path, tmp_path: Path, key: str) -> None:
    from safetensors.torch import load_file

    weights, _ = golden_case(golden, "hat_reduced_x4_37x53")
    sd = load_file(str(weights))
    sd[key] = sd[key].clone()
    sd[key][3, 5] += 1
    path = _save_official(tmp_path / "tampered.pth", sd)
    with pytest.raises(CheckpointError, match=rf"^tampered\.pth: .*{key}"):
        load_model(path)


def test_smallest_input_works_and_smaller_is_refused(golden: Path) -> None:
    weights, _ = golden_case(golden, "hat_reduced_x3_32x48")
    m = load_model(weights)
    with torch.no_grad():
        y = m(torch.rand(1, 3, 9, 9))
    assert y.shape == (1, 3, 27, 27) and torch.isfinite(y).all()
    with pytest.raises(ImageTooSmallError, match="8x8"):
        m(torch.rand(1, 3, 8, 8))


def test_other_families_are_not_claimed(golden: Path) -> None:
    from safetensors.torch import load_file

    for prefix in ("hpinet_", "spin_", "asid"):
        for case_id in golden_ids(golden, prefix)[:1]:
            weights, _ = golden_case(golden, case_id)
            assert hat.detect(load_file(str(weights))) is None


def test_bfloat16_stays_close_to_float32(golden: Path) -> None:
    weights, io = golden_case(golden, "hat_reduced_x4_16x16")
    m = load_model(weights)
    assert hat.INFO.half_dtypes == ("bfloat16",)
    with torch.no_grad():
        y = m.to(torch.bfloat16)(io["input"].to(torch.bfloat16)).float()
    assert torch.isfinite(y).all()
    assert (y - io["output"]).abs().max().item() < 0.05


# --- fast path vs a plain reference computation -------------------------------------------
def _reference_window_attention(attn: hat.WindowAttention, x: torch.Tensor, index: torch.Tensor,
                                shift: int) -> torch.Tensor:
    """Per-window attention written the plain way: explicit logits, bias, label-map mask."""
    b, h, w, c = x.shape
    ws, heads = attn.window_size, attn.num_heads
    if shift:
        x = torch.roll(x, (-shift, -shift), (1, 2))
    labels = torch.zeros(h, w)
    bands = ((0, h - ws), (h - ws, h - shift), (h - shift, h))
    cols = ((0, w - ws), (w - ws, w - shift), (w - shift, w))
    for i, (r0, r1) in enumerate(bands):
        for j, (c0, c1) in enumerate(cols):
            labels[r0:r1, c0:c1] = i * 3 + j
    out = torch.zeros_like(x)
    bias = attn.relative_position_bias_table[index.reshape(-1)].view(ws * ws, ws * ws, heads)
    for r in range(0, h, ws):
        for q0 in range(0, w, ws):
            tokens = x[:, r:r + ws, q0:q0 + ws].reshape(b, ws * ws, c)
            qkv = attn.qkv(tokens).view(b, ws * ws, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            logits = (qkv[0] * attn.scale) @ qkv[1].transpose(-2, -1) + bias.permute(2, 0, 1)
            if shift:
                lab = labels[r:r + ws, q0:q0 + ws].reshape(-1)
                logits = logits + (lab[:, None] != lab[None, :]).float() * -100.0
            o = (logits.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(b, ws, ws, c)
            out[:, r:r + ws, q0:q0 + ws] = attn.proj(o)
    if shift:
        out = torch.roll(out, (shift, shift), (1, 2))
    return out


def _reference_ocab(ocab: hat.OCAB, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """OCAB with F.unfold on NCHW, explicit logits, negative indices wrapping (Python)."""
    b, h, w, c = x.shape
    ws, ows, heads = ocab.window_size, ocab.overlap_win_size, ocab.num_heads
    d = c // heads
    qkv = ocab.qkv(ocab.norm1(x))
    q, k, v = qkv.split(c, dim=-1)
    table = ocab.relative_position_bias_table
    bias = table[index.reshape(-1)].view(ws * ws, ows * ows, heads)
    bias = bias.permute(2, 0, 1)
    kv = torch.cat([k, v], -1).permute(0, 3, 1, 2)
    kv = F.unfold(kv, ows, stride=ws, padding=(ows - ws) // 2)
    kv = kv.view(b, 2, heads, d, ows * ows, -1)
    out = torch.zeros_like(x)
    n = 0
    for r in range(0, h, ws):
        for q0 in range(0, w, ws):
            qw = q[:, r:r + ws, q0:q0 + ws].reshape(b, ws * ws, heads, d).transpose(1, 2)
            kw, vw = kv[:, 0, :, :, :, n].transpose(-2, -1), kv[:, 1, :, :, :, n].transpose(-2, -1)
            logits = (qw * ocab.scale) @ kw.transpose(-2, -1) + bias
            o = (logits.softmax(-1) @ vw).transpose(1, 2).reshape(b, ws, ws, c)
            out[:, r:r + ws, q0:q0 + ws] = o
            n += 1
    x = ocab.proj(out) + x
    return x + ocab.mlp(ocab.norm2(x))


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return module.eval()


@pytest.mark.parametrize("shift", [0, 8])
@pytest.mark.parametrize("size", [(16, 16), (48, 64)])
def test_window_attention_fast_path_equals_reference(shift: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    attn = _perturbed(hat.WindowAttention(24, 16, 4, True))
    x = torch.randn(2, *size, 24)
    index = hat.relative_position_index_sa(16)
    masks = hat.shift_mask_patterns(16, 8) if shift else None
    with torch.no_grad():
        xs = torch.roll(x, (-shift, -shift), (1, 2)) if shift else x
        fast = attn(xs, index, masks)
        if shift:
            fast = torch.roll(fast, (shift, shift), (1, 2))
        ref = _reference_window_attention(attn, x, index, shift)
    assert (fast - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("size", [(16, 16), (32, 48)])
def test_overlapping_attention_fast_path_equals_reference(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    cfg = hat.HATConfig(embed_dim=24, depths=(1,), num_heads=(4,))
    ocab = _perturbed(hat.OCAB(cfg, 4))
    x = torch.randn(2, *size, 24)
    index = hat.relative_position_index_oca(16, 24)
    with torch.no_grad():
        fast = ocab(x, torch.remainder(index, 1521))  # the network wraps once per forward
        ref = _reference_ocab(ocab, x, index)
    assert (fast - ref).abs().max().item() <= 1e-5
