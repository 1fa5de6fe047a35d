"""SPIN: conformance with the official outputs, loading, and the pieces that replace the
official CUDA extension and dense matrices (each checked against a plain reference)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import golden_case, golden_ids, shared_dir_or_none

from sr_core import load_model
from sr_core.archs import spin
from sr_core.errors import CheckpointError, ImageTooSmallError

_SHARED = shared_dir_or_none()
_GOLDEN_DIR = _SHARED / "reference" / "golden" if _SHARED else None
SPIN_CASES = golden_ids(_GOLDEN_DIR, "spin_") or ["spin_x2_37x53", "spin_x4_50x56"]


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def _random_net(scale: int = 2, seed: int = 0, **cfg: object) -> spin.SPIN:
    """A SPIN with random weights large enough to make every layer matter."""
    torch.manual_seed(seed)
    net = spin.build(spin.SPINConfig(scale=scale, **cfg))
    for p in net.parameters():
        p.add_(torch.randn_like(p) * 0.02)
    return net


# --- conformance ---------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", SPIN_CASES)
def test_golden_through_load_model(golden, case_id):
    weights, io = golden_case(golden, case_id)
    model = load_model(weights)
    assert (model.arch, model.variant) == ("spin", "light")
    assert model.scale == int(case_id.split("_x")[1][0])
    x = io["input"].clone()
    y = model(x)
    assert torch.equal(x, io["input"]), "the caller's tensor was modified"
    diff = (y * 255 - io["output"]).abs().max().item()
    assert diff <= 1e-2, f"{case_id}: max |diff| {diff} in 0..255 units"


@pytest.mark.parametrize(("scale", "params"), [(2, 497_275), (3, 569_475), (4, 555_035)])
def test_parameter_counts_and_detection_round_trip(scale, params):
    net = spin.build(spin.config("light", scale))
    assert sum(p.numel() for p in net.parameters()) == params
    model = load_model(net.state_dict())
    assert (model.arch, model.variant, model.scale, model.num_params) == ("spin", "light", scale,
                                                                          params)
    assert model.config == spin.config("light", scale)


def test_official_training_checkpoint_loads(tmp_path):
    """train.py saves a dict with model_state_dict of a DataParallel model (module. keys)."""
    net = _random_net(scale=3, seed=3)
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    path = tmp_path / "model_x3_500.pt"
    torch.save({"epoch": 500, "model_state_dict": sd,
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 2e-4}]},
                "scheduler_state_dict": {"milestones": {250: 1}, "gamma": 0.5},
                "stat_dict": {"psnr": [30.0]}}, path)
    model = load_model(path)
    assert (model.arch, model.scale, model.num_params) == ("spin", 3, 569_475)
    x = torch.rand(1, 3, 30, 26)
    assert torch.equal(model(x), net(x * 255) / 255)


def test_input_is_never_modified():
    net = _random_net(stoken_sizes=(12, 16))  # two blocks keep it quick; same code path
    model = load_model(net.state_dict())
    assert model.config == dataclasses.replace(net.cfg, variant="custom")
    x = torch.rand(1, 3, 26, 31)
    keep = x.clone()
    model(x)
    assert torch.equal(x, keep)
    z = x * 255
    keep = z.clone()
    net(z)
    assert torch.equal(z, keep), "the network divided its argument in place"


@pytest.mark.parametrize("hw", [(23, 40), (40, 23), (10, 10)])
def test_too_small_is_a_clear_error(hw):
    model = load_model(spin.build(spin.config("light", 2)).state_dict())
    with pytest.raises(ImageTooSmallError, match="at least 24x24"):
        model(torch.rand(1, 3, *hw))


def test_minimum_size_and_batch_independence():
    net = _random_net(scale=4, seed=1, stoken_sizes=(12, 24))
    a, b = torch.rand(1, 3, 24, 24) * 255, torch.rand(1, 3, 24, 24) * 255
    both = net(torch.cat([a, b]))
    assert both.shape == (2, 3, 96, 96)
    # Same tolerance as the golden cases (0..255 units): batching only reorders float sums.
    assert (both[:1] - net(a)).abs().max() < 1e-2
    assert (both[1:] - net(b)).abs().max() < 1e-2


def test_detect_leaves_other_families_alone(golden):
    others = [p for p in golden.glob("*.weights.safetensors") if not p.name.startswith("spin")]
    assert others, "no other golden weights to check against"
    from safetensors.torch import load_file

    for p in others:
        assert spin.detect(load_file(str(p))) is None, p.name
    hpinet_like = {"first_conv.weight": torch.zeros(56, 3, 3, 3), "last_conv.weight":
                   torch.zeros(3, 56, 3, 3), "blocks.0.layers.0.0.fn.to_q.weight":
                   torch.zeros(32, 56), "cross_match.0.norm.weight": torch.zeros(56)}
    assert spin.detect(hpinet_like) is None


def test_unsupported_upsampler_is_refused_with_a_sentence():
    sd = dict(spin.build(spin.config("light", 2)).state_dict())
    sd["upconv.weight"] = torch.zeros(40 * 25, 40, 3, 3)
    with pytest.raises(CheckpointError, match="no supported scale"):
        load_model(sd)


# --- association: labels, distance, sparse aggregation --------------------------------------

@pytest.mark.parametrize(("size", "cells"), [(37, 3), (53, 2), (48, 2), (50, 4), (200, 16),
                                             (71, 5), (24, 1), (1000, 83), (999, 41)])
def test_labels_follow_legacy_nearest(size, cells):
    grid = torch.arange(cells, dtype=torch.float32).view(1, 1, cells, 1)
    ref = F.interpolate(grid, size=(size, 1), mode="nearest").view(-1).long()
    assert torch.equal(spin._nearest_labels(size, cells, torch.device("cpu")), ref)


def _reference_distance(pix: np.ndarray, cent: np.ndarray, labels: np.ndarray, nw: int,
                        nh: int) -> np.ndarray:
    """The official kernel, pixel by pixel: neighbour k at dx = k%3-1, dy = k//3-1,
    float32 squared differences added channel after channel, 1e16 off the grid."""
    b, c, n = pix.shape
    out = np.zeros((b, 9, n), np.float32)
    for bi, p, k in itertools.product(range(b), range(n), range(9)):
        lab = int(labels[p])
        x, y = lab % nw + k % 3 - 1, lab // nw + k // 3 - 1
        if not (0 <= x < nw and 0 <= y < nh):
            out[bi, k, p] = 1e16
            continue
        acc = np.float32(0)
        for ch in range(c):
            d = np.float32(pix[bi, ch, p] - cent[bi, ch, y * nw + x])
            acc = np.float32(acc + np.float32(d * d))
        out[bi, k, p] = acc
    return out


def test_distance_matches_the_official_kernel_bit_for_bit():
    torch.manual_seed(0)
    h, w, cell = 30, 41, 12  # grid 2 x 3, uneven cells
    feats = torch.randn(2, 7, h, w) * 3
    nh, nw = h // cell, w // cell
    rows = spin._nearest_labels(h, nh, feats.device)
    cols = spin._nearest_labels(w, nw, feats.device)
    cent = torch.randn(2, 7, nh, nw)
    got = spin._distances(feats, cent, rows, cols)
    labels = (rows[:, None] * nw + cols[None, :]).reshape(-1).numpy()
    ref = _reference_distance(feats.flatten(2).numpy(), cent.flatten(2).numpy(), labels, nw, nh)
    assert np.array_equal(got.numpy(), ref)


def _dense_association(assoc: spin.Association) -> torch.Tensor:
    """The official dense (B, M, N) matrix: row = initial label + neighbour offset (summing
    duplicates), rows outside [0, M) dropped -- only that 1-D check, as upstream."""
    b, _, n = assoc.weights.shape
    nh, nw = assoc.grid
    labels = (assoc.rows[:, None] * nw + assoc.cols[None, :]).reshape(-1)
    dense = torch.zeros(b, nh * nw, n, dtype=assoc.weights.dtype)
    for k in range(9):
        row = labels + (k % 3 - 1) + (k // 3 - 1) * nw
        ok = (row >= 0) & (row < nh * nw)
        for bi in range(b):
            dense[bi].index_put_((row[ok], torch.arange(n)[ok]), assoc.weights[bi, k, ok],
                                 accumulate=True)
    return dense


@pytest.mark.parametrize(("h", "w", "cell"), [(37, 53, 12), (50, 56, 16), (24, 30, 24),
                                              (47, 25, 20)])
def test_sparse_aggregation_matches_dense_matrix(h, w, cell):
    torch.manual_seed(h * w)
    tokens = torch.randn(2, h, w, 8)
    assoc = spin.associate(tokens, cell)
    dense = _dense_association(assoc)
    assert torch.allclose(dense.sum(1), torch.ones(2, h * w), atol=1e-6)
    feats = torch.randn(2, h, w, 5)
    ref = dense @ feats.view(2, h * w, 5) / (dense.sum(2, keepdim=True) + 1e-16)
    assert torch.allclose(assoc.mean_features(feats), ref, rtol=1e-5, atol=1e-6)


def _reference_top(dense: torch.Tensor, n: int) -> torch.Tensor:
    """Documented rule on the dense rows: by value descending, ties to the lower pixel."""
    order = torch.sort(dense, dim=-1, descending=True, stable=True).indices
    return order[..., :n]


@pytest.mark.parametrize(("h", "w", "cell"), [(37, 53, 12), (50, 56, 16), (71, 40, 20),
                                              (24, 30, 24), (48, 48, 12)])
def test_top_pixels_without_ties_equal_dense_topk(h, w, cell):
    torch.manual_seed(h + w)
    assoc = spin.associate(torch.randn(1, h, w, 6) * 0.2, cell)
    dense = _dense_association(assoc)
    got = assoc.top_pixels(cell * cell)
    vals = dense.gather(2, got)
    ref_vals = dense.topk(cell * cell, dim=-1).values
    assert torch.equal(vals, ref_vals)
    assert torch.equal(got, _reference_top(dense, cell * cell))


@pytest.mark.parametrize(("h", "w", "cell"), [(24, 30, 24), (48, 50, 12), (37, 53, 16),
                                              (61, 45, 20)])
def test_top_pixels_tie_rule_on_constant_image(h, w, cell):
    """A flat image: every valid candidate is equally near, so weights are exact 1/9, 1/6,
    1/4 or 1 and almost every top-N boundary is an exact tie."""
    assoc = spin.associate(torch.full((1, h, w, 6), 0.5), cell)
    dense = _dense_association(assoc)
    got = assoc.top_pixels(cell * cell)
    assert torch.equal(got, _reference_top(dense, cell * cell))
    if (h // cell, w // cell) == (1, 1):  # one superpixel: all tied at 1, first pixels win
        assert torch.equal(got[0, 0], torch.arange(cell * cell))


def test_top_pixels_tie_rule_when_association_saturates():
    """Strong features push softmax weights to exactly 1 and 0; zeros must come from the
    lowest pixel indices, exactly as the dense rule picks them."""
    torch.manual_seed(5)
    assoc = spin.associate(torch.randn(1, 50, 75, 4) * 40, 12)
    dense = _dense_association(assoc)
    got = assoc.top_pixels(144)
    picked = dense.gather(2, got)
    last = picked[..., -1:]
    tied_out = (dense == last).sum(-1) > (picked == last).sum(-1)
    assert (picked == 0).any() and tied_out.any(), "the input no longer makes ties"
    assert torch.equal(got, _reference_top(dense, 144))


def test_saturated_model_output_is_deterministic():
    net = _random_net(scale=2, seed=4, stoken_sizes=(12, 16, 20, 24))
    x = torch.zeros(1, 3, 24, 30)
    x[..., ::2, :] = 255  # stripes: exact ties in every block
    first = net(x)
    assert torch.isfinite(first).all()
    assert torch.equal(net(x.clone()), first)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_tie_rule_is_the_same_on_every_device(device):
    tokens = torch.full((1, 48, 50, 6), 0.25)
    cpu = spin.associate(tokens, 12).top_pixels(144)
    other = spin.associate(tokens.to(device), 12).top_pixels(144).cpu()
    assert torch.equal(cpu, other)


# --- fast attention paths against plain references -----------------------------------------

def test_fused_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    q, k = torch.randn(3, 2, 50, 12), torch.randn(3, 2, 70, 12)
    v = torch.randn(3, 2, 70, 20)
    ref = (q @ k.transpose(-1, -2) * 0.3).softmax(-1) @ v
    assert torch.allclose(spin._attention(q, k, v, 0.3), ref, atol=1e-5)
    ref = (q @ k.transpose(-1, -2) * 0.3).softmax(-1) @ v[..., :5]
    assert torch.allclose(spin._attention(q, k, v[..., :5], 0.3), ref, atol=1e-5)


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., n, heads * d) -> (..., heads, n, d), channels split head-major as upstream."""
    return t.unflatten(-1, (heads, -1)).transpose(-3, -2)


