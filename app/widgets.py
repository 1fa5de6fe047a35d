"""Small pieces of the window: the floating message bar, the drop overlay, the About text,
and reading dropped files and pasted pictures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QMimeData, QObject, QPoint, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QImage,
    QPainter,
    QPaintEvent,
    QPen,
)
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from sr_core import __version__, catalog


def about_html() -> str:
    """The About text: what Finescale is and each model family's licence and paper."""
    families: dict[tuple[str, str, str], list[str]] = {}
    for e in catalog.entries():
        if e.origin != "catalogue":
            continue
        families.setdefault((e.paper, e.licence, e.source), []).append(e.title)
    rows = []
    for (paper, licence, source), titles in families.items():
        rows.append(f"<li><b>{', '.join(titles)}</b><br>Licence: {licence or 'not stated'}"
                    f"<br>Paper: {paper or 'not published'}"
                    + (f'<br><a href="{source}">{source}</a>' if source else "") + "</li>")
    return (f"<h3>Finescale {__version__}</h3>"
            "<p>A photo upscaler running recent super-resolution transformers exactly as "
            "their authors do. Finescale itself is MIT-licensed.</p>"
            "<p>Models and their licences:</p><ul>" + "".join(rows) + "</ul>")


def local_paths(mime: QMimeData) -> list[Path]:
    """The local files and folders named by a drag, a drop or the clipboard."""
    if not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


def photo_from_qimage(image: QImage) -> object:
    """A :class:`sr_core.imageio.Photo` from a QImage (a picture pasted from the clipboard)."""
    from sr_core.imageio import Photo

    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h = rgba.width(), rgba.height()
    buf = np.frombuffer(rgba.constBits(), dtype=np.uint8, count=rgba.sizeInBytes())
    arr = buf.reshape(h, rgba.bytesPerLine())[:, :w * 4].reshape(h, w, 4)
    rgb = arr[..., :3].astype(np.float32) / 255.0
    alpha = arr[..., 3]
    opaque = not image.hasAlphaChannel() or int(alpha.min()) == 255
    return Photo(rgb=np.ascontiguousarray(rgb),
                 alpha=None if opaque else alpha.astype(np.float32) / 255.0)


class MessageBar(QFrame):
    """One sentence over the bottom of the picture or the batch list: an error (red) or a
    notice (green). It floats over the view (the window places it), so showing or hiding it
    never moves the rest of the layout."""

    shown = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(self)
        close.setText("\u2715")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.is_error = False
        self._anchor: Callable[[], QWidget] | None = None
        self.hide()

    def show_message(self, text: str, *, error: bool) -> None:
        """Show ``text``; errors stay until closed or replaced."""
        self.is_error = error
        bg, fg = ("#fde7e9", "#8c1d18") if error else ("#e6f4ea", "#1e4620")
        self.setStyleSheet(f"MessageBar {{ background: {bg}; border-radius: 4px; }} "
                           f"QLabel {{ color: {fg}; }}")
        self.label.setText(text)
        self.show()
        self.raise_()
        self.shown.emit()

    def text(self) -> str:
        """The sentence shown ('' when hidden)."""
        return self.label.text() if self.isVisible() else ""

    def follow(self, watched: tuple[QWidget, ...], anchor: Callable[[], QWidget]) -> None:
        """Float over the bottom of ``anchor()`` and stay there as ``watched`` widgets move
        or change size."""
        self._anchor = anchor
        for w in watched:
            w.installEventFilter(self)
        self.shown.connect(self.place)

    def place(self) -> None:
        """Put the bar over the bottom of its anchor (when shown)."""
        if not self.isVisible() or self._anchor is None:
            return
        anchor, parent = self._anchor(), self.parentWidget()
        corner = anchor.mapTo(parent, QPoint(0, 0))
        width = max(160, anchor.width() - 24)
        height = self.heightForWidth(width) if self.hasHeightForWidth() else \
            self.sizeHint().height()
        height = max(height, self.minimumSizeHint().height())
        self.setGeometry(corner.x() + 12, corner.y() + anchor.height() - height - 12, width,
                         height)
        self.raise_()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """Keep in place as the watched views move or change size."""
        if event.type() in (QEvent.Type.Resize, QEvent.Type.Move, QEvent.Type.Show):
            self.place()
        return super().eventFilter(watched, event)


class DropOverlay(QWidget):
    """Drag-and-drop feedback: a frame over the window saying what a drop will do."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.text = ""
        self.hide()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's naming
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(20, 60, 120, 90))
        box = QRectF(self.rect()).adjusted(16, 16, -16, -16)
        pen = QPen(QColor(255, 255, 255, 230), 3, Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawRoundedRect(box, 14, 14)
        font = p.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        p.setFont(font)
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, self.text)
        p.end()

    def enter(self, event: QDragEnterEvent, rect: QRect) -> None:
        """A drag came in: accept files and folders and say what dropping them does."""
        items = local_paths(event.mimeData())
        if not items:
            event.ignore()
            return
        event.acceptProposedAction()
        self.text = ("Drop to convert this folder" if any(p.is_dir() for p in items)
                     else "Drop to open" if len(items) == 1
                     else f"Drop to open the first of {len(items)}")
        self.setGeometry(rect)
        self.raise_()
        self.show()

    def drop(self, event: QDropEvent) -> list[Path]:
        """The files and folders dropped (accepted), or [] (ignored)."""
        self.hide()
        items = local_paths(event.mimeData())
        if items:
            event.acceptProposedAction()
        else:
            event.ignore()
        return items
