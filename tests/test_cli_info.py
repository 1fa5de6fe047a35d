"""`finescale info IMAGE... [--json]`: headers of each image, one error line per bad file."""

from __future__ import annotations

import json

import imagegen as g
import numpy as np
import tifffile

from sr_core.cli import main


def _inputs(tmp_path):
    g.save_rgb(tmp_path / "turned.jpg", g.marked_rgb(48, 32), exif=g.exif_block(6),
               icc_profile=g.rgb_profile())
    tifffile.imwrite(tmp_path / "deep.tif", g.values16(), photometric="rgb", metadata=None,
                     software=False)
    g.save_rgb(tmp_path / "soft.png", np.dstack([g.marked_rgb(64, 16), g.soft_alpha()]))
    (tmp_path / "notes.png").write_text("not a picture\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    return [str(tmp_path / n) for n in ("turned.jpg", "deep.tif", "soft.png")]


def test_info_prints_one_line_per_image(tmp_path, capsys):
    good = _inputs(tmp_path)
    assert main(["info", *good]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{good[0]}: 32x48 JPEG RGB 8-bit, orientation 6, ICC EXIF",
        f"{good[1]}: 5x4 TIFF RGB 16-bit, orientation 1",
        f"{good[2]}: 64x16 PNG RGBA 8-bit, orientation 1, ALPHA",
    ]


def test_info_json(tmp_path, capsys):
    good = _inputs(tmp_path)
    assert main(["info", "--json", *good]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["width"], r["height"], r["bits"], r["orientation"]) for r in rows] == [
        (32, 48, 8, 6), (5, 4, 16, 1), (64, 16, 8, 1)]
    assert [(r["icc"], r["exif"], r["alpha"]) for r in rows] == [
        (True, True, False), (False, False, False), (False, False, True)]
    assert rows[1]["format"] == "TIFF" and rows[2]["mode"] == "RGBA"


def test_bad_files_get_one_line_each_and_the_rest_still_print(tmp_path, capsys):
    good = _inputs(tmp_path)
    (tmp_path / "folder.png").mkdir()
    bad = [str(tmp_path / n) for n in ("notes.png", "empty.jpg", "folder.png", "gone.webp")]
    assert main(["info", bad[0], good[0], bad[1], bad[2], good[2], bad[3]]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    errors = captured.err.splitlines()
    assert len(errors) == 4
    for line, path in zip(errors, bad, strict=True):
        assert line.startswith("finescale: error: ") and path in line
    assert "Traceback" not in captured.err


def test_bad_files_with_json_still_exit_1(tmp_path, capsys):
    good = _inputs(tmp_path)
    assert main(["info", "--json", good[1], str(tmp_path / "notes.png")]) == 1
    captured = capsys.readouterr()
    assert [r["path"] for r in json.loads(captured.out)] == [good[1]]
    assert "notes.png" in captured.err