def _merge(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(-3, -2).flatten(-2)


def _softmax_attention(q, k, v, scale):
    return ((q @ k.transpose(-1, -2)) * scale).softmax(-1) @ v


def _reference_local(layer: spin.LocalAttention, x: torch.Tensor) -> torch.Tensor:
    """Window by window as upstream: LayerNorm per window, attention, sum, divide by count."""
    b, c, h, w = x.shape
    p, nh = layer.window, layer.heads
    step = p - 2
    out, count = torch.zeros_like(x), torch.zeros(h, w)
    a = layer.attn
    for i in range(0, h + step - p, step):
        top = min(i, h - p)
        for j in range(0, w + step - p, step):
            left = min(j, w - p)
            win = x[:, :, top:top + p, left:left + p].flatten(2).transpose(1, 2)
            t = layer.norm(win)
            q, k, v = (_heads(m(t), nh) for m in (a.to_q, a.to_k, a.to_v))
            o = _merge(_softmax_attention(q, k, v, layer.qk_dim ** -0.5))
            out[:, :, top:top + p, left:left + p] += o.transpose(1, 2).reshape(b, c, p, p)
            count[top:top + p, left:left + p] += 1
    return out / count


def _randomise(module: torch.nn.Module, std: float) -> None:
    for prm in module.parameters():
        prm.copy_(torch.randn_like(prm) * std)


@pytest.mark.parametrize(("h", "w", "p", "heads"), [(37, 53, 12, 1), (24, 24, 24, 1),
                                                    (47, 30, 20, 1), (30, 41, 16, 2)])
def test_local_attention_matches_window_loop(h, w, p, heads):
    torch.manual_seed(p)
    layer = spin.LocalAttention(16, heads, 8, p)
    _randomise(layer, 0.5)
    x = torch.randn(2, 16, h, w)
    got = layer(x.permute(0, 2, 3, 1).contiguous()).permute(0, 3, 1, 2)
    assert torch.allclose(got, _reference_local(layer, x), atol=1e-5)


@pytest.mark.parametrize("heads", [1, 2])
def test_superpixel_self_attention_write_back_counts_own_value(heads):
    """A pixel picked m times becomes (v + sum of outputs) / (1 + m); unpicked keeps v."""
    torch.manual_seed(2)
    layer = spin.SuperpixelSelfAttention(8, heads, 4, topk=20)
    _randomise(layer, 1.0)
    tokens = torch.randn(1, 12, 13, 8)
    assoc = spin.associate(tokens, 4)
    got = layer(tokens, assoc)
    xn = layer.norm(tokens).view(156, 8)
    q, k, v = (xn @ m.weight.flatten(1).T for m in (layer.q, layer.k, layer.v))
    idx = assoc.top_pixels(20)[0]
    acc, count = v.clone(), torch.ones(156)
    for sel in idx:
        o = _softmax_attention(_heads(q[sel], heads), _heads(k[sel], heads),
                               _heads(v[sel], heads), (4 // heads) ** -0.5)
        acc[sel] += _merge(o)
        count[sel] += 1
    assert (count == 1).any() and (count > 2).any()
    assert torch.allclose(got.view(156, 8), acc / count[:, None], atol=1e-5)


@pytest.mark.parametrize("heads", [1, 2])
def test_superpixel_cross_attention_softmax_axes(heads):
    """Step 1 normalises over pixels (superpixels gather), step 2 over superpixels."""
    torch.manual_seed(heads)
    layer = spin.SuperpixelCrossAttention(8, heads, 4)
    _randomise(layer, 1.0)
    tokens = torch.randn(1, 25, 30, 8)
    assoc = spin.associate(tokens, 12)
    got = layer(tokens, assoc).reshape(750, 8)
    xn = layer.norm(tokens).view(750, 8)
    dense = _dense_association(assoc)[0]  # (M, N)
    stokens = layer.sp(dense @ xn / (dense.sum(1, keepdim=True) + 1e-16))  # (M, qk)
    q, k, v = (_heads(xn @ m.weight.flatten(1).T, heads) for m in (layer.q, layer.k, layer.v))
    s = _heads(stokens, heads)
    scale = (4 // heads) ** -0.5
    to_sp = ((k @ s.transpose(-1, -2)) * scale).softmax(-2)  # (h, N, M): over pixels
    updated = to_sp.transpose(-1, -2) @ v  # (h, M, d)
    to_px = ((s @ q.transpose(-1, -2)) * scale).softmax(-2)  # (h, M, N): over superpixels
    ref = _merge(to_px.transpose(-1, -2) @ updated)
    assert torch.allclose(got, ref, atol=1e-5)


# --- memory model ----------------------------------------------------------------------------

_MEASURE = """
import json, os, sys, torch
from sr_core.archs import spin
torch.set_num_threads(1)
net = spin.build(spin.config("light", {scale}))
with torch.inference_mode():
    net(torch.rand(1, 3, 24, 24) * 255)
x = torch.rand(1, 3, {size}, {size}) * 255
open("/proc/self/clear_refs", "w").write("5")
before = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
with torch.inference_mode():
    net(x)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps(int(hwm.split()[1]) * 1024 - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for peak memory")
@pytest.mark.parametrize("scale", [2, 4])
def test_memory_estimate_covers_a_measured_forward(scale):
    size = 128

    def measure() -> int:
        out = subprocess.run([sys.executable, "-c", _MEASURE.format(scale=scale, size=size)],
                             capture_output=True, text=True, check=True)
        return int(json.loads(out.stdout.strip().splitlines()[-1]))

    # The least of three fresh processes: now and then a process's high-water mark also
    # holds ~30 MB of library pages first touched during the forward (seen 1 run in 6 on a
    # loaded machine), which is not the forward's working memory.
    peak = min(measure() for _ in range(3))
    est = spin.estimate_memory(spin.config("light", scale), size, size)
    assert peak <= est <= 2.5 * peak, (peak, est)
