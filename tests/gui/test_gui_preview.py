"""Preview a region in seconds, re-run it on another model, cancel at once, keep what was
there, and compare against a fair (smooth) original: the window as a photographer uses it."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import open_picture, write_picture
from PySide6.QtCore import Qt

from app.session import preview_region

pytestmark = pytest.mark.timeout(120)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def _zoom_into(window, cx: float, cy: float, zoom: float = 2.0) -> None:
    window.compare.set_zoom(zoom)
    window.compare.state.center_on(cx, cy)


def test_p_previews_the_region_in_view_over_the_original_and_writes_nothing(
        qtbot, window, tiny_model, tmp_path):
    pic = write_picture(tmp_path / "in" / "harbour.png", 400, 300)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    _zoom_into(window, 100, 80, zoom=4.0)
    rect = window.compare.visible_scene_rect()
    want = preview_region((rect.x(), rect.y(), rect.width(), rect.height()), 400, 300)
    assert want[2] < 400 and want[3] < 300  # a part, not the picture
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_P)
    qtbot.waitUntil(lambda: window.session.preview is not None or window.message.is_error,
                    timeout=60_000)
    p = window.session.preview
    assert p is not None, window.message.text()
    assert p.region == want
    after = window.compare.after
    assert after.inset is p.display and (p.display.width, p.display.height) == (
        want[2] * 2, want[3] * 2)
    assert after.inset_rect == tuple(v * 2 for v in want)
    assert window.compare.state.scene_w == 800  # the result's size: the view kept its place
    assert _files(pic.parent) == ["harbour.png"]
    assert window.result is None and window.upscale_button.isEnabled()
    assert "Preview" in window.statusBar().currentMessage()


def test_preview_of_the_whole_view_is_capped_to_a_quick_region(qtbot, window, tiny_model,
                                                                tmp_path):
    pic = write_picture(tmp_path / "big.png", 600, 400)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    window.preview_button.click()  # the whole picture is in view (fit)
    qtbot.waitUntil(lambda: window.session.preview is not None, timeout=60_000)
    x, y, w, h = window.session.preview.region
    assert w * h <= 256 * 256 and abs(w / h - 1.5) < 0.05
    assert abs((x + w / 2) - 300) <= 1 and abs((y + h / 2) - 200) <= 1  # around the centre
    shown = window.compare.visible_scene_rect()  # zoomed onto the preview
    assert shown.width() <= w * 2 + 2 or shown.height() <= h * 2 + 2


def test_switching_the_model_reruns_only_the_preview(qtbot, window, cache, tiny_checkpoint,
                                                     tiny_model, tmp_path):
    from sr_core import installer

    other = installer.import_checkpoint(tiny_checkpoint, name="tiny-other").id
    window.options.refresh_models()
    pic = write_picture(tmp_path / "in" / "dune.png", 300, 200)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    _zoom_into(window, 150, 100, zoom=3.0)
    window.preview()
    qtbot.waitUntil(lambda: window.session.preview is not None, timeout=60_000)
    first = window.session.preview
    jobs = []
    window._thread.worker.status.connect(lambda rid, text: jobs.append(text))
    window.options.select_model(other)
    qtbot.waitUntil(lambda: window.session.preview is not first and
                    window.session.preview.job.model == other, timeout=60_000)
    again = window.session.preview
    assert again.region == first.region  # same place, new model
    assert not any(t.startswith("Upscaling") for t in jobs)  # no whole-picture run
    assert window.compare.after.inset is again.display
    assert _files(pic.parent) == ["dune.png"] and window.result is None


def test_cancel_stops_a_one_tile_picture_inside_its_only_pass(qtbot, window, tiny_model,
                                                              tmp_path):
    pic = write_picture(tmp_path / "in" / "lamp.png", 200, 150)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    window.upscale()
    job = window._job
    seen: list[float] = []

    def in_worker(rid: int, fraction: float, eta: float) -> None:
        # runs in the worker's thread, between two layers: the user presses Cancel now
        seen.append(fraction)
        if fraction >= 0.2:
            job.cancel.set()

    window._thread.worker.fraction.connect(in_worker, Qt.ConnectionType.DirectConnection)
    qtbot.waitUntil(lambda: window._job is None, timeout=60_000)
    assert window.run_label.text() == "Cancelled; nothing was written."
    assert seen and seen[-1] < 0.6  # stopped within the pass, long before its end
    assert sum(f >= 0.2 for f in seen) == 1  # no layer reported after the cancel
    assert _files(pic.parent) == ["lamp.png"]


def test_cancelling_a_later_run_keeps_the_earlier_result_in_view(qtbot, window, tiny_model,
                                                                tmp_path):
    pic = write_picture(tmp_path / "in" / "pier.png", 120, 90)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    window.upscale()
    qtbot.waitUntil(lambda: window.result is not None, timeout=60_000)
    first = window.result
    assert window.compare.after.image is first.display
    window.upscale()
    job = window._job
    window._thread.worker.fraction.connect(lambda *a: job.cancel.set(),
                                           Qt.ConnectionType.DirectConnection)
    qtbot.waitUntil(lambda: window._job is None, timeout=60_000)
    assert window.run_label.text() == "Cancelled; nothing was written."
    assert window.result is first and window.compare.after.image is first.display
    assert window.show_button.isEnabled()
    assert len(_files(pic.parent)) == 2  # the input and the first result only


def test_original_as_smooth_is_remembered_between_runs(qtbot, window, settings, tmp_path):
    from app.main_window import MainWindow

    pic = write_picture(tmp_path / "in" / "leaf.png", 60, 40)
    open_picture(qtbot, window, pic)
    assert window.original_combo.currentData() == "pixels"
    assert not window.compare.before.smooth
    window.original_combo.setCurrentIndex(window.original_combo.findData("smooth"))
    assert window.compare.before.smooth and settings.get("original_as") == "smooth"
    assert window.compare.before.label.endswith("(Lanczos)")
    window.close()
    again = MainWindow(settings)
    qtbot.addWidget(again)
    try:
        assert again.original_combo.currentData() == "smooth"
        assert again.compare.smooth_before
    finally:
        again.close()


def test_preview_pixels_are_the_models_output_for_that_region(qtbot, window, tiny_model,
                                                              tmp_path):
    from sr_core import Upscaler, load_model
    from sr_core.imageio import read_image

    pic = write_picture(tmp_path / "in" / "gate.png", 160, 120)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    _zoom_into(window, 100, 60, zoom=4.0)
    window.preview()
    qtbot.waitUntil(lambda: window.session.preview is not None, timeout=60_000)
    p = window.session.preview
    whole = Upscaler(load_model(tiny_model), device="cpu").upscale(read_image(pic))
    x, y, w, h = p.region
    want = np.clip(whole.rgb[y * 2:(y + h) * 2, x * 2:(x + w) * 2] * 255 + 0.5, 0, 255)
    got = p.display.levels[0][0].astype(np.float64)
    assert np.abs(got - want.astype(np.uint8)).mean() < 1.0


def test_two_models_previews_of_one_region_side_by_side(qtbot, window, cache, tiny_checkpoint,
                                                       tiny_model, tmp_path):
    from sr_core import installer

    other = installer.import_checkpoint(tiny_checkpoint, name="tiny-rival").id
    window.options.refresh_models()
    pic = write_picture(tmp_path / "in" / "reef.png", 240, 160)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    _zoom_into(window, 120, 80, zoom=3.0)
    assert not window.rival_button.isEnabled()
    window.preview()
    qtbot.waitUntil(lambda: window.session.preview is not None, timeout=60_000)
    first = window.session.preview
    window.options.select_model(other)
    qtbot.waitUntil(lambda: window.session.preview is not first, timeout=60_000)
    second = window.session.preview
    assert window.rival_button.isEnabled()
    window.rival_button.click()  # model against model
    before, after = window.compare.before, window.compare.after
    assert before.inset is first.display and after.inset is second.display
    assert before.inset_rect == after.inset_rect
    assert before.label == f"Preview: {first.model_name}" and after.label.startswith("Preview")
    window.set_compare_mode("wipe")
    assert window.compare.left.under is before and window.compare.left.layer is after
    window.rival_button.click()  # back to the original
    assert window.compare.before.inset is None
    assert window.compare.before.image is window.picture.display


def test_opening_another_picture_drops_a_preview_under_way(qtbot, window, tiny_model,
                                                           tmp_path):
    import threading

    first = write_picture(tmp_path / "in" / "one.png", 200, 150)
    second = write_picture(tmp_path / "in" / "two.png", 90, 60)
    open_picture(qtbot, window, first)
    window.options.select_model(tiny_model)
    gate, reached = threading.Event(), threading.Event()

    def hold(rid: int, fraction: float, eta: float) -> None:  # the worker's thread
        reached.set()
        gate.wait(30)

    window._thread.worker.fraction.connect(hold, Qt.ConnectionType.DirectConnection)
    window.preview()
    job = window._job
    qtbot.waitUntil(reached.is_set, timeout=60_000)
    window.open_paths([second])  # while the preview is under way
    assert job.cancel.is_set() and not window.message.is_error
    gate.set()
    qtbot.waitUntil(lambda: window.picture is not None and window.picture.path == second,
                    timeout=60_000)
    assert window.session.preview is None and window.compare.after is None


def test_shift_drag_previews_the_rectangle_drawn(qtbot, window, tiny_model, tmp_path):
    from PySide6.QtCore import QPoint

    pic = write_picture(tmp_path / "in" / "kite.png", 400, 300)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    pane = window.compare.left
    mid = QPoint(pane.width() // 2, pane.height() // 2)
    start, end = mid - QPoint(70, 40), mid + QPoint(60, 50)
    a, b = pane.scene_point(start), pane.scene_point(end)
    centre = (window.compare.state.cx, window.compare.state.cy)
    shift = Qt.KeyboardModifier.ShiftModifier
    qtbot.mousePress(pane, Qt.MouseButton.LeftButton, shift, start)
    qtbot.mouseMove(pane, mid)
    qtbot.mouseMove(pane, end)
    qtbot.mouseRelease(pane, Qt.MouseButton.LeftButton, shift, end)
    assert (window.compare.state.cx, window.compare.state.cy) == centre  # no pan
    qtbot.waitUntil(lambda: window.session.preview is not None, timeout=60_000)
    x, y, w, h = window.session.preview.region
    assert abs(x - a.x()) <= 1 and abs(y - a.y()) <= 1
    assert abs(x + w - b.x()) <= 1 and abs(y + h - b.y()) <= 1


def test_moving_the_clean_up_slider_reruns_the_preview_once_it_rests(qtbot, window, tmp_path):
    from sr_core import catalog

    model = catalog.default_model()  # the embedded photo model: it has the clean-up pair
    pic = write_picture(tmp_path / "in" / "moth.png", 40, 40)
    open_picture(qtbot, window, pic)
    window.options.select_model(model)
    slider = window.options.clean_up
    assert slider.isEnabled()
    slider.setValue(100)
    window.preview()
    qtbot.waitUntil(lambda: window.session.preview is not None, timeout=60_000)
    first = window.session.preview
    assert first.job.clean_up == 1.0
    runs = []
    window._thread.worker.status.connect(lambda rid, text: runs.append(text))
    for value in (80, 60, 40, 20):  # a drag: several values in quick succession
        slider.setValue(value)
    qtbot.waitUntil(lambda: window.session.preview is not first and window._job is None,
                    timeout=60_000)
    assert window.session.preview.job.clean_up == 0.2
    assert sum(t.startswith("Previewing") for t in runs) == 1  # one run, at the end
    assert window.session.rival is first and _files(pic.parent) == ["moth.png"]
