"""The compare view: synchronised zoom and pan, pixel-exact magnification, the slider,
flipping, and a 100-megapixel result drawn from numpy tiles without a giant QImage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QWheelEvent
from PySide6.QtWidgets import QApplication

from app.compare import TILE, CompareView
from app.display import DisplayImage


def _grab(widget) -> np.ndarray:
    """What ``widget`` shows, as an H x W x 3 uint8 array (device pixels)."""
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes())
    return arr.reshape(img.height(), img.bytesPerLine())[:, :img.width() * 3].reshape(
        img.height(), img.width(), 3).copy()


def _pattern(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def view(qtbot):
    v = CompareView()
    qtbot.addWidget(v)
    v.resize(820, 400)
    v.show()
    qtbot.waitExposed(v)
    before, after = _pattern(150, 200, 1), _pattern(600, 800, 2)
    v.set_before(DisplayImage(before), "Before")
    v.set_after(DisplayImage(after), "After")
    QApplication.processEvents()
    v.before_pixels, v.after_pixels = before, after
    return v


def _wheel(widget, pos: QPointF, notches: int) -> None:
    ev = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * notches),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                     Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def test_side_by_side_panes_zoom_and_pan_together(qtbot, view):
    left, right = view.left, view.right
    assert right.isVisible() and left.layer is view.before and right.layer is view.after
    assert view.state.fit and left.visible_scene_rect() == right.visible_scene_rect()

    _wheel(left, QPointF(100, 120), 3)  # zoom in around a point of the left pane
    assert view.zoom == pytest.approx(view.state.fit_zoom(left.device_size()) * 1.25 ** 3)
    assert left.visible_scene_rect() == right.visible_scene_rect()

    before = right.visible_scene_rect()
    qtbot.mousePress(right, Qt.MouseButton.LeftButton, pos=QPoint(200, 200))
    qtbot.mouseMove(right, QPoint(150, 170))
    qtbot.mouseRelease(right, Qt.MouseButton.LeftButton, pos=QPoint(150, 170))
    moved = right.visible_scene_rect()
    assert moved.x() - before.x() == pytest.approx(50 / view.zoom, abs=1 / view.zoom)
    assert moved.y() - before.y() == pytest.approx(30 / view.zoom, abs=1 / view.zoom)
    assert left.visible_scene_rect() == moved  # the other pane followed the drag


def test_wheel_zoom_keeps_the_point_under_the_cursor(qtbot, view):
    pane = view.left
    at = QPointF(300, 150)
    spot = pane.scene_point(at)
    _wheel(pane, at, 2)
    again = pane.scene_point(at)
    assert (again.x(), again.y()) == pytest.approx((spot.x(), spot.y()), abs=1.5 / view.zoom)


def test_magnification_is_pixel_exact_nearest_neighbour(qtbot, view):
    after, before = view.after_pixels, view.before_pixels
    view.set_zoom(1.0)
    view.state.center_on(400, 300)
    QApplication.processEvents()
    ox, oy = view.right.origin()
    shot = _grab(view.right)
    h, w = shot.shape[:2]
    # Every screen pixel inside the picture is exactly one result pixel (labels aside).
    y0, x0 = 40, 0
    region = shot[y0:h, x0:w]
    want = after[oy + y0:oy + h, ox + x0:ox + w]
    assert region.shape == want.shape and np.array_equal(region, want)

    view.set_zoom(2.0)
    view.state.center_on(300, 250)
    QApplication.processEvents()
    ox, oy = view.right.origin()
    shot = _grab(view.right)[40:]
    ys = (np.arange(40, 40 + shot.shape[0]) + oy) // 2
    xs = (np.arange(shot.shape[1]) + ox) // 2
    assert np.array_equal(shot, after[ys][:, xs])
    # The original (4x smaller) is magnified by 8: blocks of 8 x 8 identical pixels.
    ox, oy = view.left.origin()
    shot = _grab(view.left)[40:]
    ys = (np.arange(40, 40 + shot.shape[0]) + oy) // 8
    xs = (np.arange(shot.shape[1]) + ox) // 8
    assert np.array_equal(shot, before[ys][:, xs])


def test_slider_shows_before_left_and_after_right_and_flip_swaps(qtbot, view):
    view.set_mode("wipe")
    QApplication.processEvents()
    assert not view.right.isVisible()
    pane = view.left
    view.set_zoom(1.0)
    view.state.center_on(400, 300)
    QApplication.processEvents()
    ox, oy = pane.origin()
    split = round(pane.wipe * pane.width())
    shot = _grab(pane)
    row = 200
    after_row = view.after_pixels[oy + row]
    before_row = view.before_pixels[(oy + row) // 4]
    left_x, right_x = split - 40, split + 40
    assert np.array_equal(shot[row, left_x], before_row[(ox + left_x) // 4])
    assert np.array_equal(shot[row, right_x], after_row[ox + right_x])

    # Dragging the line moves it; elsewhere a drag pans.
    qtbot.mousePress(pane, Qt.MouseButton.LeftButton, pos=QPoint(split, 100))
    qtbot.mouseMove(pane, QPoint(100, 100))
    qtbot.mouseRelease(pane, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    assert pane.wipe == pytest.approx(100 / pane.width(), abs=0.01)
    assert pane.origin() == (ox, oy)

    view.flip()  # now the result is left of the line and the original right of it
    assert pane.under is view.after and pane.layer is view.before
    split = round(pane.wipe * pane.width())
    shot = _grab(pane)
    assert np.array_equal(shot[row, split - 30], after_row[ox + split - 30])
    assert np.array_equal(shot[row, split + 30], before_row[(ox + split + 30) // 4])


def test_flip_in_side_by_side_swaps_the_panes(view):
    view.flip()
    assert view.left.layer is view.after and view.right.layer is view.before
    view.flip()
    assert view.left.layer is view.before


def test_fit_and_fixed_zooms(view):
    size = view.left.device_size()
    view.set_zoom(1.0)
    assert view.zoom == 1.0 and not view.state.fit
    view.fit()
    assert view.state.fit and view.zoom == pytest.approx(
        min(size.width() / 800, size.height() / 600))


def test_a_100_megapixel_result_renders_only_the_visible_tiles(qtbot):
    side = 10_000  # 100 megapixels: 300 MB as uint8, beyond Qt's 256 MB image limit
    big = np.empty((side, side, 3), dtype=np.uint8)
    big[:] = np.arange(side, dtype=np.uint16)[None, :, None].astype(np.uint8)
    big[::97] = 255  # horizontal lines, so a wrong row would show
    display = DisplayImage(big)
    small = DisplayImage(_pattern(side // 4, side // 4, 3))
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(1400, 800)
    view.show()
    qtbot.waitExposed(view)
    view.set_before(small)
    view.set_after(display)

    # What a paint costs is counted in pixels rendered, not seconds (CI may be busy): a
    # paint renders only the tiles that touch the visible part, whatever the picture's size.
    rendered: list[int] = []
    put = view.cache.put

    def counting_put(key: tuple, pixels: np.ndarray):
        rendered.append(pixels.shape[0] * pixels.shape[1])
        return put(key, pixels)

    view.cache.put = counting_put  # type: ignore[method-assign]

    def paint_pixels() -> int:
        rendered.clear()
        view.left.repaint()
        view.right.repaint()
        return sum(rendered)

    size = view.left.device_size()
    per_view = (math.ceil(size.width() / TILE) + 2) * (math.ceil(size.height() / TILE) + 2)
    bound = 2 * per_view * TILE * TILE
    pixels = {"fit": paint_pixels()}
    view.set_zoom(1.0)
    view.state.center_on(5_000, 5_000)
    pixels["100 %"] = paint_pixels()
    view.state.pan(-180, -90)
    pixels["pan"] = paint_pixels()
    view.set_zoom(0.37)
    pixels["37 %"] = paint_pixels()
    assert max(pixels.values()) <= bound < side * side // 20, (pixels, bound)
    assert view.cache.largest[0] <= TILE and view.cache.largest[1] <= TILE

    view.set_zoom(1.0)
    view.state.center_on(5_000, 5_000)
    QApplication.processEvents()
    ox, oy = view.right.origin()
    shot = _grab(view.right)[40:]
    assert np.array_equal(shot, big[oy + 40:oy + 40 + shot.shape[0], ox:ox + shot.shape[1]])


def test_original_as_smooth_is_a_lanczos_enlargement_not_blocks(qtbot, view):
    import cv2

    before = view.before_pixels
    view.set_zoom(2.0)
    view.state.center_on(400, 300)
    QApplication.processEvents()
    view.set_original_smooth(True)
    QApplication.processEvents()
    ox, oy = view.left.origin()
    shot = _grab(view.left)[40:].astype(np.int16)
    lanczos = cv2.resize(before, (200 * 8, 150 * 8), interpolation=cv2.INTER_LANCZOS4)
    want = lanczos[oy + 40:oy + 40 + shot.shape[0], ox:ox + shot.shape[1]].astype(np.int16)
    assert shot.shape == want.shape
    assert np.abs(shot - want).mean() < 1.0  # the same as an ordinary Lanczos enlargement
    ys = (np.arange(40, 40 + shot.shape[0]) + oy) // 8
    xs = (np.arange(shot.shape[1]) + ox) // 8
    blocks = before[ys][:, xs].astype(np.int16)
    assert np.abs(shot - blocks).mean() > 10  # and visibly not the pixel blocks
    view.set_original_smooth(False)  # back to pixels
    QApplication.processEvents()
    assert np.array_equal(_grab(view.left)[40:], blocks.astype(np.uint8))


def test_an_inset_is_drawn_over_its_scene_rectangle(qtbot):
    v = CompareView()
    qtbot.addWidget(v)
    v.resize(820, 400)
    v.show()
    qtbot.waitExposed(v)
    base = np.full((100, 100, 3), 90, np.uint8)
    inset = _pattern(80, 120, 5)  # a 30 x 20 input region upscaled x4
    v.set_before(DisplayImage(base), "Before")
    v.set_after(DisplayImage(base.copy()), "Preview", scene=(400, 400),
                inset=DisplayImage(inset), inset_rect=(200, 100, 120, 80))
    v.set_zoom(1.0)
    v.state.center_on(260, 140)
    QApplication.processEvents()
    ox, oy = v.right.origin()
    shot = _grab(v.right)
    y0, x0 = 100 - oy, 200 - ox  # the inset's corner on screen
    assert np.array_equal(shot[y0:y0 + 80, x0:x0 + 120], inset)
    assert (shot[y0 - 5, x0 - 5] == 90).all() and (shot[y0 + 85, x0 + 125] == 90).all()
