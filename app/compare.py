"""Before/after comparison: side by side or with a wipe slider, zoom and pan in sync.

Both pictures live in one *scene*: the coordinates of the result (or, before there is one,
of the picture itself). The original is stretched over the same scene, so at any zoom the
same spot of the photo sits under the same spot of each pane. One :class:`ViewState` (zoom
and centre) is shared by every pane; wheel, drag and the zoom commands change it and all
panes repaint.

Panes draw from :class:`~app.display.DisplayImage` buffers tile by tile: each 256 x 256
screen tile is rendered from numpy at the zoom shown, wrapped in a small QImage and cached,
so a 100-megapixel result pans as smoothly as a thumbnail and no QImage is ever larger than
a tile. Zoom is measured in device pixels: at 100 % one result pixel is one screen pixel.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QWidget

from .display import DisplayImage

#: Side of a rendered screen tile, in device pixels.
TILE = 256
#: Zoom limits (device pixels per scene pixel); the lower one yields to "fit" for huge scenes.
MIN_ZOOM, MAX_ZOOM = 0.01, 64.0
#: One wheel notch or one Ctrl+= multiplies the zoom by this.
ZOOM_STEP = 1.25
#: Pixels around the wipe line that grab it rather than pan.
GRAB_MARGIN = 8


class TileCache:
    """Rendered tiles (QImage plus the numpy buffer under it), least recently used first out."""

    def __init__(self, max_bytes: int = 96 << 20) -> None:
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[tuple, tuple[QImage, np.ndarray]] = OrderedDict()
        self._bytes = 0
        #: Largest tile ever created, (width, height): lets tests prove no giant QImage exists.
        self.largest = (0, 0)

    def get(self, key: tuple) -> QImage | None:
        hit = self._tiles.get(key)
        if hit is None:
            return None
        self._tiles.move_to_end(key)
        return hit[0]

    def put(self, key: tuple, pixels: np.ndarray) -> QImage:
        h, w, c = pixels.shape
        fmt = QImage.Format.Format_RGBA8888 if c == 4 else QImage.Format.Format_RGB888
        # QImage borrows the numpy memory: keep the array alive beside it.
        image = QImage(pixels.data, w, h, pixels.strides[0], fmt)
        self._tiles[key] = (image, pixels)
        self._bytes += pixels.nbytes
        self.largest = (max(self.largest[0], w), max(self.largest[1], h))
        while self._bytes > self.max_bytes and len(self._tiles) > 1:
            _, (_, old) = self._tiles.popitem(last=False)
            self._bytes -= old.nbytes
        return image

    def clear(self) -> None:
        self._tiles.clear()
        self._bytes = 0


@dataclass
class Layer:
    """A picture placed in the scene: ``image`` stretched over ``scene_w x scene_h``.

    ``smooth`` draws it enlarged with Lanczos instead of pixel by pixel. ``inset`` is a
    second picture drawn over part of it, stretched over ``inset_rect`` = ``(x, y, w, h)``
    in scene pixels (a preview of one region on top of the original).
    """

    image: DisplayImage
    label: str
    smooth: bool = False
    inset: DisplayImage | None = None
    inset_rect: tuple[float, float, float, float] | None = None

    def zoom(self, scene_zoom: float, scene_w: int, scene_h: int) -> tuple[float, float]:
        """Screen pixels per *image* pixel along x and y at ``scene_zoom``."""
        return (scene_zoom * scene_w / self.image.width,
                scene_zoom * scene_h / self.image.height)


class ViewState(QObject):
    """Zoom and centre shared by every pane; ``changed`` fires after each change.

    ``zoom`` is device pixels per scene pixel; ``(cx, cy)`` the scene point at the centre
    of the panes; ``fit`` keeps the whole scene visible as the panes are resized.
    """

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.scene_w, self.scene_h = 1, 1
        self.zoom, self.cx, self.cy = 1.0, 0.5, 0.5
        self.fit = True

    def set_scene(self, width: int, height: int, *, keep_view: bool = False) -> None:
        """Use a scene of ``width x height``; ``keep_view`` maps the current view onto it
        (the same part of the photo stays under the same screen pixels)."""
        if keep_view and self.scene_w > 0 and self.scene_h > 0:
            f = width / self.scene_w
            self.cx, self.cy, self.zoom = self.cx * f, self.cy * height / self.scene_h, \
                self.zoom / f
        else:
            self.cx, self.cy, self.fit = width / 2, height / 2, True
        self.scene_w, self.scene_h = max(1, width), max(1, height)
        self.changed.emit()

    def fit_zoom(self, pane: QSize) -> float:
        """The zoom at which the whole scene fits a pane of this size (device pixels)."""
        return max(1e-4, min(pane.width() / self.scene_w, pane.height() / self.scene_h))

    def apply_fit(self, pane: QSize) -> None:
        """Fit the scene in ``pane`` and centre it (keeps fitting on later resizes)."""
        self.zoom = self.fit_zoom(pane)
        self.cx, self.cy, self.fit = self.scene_w / 2, self.scene_h / 2, True
        self.changed.emit()

    def set_zoom(self, zoom: float, pane: QSize, anchor: QPointF | None = None) -> None:
        """Zoom to ``zoom`` keeping the scene point under ``anchor`` (pane device pixels;
        default the centre) where it is."""
        lo = min(MIN_ZOOM, self.fit_zoom(pane))
        zoom = min(MAX_ZOOM, max(lo, zoom))
        if anchor is not None:
            dx, dy = anchor.x() - pane.width() / 2, anchor.y() - pane.height() / 2
            sx, sy = self.cx + dx / self.zoom, self.cy + dy / self.zoom
            self.cx, self.cy = sx - dx / zoom, sy - dy / zoom
        self.zoom, self.fit = zoom, False
        self._clamp()
        self.changed.emit()

    def pan(self, dx: float, dy: float) -> None:
        """Move the picture by ``(dx, dy)`` device pixels (as a drag does)."""
        self.cx -= dx / self.zoom
        self.cy -= dy / self.zoom
        self.fit = False
        self._clamp()
        self.changed.emit()

    def center_on(self, x: float, y: float) -> None:
        """Put scene point ``(x, y)`` at the centre of the panes."""
        self.cx, self.cy, self.fit = x, y, False
        self._clamp()
        self.changed.emit()

    def _clamp(self) -> None:
        self.cx = min(max(self.cx, 0.0), float(self.scene_w))
        self.cy = min(max(self.cy, 0.0), float(self.scene_h))


class ImagePane(QWidget):
    """One view onto the scene: draws a layer (or two, split by the wipe line)."""

    wipe_moved = Signal(float)
    #: A rectangle dragged with Shift held, in scene pixels (the region to preview).
    region_dragged = Signal(QRectF)

    def __init__(self, state: ViewState, cache: TileCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.cache = cache
        self.layer: Layer | None = None
        self.under: Layer | None = None  # wipe mode: shown left of the line
        self.wipe = 0.5                  # wipe line position as a fraction of the width
        self.placeholder = ""
        self._drag: str | None = None
        self._last = QPointF()
        self._band: tuple[QPointF, QPointF] | None = None  # Shift+drag: widget positions
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        state.changed.connect(self.update)

    # --- geometry (device pixels) -----------------------------------------------------------
    def device_size(self) -> QSize:
        """The pane size in device pixels."""
        r = self.devicePixelRatioF()
        return QSize(max(1, round(self.width() * r)), max(1, round(self.height() * r)))

    def origin(self) -> tuple[int, int]:
        """Zoomed-scene pixel shown at the pane's top-left corner (whole pixels, so tiles
        land on whole screen pixels and magnification stays pixel exact)."""
        s, size = self.state, self.device_size()
        return (math.floor(s.cx * s.zoom - size.width() / 2 + 0.5),
                math.floor(s.cy * s.zoom - size.height() / 2 + 0.5))

    def visible_scene_rect(self) -> QRectF:
        """The part of the scene (scene pixels) this pane shows."""
        ox, oy = self.origin()
        z, size = self.state.zoom, self.device_size()
        return QRectF(ox / z, oy / z, size.width() / z, size.height() / z)

    def scene_point(self, pos: QPointF) -> QPointF:
        """The scene point under a widget position."""
        ox, oy = self.origin()
        r, z = self.devicePixelRatioF(), self.state.zoom
        return QPointF((ox + pos.x() * r) / z, (oy + pos.y() * r) / z)

    def _wipe_x(self) -> float:
        return self.wipe * self.width()

    # --- painting ---------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's naming
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(42, 42, 46))
        if self.layer is None:
            if self.placeholder:
                p.setPen(QColor(170, 170, 178))
                p.drawText(self.rect().adjusted(24, 24, -24, -24),
                           Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                           self.placeholder)
            p.end()
            return
        r = self.devicePixelRatioF()
        p.save()
        p.scale(1 / r, 1 / r)  # work in device pixels
        if self.under is None:
            self._draw_layer(p, self.layer, None)
        else:
            split = round(self._wipe_x() * r)
            size = self.device_size()
            self._draw_layer(p, self.layer, QRect(split, 0, size.width() - split, size.height()))
            self._draw_layer(p, self.under, QRect(0, 0, split, size.height()))
        p.restore()
        if self.under is not None:
            self._draw_wipe_handle(p)
            self._draw_label(p, self.under.label, left=True)
            self._draw_label(p, self.layer.label, left=False)
        else:
            self._draw_label(p, self.layer.label, left=True)
        if self._band is not None:
            p.setPen(QPen(QColor(255, 255, 255), 1, Qt.PenStyle.DashLine))
            p.setBrush(QColor(255, 255, 255, 40))
            p.drawRect(QRectF(self._band[0], self._band[1]).normalized())
        p.end()

    def _draw_layer(self, p: QPainter, layer: Layer, clip: QRect | None) -> None:
        s = self.state
        size = self.device_size()
        view = QRect(0, 0, size.width(), size.height())
        if clip is not None:
            view = view.intersected(clip)
            if view.isEmpty():
                return
        zx, zy = layer.zoom(s.zoom, s.scene_w, s.scene_h)
        self._draw_image(p, layer.image, zx, zy, (0, 0), view, layer.smooth)
        if layer.inset is not None and layer.inset_rect is not None:
            x, y, w, h = layer.inset_rect
            izx, izy = s.zoom * w / layer.inset.width, s.zoom * h / layer.inset.height
            self._draw_image(p, layer.inset, izx, izy, (round(x * s.zoom), round(y * s.zoom)),
                             view, False)

    def _draw_image(self, p: QPainter, img: DisplayImage, zx: float, zy: float,
                    at: tuple[int, int], view: QRect, smooth: bool) -> None:
        """Draw ``img`` at zoom ``(zx, zy)`` with its top-left corner at zoomed-scene pixel
        ``at``, inside ``view`` (pane device pixels), from cached screen tiles."""
        ext_w, ext_h = img.extent(zx, zy)
        ox, oy = self.origin()
        ox, oy = ox - at[0], oy - at[1]  # origin relative to the image's corner
        # The picture's rectangle on screen, cut to the (clipped) pane.
        area = QRect(-ox, -oy, ext_w, ext_h).intersected(view)
        if area.isEmpty():
            return
        p.save()
        p.setClipRect(area)
        if img.has_alpha:
            p.fillRect(area, QBrush(_checkerboard()))
        key0 = (img.uid, img.version, round(zx, 9), round(zy, 9), smooth)
        tx0, tx1 = (area.left() + ox) // TILE, (area.right() + ox) // TILE
        ty0, ty1 = (area.top() + oy) // TILE, (area.bottom() + oy) // TILE
        for ty in range(ty0, ty1 + 1):
            for tx in range(tx0, tx1 + 1):
                px, py = tx * TILE, ty * TILE
                w, h = min(TILE, ext_w - px), min(TILE, ext_h - py)
                if w <= 0 or h <= 0:
                    continue
                key = (*key0, tx, ty)
                tile = self.cache.get(key)
                if tile is None:
                    tile = self.cache.put(key, img.render(zx, zy, px, py, w, h, smooth=smooth))
                p.drawImage(px - ox, py - oy, tile)
        p.restore()

    def _draw_wipe_handle(self, p: QPainter) -> None:
        x = self._wipe_x()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(0, 0, 0, 120), 3))
        p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        p.setPen(QPen(QColor(255, 255, 255), 1))
        p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        p.setBrush(QColor(255, 255, 255))
        p.setPen(QPen(QColor(0, 0, 0, 140), 1))
        cy = self.height() / 2
        p.drawEllipse(QPointF(x, cy), 9, 9)
        p.setPen(QPen(QColor(60, 60, 60), 1.5))
        p.drawLine(QPointF(x - 4, cy - 3), QPointF(x - 7, cy))
        p.drawLine(QPointF(x - 7, cy), QPointF(x - 4, cy + 3))
        p.drawLine(QPointF(x + 4, cy - 3), QPointF(x + 7, cy))
        p.drawLine(QPointF(x + 7, cy), QPointF(x + 4, cy + 3))

    def _draw_label(self, p: QPainter, text: str, *, left: bool) -> None:
        if not text:
            return
        fm = p.fontMetrics()
        w, h = fm.horizontalAdvance(text) + 14, fm.height() + 6
        x = 8 if left else self.width() - w - 8
        box = QRectF(x, 8, w, h)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(box, 4, 4)
        p.setPen(QColor(240, 240, 240))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    # --- interaction ------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        # Only a pane on screen decides the fit (a hidden one may get resized by a grab).
        if self.state.fit and self.layer is not None and self.isVisible():
            self.state.apply_fit(self.device_size())
        super().resizeEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        if self.layer is None:
            return
        steps = event.angleDelta().y() / 120.0
        if not steps:
            return
        r = self.devicePixelRatioF()
        anchor = QPointF(event.position().x() * r, event.position().y() * r)
        self.state.set_zoom(self.state.zoom * ZOOM_STEP ** steps, self.device_size(), anchor)
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton or self.layer is None:
            return super().mousePressEvent(event)
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:  # choose a region
            self._drag = "band"
            self._band = (event.position(), event.position())
            self.setCursor(Qt.CursorShape.CrossCursor)
            event.accept()
            return
        x = event.position().x()
        grab = self.under is not None and abs(x - self._wipe_x()) <= GRAB_MARGIN
        self._drag = "wipe" if grab else "pan"
        self._last = event.position()
        self.setCursor(Qt.CursorShape.SplitHCursor if grab else Qt.CursorShape.ClosedHandCursor)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        if self._drag == "band" and self._band is not None:
            self._band = (self._band[0], pos)
            self.update()
        elif self._drag == "pan":
            r = self.devicePixelRatioF()
            self.state.pan((pos.x() - self._last.x()) * r, (pos.y() - self._last.y()) * r)
            self._last = pos
        elif self._drag == "wipe":
            self.set_wipe(pos.x() / max(1, self.width()))
            self.wipe_moved.emit(self.wipe)
        elif self.under is not None and abs(pos.x() - self._wipe_x()) <= GRAB_MARGIN:
            self.setCursor(Qt.CursorShape.SplitHCursor)
        elif self.layer is not None:
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        else:
            self.unsetCursor()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag == "band" and self._band is not None:
            a, b = self.scene_point(self._band[0]), self.scene_point(event.position())
            self._band = None
            self.update()
            rect = QRectF(a, b).normalized()
            if rect.width() >= 1 and rect.height() >= 1:
                self.region_dragged.emit(rect)
        if self._drag is not None:
            self._drag = None
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        super().mouseReleaseEvent(event)

    def set_wipe(self, fraction: float) -> None:
        """Move the wipe line to ``fraction`` (0 = left edge, 1 = right edge)."""
        self.wipe = min(1.0, max(0.0, fraction))
        self.update()


class CompareView(QWidget):
    """The picture area: the original, the result, or both, in sync.

    ``set_before`` shows a picture alone (the scene is its own size). ``set_after`` adds the
    result: the scene becomes the result's size and the original is stretched over it. Modes:
    ``"side"`` (two panes) and ``"wipe"`` (one pane, a slider between before and after).
    :meth:`flip` swaps before and after wherever they are shown.
    """

    zoom_changed = Signal(float)
    #: Shift+drag over a pane: the rectangle, in scene pixels.
    region_dragged = Signal(QRectF)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = ViewState(self)
        self.cache = TileCache()
        self.before: Layer | None = None
        self.after: Layer | None = None
        self.mode = "side"
        self.flipped = False
        #: The original is drawn enlarged with Lanczos ("smooth") rather than pixel by pixel.
        self.smooth_before = False
        self.left = ImagePane(self.state, self.cache, self)
        self.right = ImagePane(self.state, self.cache, self)
        self.left.wipe_moved.connect(self._wipe_moved)
        for pane in (self.left, self.right):
            pane.region_dragged.connect(self.region_dragged)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.left)
        lay.addWidget(self.right)
        self.state.changed.connect(lambda: self.zoom_changed.emit(self.state.zoom))
        self.set_placeholder("")
        self._arrange()

    # --- content ----------------------------------------------------------------------------
    def set_placeholder(self, text: str) -> None:
        """Text shown while there is no picture."""
        self.left.placeholder = text
        self.left.update()

    def clear(self) -> None:
        """Show nothing (the placeholder)."""
        self.before = self.after = None
        self.flipped = False
        self.cache.clear()
        self._arrange()

    def set_before(self, image: DisplayImage, label: str = "Before") -> None:
        """Show ``image`` alone, fitted; any result is dropped."""
        self.before, self.after = Layer(image, label, smooth=self.smooth_before), None
        self.flipped = False
        self.cache.clear()
        self.state.set_scene(image.width, image.height)
        self._arrange()
        self.fit()

    def set_after(self, image: DisplayImage, label: str = "After", *,
                  scene: tuple[int, int] | None = None, inset: DisplayImage | None = None,
                  inset_rect: tuple[float, float, float, float] | None = None) -> None:
        """Show ``image`` as the result. ``scene`` is the result's size in pixels when
        ``image`` is smaller (a preview at the input's resolution); default its own size.
        ``inset`` is drawn over ``inset_rect`` (scene pixels ``x, y, w, h``): a region
        preview on top of the rest of the picture.

        The view keeps showing the same part of the photo.
        """
        sw, sh = scene or (image.width, image.height)
        keep = self.before is not None and not self.state.fit
        self.after = Layer(image, label, inset=inset, inset_rect=inset_rect)
        if (sw, sh) != (self.state.scene_w, self.state.scene_h) or self.state.fit:
            self.state.set_scene(sw, sh, keep_view=keep)
        self._arrange()
        if self.state.fit:
            self.fit()

    def set_before_layer(self, image: DisplayImage, label: str, *,
                         inset: DisplayImage | None = None,
                         inset_rect: tuple[float, float, float, float] | None = None) -> None:
        """Replace what the "before" side shows (e.g. another model's preview) without
        touching the scene, the view or the result."""
        self.before = Layer(image, label, smooth=self.smooth_before, inset=inset,
                            inset_rect=inset_rect)
        self._arrange()

    def set_original_smooth(self, smooth: bool) -> None:
        """Draw the original enlarged with Lanczos (``True``) or pixel by pixel."""
        self.smooth_before = smooth
        if self.before is not None:
            self.before.smooth = smooth
        self._arrange()

    def visible_scene_rect(self) -> QRectF:
        """The part of the scene (scene pixels) the panes show."""
        return self.left.visible_scene_rect()

    def show_scene_rect(self, rect: QRectF) -> None:
        """Zoom and pan so that ``rect`` (scene pixels) fills the panes."""
        pane = self._pane_size()
        zoom = min(pane.width() / max(1.0, rect.width()), pane.height() / max(1.0, rect.height()))
        self.state.set_zoom(zoom, pane)
        self.state.center_on(rect.center().x(), rect.center().y())

    def set_after_label(self, label: str) -> None:
        """Rename the result (e.g. "Upscaling 40 %" -> "After")."""
        if self.after is not None:
            self.after.label = label
            self._arrange()

    def refresh(self) -> None:
        """Repaint after a shown picture's pixels changed (its version grew)."""
        self.left.update()
        self.right.update()

    # --- modes ------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """``"side"`` (side by side) or ``"wipe"`` (slider)."""
        if mode not in ("side", "wipe"):
            raise ValueError(f"unknown compare mode {mode!r}")
        self.mode = mode
        self._arrange()
        if self.state.fit:
            self.fit()

    def flip(self) -> None:
        """Swap before and after wherever they are shown."""
        self.flipped = not self.flipped
        self._arrange()

    def _wipe_moved(self, fraction: float) -> None:
        self.left.wipe = fraction

    def _arrange(self) -> None:
        first, second = self.before, self.after
        if self.flipped:
            first, second = second, first
        both = self.before is not None and self.after is not None
        if not both:
            self.left.layer = self.before or self.after
            self.left.under = None
            self.right.layer = self.right.under = None
            self.right.hide()
        elif self.mode == "side":
            self.left.layer, self.left.under = first, None
            self.right.layer, self.right.under = second, None
            self.right.show()
        else:
            self.left.layer, self.left.under = second, first
            self.right.layer = self.right.under = None
            self.right.hide()
        self.left.update()
        self.right.update()

    def panes(self) -> list[ImagePane]:
        """The panes on screen now."""
        return [p for p in (self.left, self.right) if p.isVisible() and p.layer is not None] \
            or [self.left]

    # --- zoom commands ----------------------------------------------------------------------
    def _pane_size(self) -> QSize:
        if self.mode == "side" and self.right.isVisibleTo(self):
            size = self.left.device_size()
            if self.left.width() <= 1:  # not laid out yet: half of the whole view
                r = self.devicePixelRatioF()
                return QSize(max(1, round(self.width() * r / 2)), max(1, round(self.height() * r)))
            return size
        return self.left.device_size() if self.left.width() > 1 else QSize(
            max(1, round(self.width() * self.devicePixelRatioF())),
            max(1, round(self.height() * self.devicePixelRatioF())))

    def fit(self) -> None:
        """Fit the whole picture in each pane."""
        self.state.apply_fit(self._pane_size())

    def set_zoom(self, zoom: float) -> None:
        """Set the zoom: 1.0 shows one result pixel per screen pixel (100 %)."""
        self.state.set_zoom(zoom, self._pane_size())

    def zoom_in(self) -> None:
        """Zoom in one step around the centre."""
        self.set_zoom(self.state.zoom * ZOOM_STEP)

    def zoom_out(self) -> None:
        """Zoom out one step around the centre."""
        self.set_zoom(self.state.zoom / ZOOM_STEP)

    @property
    def zoom(self) -> float:
        """The current zoom (1.0 = 100 %)."""
        return self.state.zoom

    def has_picture(self) -> bool:
        """True when something is shown."""
        return self.before is not None or self.after is not None


_CHECKER: QPixmap | None = None


def _checkerboard() -> QPixmap:
    """The grey checkerboard drawn under transparent pixels (made once)."""
    global _CHECKER
    if _CHECKER is None:
        pm = QPixmap(16, 16)
        pm.fill(QColor(200, 200, 200))
        p = QPainter(pm)
        p.fillRect(0, 0, 8, 8, QColor(150, 150, 150))
        p.fillRect(8, 8, 8, 8, QColor(150, 150, 150))
        p.end()
        _CHECKER = pm
    return _CHECKER
