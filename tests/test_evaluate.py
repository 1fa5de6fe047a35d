"""``finescale eval``: the papers' protocol end to end, its JSON, and the bicubic baseline."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sr_core.archs.layers import ArchInfo
from sr_core.cli import main
from sr_core.errors import FinescaleError
from sr_core.evaluate import evaluate, make_lr, read_rgb8, resolve_protocol
from sr_core.metrics import imresize, modcrop, psnr, ssim
from sr_core.models import SRModel

# EVALUATION.md, bicubic under the protocol (LR upscaled back with the same imresize).
BICUBIC_SET5 = {2: 33.649, 3: 30.386, 4: 28.419}
BICUBIC_SET5_SSIM_X4 = 0.8102


def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture()
def tiny_set(tmp_path: Path) -> Path:
    """Two smooth pictures, one of them a 1-channel file, with sizes that need a modcrop."""
    yy, xx = np.mgrid[0:50, 0:61]
    colour = np.stack([128 + 100 * np.sin(xx / 7), 128 + 90 * np.cos(yy / 5),
                       (xx + yy) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    grey = (128 + 110 * np.sin((xx + 2 * yy) / 9)).astype(np.uint8)
    d = tmp_path / "Tiny"
    _write(d / "a.png", colour)
    _write(d / "b.png", grey)
    (d / "notes.txt").write_text("not an image")
    return d


def test_bicubic_scores_follow_the_protocol(tiny_set: Path) -> None:
    res = evaluate("bicubic", [tiny_set], 4)
    (row,) = res.results
    assert (res.model, res.scale, row.dataset, row.images) == ("bicubic", 4, "Tiny", 2)
    # the same steps by hand: RGB (grey expanded), modcrop, MATLAB LR, float bicubic, 8 bits
    for p, score in zip(sorted(tiny_set.glob("*.png")), row.per_image, strict=True):
        hr = modcrop(np.asarray(Image.open(p).convert("RGB")), 4)
        assert hr.shape[:2] == (48, 60)
        lr = imresize(hr, 1 / 4)
        sr = np.clip(np.floor(imresize(lr.astype(float), 4) + 0.5), 0, 255).astype(np.uint8)
        assert score.psnr == pytest.approx(psnr(sr, hr, shave=4), abs=1e-9)
    assert row.psnr == pytest.approx(np.mean([s.psnr for s in row.per_image]))


def _tiny_model() -> SRModel:
    """A 3x3 conv + PixelShuffle x2 network behind the SRModel convention."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    family = SimpleNamespace(INFO=ArchInfo(name="tiny", title="Tiny", input_range=(0.0, 1.0)),
                             estimate_memory=lambda config, h, w, dtype_bytes=4: 0)
    return SRModel(net, family, SimpleNamespace(variant="", scale=2)).eval()


