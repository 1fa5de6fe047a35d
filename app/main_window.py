"""The main window: drop a photo, pick a model, preview, upscale, compare; or convert a folder.

The window is a view. The Picture tab's state -- the picture, its result and preview, the job
and its state machine, what the progress line says -- lives in a Qt-free
:class:`~app.session.Session`; the window turns user actions into its transitions, hands the
requests to one :class:`~app.worker.RequestWorker` and renders the session after each of the
worker's typed messages. It never runs engine code itself, so it stays responsive.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRectF, QStandardPaths, Qt, QTimer, QUrl
from PySide6.QtGui import (
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QFileDialog,
    QFrame,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from sr_core import formats, paths

from .bars import RunBar, ViewBar
from .batch_panel import BatchPanel
from .compare import CompareView
from .menus import build_menus
from .messages import Cancelled, Failed, Finished, Reply
from .models_dialog import ModelsDialog
from .options_panel import OptionsPanel, OutputChoice
from .outputs import OutputsView
from .session import Kind, Phase, PreviewKey, Session, preview_region
from .settings import Settings
from .tasks import Engines, LoadRequest, Picture, PreviewJob, UpscaleJob, UpscaleResult, WarmUp
from .widgets import DropOverlay, MessageBar, about_html, local_paths, photo_from_qimage
from .worker import WorkerThread

__all__ = ["APP_NAME", "MainWindow", "about_html"]

APP_NAME = "Finescale"
#: The open dialog's patterns: every suffix sr_core.formats says this install reads.
IMAGE_FILTER = f"Pictures ({formats.dialog_filter()});;All files (*)"
PLACEHOLDER = ("Drop a photo anywhere on this window\n"
               "or open one with Ctrl+O, or paste one with Ctrl+V.\n\n"
               "Help \u2192 Open sample picture gives you one to try.")
#: A preview re-runs this long after the model or the clean-up last changed (a slider drag
#: runs it once, at its end).
RERUN_DELAY_MS = 300
_BUSY = "An upscale is running; cancel it (Esc) before {}."


class MainWindow(QMainWindow):
    """Finescale's window. ``settings`` defaults to the user's (QSettings)."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.session = Session()
        self._engines = Engines()  # the worker's model and tile cache, kept between jobs
        self._load: LoadRequest | None = None
        self._fit_preview = False
        self._models_dialog: ModelsDialog | None = None
        self._closed = False
        self._rerun_timer = QTimer(self)  # re-runs the preview once the choices rest
        self._rerun_timer.setSingleShot(True)
        self._rerun_timer.setInterval(RERUN_DELAY_MS)
        self._rerun_timer.timeout.connect(self._rerun_preview)
        self._thread = WorkerThread("finescale-upscale")
        self._thread.worker.message.connect(self._on_message)
        self._build()
        build_menus(self)
        self.setAcceptDrops(True)
        for child in self.findChildren(QLineEdit) + self.findChildren(QAbstractSpinBox):
            child.setAcceptDrops(False)  # a drop anywhere opens the picture
        self._render()
        geometry = self.settings.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 820)
        self.set_compare_mode(self.settings.get("compare_mode"))
        self.set_original_as(self.settings.get("original_as"))
        self._thread.submit(WarmUp())  # import torch in the worker now, not on the first click

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
        self.outputs = OutputsView(self.compare, self.session)
        self.view_bar = ViewBar(self.compare, self)
        self.run_bar = RunBar(self.settings.get("out_dir"), self)
        self._wire_bars()
        self.picture_tab = QWidget(self)
        pic = QVBoxLayout(self.picture_tab)
        pic.setContentsMargins(0, 0, 0, 0)
        pic.addWidget(self.view_bar)
        pic.addWidget(self.compare, 1)
        pic.addWidget(self.run_bar)

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
        self.message = MessageBar(central)  # floats over the picture or the batch list
        self.message.follow((self.compare, self.batch.table, self.tabs), lambda: (
            self.batch.table if self.tabs.currentWidget() is self.batch else self.compare))
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.batch.running_changed.connect(lambda running: self.statusBar().showMessage(
            "Converting the folder\u2026" if running else
            "Batch ended; the summary is in the Batch tab."))
        self.batch.open_pair.connect(self.open_pair)
        self.overlay = DropOverlay(central)
        self.statusBar().showMessage("Ready.")

    def _wire_bars(self) -> None:
        v, r = self.view_bar, self.run_bar
        v.open_button.clicked.connect(self.open_dialog)
        v.paste_button.clicked.connect(self.paste)
        v.side_button.clicked.connect(lambda: self.set_compare_mode("side"))
        v.wipe_button.clicked.connect(lambda: self.set_compare_mode("wipe"))
        v.flip_button.clicked.connect(self.flip)
        v.original_combo.currentIndexChanged.connect(
            lambda: self.set_original_as(v.original_combo.currentData()))
        v.rival_button.clicked.connect(self._show_before)
        r.out_dir_changed.connect(lambda folder: self.settings.set("out_dir", folder))
        r.show_button.clicked.connect(self._show_result_folder)
        r.preview_button.clicked.connect(self.preview)
        r.upscale_button.clicked.connect(self.upscale)
        r.cancel_button.clicked.connect(self.cancel)
        # the widgets tests and the screenshot script reach for
        self.original_combo, self.rival_button = v.original_combo, v.rival_button
        self.zoom_label, self.out_edit, self.show_button = v.zoom_label, r.out_edit, r.show_button
        self.progress, self.run_label = r.progress, r.run_label
        self.preview_button, self.upscale_button = r.preview_button, r.upscale_button
        self.cancel_button, self.side_button, self.wipe_button = (r.cancel_button,
                                                                  v.side_button, v.wipe_button)

    def _on_tab_changed(self, index: int) -> None:
        on_batch = self.tabs.widget(index) is self.batch
        # The output size line is about the picture shown; a batch's files each have theirs.
        pic = self.session.picture
        self.options.set_input_size(None if on_batch or pic is None else
                                    (pic.display.width, pic.display.height))
        self.message.place()

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
        if self._whole_picture_running("opening another picture"):
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
        if self._whole_picture_running("pasting a picture"):
            return
        self.message.hide()
        self._start_load(LoadRequest(photo=photo_from_qimage(image), name="Pasted picture"))

    def open_pair(self, original: Path, result: Path) -> None:
        """Show a finished batch file: ``original`` beside its ``result``, in the compare view."""
        if self._whole_picture_running("opening another picture"):
            return
        self.tabs.setCurrentWidget(self.picture_tab)
        self.message.hide()
        self._start_load(LoadRequest(path=original, result=result))

    def _start_load(self, req: LoadRequest) -> None:
        req.engines = self._engines
        self._load = req
        self.statusBar().showMessage(f"Opening {req.path.name if req.path else req.name}\u2026")
        self._thread.submit(req)

    def _on_loaded(self, picture: Picture, out: Picture | None) -> None:
        self.session.open(picture)
        self.compare.set_before(picture.display, self.outputs.original_label())
        self.options.set_input_size((picture.display.width, picture.display.height))
        if out is not None:
            self.session.show_pair(UpscaleResult(None, out.path, out.photo, out.display,
                                                 0.0, out.name))
            self._show_latest()
        self._render()

    def _whole_picture_running(self, doing: str) -> bool:
        """True (and said) while a whole upscale runs; a preview under way is dropped."""
        running = self.session.drop_preview()
        if running:
            self.message.show_message(_BUSY.format(doing), error=True)
        self._render()
        return running

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

    def _ready_to_run(self) -> bool:
        """True when a picture and a model are there; else say what is missing."""
        missing = self.session.missing(self.options.choice().model)
        if missing:
            self.message.show_message(missing, error=True)
        return not missing

    def output_folder(self, picture: Picture) -> Path:
        """Where the result of ``picture`` goes (see :meth:`Session.output_folder`)."""
        pictures = QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.PicturesLocation) or str(Path.home())
        return self.session.output_folder(self.out_edit.text(), pictures,
                                          paths.resources_dir())

    def upscale(self) -> None:
        """Upscale the whole picture shown with the chosen model and options."""
        if self.session.running(Kind.UPSCALE) or not self._ready_to_run():
            return
        assert self.picture is not None
        c = self.options.choice()
        size = self.options.output_size() or (self.picture.display.width * c.model_scale,
                                              self.picture.display.height * c.model_scale)
        if not self._ready_for(c, size):
            return
        folder = self.output_folder(self.picture)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if self.session.phase is Phase.ASKING:
                self.session.decline()
            self.message.show_message(f"Cannot create the folder {folder}: "
                                      f"{(e.strerror or str(e)).lower()}.", error=True)
            return
        self.message.hide()
        job = UpscaleJob(self.picture, c.model, folder, c.out_format, c.quality, c.scale,
                         c.width, c.height, c.device, clean_up=c.clean_up,
                         engines=self._engines)
        self.session.start(job, Kind.UPSCALE)
        self.compare.set_after(self.session.canvas, "Upscaling\u2026", scene=size)
        self._thread.submit(job)
        self._render()

    def _ready_for(self, c: OutputChoice, size: tuple[int, int]) -> bool:
        """Ask before a job of more than a few minutes or above what fits in memory."""
        question = self.session.question(self.session.job_size(c.model, c.device, size))
        if question is None:
            return True
        self.session.ask(Kind.UPSCALE)
        if self.confirm(question):
            return True
        self.session.decline()
        return False

    def confirm(self, text: str) -> bool:
        """Ask a yes/no question (tests replace this)."""
        answer = QMessageBox.question(self, APP_NAME, text)
        return answer == QMessageBox.StandardButton.Yes

    def preview(self) -> None:
        """Upscale only the part of the picture in view (at most 256 x 256 input pixels)
        and show it over the original: what the model does, in seconds, nothing written."""
        if self.session.running(Kind.UPSCALE):
            self.message.show_message(_BUSY.format("previewing"), error=True)
            return
        if self._ready_to_run():
            self._start_preview(self._scene_to_region(self.compare.visible_scene_rect()),
                                fit=True)

    def preview_rect(self, rect: QRectF) -> None:
        """Preview the rectangle dragged with Shift (scene pixels); a large one is cut to
        the preview's size around its centre."""
        if not self.session.running(Kind.UPSCALE) and self._ready_to_run():
            self._start_preview(self._scene_to_region(rect), fit=True)

    def _scene_to_region(self, rect: QRectF) -> tuple[int, int, int, int]:
        d = self.picture.display
        fx, fy = d.width / self.compare.state.scene_w, d.height / self.compare.state.scene_h
        return preview_region((rect.x() * fx, rect.y() * fy, rect.width() * fx,
                               rect.height() * fy), d.width, d.height)

    def _start_preview(self, region: tuple[int, int, int, int], *, fit: bool) -> None:
        c = self.options.choice()
        job = PreviewJob(self.picture, c.model, region, c.device, c.clean_up,
                         engines=self._engines)
        self._fit_preview = fit
        self.message.hide()
        self.session.start(job, Kind.PREVIEW)
        self._thread.submit(job)
        self._render()

    def _on_options_changed(self) -> None:
        self._update_buttons()
        if self.picture is not None and not self.session.running(Kind.UPSCALE):
            c = self.options.choice()
            if c.model and self.session.preview_outdated(PreviewKey(c.model, c.clean_up,
                                                                    c.device)):
                self._rerun_timer.start()  # a slider drag re-runs once it rests

    def _rerun_preview(self) -> None:
        """Run the preview again, same region, with the model and clean-up now chosen."""
        if self.picture is None or self.session.running(Kind.UPSCALE):
            return
        c = self.options.choice()
        region = self.session.rerun_region()
        if c.model and region is not None and self.session.preview_outdated(
                PreviewKey(c.model, c.clean_up, c.device)):
            self._start_preview(region, fit=False)

    def cancel(self) -> None:
        """Stop the running upscale or preview within one layer; nothing is written."""
        if self.session.busy:
            self.session.cancel()
            self._render()
        elif self.batch.is_running() and self.tabs.currentWidget() is self.batch:
            self.batch.cancel()

    # --- the worker's messages --------------------------------------------------------------
    def _on_message(self, reply: Reply) -> None:
        if self._load is not None and reply.request is self._load:
            self._on_load_message(reply.message)
            return
        what = self.session.receive(reply)
        if what == "tile":
            self.compare.refresh()
        elif what in ("status", "progress"):
            if what == "status":
                self.statusBar().showMessage(self.session.status)
            if self.session.running(Kind.UPSCALE) and self.session.fraction is not None:
                self.compare.set_after_label(f"Upscaling  {int(100 * self.session.fraction)} %")
            self._render_run()
        elif what in ("done", "failed", "cancelled"):
            self._on_end(what)

    def _on_load_message(self, msg: object) -> None:
        if not isinstance(msg, Finished | Failed | Cancelled):
            return
        self._load = None
        if isinstance(msg, Finished):
            self._on_loaded(*msg.value)
            self.statusBar().showMessage(self.session.status)
        elif isinstance(msg, Failed):
            self.statusBar().showMessage("Could not open the picture.")
            self.message.show_message(msg.text, error=True)

    def _on_end(self, what: str) -> None:
        s = self.session
        self._show_latest()
        self.statusBar().showMessage(s.status)
        if what == "done" and s.latest == "preview":
            if self._fit_preview:
                x, y, w, h = (v * s.preview.scale for v in s.preview.region)
                self.compare.show_scene_rect(QRectF(x, y, w, h))
        elif what == "done":
            r = s.result
            self.message.show_message(f"Saved {r.path.name} ({r.display.width:,} \u00d7 "
                                      f"{r.display.height:,}) in {r.path.parent}.", error=False)
        elif what == "failed":
            self.message.show_message(s.error, error=True)
        if what != "cancelled":
            self.options.refresh_models()  # a model may have been downloaded on the way
        self._render()

    # --- rendering the session --------------------------------------------------------------
    def _render(self) -> None:
        self._render_run()
        self.setWindowTitle(self.session.title(APP_NAME))
        self._update_buttons()

    def _render_run(self) -> None:
        self.run_bar.show_progress(self.session.fraction, self.session.label)
        if self.session.busy and self.session.label == "Starting\u2026":
            self.statusBar().showMessage(self.session.status)  # replaces the last run's

    def _show_latest(self) -> None:
        self.outputs.show_latest(self.rival_button.isChecked())
        self._update_buttons()

    def _show_before(self) -> None:
        self.outputs.show_before(self.rival_button.isChecked())
        self._update_buttons()

    def _update_buttons(self) -> None:
        s = self.session
        can = (self.picture is not None and not s.running(Kind.UPSCALE)
               and bool(self.options.model_id()))
        for widget in (self.upscale_button, self.upscale_action, self.preview_button,
                       self.preview_action):
            widget.setEnabled(can)
        self.cancel_button.setEnabled(s.busy)
        self.rival_button.setEnabled(s.rival is not None and s.latest == "preview")
        self.show_button.setEnabled(self.result is not None and not s.busy)

    # --- views ------------------------------------------------------------------------------
    def set_compare_mode(self, mode: str) -> None:
        """Show original and result side by side (``"side"``) or with a slider (``"wipe"``)."""
        self.compare.set_mode(mode)
        self.settings.set("compare_mode", mode)
        self.view_bar.side_button.setChecked(self.compare.mode == "side")
        self.view_bar.wipe_button.setChecked(self.compare.mode == "wipe")

    def set_original_as(self, how: str) -> None:
        """Draw the original enlarged ``"pixels"`` (nearest neighbour) or ``"smooth"``
        (Lanczos); remembered between runs."""
        self.compare.set_original_smooth(how == "smooth")
        self.settings.set("original_as", how)
        before = self.compare.before
        if before is not None and before.inset is None and self.picture is not None:
            self.compare.set_before_layer(before.image, self.outputs.original_label())
        index = self.original_combo.findData(how)
        if index >= 0 and index != self.original_combo.currentIndex():
            self.original_combo.setCurrentIndex(index)

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

    def choose_batch_folder(self) -> None:
        """Ask for a folder to convert on the Batch tab."""
        folder = QFileDialog.getExistingDirectory(self, "Convert the pictures of",
                                                  str(Path.home()))
        if folder:
            self.open_paths([Path(folder)])

    def _show_result_folder(self) -> None:
        if self.result is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.result.path.parent)))

    # --- drag and drop ----------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's naming
        self.overlay.enter(event, self.centralWidget().rect())

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802
        self.overlay.hide()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.open_paths(self.overlay.drop(event))

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
