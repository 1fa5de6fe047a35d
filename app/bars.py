"""The Picture tab's two bars: the view bar over the compare view (open, compare mode, how
the original is shown, zoom) and the run bar under it (output folder, progress, Cancel,
Preview, Upscale). They hold widgets only; the window connects them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .compare import CompareView

#: How the original may be enlarged beside the result (settings key "original_as").
ORIGINAL_AS = (("pixels", "pixels"), ("smooth", "smooth (Lanczos)"))


def tool(parent: QWidget, text: str, tip: str, slot: Callable[..., object] | None = None, *,
         checkable: bool = False) -> QToolButton:
    """A flat tool button."""
    b = QToolButton(parent)
    b.setText(text)
    b.setToolTip(tip)
    b.setCheckable(checkable)
    if slot is not None:
        b.clicked.connect(slot)
    return b


class ViewBar(QWidget):
    """Open / Paste, side by side / slider / flip, "Original as", the rival toggle, zoom."""

    def __init__(self, compare: CompareView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        bar = QHBoxLayout(self)
        bar.setContentsMargins(0, 4, 0, 4)
        self.open_button = tool(self, "Open\u2026", "Open a picture (Ctrl+O)")
        self.paste_button = tool(self, "Paste", "Paste a picture from the clipboard (Ctrl+V)")
        bar.addWidget(self.open_button)
        bar.addWidget(self.paste_button)
        bar.addSpacing(16)
        self.side_button = tool(self, "Side by side", "Original and result next to each other",
                                checkable=True)
        self.wipe_button = tool(self, "Slider", "One picture with a slider between original "
                                "and result", checkable=True)
        group = QButtonGroup(self)
        group.addButton(self.side_button)
        group.addButton(self.wipe_button)
        self.flip_button = tool(self, "Flip", "Swap original and result (Space)")
        for b in (self.side_button, self.wipe_button, self.flip_button):
            bar.addWidget(b)
        bar.addSpacing(16)
        bar.addWidget(QLabel("Original as", self))
        self.original_combo = QComboBox(self)
        for key, text in ORIGINAL_AS:
            self.original_combo.addItem(text, key)
        self.original_combo.setToolTip(
            "How the original is enlarged beside the result: pixel by pixel, or smoothly "
            "(Lanczos, like an ordinary enlargement), to see what the model adds")
        bar.addWidget(self.original_combo)
        self.rival_button = tool(
            self, "Previous preview", "Show the previous preview of the same region (the "
            "model or clean-up chosen before) in place of the original: model against model",
            checkable=True)
        bar.addWidget(self.rival_button)
        bar.addStretch(1)
        for text, tip, slot in (
                ("Fit", "Fit the picture in the view (Ctrl+0)", compare.fit),
                ("100 %", "One result pixel per screen pixel (Ctrl+1)",
                 lambda: compare.set_zoom(1.0)),
                ("200 %", "Two screen pixels per result pixel (Ctrl+2)",
                 lambda: compare.set_zoom(2.0)),
                ("\u2212", "Zoom out (Ctrl+-)", compare.zoom_out),
                ("+", "Zoom in (Ctrl+=)", compare.zoom_in)):
            bar.addWidget(tool(self, text, tip, slot))
        self.zoom_label = QLabel("", self)
        self.zoom_label.setMinimumWidth(56)
        self.zoom_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bar.addWidget(self.zoom_label)


class RunBar(QWidget):
    """Save to (with Browse and Show in folder), the progress bar and line, Cancel, Preview
    and Upscale whole picture. ``out_dir_changed(folder)`` when the user sets the folder."""

    out_dir_changed = Signal(str)

    def __init__(self, out_dir: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 6, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Save to", self))
        self.out_edit = QLineEdit(self)
        self.out_edit.setPlaceholderText("the original's folder")
        self.out_edit.setText(out_dir)
        self.out_edit.editingFinished.connect(
            lambda: self.out_dir_changed.emit(self.out_edit.text().strip()))
        self.browse_button = QPushButton("Browse\u2026", self)
        self.browse_button.clicked.connect(self._browse)
        row.addWidget(self.out_edit, 1)
        row.addWidget(self.browse_button)
        self.show_button = QPushButton("Show in folder", self)
        row.addWidget(self.show_button)
        lay.addLayout(row)
        row2 = QHBoxLayout()
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.run_label = QLabel("", self)
        self.run_label.setMinimumWidth(260)
        self.preview_button = QPushButton("Preview", self)
        self.preview_button.setToolTip("Upscale only the part in view, in seconds, to judge "
                                       "the model (P), or drag a rectangle with Shift held; "
                                       "nothing is written")
        self.upscale_button = QPushButton("Upscale whole picture", self)
        self.upscale_button.setObjectName("primary")
        self.upscale_button.setToolTip("Upscale the whole picture and save it (Ctrl+Return); "
                                       "the tiles of a preview with the same choices are "
                                       "reused")
        self.upscale_button.setMinimumWidth(120)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop the upscale (Esc); nothing is written")
        row2.addWidget(self.progress, 1)
        row2.addWidget(self.run_label)
        for b in (self.cancel_button, self.preview_button, self.upscale_button):
            row2.addWidget(b)
        lay.addLayout(row2)

    def _browse(self) -> None:
        start = self.out_edit.text() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Save results in", start)
        if folder:
            self.out_edit.setText(folder)
            self.out_dir_changed.emit(folder)

    def show_progress(self, fraction: float | None, label: str) -> None:
        """Show ``fraction`` done (None: busy, no measure) and the line beside the bar."""
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * fraction))
        self.run_label.setText(label)