def test_model_scores_follow_the_protocol(tiny_set: Path) -> None:
    model = _tiny_model()
    res = evaluate(model, [tiny_set], 2, device="cpu")
    assert (res.model, res.protocol) == ("Tiny x2", "whole")
    for p, score in zip(sorted(tiny_set.glob("*.png")), res.results[0].per_image, strict=True):
        hr = modcrop(read_rgb8(p), 2)
        x = torch.from_numpy(imresize(hr, 1 / 2).transpose(2, 0, 1).copy()).float()[None] / 255
        with torch.no_grad():
            y = model(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
        sr = np.round(y * 255).astype(np.uint8)  # float32 LR/255 in, clamp, 8 bits out
        assert score.psnr == pytest.approx(psnr(sr, hr, shave=2), abs=1e-9)
        assert score.ssim == pytest.approx(ssim(sr, hr, shave=2), abs=1e-12)


def test_official_protocol_runs_the_tile_harness(tiny_set: Path) -> None:
    from sr_core.protocol import official_tiled

    model = _tiny_model()
    whole = evaluate(model, [tiny_set], 2, protocol="whole", device="cpu").results[0]
    tiled = evaluate(model, [tiny_set], 2, protocol="official", device="cpu")
    assert tiled.protocol == "official"
    p = sorted(tiny_set.glob("*.png"))[0]
    hr = modcrop(read_rgb8(p), 2)
    x = torch.from_numpy(imresize(hr, 1 / 2).transpose(2, 0, 1).copy()).float()[None] / 255
    y = official_tiled(model, x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    sr = np.round(y * 255).astype(np.uint8)
    assert tiled.results[0].per_image[0].psnr == pytest.approx(psnr(sr, hr, shave=2), abs=1e-9)
    # 25x30 LR -> 25x25 tiles whose zero-padded borders fall inside the picture
    assert tiled.results[0].psnr != pytest.approx(whole.psnr, abs=1e-6)


def test_auto_protocol_is_what_the_authors_did() -> None:
    assert resolve_protocol("auto", "asid") == "official"
    assert resolve_protocol("auto", "hpinet") == "whole"
    assert resolve_protocol("official", "hat") == "official"
    with pytest.raises(FinescaleError, match="tiles"):
        resolve_protocol("tiles", "hat")


def test_model_of_another_scale_is_refused(tiny_set: Path) -> None:
    with pytest.raises(FinescaleError, match=r"Tiny x2 upscales x2, but x4"):
        evaluate(_tiny_model(), [tiny_set], 4)


def test_grey_files_become_three_equal_channels(tiny_set: Path) -> None:
    img = read_rgb8(tiny_set / "b.png")
    assert img.shape == (50, 61, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    assert make_lr(modcrop(img, 3), 3).shape == (16, 20, 3)


def test_eval_json_schema(tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "Other"
    _write(other / "c.png", np.full((40, 40, 3), 90, np.uint8))
    rc = main(["eval", "-m", "bicubic", "--dataset", str(tiny_set), "--dataset", str(other),
               "--scale", "2", "--json"])
    out = capsys.readouterr()
    assert rc == 0
    obj = json.loads(out.out)  # exactly one JSON object on stdout, the progress bar on stderr
    assert set(obj) == {"model", "scale", "results"}
    assert obj["model"] == "bicubic" and obj["scale"] == 2
    assert [r["dataset"] for r in obj["results"]] == ["Tiny", "Other"]
    for r in obj["results"]:
        assert set(r) == {"dataset", "psnr", "ssim", "images"}
        assert isinstance(r["ssim"], float) and isinstance(r["images"], int)
    assert isinstance(obj["results"][0]["psnr"], float)
    assert [r["images"] for r in obj["results"]] == [2, 1]
    assert obj["results"][1]["psnr"] is None  # a flat picture is reproduced exactly: inf
    assert obj["results"][1]["ssim"] == pytest.approx(1.0)
    assert 20 < obj["results"][0]["psnr"] < 60 and 0 < obj["results"][0]["ssim"] < 1
    assert "img" in out.err


def test_eval_per_image_rows_and_saved_images(tiny_set: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    save = tmp_path / "sr"
    rc = main(["eval", "-m", "bicubic", "--dataset", str(tiny_set), "--scale", "3", "--json",
               "--per-image", "--save-dir", str(save)])
    assert rc == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert [p["image"] for p in row["per_image"]] == ["a.png", "b.png"]
    for p in row["per_image"]:
        sr = np.asarray(Image.open(save / "Tiny" / p["image"]))
        hr = modcrop(read_rgb8(tiny_set / p["image"]), 3)
        assert sr.shape == hr.shape == (48, 60, 3)
        assert psnr(sr, hr, shave=3) == pytest.approx(p["psnr"], abs=1e-9)
    assert sorted(f.name for f in (save / "Tiny").iterdir()) == ["a.png", "b.png"]


def test_eval_table(tiny_set: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "-m", "bicubic", "--dataset", str(tiny_set), "--scale", "2"]) == 0
    out = capsys.readouterr().out
    assert "bicubic" in out and "Tiny" in out and "PSNR" in out


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_eval_bad_folder_is_one_sentence(tmp_path: Path, make: str,
                                         capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "Set"
    if make == "empty":
        d.mkdir()
    assert main(["eval", "-m", "bicubic", "--dataset", str(d), "--scale", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("finescale: error: ") and str(d) in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_eval_unreadable_image_is_one_sentence(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "Broken"
    d.mkdir()
    (d / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["eval", "-m", "bicubic", "--dataset", str(d), "--scale", "2"]) == 1
    err = capsys.readouterr().err
    assert "x.png" in err and "Traceback" not in err


def test_bicubic_set5_matches_evaluation_md(shared: Path) -> None:
    """The baseline row of the classic tables, on our Set5 files (EVALUATION.md).

    Our LR is bit-identical to the MATLAB-made SelfExSR files; EVALUATION.md's bicubic row
    came from a symmetric-border LR rounded once, which moves Set5 by at most 0.004 dB.
    """
    set5 = shared / "datasets" / "benchmark" / "Set5"
    for scale, expected in BICUBIC_SET5.items():
        (row,) = evaluate("bicubic", [set5], scale).results
        assert row.images == 5
        assert row.psnr == pytest.approx(expected, abs=0.005), scale
        # and within the classic table's +-0.015 dB (33.66 / 30.39 / 28.42)
        assert row.psnr == pytest.approx({2: 33.66, 3: 30.39, 4: 28.42}[scale], abs=0.015)
        if scale == 4:
            assert row.ssim == pytest.approx(BICUBIC_SET5_SSIM_X4, abs=0.0005)
            assert row.ssim == pytest.approx(0.8104, abs=0.001)


@pytest.mark.slow
def test_hpinet_s_x4_set5_matches_the_paper(shared: Path) -> None:
    """The official HPINet-S x4 checkpoint on Set5: 32.47 dB in the paper (32.466 / 0.8976
    with the official code on these files, EVALUATION.md). About a minute on two CPU cores."""
    weights = shared / "weights" / "hpinet" / "HPINet-S-x4.pth"
    (row,) = evaluate(weights, [shared / "datasets" / "benchmark" / "Set5"], 4,
                      device="cpu").results
    assert row.images == 5
    assert row.psnr == pytest.approx(32.47, abs=0.03)
    assert row.ssim == pytest.approx(0.8976, abs=0.001)


# --- real-world protocol ------------------------------------------------------------------------
def test_degraded_lr_is_the_preset_applied_after_the_protocols_downscale(tiny_set: Path) -> None:
    from sr_core.degrade import PRESETS
    from sr_core.evaluate import make_lr

    hr = modcrop(np.asarray(Image.open(tiny_set / "a.png").convert("RGB")), 4)
    clean = make_lr(hr, 4)
    real = make_lr(hr, 4, "real", "a.png")
    assert real.shape == clean.shape and real.dtype == np.uint8
    assert np.array_equal(real, make_lr(hr, 4, "real", "a.png"))  # seeded: fixed per image
    # The noise and JPEG move the input by several grey levels, as the preset says.
    diff = real.astype(float) - clean.astype(float)
    sigma, _ = PRESETS["real"].params("a.png")
    assert 3.0 < diff.std() < 3 * sigma


def test_compare_scores_lanczos_and_bicubic_on_the_same_inputs(tiny_set: Path) -> None:
    from sr_core.evaluate import compare, format_comparison

    rows = compare("bicubic", [tiny_set], 4, degradation="mild")
    assert [r.model for r in rows] == ["lanczos", "bicubic"]
    assert all(r.degradation == "mild" for r in rows)
    again = evaluate("lanczos", [tiny_set], 4, degradation="mild")
    assert again.results[0].psnr == pytest.approx(rows[0].results[0].psnr, abs=1e-12)
    clean = evaluate("lanczos", [tiny_set], 4)
    assert clean.results[0].psnr > rows[0].results[0].psnr  # the degradation costs quality
    table = format_comparison(rows)
    assert "degradation 'mild'" in table and "lanczos" in table and "gain" in table


def test_eval_degradation_json_lists_model_lanczos_bicubic(tiny_set: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "-m", "finescale-asid-x4", "--dataset", str(tiny_set), "--scale", "4",
                 "--protocol", "whole", "--degradation", "real", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["degradation"] == "real" and data["scale"] == 4
    assert [r["model"] for r in data["rows"]] == ["ASID x4", "lanczos", "bicubic"]
    assert all(r["degradation"] == "real" for r in data["rows"])


def test_unknown_preset_is_one_sentence_and_exit_2(tiny_set: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    code = main(["eval", "-m", "bicubic", "--dataset", str(tiny_set), "--scale", "4",
                 "--degradation", "phone"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Unknown degradation preset 'phone'" in err and "mild, real" in err
    assert "Traceback" not in err
