"""The batch panel: convert a whole folder with sr_core.batch.

Input folder (with or without sub-folders), output folder, name template and what to do
with existing outputs; a list of every file with its fate, overall progress with an ETA,
and a summary that names each failure and its reason. The model, size, format and device
come from the window's options column. The run is a :class:`~app.tasks.BatchRequest` in a
worker thread; the panel renders the :class:`~app.session.BatchSession` its messages update,
each file with its own time estimate.
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

from sr_core.batch import DEFAULT_TEMPLATE, TEMPLATE_FIELDS, BatchOptions, ExistingPolicy

from .messages import Reply
from .options_panel import OutputChoice
from .session import BatchSession, eta_text, seconds_per_megapixel
from .settings import Settings
from .tasks import BatchPlanned, BatchRequest, BatchRow, BatchStep
from .worker import WorkerThread

__all__ = ["BatchPanel", "eta_text"]

_POLICY_TITLES = {ExistingPolicy.SKIP: "Skip them", ExistingPolicy.OVERWRITE: "Overwrite them",
                  ExistingPolicy.NUMBER: "Keep both (numbered name)"}
#: The engine's existing-output policies with their titles.
POLICIES = tuple((p.value, _POLICY_TITLES[p]) for p in ExistingPolicy)
_STATUS_TEXT = {"pending": "waiting", "done": "done", "skipped": "skipped", "failed": "failed"}
_STATUS_COLOUR = {"done": QColor(40, 140, 60), "failed": QColor(179, 38, 30),
                  "skipped": QColor(120, 120, 120)}


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
        self._thread = WorkerThread("finescale-batch", (BatchPlanned, BatchStep))
        self._thread.worker.message.connect(self._on_message)
        self.state = BatchSession()
        self._data: dict[int, BatchRow] = {}  # table row -> what it shows
        self._shown_current = ""
        self._dirs: tuple[Path, Path] | None = None  # input and output folder of the list

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
        self.table = QTableWidget(0, 4, self)
        self.table.setHorizontalHeaderLabels(("File", "Status", "Output or reason", "Time"))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
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

    # --- running ---------------------------------------------------------------------------
    def is_running(self) -> bool:
        """True while a batch runs."""
        return self.state.busy

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
        if self.state.busy:
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
        req = BatchRequest(Path(in_dir).expanduser(), Path(out_dir).expanduser(),
                           self.options(), c.model, c.device, clean_up=c.clean_up)
        self.state.start(req, seconds_per_megapixel(c.model, c.device))
        self._data.clear()
        self._dirs = (req.in_dir, req.out_dir)
        self.summary.clear()
        self._render(rows=True)
        self._set_running(True)
        self._thread.submit(req)

    def cancel(self) -> None:
        """Stop within one layer; the unfinished file is redone by the next run."""
        if self.state.cancel():
            self._render()

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

    @property
    def last_state(self) -> str:
        """How the last batch ended: "finished", "cancelled", "failed" ("" before one)."""
        if self.state.error:
            return "failed"
        return self.state.outcome.state if self.state.outcome is not None else ""

    @property
    def last_totals(self) -> dict[str, int]:
        """The last batch's counts by status."""
        return dict(self.state.outcome.totals) if self.state.outcome is not None else {}

    # --- rendering the session --------------------------------------------------------------
    def _on_message(self, reply: Reply) -> None:
        what = self.state.receive(reply)
        if what in ("planned", "row"):
            self._render(rows=True)
        elif what == "progress":
            started = self.state.current != self._shown_current  # a new file: say so now
            self._shown_current = self.state.current
            self._render(times=self.state.times_due() or started)
            if self.state.current in self.state.index:
                self.table.scrollToItem(self.table.item(self.state.index[self.state.current], 0))
        elif what == "status":
            self._render()
        elif what == "ended":
            self._ended()

    def _render(self, *, rows: bool = False, times: bool = False) -> None:
        st = self.state
        self.status_label.setText(st.status)
        if st.fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * st.fraction))
        if st.files[1]:
            self.progress.setFormat(f"{st.files[0]} of {st.files[1]} files")
        if rows:
            self.table.setRowCount(len(st.rows))
            for i, row in enumerate(st.rows):
                self._show_row(i, row)
        if times:
            for i in range(len(st.rows)):
                for col, text in ((1, st.row_status(i)), (3, st.row_time(i))):
                    item = self.table.item(i, col)
                    if item is not None and item.text() != text:
                        item.setText(text)

    def _show_row(self, i: int, row: BatchRow) -> None:
        self._data[i] = row
        detail = row.reason if row.status in ("failed", "skipped") else (row.output or "")
        values = (row.input, self.state.row_status(i), detail or "", self.state.row_time(i))
        for c, value in enumerate(values):
            item = QTableWidgetItem(value)
            item.setToolTip(value)
            colour = _STATUS_COLOUR.get(row.status)
            if colour is not None and c == 1:
                item.setForeground(colour)
            self.table.setItem(i, c, item)

    def _ended(self) -> None:
        st = self.state
        self._set_running(False)
        self._render(rows=True)
        if st.error:
            self._error(st.error)
            return
        text, failed = st.summary()
        self.summary.setStyleSheet("color: #b3261e;" if failed else "")
        self.summary.setText(text)
        self.message.emit(text, failed)

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
        self._thread.stop([self.state.job.cancel] if self.state.busy else [])
