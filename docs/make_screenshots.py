"""Drive Finescale's window through its main states and save screenshots.

    python docs/make_screenshots.py [--checkpoint FILE | --model ID] [--out docs/screenshots]

Runs under Xvfb when there is no display and ``xvfb-run`` is installed, else with Qt's
offscreen platform. Settings and (with ``--checkpoint``) the model cache are temporary, so
the user's own are never touched. Saves: empty.png, preview.png, preview-vs.png,
compare-side.png, compare-slider.png, batch.png, models.png.

The pictures of a preview and of the detail <-> clean-up control use a *noisy* copy of the
bundled sample (Gaussian noise sigma 10 and JPEG quality 35, made here in the temporary
folder, never saved in the repository): what a real phone or web photo looks like.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WINDOW = (1280, 800)


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    p.add_argument("--checkpoint", type=Path,
                   help="a checkpoint to install in a temporary model cache first")
    p.add_argument("--model", help="catalogue id to use (default: the checkpoint's, else the "
                                   "default model)")
    p.add_argument("--no-xvfb", action="store_true", help="do not restart under xvfb-run")
    return p.parse_args()


def _maybe_reexec_under_xvfb(args: argparse.Namespace) -> None:
    if args.no_xvfb or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or \
            os.environ.get("FINESCALE_UNDER_XVFB"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        return
    env = dict(os.environ, FINESCALE_UNDER_XVFB="1")
    cmd = [xvfb, "-a", "-s", "-screen 0 1600x1000x24", sys.executable, *sys.argv]
    sys.exit(subprocess.call(cmd, env=env))


def main() -> int:
    args = _parse()
    _maybe_reexec_under_xvfb(args)
    work = Path(tempfile.mkdtemp(prefix="finescale-shots-"))
    if args.checkpoint:
        os.environ["FINESCALE_CACHE_DIR"] = str(work / "cache")

    from PySide6.QtWidgets import QApplication

    from app.__main__ import STYLE
    from app.main_window import MainWindow
    from app.settings import Settings
    from sr_core import catalog, installer

    app = QApplication([sys.argv[0]])
    app.setStyle("Fusion")
    app.setStyleSheet(STYLE)
    model = args.model
    if args.checkpoint:
        model = model or installer.import_checkpoint(args.checkpoint).id
    model = model or catalog.default_model()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"platform {app.platformName()}, model {model}")

    def settle(seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    def wait(cond: Callable[[], bool], what: str, timeout: float = 600) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise SystemExit(f"timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.02)

    window = MainWindow(Settings(work / "settings.ini"))
    app.aboutToQuit.connect(window.shutdown)
    try:
        _drive(window, model, work, args.out, settle, wait)
    finally:
        window.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _drive(window: Any, model: str, work: Path, out: Path, settle: Callable[..., None],
           wait: Callable[..., None]) -> None:
    """Walk the window through the states worth showing, saving a picture of each."""
    from PySide6.QtCore import QPoint, Qt

    from sr_core import paths
    from sr_core.imageio import read_image, write_image

    def shoot(widget: Any, name: str) -> None:
        settle()
        path = out / name
        widget.grab().save(str(path))
        print(f"saved {path}")

    window.resize(*WINDOW)
    window.show()
    settle(1.0)
    shoot(window, "empty.png")

    sample = work / "pictures" / "sample.png"
    sample.parent.mkdir()
    shutil.copy(paths.resource_path("sample.png"), sample)
    noisy = _noisy_copy(sample, work / "pictures" / "cat-noisy.jpg")
    window.open_paths([noisy])
    wait(lambda: window.picture is not None, "the noisy photo to open")
    window.options.select_model(model)
    pic = window.picture.display
    # The region around the cat's eye (near 40 %, 37 % of the sample): the photo alone fills
    # the view at twice the model's scale (the scene is still the photo itself), so the part
    # in view is a region of it, which the preview then shows at 100 % in each pane.
    scale = window.options.choice().model_scale
    window.set_original_as("smooth")
    window.set_compare_mode("side")
    window.compare.set_zoom(2.0 * scale)
    window.compare.state.center_on(0.405 * pic.width, 0.37 * pic.height)
    settle()
    window.preview()
    wait(lambda: window.session.preview is not None or window.message.is_error, "the preview")
    if window.session.preview is None:
        raise SystemExit(window.message.text())
    shoot(window, "preview.png")
    # Detail <-> clean-up: the paper-exact end against the photo model, on the slider.
    if window.options.clean_up.isEnabled():
        first = window.session.preview
        window.options.clean_up.setValue(0)
        wait(lambda: window.session.preview is not first and window.session.job is None,
             "the preview at clean-up 0")
        window.rival_button.click()  # the photo model's preview in place of the original
        window.set_compare_mode("wipe")
        window.compare.left.set_wipe(0.5)
        shoot(window, "preview-vs.png")
        window.rival_button.click()
        window.options.clean_up.setValue(round(100 * (first.job.clean_up or 1.0)))

    window.open_paths([sample])
    wait(lambda: window.picture is not None and window.picture.path == sample,
         "the sample to open")
    window.upscale()
    wait(lambda: window.result is not None or window.message.is_error, "the upscale")
    if window.result is None:
        raise SystemExit(window.message.text())
    result = window.result
    # Show detail: 100 % around the cat's eye (the sample's left eye is near 40 %, 37 %).
    cx, cy = 0.405 * result.display.width, 0.37 * result.display.height
    window.set_original_as("pixels")
    window.set_compare_mode("side")
    window.compare.set_zoom(1.0)
    window.compare.state.center_on(cx, cy)
    shoot(window, "compare-side.png")
    window.message.hide()
    window.set_original_as("smooth")
    window.set_compare_mode("wipe")
    window.compare.set_zoom(1.0)
    window.compare.state.center_on(cx, cy)
    window.compare.left.set_wipe(0.5)
    shoot(window, "compare-slider.png")

    # A small folder: crops of the sample plus a damaged file, so the report shows a failure.
    photos = work / "holiday"
    photo = read_image(sample)
    photos.mkdir()
    h, w = photo.height, photo.width
    for i, (y, x) in enumerate(((0, 0), (h // 3, w // 3), (0, w // 2), (h // 2, 0))):
        crop = photo.with_pixels(photo.rgb[y:y + h // 2, x:x + w // 2].copy())
        crop.source = None
        write_image(crop, photos / f"IMG_{1041 + i}.jpg", quality=92)
    (photos / "IMG_1045.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 300)
    (photos / "notes.txt").write_text("captions")
    window.tabs.setCurrentWidget(window.batch)
    window.batch.in_edit.setText(str(photos))
    window.batch.out_edit.setText(str(work / "holiday-upscaled"))
    window.batch.start()
    wait(lambda: not window.batch.is_running(), "the batch")
    window.message.hide()
    shoot(window, "batch.png")

    window.tabs.setCurrentWidget(window.picture_tab)
    window.show_models()
    dialog = window._models_dialog
    dialog.resize(1180, 620)
    dialog.move(window.pos() + QPoint(40, 40))
    dialog.select(model)
    dialog.table.setFocus(Qt.FocusReason.OtherFocusReason)
    shoot(dialog, "models.png")


def _noisy_copy(src: Path, dst: Path) -> Path:
    """``src`` with Gaussian noise (sigma 10 of 255) saved as a JPEG of quality 35."""
    import numpy as np

    from sr_core.imageio import read_image, write_image

    photo = read_image(src)
    rng = np.random.default_rng(7)
    rgb = photo.rgb.astype(np.float32)
    if photo.rgb.dtype == np.uint8:
        rgb /= 255.0
    rgb = np.clip(rgb + rng.normal(0.0, 10 / 255, rgb.shape).astype(np.float32), 0.0, 1.0)
    noisy = photo.with_pixels(rgb)
    noisy.source = None
    write_image(noisy, dst, quality=35)
    return dst


if __name__ == "__main__":
    sys.exit(main())
