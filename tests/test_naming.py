"""Output names: one picture's name, the template, and the next free numbered name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sr_core.errors import FinescaleError
from sr_core.naming import (
    DEFAULT_TEMPLATE,
    check_template,
    free_path,
    output_suffix,
    render_template,
    template_scale,
    unnumbered,
    upscaled_name,
)


def test_one_picture_is_named_stem_x_scale_in_its_own_format() -> None:
    assert upscaled_name("photo", ".png", 4, in_width=100, in_height=75) == "photo_x4.png"
    assert upscaled_name("photo", ".png", 4, in_width=100, in_height=75,
                         scale=2.5) == "photo_x2.5.png"
    assert upscaled_name("photo", ".png", 4, in_width=300, in_height=200,
                         width=400) == "photo_x1.33.png"
    assert upscaled_name("photo", ".png", 4, in_width=300, in_height=200,
                         height=500) == "photo_x2.5.png"
    assert output_suffix(".JPEG", "JPEG") == ".jpeg"      # the input's own suffix
    assert output_suffix(".jpeg", "JPEG", "JPEG") == ".jpg"  # a chosen format's own
    assert output_suffix(".png", "JPEG") == ".jpg"         # a suffix that names another format
    assert output_suffix(".xyz", "NOPE") == ".png"         # a format Finescale cannot write
    assert output_suffix("", "TIFF") == ".tif"             # a pasted picture has no suffix


def test_template_renders_and_refuses_folders_and_hidden_names() -> None:
    fields = {"stem": "IMG_1", "ext": "png", "scale": "4", "model": "M"}
    assert render_template(DEFAULT_TEMPLATE, fields) == "IMG_1_x4_M.png"
    assert render_template("{stem}", fields) == "IMG_1.png"
    for bad in ("{stem}/{ext}", ".{stem}", "{nope}"):
        with pytest.raises(FinescaleError):
            check_template(bad)
    assert template_scale(4, scale=None, resized=False, in_width=10, out_width=40) == "4"
    assert template_scale(4, scale=None, resized=True, in_width=3, out_width=4) == "1.33"


def test_free_path_numbers_from_2_and_counts_a_broken_link_as_taken(tmp_path: Path) -> None:
    assert free_path(tmp_path / "a.png") == tmp_path / "a.png"
    (tmp_path / "a.png").write_bytes(b"")
    os.symlink(tmp_path / "gone", tmp_path / "a_2.png")
    assert free_path(tmp_path / "a.png") == tmp_path / "a_3.png"
    assert free_path(tmp_path / "b.png", lambda p: p.stem in ("b", "b_2")) == tmp_path / "b_3.png"
    assert unnumbered(Path("x/a_12.png")) == Path("x/a.png")
    assert unnumbered(Path("a.png")) is None
