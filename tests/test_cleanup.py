"""The detail <-> clean-up control: exact endpoints, a real blend between, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr_core import Upscaler, catalog, load_model
from sr_core.cleanup import blend, check_clean_up
from sr_core.cli import main
from sr_core.errors import FinescaleError

PAPER, PHOTO = "finescale-asid-x4", "finescale-asid-x4-photo"


def _same_weights(a, b) -> bool:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_photo_models_are_tagged_and_paired_in_the_catalogue() -> None:
    assert catalog.get(PHOTO).kind == "photo" and catalog.get(PAPER).kind == "paper-exact"
    assert catalog.clean_up_pair(PHOTO) == (PAPER, PHOTO)
    assert catalog.clean_up_pair(PAPER) == (PAPER, PHOTO)
    assert catalog.get("finescale-asid-x2-photo").kind == "photo"
    assert catalog.default_model() == PHOTO
    assert all(e.kind in catalog.KINDS for e in catalog.entries())


@pytest.mark.parametrize("model_id", [PAPER, PHOTO])
def test_each_endpoint_is_its_model_bit_for_bit(model_id: str) -> None:
    zero, one = load_model(model_id, clean_up=0.0), load_model(model_id, clean_up=1.0)
    assert _same_weights(zero, load_model(PAPER))
    assert _same_weights(one, load_model(PHOTO))
    assert not _same_weights(zero, one)
    x = torch.rand(1, 3, 24, 24)
    with torch.inference_mode():
        assert torch.equal(zero(x), load_model(PAPER)(x))
        assert torch.equal(one(x), load_model(PHOTO)(x))


def test_blend_endpoints_are_exact_copies_and_the_middle_is_the_straight_line() -> None:
    paper, photo = load_model(PAPER), load_model(PHOTO)
    assert _same_weights(blend(paper, photo, 0.0), paper)
    assert _same_weights(blend(paper, photo, 1.0), photo)
    mid = blend(paper, photo, 0.25).net.state_dict()
    a, b = paper.net.state_dict(), photo.net.state_dict()
    for k in a:
        assert torch.allclose(mid[k], a[k] + 0.25 * (b[k] - a[k]), atol=1e-6)
    # The inputs are untouched.
    assert _same_weights(paper, load_model(PAPER)) and _same_weights(photo, load_model(PHOTO))


def _noisy_photo() -> np.ndarray:
    """A smooth picture with sensor-like noise (sigma 10/255), 64x64 RGB float32."""
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    clean = np.stack([0.5 + 0.25 * np.sin(xx / 9), 0.45 + 0.2 * np.cos(yy / 11),
                      0.4 + 0.002 * (xx + yy)], axis=-1)
    rng = np.random.default_rng(0)
    return np.clip(clean + rng.normal(0, 10 / 255, clean.shape), 0, 1).astype(np.float32)


def _noise(img: np.ndarray) -> float:
    """High-frequency energy: std of the output minus its 9x9 box blur (noise, not content)."""
    import cv2

    y = img.mean(axis=-1)
    return float((y - cv2.blur(y, (9, 9)))[8:-8, 8:-8].std())


def test_noise_in_the_output_falls_as_clean_up_rises() -> None:
    photo = _noisy_photo()
    levels = []
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        out = Upscaler(PHOTO, device="cpu", precision="fp32", tile=0, clean_up=t).upscale(photo)
        levels.append(_noise(np.asarray(out, dtype=np.float32)))
    assert all(a > b for a, b in zip(levels, levels[1:], strict=False)), levels
    assert levels[-1] < 0.8 * levels[0]


def test_out_of_range_values_are_refused_naming_them() -> None:
    for bad in (-0.1, 1.5, float("nan"), "lots"):
        with pytest.raises(ValueError, match="clean-up must be a number from 0 to 1"):
            check_clean_up(bad)
    with pytest.raises(FinescaleError, match="no photo-trained version"):
        load_model("hpinet-m-x4", clean_up=0.5)


def test_cli_clean_up_usage_errors_exit_2_and_write_nothing(tmp_path, capsys) -> None:
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src)
    before = src.read_bytes()
    with pytest.raises(SystemExit) as usage:  # argparse: usage line + one sentence, exit 2
        main(["upscale", str(src), "--clean-up", "1.5"])
    assert usage.value.code == 2
    err = capsys.readouterr().err
    assert "clean-up must be a number from 0 to 1, not '1.5'" in err
    assert main(["upscale", str(src), "-m", "finescale-asid-x2-photo", "--clean-up", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "finescale-asid-x2-photo has no paper-exact twin" in err and "Traceback" not in err
    assert main(["batch", str(tmp_path), str(tmp_path / "out"), "-m", "hpinet-m-x4",
                 "--clean-up", "0.3"]) == 2
    assert "hpinet-m-x4 has no photo-trained version" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    assert src.read_bytes() == before


def test_cli_upscale_at_a_clean_up_value_reports_and_writes(tmp_path, capsys) -> None:
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray((_noisy_photo()[:32, :32] * 255).astype(np.uint8)).save(src)
    assert main(["upscale", str(src), "--clean-up", "0.5", "--json"]) == 0
    import json

    (row,) = json.loads(capsys.readouterr().out)
    assert row["ok"] and row["width"] == 128
    assert (tmp_path / "a_x4.png").exists()
