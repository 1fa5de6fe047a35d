"""Training loop: every family trains, runs resume where they stopped, exported weights load."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from sr_core import load_model
from sr_core.models import families
from sr_core.train import TrainConfig, build_model, lr_factor, train


def _images(folder, n: int, size: tuple[int, int], seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        # Smooth random content (upsampled noise) so that the LR actually predicts the HR.
        small = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BICUBIC).save(folder / f"img{i}.png")


@pytest.mark.parametrize("family", families(), ids=lambda f: f.INFO.name)
def test_every_architecture_takes_a_training_step(family) -> None:
    torch.manual_seed(0)
    variant = {"hpinet": "S", "hat": "HAT-S", "spin": "light", "asid": "ASID"}[family.INFO.name]
    model = build_model(family.INFO.name, variant, 2)
    model.train()
    side = max(24, family.INFO.min_size)
    x = torch.rand(2, 3, side, side)
    y = torch.rand(2, 3, 2 * side, 2 * side)
    before = [p.detach().clone() for p in model.net.parameters()]
    opt = torch.optim.Adam(model.net.parameters(), lr=1e-3)
    loss = torch.nn.functional.l1_loss(model(x), y)
    loss.backward()
    grads = [p.grad for p in model.net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    opt.step()
    after = list(model.net.parameters())
    changed = sum(not torch.equal(b, p) for b, p in zip(before, after, strict=True))
    assert changed > 0.9 * len(before)


def test_run_checkpoints_resumes_and_exports_loadable_weights(tmp_path) -> None:
    data, val = tmp_path / "train", tmp_path / "val"
    _images(data, 3, (96, 80), seed=1)
    _images(val, 1, (64, 48), seed=2)
    cfg = TrainConfig(arch="asid", variant="ASID", scale=2, data=[str(data)], val=[str(val)],
                      out=str(tmp_path / "run"), iters=4, batch=2, patch=16, warmup=2,
                      val_every=2, ckpt_every=2, workers=0)
    first = train(cfg, log=lambda m: None)
    assert first["iterations"] == 4
    assert [h["iter"] for h in first["history"]] == [2, 4]
    ckpt = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert ckpt["iter"] == 4

    # Asking for more iterations continues from the checkpoint instead of starting over.
    cfg.iters = 6
    messages: list[str] = []
    second = train(cfg, log=messages.append)
    assert any("resumed" in m and "iteration 4" in m for m in messages)
    assert [h["iter"] for h in second["history"]] == [2, 4, 6]

    model = load_model(tmp_path / "run" / "best_ema.safetensors")
    assert (model.arch, model.variant, model.scale) == ("asid", "ASID", 2)
    out = model(torch.rand(1, 3, 16, 16))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


def test_unknown_architecture_is_one_sentence() -> None:
    from sr_core.errors import FinescaleError

    with pytest.raises(FinescaleError, match="unknown architecture 'esrgan'"):
        build_model("esrgan", None, 4)


def test_schedule_warms_up_then_anneals_to_zero() -> None:
    cfg = TrainConfig(arch="asid", scale=2, data=[], val=[], out="", warmup=10, lr=1e-3)
    assert lr_factor(cfg, 0, 0.0) == pytest.approx(0.1)
    assert lr_factor(cfg, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(cfg, 500, 0.5) == pytest.approx(0.5)
    assert lr_factor(cfg, 900, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(cfg, 999, 1.7) == pytest.approx(0.0, abs=1e-12)  # over budget: stays 0
    cfg.schedule = "step"
    assert [lr_factor(cfg, 50, t) for t in (0.1, 0.3, 0.6, 0.9, 1.0)] == [
        1.0, 0.5, 0.25, 0.125, 0.125]


def test_a_time_budget_split_over_short_slots_adds_up_and_ends_annealed(tmp_path) -> None:
    # GPU time comes in short slots: each invocation stops at its time limit with a
    # checkpoint, and the next one carries on the same schedule until the budget is spent.
    data, val = tmp_path / "train", tmp_path / "val"
    _images(data, 2, (64, 64), seed=3)
    _images(val, 1, (48, 48), seed=4)
    cfg = TrainConfig(arch="asid", variant="ASID", scale=2, data=[str(data)], val=[str(val)],
                      out=str(tmp_path / "run"), batch=1, patch=12, warmup=1, val_every=10**6,
                      ckpt_every=10**6, workers=0, budget_minutes=0.03,
                      time_limit_minutes=0.012)
    # A fake clock: every reading is 0.25 s after the previous one, however slow the machine.
    ticks = itertools.count()
    clock = lambda: 0.25 * next(ticks)  # noqa: E731
    first = train(cfg, log=lambda m: None, clock=clock)
    assert first["stopped"] == "time limit"
    assert first["iterations"] == 3  # 0.25, 0.5, 0.75 s: the 0.72 s limit is passed at 3
    assert 0.012 <= first["train_minutes"] < 0.03
    assert (tmp_path / "run" / "best_ema.safetensors").exists()  # validated on the way out
    cfg.time_limit_minutes = None
    messages: list[str] = []
    second = train(cfg, log=messages.append, clock=clock)
    assert any("resumed" in m for m in messages)
    assert second["stopped"] == "finished"
    assert second["iterations"] == first["iterations"] + 5  # 0.75 s + 5 x 0.25 s >= 1.8 s
    assert second["train_minutes"] >= 0.03
    ckpt = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert ckpt["train_seconds"] == pytest.approx(second["train_minutes"] * 60)
    assert lr_factor(cfg, ckpt["iter"], ckpt["train_seconds"] / (0.03 * 60)) == 0.0


# --- photo models: degradations, initial weights ------------------------------------------------
def test_degraded_patch_stream_gives_aligned_pairs_from_hr_crops(tmp_path) -> None:
    from sr_core.train import PatchStream

    _images(tmp_path / "hr", 2, (96, 96), seed=5)
    paths = sorted((tmp_path / "hr").glob("*.png"))
    stream = iter(PatchStream(paths, 4, 12, seed=1, degradation="real"))
    corr = []
    for _ in range(8):
        lr, hr = next(stream)
        assert lr.shape == (3, 12, 12) and hr.shape == (3, 48, 48)
        assert lr.dtype == hr.dtype == torch.float32
        small = torch.nn.functional.avg_pool2d(hr[None], 4)[0]
        corr.append(float(torch.corrcoef(torch.stack([lr.flatten(), small.flatten()]))[0, 1]))
    # The LR still shows the HR's content, aligned (the degradations keep the picture): the
    # draws are random, so the check is on the typical patch, not on each one.
    assert float(np.median(corr)) > 0.5, corr


def test_fine_tuning_starts_from_the_given_weights(tmp_path) -> None:
    from sr_core.train import initial_model

    cfg = TrainConfig(arch="asid", scale=4, data=[], val=[], out="", init="finescale-asid-x4")
    start = initial_model(cfg)
    ref = load_model("finescale-asid-x4")
    sd, ref_sd = start.net.state_dict(), ref.net.state_dict()
    assert all(torch.equal(sd[k], ref_sd[k]) for k in ref_sd)


def test_init_of_another_scale_needs_init_partial_which_keeps_the_body(tmp_path) -> None:
    from sr_core.errors import FinescaleError
    from sr_core.train import initial_model

    cfg = TrainConfig(arch="asid", scale=2, data=[], val=[], out="", init="finescale-asid-x4")
    with pytest.raises(FinescaleError, match="upscales x4, but x2 training was asked"):
        initial_model(cfg)
    cfg.init_partial = True
    model = initial_model(cfg)
    assert model.scale == 2
    ref = load_model("finescale-asid-x4").net.state_dict()
    sd = model.net.state_dict()
    same = [k for k in sd if k in ref and ref[k].shape == sd[k].shape]
    assert len(same) > 0.9 * len(sd)
    assert all(torch.equal(sd[k], ref[k]) for k in same)


def test_init_of_another_architecture_is_one_sentence(tmp_path, capsys) -> None:
    from sr_core.cli import main

    _images(tmp_path / "data", 1, (64, 64), seed=8)
    code = main(["train", "--arch", "spin", "--scale", "4", "--data", str(tmp_path / "data"),
                 "--val", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                 "--init", "finescale-asid-x4"])
    err = capsys.readouterr().err
    assert code == 1
    assert "holds ASID x4 (asid) weights, but --arch spin was asked" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "last.pth").exists()


def test_unknown_training_degradation_is_a_usage_error(tmp_path, capsys) -> None:
    from sr_core.cli import main

    code = main(["train", "--arch", "asid", "--scale", "4", "--data", str(tmp_path),
                 "--val", str(tmp_path), "--out", str(tmp_path / "run"),
                 "--degradation", "vintage"])
    err = capsys.readouterr().err
    assert code == 2 and "Unknown training degradation 'vintage'" in err
    assert not (tmp_path / "run").exists()


def test_a_photo_fine_tune_runs_validates_on_the_real_preset_and_exports(tmp_path) -> None:
    from safetensors import safe_open

    data, val = tmp_path / "train", tmp_path / "val"
    _images(data, 2, (96, 96), seed=6)
    _images(val, 1, (64, 64), seed=7)
    cfg = TrainConfig(arch="asid", variant="ASID", scale=4, data=[str(data)], val=[str(val)],
                      out=str(tmp_path / "run"), iters=2, batch=1, patch=12, warmup=1,
                      val_every=2, ckpt_every=2, workers=0, degradation="real",
                      init="finescale-asid-x4", freq_loss=0.05, lr=1e-5)
    summary = train(cfg, log=lambda m: None)
    assert summary["iterations"] == 2 and len(summary["history"]) == 1
    out = tmp_path / "run" / "best_ema.safetensors"
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["degradation"] == "real"
    tuned = load_model(out)
    assert (tuned.arch, tuned.scale) == ("asid", 4)


def test_frequency_loss_is_zero_for_equal_images_and_sees_lost_detail() -> None:
    from sr_core.train import frequency_l1

    x = torch.rand(1, 3, 32, 32)
    assert frequency_l1(x, x).item() == 0.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert frequency_l1(blurred, x).item() > 0.01
