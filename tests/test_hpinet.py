"""HPINet: official checkpoints load unchanged and reproduce the official outputs.

Conformance goes through the public ``load_model(path)`` with no hints, against the golden
vectors produced by the authors' code (``shared/reference/golden/hpinet_*``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference import golden_case, golden_ids, shared_dir_or_none
from safetensors.torch import load_file

from sr_core import load_model
from sr_core.archs import hpinet
from sr_core.errors import ImageTooSmallError

_SHARED = shared_dir_or_none()
_GOLDEN_IDS = golden_ids(_SHARED / "reference" / "golden" if _SHARED else None, "hpinet_")
TOL = 1e-4

# ARCHITECTURES.md section 0: parameter counts of the official classes.
PARAMS = {
    ("S", 2): 405_371, ("S", 3): 477_571, ("S", 4): 463_131,
    ("M", 2): 782_539, ("M", 3): 923_939, ("M", 4): 895_659,
    ("L", 2): 1_287_875, ("L", 3): 1_472_515, ("L", 4): 1_435_587,
}


def _manifest_case(golden: Path, case_id: str) -> dict:
    manifest = json.loads((golden / "MANIFEST.json").read_text())
    return next(c for c in manifest["cases"] if c["id"] == case_id)


@pytest.mark.parametrize("case_id", _GOLDEN_IDS or ["hpinet_golden_cases_missing"])
def test_golden_case_reproduced_through_load_model(golden: Path, case_id: str) -> None:
    if not _GOLDEN_IDS:
        pytest.fail("no hpinet_* golden cases listed in MANIFEST.json")
    weights, io = golden_case(golden, case_id)
    case = _manifest_case(golden, case_id)
    model = load_model(weights)
    assert (model.arch, model.variant, model.scale) == (
        "hpinet", case["constructor"]["model_type"], case["scale"])
    with torch.no_grad():
        out = model(io["input"])
    assert out.shape == io["output"].shape
    assert (out - io["output"]).abs().max().item() <= TOL


def test_golden_cases_cover_quirks_and_real_checkpoints(golden: Path) -> None:
    # The conformance above only means something if the quirk and real cases are there.
    assert {"hpinet_S_x4_37x53", "hpinet_M_x2_47x30", "hpinet_M_x3_24x24",
            "hpinet_M_x4_REAL_butterfly", "hpinet_M_x2_REAL_butterfly"} <= set(
                golden_ids(golden, "hpinet_"))


@pytest.mark.parametrize(("name", "variant", "scale"), [
    ("HPINet-S-x4.pth", "S", 4), ("HPINet-M-x2.pth", "M", 2),
    ("HPINet-M-x3.pth", "M", 3), ("HPINet-M-x4.pth", "M", 4),
])
def test_official_checkpoints_detected(shared: Path, name: str, variant: str, scale: int) -> None:
    model = load_model(shared / "weights" / "hpinet" / name)
    assert (model.arch, model.variant, model.scale) == ("hpinet", variant, scale)
    assert model.num_params == PARAMS[(variant, scale)]
    assert model.name == f"HPINet-{variant} x{scale}"
    assert not model.training


@pytest.mark.parametrize(("variant", "scale"), sorted(PARAMS))
def test_parameter_counts_match_official(variant: str, scale: int) -> None:
    net = hpinet.build(hpinet.config(variant, scale))
    assert sum(p.numel() for p in net.parameters()) == PARAMS[(variant, scale)]
    # detect() reads the same configuration back from the weights alone.
    assert hpinet.detect(net.state_dict()) == hpinet.config(variant, scale)


def test_state_dict_keys_are_the_official_ones(golden: Path) -> None:
    official = load_file(str(golden / "hpinet_M_x2_47x30.weights.safetensors"))
    ours = hpinet.build(hpinet.config("M", 2)).state_dict()
    assert set(ours) == set(official)
    assert all(tuple(ours[k].shape) == tuple(official[k].shape) for k in ours)


def test_detect_leaves_other_families_alone(golden: Path) -> None:
    for stem in ("hat_reduced_x2", "spin_x2_37x53", "asid_x2_37x53", "asidd8_x4_30x20"):
        sd = load_file(str(golden / f"{stem}.weights.safetensors"))
        assert hpinet.detect(sd) is None, stem


def test_sdpa_fast_path_equals_explicit_attention(golden: Path) -> None:
    weights, io = golden_case(golden, "hpinet_S_x4_37x53")
    net = load_model(weights).net
    with torch.no_grad():
        fast = net(io["input"])
        reference = net(io["input"], reference=True)
    assert (fast - reference).abs().max().item() <= 1e-5


@pytest.mark.parametrize(("dim", "qk_dim"), [(56, 32), (24, 40)])
@pytest.mark.parametrize("cross", [False, True])
def test_attention_fast_path_per_layer(dim: int, qk_dim: int, cross: bool) -> None:
    torch.manual_seed(0)
    attn = hpinet.PatchAttention(dim, qk_dim)
    x = torch.randn(5, 144, dim)
    support = torch.randn(5, 144, dim) * 3 if cross else None
    with torch.no_grad():
        fast = attn(x, support)
        q = x @ attn.to_q.weight.T
        src = x if support is None else support
        k, v = src @ attn.to_k.weight.T, src @ attn.to_v.weight.T
        explicit = torch.softmax(q @ k.transpose(1, 2) / qk_dim ** 0.5, dim=-1) @ v
    assert fast.shape == (5, 144, dim)
    assert (fast - explicit).abs().max().item() <= 1e-5


def test_batch_of_two_equals_two_single_runs(golden: Path) -> None:
    weights, io = golden_case(golden, "hpinet_M_x2_REAL_butterfly")
    model = load_model(weights)
    first = io["input"][..., :32, :40]
    second = io["input"][..., 10:, 12:].flip(-1)[..., :32, :40].contiguous()
    partners: list[torch.Tensor] = []
    hook = model.net.cross_match[0].register_forward_hook(lambda m, a, out: partners.append(out))
    with torch.no_grad():
        both = model(torch.cat([first, second]))
    hook.remove()
    with torch.no_grad():
        alone = [model(first), model(second)]
    # The images must pair their patches differently, or the official batch bug (matches
    # of image 0 used for every image) would go unnoticed here.
    assert not torch.equal(partners[0][0], partners[0][1])
    for i in range(2):
        assert (both[i] - alone[i][0]).abs().max().item() <= 1e-5


def _coverage(size: int, patch: int) -> list[int]:
    starts, _ = hpinet._axis_plan(size, patch)
    count = [0] * size
    for s in starts:
        for i in range(s, s + patch):
            count[i] += 1
    return count


@pytest.mark.parametrize("patch", [12, 14, 16, 20, 24])
def test_overlap_normalisation_follows_official_rule(patch: int) -> None:
    step = patch - 2
    for size in range(patch, 140):
        _, factor = hpinet._axis_plan(size, patch)
        weighted = [c * f for c, f in zip(_coverage(size, patch), factor, strict=True)]
        quirk = (size - patch) % step == 1 and size > patch + step
        # Everywhere the overlap is a plain average, except the one row the last (shifted)
        # patch shares with two earlier ones: covered 3 times, divided by 4 (ARCHITECTURES 1.5).
        if quirk:
            assert sorted(weighted)[0] == 0.75 and weighted.count(0.75) == 1, size
            assert all(w in (1.0, 0.75) for w in weighted), size
        else:
            assert all(w == 1.0 for w in weighted), size


def test_patch_round_trip_keeps_the_map() -> None:
    torch.manual_seed(0)
    feat = torch.randn(2, 7, 40, 52)
    rows, cols, factor = hpinet._grid(40, 52, 16, feat)
    from sr_core.archs.layers import extract_patch_tokens, scatter_add_patch_tokens

    tokens = extract_patch_tokens(feat.permute(0, 2, 3, 1), rows, cols, 16)
    assert tokens.shape == (2, len(rows) * len(cols), 256, 7)
    back = scatter_add_patch_tokens(tokens, rows, cols, 40, 52) * factor[:, :, None]
    assert torch.allclose(back.permute(0, 3, 1, 2), feat, atol=1e-6)


def test_smaller_than_largest_patch_is_refused() -> None:
    model = load_model(hpinet.build(hpinet.config("S", 2)).state_dict())
    with pytest.raises(ImageTooSmallError, match="23x30"):
        model(torch.rand(1, 3, 23, 30))


def test_config_rejects_unknown_variant_and_scale() -> None:
    with pytest.raises(ValueError, match="variant"):
        hpinet.config("XL", 4)
    with pytest.raises(ValueError, match="scale"):
        hpinet.config("M", 8)


def test_estimate_memory_grows_with_size_and_scale() -> None:
    cfg2, cfg4 = hpinet.config("M", 2), hpinet.config("M", 4)
    small, large = hpinet.estimate_memory(cfg4, 64, 64), hpinet.estimate_memory(cfg4, 256, 256)
    assert large > 10 * (small - 8 * 2**20)
    assert hpinet.estimate_memory(cfg4, 128, 128) > hpinet.estimate_memory(cfg2, 128, 128)
    assert hpinet.estimate_memory(cfg4, 128, 128, 2) < hpinet.estimate_memory(cfg4, 128, 128, 4)
