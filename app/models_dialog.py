"""The model manager: the catalogue with status, size, licence and verification; download
with progress and cancel, remove, import a checkpoint file.

Downloads and imports run in a :class:`~app.worker.CatalogWorker` thread; the dialog only
shows what :mod:`sr_core.catalog` reports. ``models_changed`` tells the window to refresh
its model picker.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sr_core import catalog, installer
from sr_core.errors import FinescaleError
from sr_core.units import format_bytes

from .worker import CatalogRequest, CatalogWorker, WorkerThread

COLUMNS = ("Model", "Kind", "Status", "Size", "Licence", "Verified", "Description")
CHECKPOINT_FILTER = "Checkpoints (*.pth *.pt *.ckpt *.bin *.safetensors);;All files (*)"


def size_text(n: int | None) -> str:
    """Bytes as a short human size ("3.7 MB"), or a dash when unknown."""
    return format_bytes(n or None, unknown="\u2014")


def status_text(st: catalog.Status) -> str:
    """What a user needs to know about where a model stands (the CLI's words, capitalised)."""
    return st.availability.value.capitalize()


def verified_text(st: catalog.Status) -> str:
    """Verified against a published hash, or how it is trusted instead."""
    e = st.entry
    if st.verified:
        return "verified"
    if e.origin == "import":
        return "unverified (imported)"
    return "unverified (trust on first use)"


class ModelsDialog(QDialog):
    """The model manager window."""

    models_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models \u2014 Finescale")
        self.resize(980, 560)
        self._thread = WorkerThread(CatalogWorker(), "finescale-catalog")
        w: CatalogWorker = self._thread.worker  # type: ignore[assignment]
        w.progress.connect(self._on_progress)
        w.done.connect(self._on_done)
        w.failed.connect(self._on_failed)
        w.cancelled.connect(self._on_cancelled)
        self._busy: CatalogRequest | None = None
        self._ids: list[str] = []

        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        # Descriptions wrap inside their column and each row is as tall as its text needs,
        # so no description is cut off whatever the dialog's width.
        self.table.setWordWrap(True)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header = self.table.horizontalHeader()
        for col in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)

        self.details = QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.details.setOpenExternalLinks(True)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.hide()
        self.progress = QProgressBar(self)
        self.progress.hide()
        self.progress_label = QLabel(self)
        self.progress_label.hide()

        self.download_button = QPushButton("&Download", self)
        self.cancel_button = QPushButton("&Cancel download", self)
        self.remove_button = QPushButton("&Remove", self)
        self.import_button = QPushButton("&Import checkpoint\u2026", self)
        close = QPushButton("Close", self)
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button.clicked.connect(self.cancel_download)
        self.remove_button.clicked.connect(self.remove_selected)
        self.import_button.clicked.connect(self._choose_import)
        close.clicked.connect(self.close)

        buttons = QHBoxLayout()
        for b in (self.download_button, self.cancel_button, self.remove_button,
                  self.import_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_label)
        progress_row.addWidget(self.progress, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.details)
        lay.addLayout(progress_row)
        lay.addWidget(self.message)
        lay.addLayout(buttons)
        self.refresh()

    # --- the table --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the catalogue and the cache."""
        selected = self.selected_id()
        rows = []
        for e in catalog.entries():
            try:
                rows.append(catalog.status(e.id))
            except FinescaleError:
                continue
        self._ids = [st.entry.id for st in rows]
        self.table.setRowCount(len(rows))
        for r, st in enumerate(rows):
            e = st.entry
            cells = (e.title, e.kind, status_text(st), size_text(st.size),
                     e.licence or "\u2014", verified_text(st), e.description)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(e.note or e.description)
                if c == COLUMNS.index("Status") and st.installed:
                    item.setForeground(QColor(40, 140, 60))
                self.table.setItem(r, c, item)
        if selected in self._ids:
            self.select(selected)
        self._update_buttons()

    def row_of(self, model_id: str) -> int:
        """Table row of ``model_id``."""
        return self._ids.index(model_id)

    def cell(self, model_id: str, column: str) -> str:
        """The text shown for ``model_id`` in ``column`` (one of COLUMNS)."""
        item = self.table.item(self.row_of(model_id), COLUMNS.index(column))
        return item.text() if item else ""

    def select(self, model_id: str) -> None:
        """Select the row of ``model_id``."""
        self.table.selectRow(self.row_of(model_id))

    def selected_id(self) -> str | None:
        """The id of the selected model, if any."""
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or rows[0].row() >= len(self._ids):
            return None
        return self._ids[rows[0].row()]

    def _update_buttons(self) -> None:
        mid = self.selected_id()
        st = catalog.status(mid) if mid else None
        busy = self._busy is not None
        self.download_button.setEnabled(bool(st and not st.installed and st.entry.downloadable)
                                        and not busy)
        self.remove_button.setEnabled(bool(st and st.installed and not st.entry.embedded)
                                      and not busy)
        self.import_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy and self._busy.action == "download")
        self.details.setText(self._details(st) if st else
                             "Select a model to see where it comes from.")

    @staticmethod
    def _details(st: catalog.Status) -> str:
        e = st.entry
        parts = [f"<b>{e.title}</b> ({e.arch}, {e.variant}, \u00d7{e.scale}, {e.kind})"]
        if e.params:
            parts.append(f"{e.params / 1e6:.2f} M parameters")
        if e.psnr:
            parts.append("PSNR " + ", ".join(f"{k} {v:.2f} dB" for k, v in e.psnr.items()))
        text = " \u2014 ".join(parts)
        if e.description:
            text += f"<br>{html.escape(e.description)}"
        if e.paper:
            text += f"<br>Paper: {e.paper}"
        if e.source:
            text += f'<br>Source: <a href="{e.source}">{e.source}</a>'
        if e.note:
            text += f"<br><i>{e.note}</i>"
        return text

    # --- actions ----------------------------------------------------------------------------
    def download_selected(self) -> None:
        """Download the selected model in the background, with progress."""
        mid = self.selected_id()
        if mid is None or self._busy is not None:
            return
        self._start(CatalogRequest("download", model_id=mid),
                    f"Downloading {catalog.get(mid).title}\u2026")

    def cancel_download(self) -> None:
        """Stop the download in progress (the part already fetched is kept for next time)."""
        if self._busy is not None:
            self._busy.cancel.set()

    def remove_selected(self, *, confirm: bool = True) -> None:
        """Delete the selected model's weights from the cache (after asking)."""
        mid = self.selected_id()
        if mid is None:
            return
        title = catalog.get(mid).title
        if confirm:
            answer = QMessageBox.question(
                self, "Remove model", f"Delete the downloaded weights of {title}? You can "
                "download them again later.")
            if answer != QMessageBox.StandardButton.Yes:
                return
        try:
            freed = installer.remove(mid)
        except FinescaleError as e:
            self.show_message(str(e), error=True)
            return
        self.show_message(f"{title} was removed ({size_text(freed)} freed).")
        self.refresh()
        self.models_changed.emit()

    def _choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a checkpoint", str(Path.home()),
                                              CHECKPOINT_FILTER)
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> None:
        """Import a checkpoint file into the cache in the background."""
        if self._busy is None:
            path = Path(path)
            self._start(CatalogRequest("import", path=path), f"Importing {path.name}\u2026")

    def _start(self, req: CatalogRequest, text: str) -> None:
        self._busy = req
        self.message.hide()
        self.progress_label.setText(text)
        self.progress_label.show()
        self.progress.setRange(0, 0)  # busy until the size is known
        self.progress.show()
        self._update_buttons()
        self._thread.worker.submit(req)  # type: ignore[attr-defined]

    def is_busy(self) -> bool:
        """True while a download or import runs."""
        return self._busy is not None

    def _on_progress(self, req: CatalogRequest, done: int, total: int) -> None:
        if req is not self._busy:
            return
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
            self.progress.setFormat(f"{size_text(done)} of {size_text(total)}")
        else:
            self.progress.setRange(0, 0)
        self.progress.setTextVisible(bool(total))

    def _finish(self) -> None:
        self._busy = None
        self.progress.hide()
        self.progress_label.hide()
        self.refresh()

    def _on_done(self, req: CatalogRequest, text: str) -> None:
        self._finish()
        if req.model_id in self._ids:
            self.select(req.model_id)
        self.show_message(text)
        self.models_changed.emit()

    def _on_failed(self, req: CatalogRequest, text: str) -> None:
        self._finish()
        self.show_message(text, error=True)

    def _on_cancelled(self, req: CatalogRequest) -> None:
        self._finish()
        self.show_message("Download cancelled; it resumes where it stopped next time.")

    def show_message(self, text: str, *, error: bool = False) -> None:
        """Show one sentence under the table (red for errors)."""
        colour = "#b3261e" if error else "#1e6b34"
        self.message.setStyleSheet(f"color: {colour};")
        self.message.setText(text)
        self.message.show()

    # --- closing ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel what runs and stop the worker thread (waits for it)."""
        events: list[threading.Event] = [self._busy.cancel] if self._busy else []
        self._thread.stop(events)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's naming
        if self._busy is not None and self._busy.action == "download":
            self._busy.cancel.set()
        super().closeEvent(event)
