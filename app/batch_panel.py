"""The batch panel: convert a whole folder with sr_core.batch.

Input folder (with or without sub-folders), output folder, name template and what to do
with existing outputs; a list of every file with its fate, overall progress with an ETA,
and a summary that names each failure and its reason. The model, size, format and device
come from the window's options column. The run happens in a :class:`~app.worker.BatchWorker`
thread; the panel only shows what it reports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sr_core.batch import DEFAULT_TEMPLATE, TEMPLATE_FIELDS, BatchOptions

from .options_panel import OutputChoice
from .settings import Settings
from .worker import BatchRequest, BatchRow, BatchWorker, WorkerThread

POLICIES = (("skip", "Skip them"), ("overwrite", "Overwrite them"),
            ("number", "Keep both (numbered name)"))
_STATUS_TEXT = {"pending": "waiting", "done": "done", "skipped": "skipped", "failed": "failed"}
_STATUS_COLOUR = {"done": QColor(40, 140, 60), "failed": QColor(179, 38, 30),
                  "skipped": QColor(120, 120, 120)}


def eta_text(seconds: float) -> str:
    """A short duration for people: "about 3 min left"."""
    if seconds < 0:
        return ""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


class BatchPanel(QWidget):
    """Folder conversion: choices, the file list, progress and the summary."""

    running_changed = Signal(bool)
    message = Signal(str, bool)  # sentence, is_error: for the window's message bar
    open_pair = Signal(Path, Path)  # input, output of a finished row (double-click)

    def __init__(self, settings: Settings, choice: Callable[[], OutputChoice],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._choice = choice
        self._thread = WorkerThread(BatchWorker(), "finescale-batch")
        w: BatchWorker = self._thread.worker  # type: ignore[assignment]
        w.status.connect(self._on_status)
        w.download.connect(self._on_download)
        w.planned.connect(self._on_planned)
        w.progress.connect(self._on_progress)
        w.file_done.connect(self._on_file_done)
        w.finished.connect(self._on_finished)
        w.failed.connect(self._on_failed)
        self._req: BatchRequest | None = None
        self._rows: dict[str, int] = {}
        self._data: dict[int, BatchRow] = {}  # table row -> what it shows
        self._dirs: tuple[Path, Path] | None = None  # input and output folder of the list
        self.last_state = ""
        self.last_totals: dict[str, int] = {}

        self.in_edit = QLineEdit(self)
        self.in_edit.setPlaceholderText("Folder with the pictures to upscale")
        self.out_edit = QLineEdit(self)
        self.out_edit.setPlaceholderText("Folder for the results")
        self.recursive = QCheckBox("Include sub-folders (mirrored in the output folder)", self)
        self.template = QLineEdit(self)
        self.template.setPlaceholderText(DEFAULT_TEMPLATE)
        self.template.setToolTip("Fields: " + ", ".join(f"{{{k}}} = {v}"
                                                        for k, v in TEMPLATE_FIELDS.items()))
        self.existing = QComboBox(self)
        for key, text in POLICIES:
            self.existing.addItem(text, key)
        in_row = self._folder_row(self.in_edit, "Choose the input folder")
        out_row = self._folder_row(self.out_edit, "Choose the output folder")
        form = QFormLayout()
        form.addRow("Input folder", in_row)
        form.addRow("", self.recursive)
        form.addRow("Output folder", out_row)
        form.addRow("File names", self.template)
        form.addRow("Existing outputs", self.existing)

        self.start_button = QPushButton("Start batch", self)
        self.start_button.setObjectName("primary")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.open_button = QPushButton("Open output folder", self)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button.clicked.connect(self._open_output)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)

        self.progress = QProgressBar(self)
        self.progress.setTextVisible(True)
        self.progress.setValue(0)
        self.status_label = QLabel("Choose a folder of pictures and press Start.", self)
        self.status_label.setWordWrap(True)
        self.table = QTableWidget(0, 3, self)
        self.table.setHorizontalHeaderLabels(("File", "Status", "Output or reason"))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(0, 260)
        self.table.setToolTip("Double-click a converted file to compare it with its original")
        self.table.cellDoubleClicked.connect(self._on_double_click)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status_label)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.summary)
        self._restore()

    def _folder_row(self, edit: QLineEdit, title: str) -> QWidget:
        row = QWidget(self)
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(edit, 1)
        browse = QPushButton("Browse\u2026", row)
        browse.clicked.connect(lambda: self._browse(edit, title))
        lay.addWidget(browse)
        return row

    def _browse(self, edit: QLineEdit, title: str) -> None:
        start = edit.text() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, title, start)
        if folder:
            edit.setText(folder)

    # --- settings ---------------------------------------------------------------------------
    def _restore(self) -> None:
        s = self.settings
        self.in_edit.setText(s.get("batch/in_dir"))
        self.out_edit.setText(s.get("batch/out_dir"))
        self.recursive.setChecked(s.get("batch/recursive"))
        self.template.setText(s.get("batch/template"))
        self.existing.setCurrentIndex(max(0, self.existing.findData(s.get("batch/existing"))))

    def _save(self) -> None:
        s = self.settings
        s.set("batch/in_dir", self.in_edit.text())
        s.set("batch/out_dir", self.out_edit.text())
        s.set("batch/recursive", self.recursive.isChecked())
        s.set("batch/template", self.template.text())
        s.set("batch/existing", self.existing.currentData())

    def set_input_folder(self, folder: Path) -> None:
        """Use ``folder`` as the input (a folder dropped on the window); suggest an output."""
        self.in_edit.setText(str(folder))
        if not self.out_edit.text():
            self.out_edit.setText(str(folder.parent / f"{folder.name}-upscaled"))

    # --- running ----------------------------------------------------------------------------
    def is_running(self) -> bool:
        """True while a batch runs."""
        return self._req is not None

    def options(self) -> BatchOptions:
        """The batch options from the panel and the window's output choices."""
        c = self._choice()
        fmt = (c.out_format or "same").lower()
        return BatchOptions(recursive=self.recursive.isChecked(),
                            template=self.template.text().strip() or DEFAULT_TEMPLATE,
                            format=fmt, existing=self.existing.currentData(),
                            quality=c.quality, scale=c.scale, width=c.width, height=c.height)

    def start(self) -> None:
        """Start converting the input folder (problems are shown as one sentence)."""
        if self._req is not None:
            return
        in_dir, out_dir = self.in_edit.text().strip(), self.out_edit.text().strip()
        if not in_dir:
            return self._error("Choose the folder with the pictures to upscale first.")
        if not out_dir:
            return self._error("Choose a folder for the results first.")
        c = self._choice()
        if not c.model:
            return self._error("No model is available; open Manage models to get one.")
        self._save()
        self._req = BatchRequest(Path(in_dir).expanduser(), Path(out_dir).expanduser(),
                                 self.options(), c.model, c.device, clean_up=c.clean_up)
        self.table.setRowCount(0)
        self._rows.clear()
        self._data.clear()
        self._dirs = (self._req.in_dir, self._req.out_dir)
        self.summary.clear()
        self.progress.setRange(0, 0)
        self.status_label.setText("Starting\u2026")
        self._set_running(True)
        self._thread.worker.submit(self._req)  # type: ignore[attr-defined]

    def cancel(self) -> None:
        """Stop after the current tile; the unfinished file is redone by the next run."""
        if self._req is not None:
            self._req.cancel.set()
            self.status_label.setText("Cancelling\u2026")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for w in (self.in_edit, self.out_edit, self.recursive, self.template, self.existing):
            w.setEnabled(not running)
        self.running_changed.emit(running)

    def _error(self, text: str) -> None:
        self.summary.setText(text)
        self.summary.setStyleSheet("color: #b3261e;")
        self.message.emit(text, True)

    # --- worker signals ---------------------------------------------------------------------
    def _on_status(self, req: BatchRequest, text: str) -> None:
        if req is self._req:
            self.status_label.setText(text)

    def _on_download(self, req: BatchRequest, done: int, total: int) -> None:
        if req is self._req and total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))

    def _on_planned(self, req: BatchRequest, summary: str, rows: list[BatchRow]) -> None:
        if req is not self._req:
            return
        self.status_label.setText(summary[:1].upper() + summary[1:] + ".")
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            self._rows[row.input] = i
            self._show_row(i, row)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)

    def _show_row(self, i: int, row: BatchRow, status: str | None = None) -> None:
        self._data[i] = row
        text = status or _STATUS_TEXT.get(row.status, row.status)
        detail = row.reason if row.status in ("failed", "skipped") else (row.output or "")
        for c, value in enumerate((row.input, text, detail or "")):
            item = QTableWidgetItem(value)
            item.setToolTip(value)
            colour = _STATUS_COLOUR.get(row.status)
            if colour is not None and c == 1:
                item.setForeground(colour)
            self.table.setItem(i, c, item)

    def _on_progress(self, req: BatchRequest, done: int, total: int, current: str,
                     tiles_done: int, tiles_total: int, eta: float) -> None:
        if req is not self._req or total <= 0:
            return
        part = tiles_done / tiles_total if tiles_total else 0.0
        self.progress.setValue(int(1000 * min(1.0, (done + part) / total)))
        self.progress.setFormat(f"{done} of {total} files")
        if current:
            tiles = f", tile {tiles_done} of {tiles_total}" if tiles_total else ""
            left = eta_text(eta)
            self.status_label.setText(f"Upscaling {current}{tiles}" + (f" \u2014 {left}"
                                                                        if left else ""))
            i = self._rows.get(current)
            if i is not None:
                item = self.table.item(i, 1)
                if item is not None:
                    item.setText("upscaling")
                self.table.scrollToItem(self.table.item(i, 0))

    def _on_file_done(self, req: BatchRequest, row: BatchRow) -> None:
        if req is self._req and row.input in self._rows:
            self._show_row(self._rows[row.input], row)

    def _on_finished(self, req: BatchRequest, state: str, totals: dict, report: str) -> None:
        if req is not self._req:
            return
        self._req = None
        self._set_running(False)
        self.last_state, self.last_totals = state, dict(totals)
        self.progress.setRange(0, 1000)
        if state == "finished":
            self.progress.setValue(1000)
        failed = [self.table.item(i, 0).text() for i in range(self.table.rowCount())
                  if self.table.item(i, 1) and self.table.item(i, 1).text() == "failed"]
        head = {"finished": "Batch finished", "cancelled": "Batch cancelled"}.get(state,
                                                                                 "Batch stopped")
        counts = ", ".join(f"{totals.get(k, 0)} {k}" for k in ("done", "skipped", "failed")
                           if k in totals)
        if state == "cancelled":
            counts += (", " if counts else "") + "the rest is redone when you start it again"
        text = f"{head}: {counts}." if counts else f"{head}."
        if failed:
            text += " Failed: " + "; ".join(failed[:5]) + (" \u2026" if len(failed) > 5 else "") \
                + " (reasons in the list)."
        if report:
            text += f" Report: {report}"
        self.summary.setStyleSheet("color: #b3261e;" if failed else "")
        self.summary.setText(text)
        self.status_label.setText(head + ".")
        self.message.emit(text, bool(failed))

    def _on_failed(self, req: BatchRequest, text: str) -> None:
        if req is not self._req:
            return
        self._req = None
        self._set_running(False)
        self.last_state = "failed"
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.status_label.setText("The batch did not run.")
        self._error(text)

    def pair_of(self, row: int) -> tuple[Path, Path] | None:
        """Input and output file of a converted table row (None for other rows)."""
        data = self._data.get(row)
        if data is None or data.status != "done" or not data.output or self._dirs is None:
            return None
        return self._dirs[0] / data.input, self._dirs[1] / data.output

    def _on_double_click(self, row: int, column: int) -> None:
        pair = self.pair_of(row)
        if pair is None:
            data = self._data.get(row)
            if data is not None and data.status != "done":
                self.message.emit(f"{data.input} has no result to compare yet "
                                  f"({_STATUS_TEXT.get(data.status, data.status)}).", False)
            return
        if not pair[1].exists():
            self.message.emit(f"{pair[1]} is no longer there.", True)
            return
        self.open_pair.emit(*pair)

    def _open_output(self) -> None:
        folder = self.out_edit.text().strip()
        if folder and Path(folder).is_dir():
            QDesktopServices.openUrl(QUrl.fromLocalFile(folder))

    # --- closing ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel a running batch and stop the worker thread (waits for it)."""
        self._save()
        self._thread.stop([self._req.cancel] if self._req is not None else [])
