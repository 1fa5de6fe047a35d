"""`finescale upscale`: names, formats, sizes, metadata, per-file errors, exit codes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from safetensors.torch import save_file

from sr_core import cli


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A real ASID x2 checkpoint (random weights): the CLI detects and loads it like any file."""
    from sr_core.archs import asid

    torch.manual_seed(0)
    net = asid.build(asid.config("ASID", 2))
    path = tmp_path_factory.mktemp("model") / "asid_x2.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rgb(h: int = 24, w: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy * 255 // h, xx * 255 // w, (yy + xx) * 255 // (h + w)], -1).astype(np.uint8)


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_upscales_beside_the_input_and_never_touches_it(tmp_path, weights, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    Image.fromarray(_rgb()).save(a)
    Image.fromarray(_rgb(20, 30)).save(b, quality=90)
    before = (_digest(a), _digest(b))
    code, out, _ = _run(["upscale", str(a), str(b), "-m", str(weights), "--device", "cpu"], capsys)
    assert code == 0
    assert Image.open(tmp_path / "a_x2.png").size == (64, 48)
    with Image.open(tmp_path / "b_x2.jpg") as im:
        assert im.size == (60, 40) and im.format == "JPEG"
    assert (_digest(a), _digest(b)) == before
    assert "a_x2.png (64x48, fp32)" in out or "a_x2.png (64x48, bf16)" in out  # what ran


def test_one_bad_file_fails_alone(tmp_path, weights, capsys):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.fromarray(_rgb()).save(good)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    code, _, err = _run(["upscale", str(bad), str(good), str(tmp_path / "missing.png"),
                         "-m", str(weights), "--device", "cpu"], capsys)
    assert code == 1
    assert (tmp_path / "good_x2.png").exists() and not (tmp_path / "bad_x2.png").exists()
    lines = [ln for ln in err.splitlines() if ln.startswith("finescale: error:")]
    assert len(lines) == 2 and "bad.png" in lines[0] and "missing.png" in lines[1]
    assert "Traceback" not in err


def test_output_name_format_scale_and_existing_files(tmp_path, weights, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(_rgb()).save(src)
    dest = tmp_path / "out.webp"
    code, _, _ = _run(["upscale", str(src), "-o", str(dest), "--scale", "1.5", "-m", str(weights),
                       "--device", "cpu", "--quality", "80"], capsys)
    assert code == 0
    with Image.open(dest) as im:
        assert im.format == "WEBP" and im.size == (48, 36)
    stamp = _digest(dest)
    code, _, err = _run(["upscale", str(src), "-o", str(dest), "-m", str(weights),
                         "--device", "cpu"], capsys)
    assert code == 1 and "already exists" in err and _digest(dest) == stamp
    code, _, _ = _run(["upscale", str(src), "-o", str(dest), "-m", str(weights), "--device", "cpu",
                       "--overwrite"], capsys)
    assert code == 0 and _digest(dest) != stamp
    code, _, _ = _run(["upscale", str(src), "--out-dir", str(tmp_path / "o"), "--width", "40",
                       "--format", "tiff", "-m", str(weights), "--device", "cpu"], capsys)
    assert code == 0
    with Image.open(tmp_path / "o" / "in_x1.25.tif") as im:
        assert im.size == (40, 30)


def test_refuses_to_write_onto_the_input(tmp_path, weights, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(_rgb()).save(src)
    stamp = _digest(src)
    code, _, err = _run(["upscale", str(src), "-o", str(src), "-m", str(weights),
                         "--device", "cpu", "--overwrite"], capsys)
    assert code == 1 and "input file" in err and _digest(src) == stamp


def test_sixteen_bit_alpha_and_metadata_survive(tmp_path, weights, capsys):
    src = tmp_path / "deep.png"
    rgba = np.concatenate([_rgb().astype(np.uint16) * 257,
                           np.full((24, 32, 1), 40000, np.uint16)], 2)
    cv2.imwrite(str(src), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    icc_src = tmp_path / "icc.png"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(_rgb()).save(icc_src, icc_profile=icc)
    code, out, _ = _run(["upscale", str(src), str(icc_src), "-m", str(weights), "--device", "cpu",
                         "--json"], capsys)
    assert code == 0
    rows = json.loads(out)
    assert [r["ok"] for r in rows] == [True, True] and rows[0]["width"] == 64
    assert rows[0]["precision"] in ("fp32", "bf16")
    deep = cv2.imread(str(tmp_path / "deep_x2.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (48, 64, 4)
    assert abs(int(deep[..., 3].mean()) - 40000) < 50
    with Image.open(tmp_path / "icc_x2.png") as im:
        assert im.info.get("icc_profile") == icc


def test_usage_errors(tmp_path, weights, capsys):
    a = tmp_path / "a.png"
    Image.fromarray(_rgb()).save(a)
    code, _, err = _run(["upscale", str(a), str(a), "-o", str(tmp_path / "x.png"),
                         "-m", str(weights)], capsys)
    assert code == 2 and "--out-dir" in err
    with pytest.raises(SystemExit) as e:
        cli.main(["upscale", str(a), "--scale", "2", "--width", "10"])
    assert e.value.code == 2
    capsys.readouterr()
    code, _, err = _run(["upscale", str(a), "-m", str(weights), "--device", "cpu",
                         "--tile", "12"], capsys)
    assert code == 1 and "too small" in err


def test_without_a_model_the_default_is_asked_for(tmp_path, capsys, monkeypatch):
    from sr_core import catalog
    from sr_core.errors import ModelNotFoundError

    def no_default() -> str:
        raise ModelNotFoundError("No default model is installed; pass a model with -m.")

    monkeypatch.setattr(catalog, "default_model", no_default)
    a = tmp_path / "a.png"
    Image.fromarray(_rgb()).save(a)
    code, _, err = _run(["upscale", str(a)], capsys)
    assert code == 1 and "-m" in err and not (tmp_path / "a_x2.png").exists()


# --- issue 18 reproductions -----------------------------------------------------------------
def test_options_are_refused_before_any_work(tmp_path, weights, capsys, monkeypatch):
    src = tmp_path / "a.png"
    Image.fromarray(_rgb()).save(src)
    from sr_core import engine

    monkeypatch.setattr(engine.Upscaler, "upscale", lambda *a, **k: pytest.fail("upscaled"))
    out_dir = ["--out-dir", str(tmp_path / "o")]
    for args, want in (([*out_dir, "--quality", "0"], 2), ([*out_dir, "--quality", "101"], 2),
                       ([*out_dir, "--scale", "1000"], 2), ([*out_dir, "--width", "2000000"], 2),
                       (["--width", "70000", "-o", str(tmp_path / "w.jpg")], 1),
                       (["--width", "17000", "-o", str(tmp_path / "w.webp")], 1),
                       ([*out_dir, "--scale", "8", "--max-output-megapixels", "0.01"], 1)):
        try:
            code = cli.main(["upscale", str(src), "-m", str(weights), *args])
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == want, (args, err)
        assert "Traceback" not in err
        assert err.count("error:") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_the_size_refusal_gives_the_numbers_and_yes_overrides_it(tmp_path, weights, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(_rgb()).save(src)
    code, _, err = _run(["upscale", str(src), "-m", str(weights), "--scale", "8",
                         "--max-output-megapixels", "0.01", "-o", str(tmp_path / "b.png")],
                        capsys)
    assert code == 1
    assert "a.png" in err and "256x192" in err and "0.01 MP" in err and "memory" in err
    code, _, err = _run(["upscale", str(src), "-m", str(weights), "--scale", "8",
                         "--max-output-megapixels", "0.01", "--yes",
                         "-o", str(tmp_path / "b.png")], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "b.png").size == (256, 192)


def test_bad_output_places_are_one_sentence(tmp_path, weights, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(_rgb()).save(src)
    (tmp_path / "file").write_text("x")
    cases = [
        (["--out-dir", str(tmp_path / "file")], "it is a file, not a folder"),
        (["-o", str(tmp_path / ("n" * 300 + ".png"))], "name is too long"),
        (["-o", "/dev/full", "--format", "png", "--overwrite"], "only regular files"),
    ]
    for extra, words in cases:
        code, _, err = _run(["upscale", str(src), "-m", str(weights), *extra], capsys)
        assert code == 1 and words in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "file"]


def test_a_name_that_is_not_utf8_prints_escaped_on_a_strict_stream(tmp_path, weights):
    import os
    import subprocess
    import sys

    raw = bytes(tmp_path) + b"/bad_\xff\xfe.png"
    Image.fromarray(_rgb()).save(os.fsdecode(raw))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    for cmd in (["info"], ["upscale", "-m", str(weights), "--device", "cpu"]):
        run = subprocess.run([sys.executable, "-m", "sr_core.cli", *cmd, os.fsdecode(raw)],
                             capture_output=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr.decode(errors="replace")
        assert b"Traceback" not in run.stderr
        assert b"bad_\\udcff\\udcfe" in run.stdout  # escaped, not a crash
    assert os.path.exists(bytes(tmp_path) + b"/bad_\xff\xfe_x2.png")
