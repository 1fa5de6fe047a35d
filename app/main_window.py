"""The main window: drop a photo, pick a model, upscale, compare; or convert a folder.

The window holds views (the options column, the compare view, the batch panel) and turns
user actions into requests for the :class:`~app.worker.UpscaleWorker`, whose signals it
shows. It never runs engine code itself, so it stays responsive while a model runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import (
    QEvent,
    QMimeData,
    QObject,
    QPoint,
    QRectF,
    QStandardPaths,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QColor,
    QDesktopServices,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QPen,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from sr_core import __version__, catalog, formats, paths, sizing

from .batch_panel import BatchPanel, eta_text
from .compare import CompareView
from .display import DisplayImage
from .models_dialog import ModelsDialog
from .options_panel import OptionsPanel, OutputChoice
from .session import PreviewKey, Session, preview_region
from .settings import Settings
from .worker import (
    LoadRequest,
    Picture,
    PreviewJob,
    PreviewResult,
    UpscaleJob,
    UpscaleResult,
    UpscaleWorker,
    WorkerThread,
)

APP_NAME = "Finescale"
#: The open dialog's patterns: every suffix sr_core.formats says this install reads.
IMAGE_FILTER = f"Pictures ({formats.dialog_filter()});;All files (*)"
PLACEHOLDER = ("Drop a photo anywhere on this window\n"
               "or open one with Ctrl+O, or paste one with Ctrl+V.\n\n"
               "Help \u2192 Open sample picture gives you one to try.")
#: How far the unfinished part of the preview is dimmed towards grey while a run goes on.
PREVIEW_DIM = 0.55
#: How the original may be enlarged beside the result (settings key "original_as").
ORIGINAL_AS = (("pixels", "pixels"), ("smooth", "smooth (Lanczos)"))
#: A preview re-runs this long after the model or the clean-up last changed (a slider drag
#: runs it once, at its end).
RERUN_DELAY_MS = 300


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


def _original_label(picture: Picture, smooth: bool = False) -> str:
    """The label over the original in the compare view (saying how it is enlarged)."""
    how = "  (Lanczos)" if smooth else ""
    return f"Original  {picture.display.width:,} \u00d7 {picture.display.height:,}{how}"


def _preview_label(preview: PreviewResult) -> str:
    """The label over a preview: the model, and the clean-up where there is one."""
    c = preview.job.clean_up
    return f"Preview: {preview.model_name}" + (f", clean-up {c:.2f}" if c is not None else "")


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


class MainWindow(QMainWindow):
    """Finescale's window. ``settings`` defaults to the user's (QSettings)."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.session = Session()
        self._load: LoadRequest | None = None
        self._canvas: DisplayImage | None = None  # the whole picture filling in as tiles end
        self._tiles = (0, 0)  # tiles done, tiles in all, of the run under way
        self._pct = -1  # per cent shown for the run under way
        self._fit_preview = False
        self._base: DisplayImage | None = None
        self._base_for: Picture | None = None
        self._models_dialog: ModelsDialog | None = None
        self._closed = False

        self._rerun_timer = QTimer(self)  # re-runs the preview once the choices rest
        self._rerun_timer.setSingleShot(True)
        self._rerun_timer.setInterval(RERUN_DELAY_MS)
        self._rerun_timer.timeout.connect(self._rerun_preview)

        self._thread = WorkerThread(UpscaleWorker(), "finescale-upscale")
        w: UpscaleWorker = self._thread.worker  # type: ignore[assignment]
        w.loaded.connect(self._on_loaded)
        w.paired.connect(self._on_paired)
        w.status.connect(self._on_status)
        w.download.connect(self._on_download)
        w.progress.connect(self._on_progress)
        w.fraction.connect(self._on_fraction)
        w.tile.connect(self._on_tile)
        w.finished.connect(self._on_finished)
        w.previewed.connect(self._on_previewed)
        w.failed.connect(self._on_failed)
        w.cancelled.connect(self._on_cancelled)

        self._build()
        self._build_actions()
        self.setAcceptDrops(True)
        for child in self.findChildren(QLineEdit) + self.findChildren(QAbstractSpinBox):
            child.setAcceptDrops(False)  # a drop anywhere opens the picture
        self._update_title()
        self._update_buttons()
        geometry = self.settings.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 820)
        self.compare.set_mode(self.settings.get("compare_mode"))
        self._sync_mode_buttons()
        self.set_original_as(self.settings.get("original_as"))
        w.submit(None)  # import torch in the worker's thread now, not on the first click

    # --- layout -----------------------------------------------------------------------------
    def _build(self) -> None:
        self.options = OptionsPanel(self.settings, self)
        self.options.manage_models.connect(self.show_models)
        self.options.changed.connect(self._on_options_changed)
        scroll = QScrollArea(self)
        scroll.setWidget(self.options)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setMinimumWidth(300)
        scroll.setMaximumWidth(420)

        self.compare = CompareView(self)
        self.compare.set_placeholder(PLACEHOLDER)
        self.compare.zoom_changed.connect(self._on_zoom)
        self.compare.region_dragged.connect(self.preview_rect)
        self.picture_tab = QWidget(self)
        pic = QVBoxLayout(self.picture_tab)
        pic.setContentsMargins(0, 0, 0, 0)
        pic.addLayout(self._build_view_bar())
        pic.addWidget(self.compare, 1)
        pic.addWidget(self._build_run_bar())

        self.batch = BatchPanel(self.settings, self.options.choice, self)
        self.batch.message.connect(lambda text, err: self.message.show_message(text, error=err))
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.picture_tab, "Picture")
        self.tabs.addTab(self.batch, "Batch")

        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(scroll)
        split.addWidget(self.tabs)
        split.setStretchFactor(1, 1)
        split.setCollapsible(1, False)
        central = QWidget(self)
        lay = QVBoxLayout(central)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(split, 1)
        self.setCentralWidget(central)
        self.message = MessageBar(central)  # floats: not in the layout (see _place_message)
        self.message.shown.connect(self._place_message)
        for watched in (self.compare, self.batch.table, self.tabs):
            watched.installEventFilter(self)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.batch.running_changed.connect(self._on_batch_running)
        self.batch.open_pair.connect(self.open_pair)
        self.overlay = DropOverlay(central)
        self.statusBar().showMessage("Ready.")

    def _place_message(self) -> None:
        """Float the message bar over the bottom of the picture (or the batch list)."""
        if not self.message.isVisible():
            return
        anchor = self.batch.table if self.tabs.currentWidget() is self.batch else self.compare
        corner = anchor.mapTo(self.centralWidget(), QPoint(0, 0))
        width = max(160, anchor.width() - 24)
        height = (self.message.heightForWidth(width) if self.message.hasHeightForWidth()
                  else self.message.sizeHint().height())
        height = max(height, self.message.minimumSizeHint().height())
        self.message.setGeometry(corner.x() + 12, corner.y() + anchor.height() - height - 12,
                                 width, height)
        self.message.raise_()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """Keep the floating message bar in place as the views move or change size."""
        if event.type() in (QEvent.Type.Resize, QEvent.Type.Move, QEvent.Type.Show):
            self._place_message()
        return super().eventFilter(watched, event)

    def _on_tab_changed(self, index: int) -> None:
        on_batch = self.tabs.widget(index) is self.batch
        # The output size line is about the picture shown; a batch's files each have theirs.
        pic = self.session.picture
        self.options.set_input_size(None if on_batch or pic is None else
                                    (pic.display.width, pic.display.height))
        self._place_message()

    def _on_batch_running(self, running: bool) -> None:
        self.statusBar().showMessage("Converting the folder\u2026" if running else
                                     "Batch ended; the summary is in the Batch tab.")

    def _tool(self, text: str, tip: str, slot: object, *, checkable: bool = False) -> QToolButton:
        b = QToolButton(self)
        b.setText(text)
        b.setToolTip(tip)
        b.setCheckable(checkable)
        b.clicked.connect(slot)
        return b

    def _build_view_bar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 4, 0, 4)
        bar.addWidget(self._tool("Open\u2026", "Open a picture (Ctrl+O)", self.open_dialog))
        bar.addWidget(self._tool("Paste", "Paste a picture from the clipboard (Ctrl+V)",
                                 self.paste))
        bar.addSpacing(16)
        self.side_button = self._tool("Side by side", "Original and result next to each other",
                                      lambda: self.set_compare_mode("side"), checkable=True)
        self.wipe_button = self._tool("Slider", "One picture with a slider between original "
                                      "and result", lambda: self.set_compare_mode("wipe"),
                                      checkable=True)
        group = QButtonGroup(self)
        group.addButton(self.side_button)
        group.addButton(self.wipe_button)
        self.flip_button = self._tool("Flip", "Swap original and result (Space)", self.flip)
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
        self.original_combo.currentIndexChanged.connect(
            lambda: self.set_original_as(self.original_combo.currentData()))
        bar.addWidget(self.original_combo)
        self.rival_button = self._tool(
            "Previous preview", "Show the previous preview of the same region (the model or "
            "clean-up chosen before) in place of the original: model against model",
            self._show_before, checkable=True)
        bar.addWidget(self.rival_button)
        bar.addStretch(1)
        for text, tip, slot in (
                ("Fit", "Fit the picture in the view (Ctrl+0)", self.compare.fit),
                ("100 %", "One result pixel per screen pixel (Ctrl+1)",
                 lambda: self.compare.set_zoom(1.0)),
                ("200 %", "Two screen pixels per result pixel (Ctrl+2)",
                 lambda: self.compare.set_zoom(2.0)),
                ("\u2212", "Zoom out (Ctrl+-)", self.compare.zoom_out),
                ("+", "Zoom in (Ctrl+=)", self.compare.zoom_in)):
            bar.addWidget(self._tool(text, tip, slot))
        self.zoom_label = QLabel("", self)
        self.zoom_label.setMinimumWidth(56)
        self.zoom_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bar.addWidget(self.zoom_label)
        return bar

    def _build_run_bar(self) -> QWidget:
        box = QWidget(self)
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 6, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Save to", self))
        self.out_edit = QLineEdit(self)
        self.out_edit.setPlaceholderText("the original's folder")
        self.out_edit.setText(self.settings.get("out_dir"))
        self.out_edit.editingFinished.connect(
            lambda: self.settings.set("out_dir", self.out_edit.text().strip()))
        browse = QPushButton("Browse\u2026", self)
        browse.clicked.connect(self._choose_out_dir)
        row.addWidget(self.out_edit, 1)
        row.addWidget(browse)
        self.show_button = QPushButton("Show in folder", self)
        self.show_button.clicked.connect(self._show_result_folder)
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
        self.preview_button.clicked.connect(self.preview)
        self.upscale_button = QPushButton("Upscale whole picture", self)
        self.upscale_button.setObjectName("primary")
        self.upscale_button.setToolTip("Upscale the whole picture and save it (Ctrl+Return)")
        self.upscale_button.setMinimumWidth(120)
        self.upscale_button.clicked.connect(self.upscale)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop the upscale (Esc); nothing is written")
        self.cancel_button.clicked.connect(self.cancel)
        row2.addWidget(self.progress, 1)
        row2.addWidget(self.run_label)
        row2.addWidget(self.cancel_button)
        row2.addWidget(self.preview_button)
        row2.addWidget(self.upscale_button)
        lay.addLayout(row2)
        return box

    def _action(self, menu: object, text: str, slot: object,
                keys: tuple[QKeySequence | str | QKeySequence.StandardKey, ...] = (),
                holder: QWidget | None = None) -> QAction:
        a = QAction(text, holder or self)
        if keys:
            a.setShortcuts([QKeySequence(k) for k in keys])
        a.triggered.connect(slot)
        if holder is not None:  # only while the focus is inside ``holder``
            a.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            holder.addAction(a)
        else:
            self.addAction(a)
        if menu is not None:
            menu.addAction(a)
        return a

    def _build_actions(self) -> None:
        bar = self.menuBar()
        f = bar.addMenu("&File")
        self._action(f, "&Open\u2026", self.open_dialog, (QKeySequence.StandardKey.Open,))
        self._action(f, "&Paste picture", self.paste, (QKeySequence.StandardKey.Paste,))
        self._action(f, "Convert a &folder\u2026", self._choose_batch_folder)
        f.addSeparator()
        self.preview_action = self._action(f, "&Preview the part in view", self.preview,
                                           ("P",))
        self.upscale_action = self._action(f, "&Upscale whole picture", self.upscale,
                                           ("Ctrl+Return", "Ctrl+Enter"))
        self.cancel_action = self._action(f, "&Cancel", self.cancel, ("Esc",))
        f.addSeparator()
        self._action(f, "&Quit", self.close, (QKeySequence.StandardKey.Quit, "Ctrl+Q"))
        v = bar.addMenu("&View")
        self._action(v, "&Side by side", lambda: self.set_compare_mode("side"))
        self._action(v, "S&lider", lambda: self.set_compare_mode("wipe"))
        self._action(v, "&Flip before / after", self.flip, ("Space",), holder=self.picture_tab)
        v.addSeparator()
        self._action(v, "Zoom &in", self.compare.zoom_in, ("Ctrl+=", "Ctrl++"))
        self._action(v, "Zoom &out", self.compare.zoom_out, ("Ctrl+-",))
        self._action(v, "&Fit", self.compare.fit, ("Ctrl+0",))
        self._action(v, "&100 %", lambda: self.compare.set_zoom(1.0), ("Ctrl+1",))
        self._action(v, "&200 %", lambda: self.compare.set_zoom(2.0), ("Ctrl+2",))
        self._action(v, "&400 %", lambda: self.compare.set_zoom(4.0), ("Ctrl+4",))
        m = bar.addMenu("&Models")
        self._action(m, "&Manage models\u2026", self.show_models)
        h = bar.addMenu("&Help")
        self._action(h, "Open &sample picture", self.open_sample)
        self._action(h, "&About Finescale", self.show_about)

    # --- opening ----------------------------------------------------------------------------
    def open_dialog(self) -> None:
        """Ask for a picture and open it."""
        start = self.settings.get("last_dir") or QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.PicturesLocation)
        path, _ = QFileDialog.getOpenFileName(self, "Open a picture", start, IMAGE_FILTER)
        if path:
            self.open_paths([Path(path)])

    def open_sample(self) -> None:
        """Open the sample picture shipped with Finescale."""
        self.open_paths([paths.resource_path("sample.png")])

    def open_paths(self, items: list[Path]) -> None:
        """Open dropped / given files: a picture opens here, a folder goes to the batch tab."""
        if not items:
            return
        folders = [p for p in items if p.is_dir()]
        if folders:
            self.batch.set_input_folder(folders[0])
            self.tabs.setCurrentWidget(self.batch)
            self.message.show_message(f"{folders[0]} is set as the batch's input folder; "
                                      "press Start batch to convert it.", error=False)
            return
        if self._whole_picture_running():
            self.message.show_message("An upscale is running; cancel it (Esc) before opening "
                                      "another picture.", error=True)
            return
        first = items[0]
        self.settings.set("last_dir", str(first.parent))
        self.tabs.setCurrentWidget(self.picture_tab)
        if len(items) > 1:
            self.message.show_message(f"Opened {first.name}; to upscale {len(items)} pictures "
                                      "at once, drop their folder to use the Batch tab.",
                                      error=False)
        else:
            self.message.hide()
        self._start_load(LoadRequest(path=first))

    def paste(self) -> None:
        """Open the picture (or picture files) on the clipboard."""
        mime = QGuiApplication.clipboard().mimeData()
        files = local_paths(mime) if mime is not None else []
        if files:
            self.open_paths(files)
            return
        image = QGuiApplication.clipboard().image()
        if image.isNull():
            self.message.show_message("The clipboard holds no picture.", error=True)
            return
        if self._whole_picture_running():
            self.message.show_message("An upscale is running; cancel it (Esc) before pasting "
                                      "a picture.", error=True)
            return
        self.message.hide()
        self._start_load(LoadRequest(photo=photo_from_qimage(image), name="Pasted picture"))

    def _start_load(self, req: LoadRequest) -> None:
        self._load = req
        self.statusBar().showMessage(f"Opening {req.path.name if req.path else req.name}\u2026")
        self._thread.worker.submit(req)  # type: ignore[attr-defined]

    def _on_loaded(self, rid: int, picture: Picture) -> None:
        if self._load is None or rid != self._load.id:
            return
        self._load = None
        self.session.open(picture)
        w, h = picture.display.width, picture.display.height
        self.compare.set_before(picture.display, self._original_label(picture))
        self.options.set_input_size((w, h))
        self.progress.setValue(0)
        self.run_label.setText("")
        self.statusBar().showMessage(f"{picture.name}: {w:,} \u00d7 {h:,} pixels.")
        self._update_title()
        self._update_buttons()

    def open_pair(self, original: Path, result: Path) -> None:
        """Show a finished batch file: ``original`` beside its ``result``, in the compare view."""
        if self._whole_picture_running():
            self.message.show_message("An upscale is running; cancel it (Esc) before opening "
                                      "another picture.", error=True)
            return
        self.tabs.setCurrentWidget(self.picture_tab)
        self.message.hide()
        self._start_load(LoadRequest(path=original, result=result))

    def _on_paired(self, rid: int, picture: Picture, out: Picture) -> None:
        if self._load is None or rid != self._load.id:
            return
        self._on_loaded(rid, picture)
        self.session.finished_upscale(UpscaleResult(None, out.path, out.photo, out.display,
                                                    0.0, out.name))
        self._show_latest()
        self.statusBar().showMessage(f"{picture.name} beside its result {out.name}.")
        self._update_title()
        self._update_buttons()

    # --- upscaling --------------------------------------------------------------------------
    @property
    def picture(self) -> Picture | None:
        """The picture shown."""
        return self.session.picture

    @property
    def result(self) -> UpscaleResult | None:
        """The last whole-photo result of the picture shown (None before one)."""
        return self.session.result

    @property
    def _job(self) -> UpscaleJob | PreviewJob | None:
        return self.session.job

    def _busy(self) -> bool:
        return self.session.job is not None

    def _whole_picture_running(self) -> bool:
        """True while a whole upscale runs; a preview under way is simply dropped."""
        if self.session.running(PreviewJob):
            self.session.job.cancel.set()
            self._end_job()
            self.run_label.setText("")
        return self.session.running(UpscaleJob)

    def output_folder(self, picture: Picture) -> Path:
        """Where the result of ``picture`` goes: the chosen folder, else the original's
        folder when it is writable, else Pictures/Finescale."""
        chosen = self.out_edit.text().strip()
        if chosen:
            return Path(chosen).expanduser()
        if picture.path is not None:
            folder = picture.path.parent
            inside_resources = folder.resolve() == paths.resources_dir().resolve()
            if os.access(folder, os.W_OK) and not inside_resources:
                return folder
        pictures = QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.PicturesLocation) or str(Path.home())
        return Path(pictures) / APP_NAME

    def _ready_to_run(self) -> bool:
        """True when a picture and a model are there; else say what is missing."""
        if self.picture is None:
            self.message.show_message("Open a picture first (drop one on the window, or "
                                      "Ctrl+O).", error=True)
            return False
        if not self.options.choice().model:
            self.message.show_message("No model is available; open Models \u2192 Manage "
                                      "models to download one.", error=True)
            return False
        return True

    def upscale(self) -> None:
        """Upscale the whole picture shown with the chosen model and options."""
        if self.session.running(UpscaleJob) or not self._ready_to_run():
            return
        assert self.picture is not None
        if self.session.running(PreviewJob):  # the whole photo wins over a preview
            self.session.job.cancel.set()
            self.session.end()
        c = self.options.choice()
        size = self.options.output_size() or (self.picture.display.width * c.model_scale,
                                              self.picture.display.height * c.model_scale)
        if not self._ready_for(c, size):
            return
        folder = self.output_folder(self.picture)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.message.show_message(f"Cannot create the folder {folder}: "
                                      f"{(e.strerror or str(e)).lower()}.", error=True)
            return
        self.message.hide()
        job = UpscaleJob(self.picture, c.model, folder, c.out_format, c.quality, c.scale,
                         c.width, c.height, c.device, clean_up=c.clean_up)
        self.session.start(job)
        self._canvas = self.picture.display.copy()
        self._canvas.dim(PREVIEW_DIM)
        self.compare.set_after(self._canvas, "Upscaling\u2026", scene=size)
        self._begin_run("Upscaling the whole picture\u2026")
        self._thread.worker.submit(job)  # type: ignore[attr-defined]

    def job_size(self, c: OutputChoice, size: tuple[int, int]) -> sizing.JobSize:
        """The estimate for upscaling the picture shown to ``size`` with choice ``c``."""
        import torch

        try:
            family = catalog.get(c.model).arch
        except Exception:  # noqa: BLE001 - a checkpoint file or an unknown id: no ETA
            family = ""
        gpu = c.device != "cpu" and torch.cuda.is_available()
        photo = self.picture.photo
        return sizing.estimate(photo.width, photo.height, int(size[0]), int(size[1]),
                               family=family, device_type="cuda" if gpu else "cpu",
                               channels=3 + (photo.alpha is not None), bits=photo.bit_depth)

    def _ready_for(self, c: OutputChoice, size: tuple[int, int]) -> bool:
        """Ask before a job of more than a few minutes or above what fits in memory."""
        est = self.job_size(c, size)
        limit = sizing.default_output_limit(channels=est.channels, bits=est.bits)
        too_big = est.out_width * est.out_height > limit
        slow = est.seconds is not None and est.seconds > sizing.ASK_ABOVE_SECONDS
        if not (too_big or slow):
            return True
        why = (f"This is more than fits in the free memory ({limit / 1e6:.0f} MP)."
               if too_big else "This will take a while.")
        return self.confirm(f"The result will be {est.describe()}. {why} Upscale anyway?")

    def confirm(self, text: str) -> bool:
        """Ask a yes/no question (tests replace this)."""
        answer = QMessageBox.question(self, APP_NAME, text)
        return answer == QMessageBox.StandardButton.Yes

    def preview(self) -> None:
        """Upscale only the part of the picture in view (at most 256 x 256 input pixels)
        and show it over the original: what the model does, in seconds, nothing written."""
        if self.session.running(UpscaleJob):
            self.message.show_message("An upscale is running; cancel it (Esc) before "
                                      "previewing.", error=True)
            return
        if not self._ready_to_run():
            return
        self._start_preview(self._region_in_view(), fit=True)

    def preview_rect(self, rect: QRectF) -> None:
        """Preview the rectangle dragged with Shift (scene pixels); a large one is cut to
        the preview's size around its centre."""
        if self.session.running(UpscaleJob) or not self._ready_to_run():
            return
        self._start_preview(self._scene_to_region(rect), fit=True)

    def _scene_to_region(self, rect: QRectF) -> tuple[int, int, int, int]:
        pic = self.picture
        assert pic is not None
        fx = pic.display.width / self.compare.state.scene_w
        fy = pic.display.height / self.compare.state.scene_h
        return preview_region((rect.x() * fx, rect.y() * fy, rect.width() * fx,
                               rect.height() * fy), pic.display.width, pic.display.height)

    def _region_in_view(self) -> tuple[int, int, int, int]:
        return self._scene_to_region(self.compare.visible_scene_rect())

    def _start_preview(self, region: tuple[int, int, int, int], *, fit: bool) -> None:
        if self.session.running(PreviewJob):
            self.session.job.cancel.set()
        c = self.options.choice()
        job = PreviewJob(self.picture, c.model, region, c.device, c.clean_up)
        self._fit_preview = fit
        self.message.hide()
        self.session.start(job)
        self._begin_run(f"Previewing a {region[2]} \u00d7 {region[3]} region\u2026")
        self._thread.worker.submit(job)  # type: ignore[attr-defined]

    def _begin_run(self, text: str) -> None:
        self._pct = -1
        self.progress.setRange(0, 0)
        self.run_label.setText("Starting\u2026")
        self.statusBar().showMessage(text)  # replaces what the last run left there
        self._update_buttons()

    def _on_options_changed(self) -> None:
        self._update_buttons()
        if self.picture is None or self.session.running(UpscaleJob):
            return
        c = self.options.choice()
        if c.model and self.session.preview_outdated(PreviewKey(c.model, c.clean_up, c.device)):
            self._rerun_timer.start()  # a slider drag re-runs once it rests

    def _rerun_preview(self) -> None:
        """Run the preview again, same region, with the model and clean-up now chosen."""
        if self.picture is None or self.session.running(UpscaleJob):
            return
        c = self.options.choice()
        if not c.model or not self.session.preview_outdated(
                PreviewKey(c.model, c.clean_up, c.device)):
            return
        job = self.session.job if self.session.running(PreviewJob) else None
        region = job.region if job is not None else self.session.preview.region
        self._start_preview(region, fit=False)

    def cancel(self) -> None:
        """Stop the running upscale or preview within one layer; nothing is written."""
        if self.session.job is not None:
            self.session.job.cancel.set()
            self.run_label.setText("Cancelling\u2026")
        elif self.batch.is_running() and self.tabs.currentWidget() is self.batch:
            self.batch.cancel()

    def _current(self, rid: int) -> bool:
        return self.session.is_current(rid)

    def _on_status(self, rid: int, text: str) -> None:
        if self._current(rid):
            self.run_label.setText(text)
            self.statusBar().showMessage(text)

    def _on_download(self, rid: int, done: int, total: int) -> None:
        if not self._current(rid):
            return
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
            self.run_label.setText(f"Downloading the model: {done / 1e6:.1f} of "
                                   f"{total / 1e6:.1f} MB")
        else:
            self.run_label.setText(f"Downloading the model: {done / 1e6:.1f} MB")

    def _on_progress(self, rid: int, done: int, total: int, eta: float) -> None:
        if self._current(rid):
            self._tiles = (done, total)

    def _on_fraction(self, rid: int, fraction: float, eta: float) -> None:
        if not self._current(rid):
            return
        pct = int(100 * fraction)
        if pct == self._pct and fraction < 1:
            return  # the screen changes once per per cent, however often layers end
        self._pct = pct
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(1000 * fraction))
        what = "Preview" if self.session.running(PreviewJob) else "Upscaling"
        left = eta_text(eta) if eta >= 0 and fraction < 1 else ""
        done, total = self._tiles
        tiles = f" (tile {min(done + 1, total)} of {total})" if total > 1 else ""
        self.run_label.setText(f"{what} {pct} %{tiles}" + (f" \u2014 {left}" if left else ""))
        if self.session.running(UpscaleJob):
            self.compare.set_after_label(f"Upscaling  {pct} %")

    def _on_tile(self, rid: int, y0: int, x0: int, rgb: np.ndarray) -> None:
        if self._current(rid) and self._canvas is not None:
            self._canvas.update_region(y0, x0, rgb)
            self.compare.refresh()

    def _end_job(self) -> None:
        self.session.end()
        self._canvas = None
        self._tiles = (0, 0)
        self._pct = -1
        self.progress.setRange(0, 1000)
        self._update_buttons()

    def _on_finished(self, rid: int, result: UpscaleResult) -> None:
        if not self._current(rid):
            return
        self._end_job()
        self.session.finished_upscale(result)
        w, h = result.display.width, result.display.height
        self._show_latest()
        self.progress.setValue(1000)
        self.run_label.setText(f"Done in {result.seconds:.1f} s")
        self.statusBar().showMessage(f"Saved {result.path}")
        self.message.show_message(f"Saved {result.path.name} ({w:,} \u00d7 {h:,}) in "
                                  f"{result.path.parent}.", error=False)
        self._update_title()
        self._update_buttons()
        self.options.refresh_models()  # a model may have been downloaded on the way

    def _on_previewed(self, rid: int, preview: PreviewResult) -> None:
        if not self._current(rid):
            return
        self._end_job()
        self.session.finished_preview(preview)
        self._show_latest()
        if self._fit_preview:
            x, y, w, h = (v * preview.scale for v in preview.region)
            self.compare.show_scene_rect(QRectF(x, y, w, h))
        self.progress.setValue(1000)
        self.run_label.setText(f"Preview in {preview.seconds:.1f} s")
        rw, rh = preview.region[2:]
        self.statusBar().showMessage(
            f"Preview of a {rw} \u00d7 {rh} region with {preview.model_name}; change the model "
            "or the clean-up to compare, or press Upscale for the whole picture.")
        self.options.refresh_models()

    def _on_failed(self, rid: int, text: str) -> None:
        if self._load is not None and rid == self._load.id:
            self._load = None
            self.statusBar().showMessage("Could not open the picture.")
            self.message.show_message(text, error=True)
            return
        if not self._current(rid):
            return
        self._abandon_job("Failed.")
        self.message.show_message(text, error=True)
        self.options.refresh_models()

    def _on_cancelled(self, rid: int) -> None:
        if self._load is not None and rid == self._load.id:
            self._load = None
            return
        if not self._current(rid):
            return
        self._abandon_job("Cancelled; nothing was written.")
        self.statusBar().showMessage("Cancelled; nothing was written.")

    def _abandon_job(self, label: str) -> None:
        """A run that produced nothing: what was shown before it comes back."""
        self._end_job()
        self._show_latest()
        self.progress.setValue(0)
        self.run_label.setText(label)

    def _show_latest(self) -> None:
        """Show the picture with its last finished output: the whole result, the preview
        over the original, or nothing beside the original."""
        pic, s = self.picture, self.session
        if pic is None:
            return
        if s.latest == "result" and s.result is not None:
            r = s.result
            w, h = r.display.width, r.display.height
            self.compare.set_after(r.display, f"{r.model_name}  {w:,} \u00d7 {h:,}",
                                   scene=(w, h))
        elif s.latest == "preview" and s.preview is not None:
            p = s.preview
            k = p.scale
            x, y, w, h = p.region
            self.compare.set_after(self._preview_base(), _preview_label(p),
                                   scene=(pic.display.width * k, pic.display.height * k),
                                   inset=p.display, inset_rect=(x * k, y * k, w * k, h * k))
        elif self.compare.after is not None and self.compare.before is not None:
            self.compare.set_before(pic.display, self._original_label(pic))
        self._show_before()
        self._update_buttons()

    def _show_before(self) -> None:
        """The "before" side: the original, or the previous preview of the same region
        (another model or clean-up) when "Previous preview" is on: model against model."""
        pic, s = self.picture, self.session
        if pic is None or self.compare.before is None:
            return
        rival = s.rival if s.latest == "preview" and self.rival_button.isChecked() else None
        if rival is not None:
            k = rival.scale
            x, y, w, h = rival.region
            self.compare.set_before_layer(self._preview_base(), _preview_label(rival),
                                          inset=rival.display,
                                          inset_rect=(x * k, y * k, w * k, h * k))
        elif self.compare.before.inset is not None:
            self.compare.set_before_layer(pic.display, self._original_label(pic))

    def _original_label(self, picture: Picture) -> str:
        return _original_label(picture, self.compare.smooth_before)

    def _preview_base(self) -> DisplayImage:
        """The original, dimmed: what surrounds a preview (made once per picture)."""
        pic = self.picture
        assert pic is not None
        if self._base_for is not pic:
            self._base = pic.display.copy()
            self._base.dim(PREVIEW_DIM)
            self._base_for = pic
        return self._base

    # --- views ------------------------------------------------------------------------------
    def set_compare_mode(self, mode: str) -> None:
        """Show original and result side by side (``"side"``) or with a slider (``"wipe"``)."""
        self.compare.set_mode(mode)
        self.settings.set("compare_mode", mode)
        self._sync_mode_buttons()

    def set_original_as(self, how: str) -> None:
        """Draw the original enlarged ``"pixels"`` (nearest neighbour) or ``"smooth"``
        (Lanczos); remembered between runs."""
        self.compare.set_original_smooth(how == "smooth")
        self.settings.set("original_as", how)
        before, pic = self.compare.before, self.picture
        if before is not None and before.inset is None and pic is not None:
            self.compare.set_before_layer(before.image, _original_label(pic, how == "smooth"))
        index = self.original_combo.findData(how)
        if index >= 0 and index != self.original_combo.currentIndex():
            self.original_combo.setCurrentIndex(index)

    def _sync_mode_buttons(self) -> None:
        self.side_button.setChecked(self.compare.mode == "side")
        self.wipe_button.setChecked(self.compare.mode == "wipe")

    def flip(self) -> None:
        """Swap original and result."""
        self.compare.flip()

    def _on_zoom(self, zoom: float) -> None:
        self.zoom_label.setText(f"{zoom * 100:.0f} %" if self.compare.has_picture() else "")

    def show_models(self) -> None:
        """Open the model manager."""
        if self._models_dialog is None:
            self._models_dialog = ModelsDialog(self)
            self._models_dialog.models_changed.connect(self.options.refresh_models)
        self._models_dialog.refresh()
        self._models_dialog.show()
        self._models_dialog.raise_()
        self._models_dialog.activateWindow()

    def show_about(self) -> None:
        """The About box: version, licences and papers of the models."""
        QMessageBox.about(self, "About Finescale", about_html())

    def _choose_out_dir(self) -> None:
        start = self.out_edit.text() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Save results in", start)
        if folder:
            self.out_edit.setText(folder)
            self.settings.set("out_dir", folder)

    def _choose_batch_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Convert the pictures of",
                                                  str(Path.home()))
        if folder:
            self.open_paths([Path(folder)])

    def _show_result_folder(self) -> None:
        if self.result is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.result.path.parent)))

    def _update_title(self) -> None:
        if self.picture is None:
            self.setWindowTitle(APP_NAME)
        elif self.result is not None:
            self.setWindowTitle(f"{self.picture.name} \u2192 {self.result.path.name} "
                                f"\u2014 {APP_NAME}")
        else:
            self.setWindowTitle(f"{self.picture.name} \u2014 {APP_NAME}")

    def _update_buttons(self) -> None:
        busy = self._busy()
        can = (self.picture is not None and not self.session.running(UpscaleJob)
               and bool(self.options.model_id()))
        for widget in (self.upscale_button, self.upscale_action, self.preview_button,
                       self.preview_action):
            widget.setEnabled(can)
        self.cancel_button.setEnabled(busy)
        rival = self.session.rival is not None and self.session.latest == "preview"
        self.rival_button.setEnabled(rival)
        self.show_button.setEnabled(self.result is not None and not busy)

    # --- drag and drop ----------------------------------------------------------------------
    def _drop_text(self, items: list[Path]) -> str:
        if any(p.is_dir() for p in items):
            return "Drop to convert this folder"
        return "Drop to open" if len(items) == 1 else f"Drop to open the first of {len(items)}"

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's naming
        items = local_paths(event.mimeData())
        if not items:
            event.ignore()
            return
        event.acceptProposedAction()
        self.overlay.text = self._drop_text(items)
        self.overlay.setGeometry(self.centralWidget().rect())
        self.overlay.raise_()
        self.overlay.show()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802
        self.overlay.hide()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.overlay.hide()
        items = local_paths(event.mimeData())
        if not items:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_paths(items)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.overlay.isVisible():
            self.overlay.setGeometry(self.centralWidget().rect())

    # --- closing ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every worker, cancelling what runs, and save the settings (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.settings.set_geometry(self.saveGeometry())
        self.settings.set("out_dir", self.out_edit.text().strip())
        pending = [r.cancel for r in (self.session.job, self._load) if r is not None]
        self._thread.stop(pending)
        self.batch.shutdown()
        if self._models_dialog is not None:
            self._models_dialog.shutdown()
            self._models_dialog.close()
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Closing the window stops the workers cleanly before it goes."""
        self.shutdown()
        super().closeEvent(event)
