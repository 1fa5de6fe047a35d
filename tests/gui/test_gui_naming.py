"""The window names an upscaled picture as ``finescale upscale`` does."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app.tasks import EXTENSIONS, Picture, UpscaleJob, _same_format, output_name
from sr_core import cli
from sr_core.batch import ModelLabel
from sr_core.imageio import Photo
from sr_core.naming import free_path


@pytest.mark.parametrize(("suffix", "fmt", "out_format", "size"), [
    (".jpeg", "JPEG", None, {}),
    (".PNG", "PNG", None, {"scale": 2.5}),
    (".tif", "TIFF", "PNG", {"width": 400}),
    (".bmp", "BMP", "JPEG", {"height": 500}),
])
def test_window_and_cli_give_one_picture_the_same_name(
        tmp_path: Path, suffix: str, fmt: str, out_format: str | None,
        size: dict[str, float]) -> None:
    photo = Photo(np.zeros((200, 300, 3), np.float32), format=fmt)
    src = tmp_path / f"photo{suffix}"
    job = UpscaleJob(Picture(photo, SimpleNamespace(), src.name, src), "m", tmp_path,
                     out_format=out_format, **size)
    ext = EXTENSIONS[out_format or _same_format(photo)]
    window = output_name(src.stem, job, ModelLabel("ASID", 4), 0, photo.width, ext)

    args = argparse.Namespace(output=None, out_dir=None, scale=size.get("scale"),
                              width=size.get("width"), height=size.get("height"),
                              format=out_format.lower() if out_format else None)
    assert cli._upscale_target(args, str(src), photo, 4) == tmp_path / window
    assert "ASID" not in window


def test_window_free_name_is_the_batch_rule(tmp_path: Path) -> None:
    (tmp_path / "a_x4.png").write_bytes(b"")
    assert free_path(tmp_path / "a_x4.png") == tmp_path / "a_x4_2.png"
