"""The column of choices shared by single pictures and batches: model, output size, format
and quality, device. ``choice()`` returns them as one value the workers understand."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPaintEvent, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QVBoxLayout,
    QWidget,
)

from sr_core import catalog, formats
from sr_core.device import DEVICE_CHOICES
from sr_core.errors import FinescaleError

from .models_dialog import size_text
from .settings import Settings

#: The formats this install writes, as the engine names them, with their titles.
FORMATS = (("same", "Same as input"), *((f, formats.TITLES[f]) for f in formats.write_formats()))
_DEVICE_TITLES = {"auto": "Automatic (GPU if available)", "cpu": "CPU", "cuda": "CUDA GPU",
                  "mps": "Apple GPU (Metal)"}
#: The engine's device words with their titles (Apple's GPU only where there can be one).
DEVICES = tuple((d, _DEVICE_TITLES.get(d, d)) for d in DEVICE_CHOICES
                if d != "mps" or sys.platform == "darwin")
SIZE_MODES = ("model", "factor", "width", "height")


@dataclass(frozen=True)
class OutputChoice:
    """What to run and what to write: the user's current choices."""

    model: str
    model_scale: int
    scale: float | None
    width: int | None
    height: int | None
    out_format: str | None  # None: the input's own format
    quality: int
    device: str
    clean_up: float | None = None  # None: the model has no detail <-> clean-up control


def model_item_text(st: catalog.Status) -> str:
    """How a model appears in the picker: its title, its kind (photo or paper-exact) and,
    unless it is ready to use, what it needs (a download). Short enough to be read whole in
    the options column: an installed model carries no suffix, a built-in one no
    "(embedded)"."""
    e = st.entry
    title = e.title.removesuffix(" (embedded)") if e.embedded else e.title
    if e.kind:
        title = f"{title}  [{e.kind}]"
    if st.installed:
        return title
    if st.availability is catalog.Availability.AVAILABLE:
        return f"{title}  \u2014  download {size_text(e.size)}" if e.size else \
            f"{title}  \u2014  download"
    return f"{title}  \u2014  {st.availability}"


def model_short_text(st: catalog.Status) -> str:
    """The chosen model in the closed picker: title and kind (what it needs is said below)."""
    e = st.entry
    title = e.title.removesuffix(" (embedded)") if e.embedded else e.title
    return f"{title}  [{e.kind}]" if e.kind else title


class ModelCombo(QComboBox):
    """The model picker. Its list shows each model's full line (kind, download size); the
    closed box shows the chosen model's title and kind, which fit the options column, and
    elides in the middle, never at the end, when a window is narrower still."""

    SHORT_ROLE = Qt.ItemDataRole.UserRole + 1

    def shown_text(self) -> str:
        """The text the closed box shows for the current model."""
        return self.currentData(self.SHORT_ROLE) or self.currentText()

    def text_room(self) -> int:
        """Width in pixels the closed box has for its text."""
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        return self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                           QStyle.SubControl.SC_ComboBoxEditField, self).width()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's naming
        p = QStylePainter(self)
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        p.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, opt)
        opt.currentText = self.fontMetrics().elidedText(
            self.shown_text(), Qt.TextElideMode.ElideMiddle, self.text_room())
        p.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, opt)

    def list_width(self) -> int:
        """Width the open list needs to show every model's line whole."""
        fm = self.view().fontMetrics()
        widest = max((fm.horizontalAdvance(self.itemText(i)) for i in range(self.count())),
                     default=0)
        return widest + 48  # margins, a scroll bar

    def showPopup(self) -> None:  # noqa: N802
        self.view().setMinimumWidth(max(self.width(), self.list_width()))
        super().showPopup()


#: The clean-up slider's steps (0..100 -> 0.00..1.00).
CLEAN_UP_STEPS = 100


class OptionsPanel(QWidget):
    """Model picker, output size, format / quality and device, remembered in settings."""

    changed = Signal()
    manage_models = Signal()

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._input_size: tuple[int, int] | None = None

        # --- model ---
        self.model_combo = ModelCombo(self)
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(22)
        self.model_description = QLabel(self)
        self.model_description.setWordWrap(True)
        manage = QPushButton("Manage models\u2026", self)
        manage.clicked.connect(self.manage_models)
        # Detail <-> clean-up: a blend of the paper-exact model and its photo twin.
        self.clean_up = QSlider(Qt.Orientation.Horizontal, self)
        self.clean_up.setRange(0, CLEAN_UP_STEPS)
        self.clean_up.setSingleStep(5)
        self.clean_up.setPageStep(25)
        self.clean_up.setAccessibleName("Detail to clean-up")
        self.clean_up.setEnabled(False)  # until a model with both versions is chosen
        self.clean_up_label = QLabel(self)
        self.clean_up_reason = QLabel(self)
        self.clean_up_reason.setWordWrap(True)
        self.clean_up_reason.setEnabled(False)
        ends = QWidget(self)
        ends_row = QHBoxLayout(ends)
        ends_row.setContentsMargins(0, 0, 0, 0)
        ends_row.addWidget(QLabel("Detail", self))
        ends_row.addWidget(self.clean_up, 1)
        ends_row.addWidget(QLabel("Clean-up", self))
        model_box = QGroupBox("Model", self)
        lay = QVBoxLayout(model_box)
        lay.addWidget(self.model_combo)
        lay.addWidget(self.model_description)
        lay.addWidget(ends)
        lay.addWidget(self.clean_up_label)
        lay.addWidget(self.clean_up_reason)
        lay.addWidget(manage, 0, Qt.AlignmentFlag.AlignLeft)

        # --- output size ---
        self.size_mode = QComboBox(self)
        for text in ("Model's scale", "Scale factor", "Width", "Height"):
            self.size_mode.addItem(text)
        self.factor = QDoubleSpinBox(self)
        self.factor.setRange(0.1, 16.0)
        self.factor.setSingleStep(0.5)
        self.factor.setDecimals(2)
        self.factor.setSuffix(" \u00d7")
        self.width_spin = QSpinBox(self)
        self.height_spin = QSpinBox(self)
        for spin, unit in ((self.width_spin, " px wide"), (self.height_spin, " px high")):
            spin.setRange(1, 200_000)
            spin.setSingleStep(100)
            spin.setSuffix(unit)
        self.size_stack = QStackedWidget(self)
        self.size_stack.addWidget(QLabel("", self))
        for w in (self.factor, self.width_spin, self.height_spin):
            self.size_stack.addWidget(w)
        self.size_result = QLabel(self)
        size_box = QGroupBox("Output size", self)
        form = QFormLayout(size_box)
        form.addRow(self.size_mode)
        form.addRow(self.size_stack)
        form.addRow(self.size_result)

        # --- format ---
        self.format_combo = QComboBox(self)
        for key, text in FORMATS:
            self.format_combo.addItem(text, key)
        self.quality = QSpinBox(self)
        self.quality.setRange(1, 100)
        self.quality.setSuffix(" %")
        self.device_combo = QComboBox(self)
        for key, text in DEVICES:
            self.device_combo.addItem(text, key)
        out_box = QGroupBox("Output", self)
        out_form = QFormLayout(out_box)
        out_form.addRow("Format", self.format_combo)
        out_form.addRow("Quality", self.quality)
        out_form.addRow("Device", self.device_combo)

        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(model_box)
        col.addWidget(size_box)
        col.addWidget(out_box)
        col.addStretch(1)

        self._restore()
        self.refresh_models()
        self.model_combo.currentIndexChanged.connect(self._sync_clean_up)  # before _on_changed
        for sig in (self.model_combo.currentIndexChanged, self.size_mode.currentIndexChanged,
                    self.factor.valueChanged, self.width_spin.valueChanged,
                    self.height_spin.valueChanged, self.format_combo.currentIndexChanged,
                    self.quality.valueChanged, self.device_combo.currentIndexChanged,
                    self.clean_up.valueChanged):
            sig.connect(self._on_changed)
        self._on_changed()

    # --- models -----------------------------------------------------------------------------
    def refresh_models(self) -> None:
        """Re-read the catalogue (after a download, removal or import)."""
        wanted = self.model_combo.currentData() or self.settings.get("model") or _default_id()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        model: QStandardItemModel = self.model_combo.model()  # type: ignore[assignment]
        for e in catalog.entries():
            try:
                st = catalog.status(e.id)
            except FinescaleError:
                continue
            self.model_combo.addItem(model_item_text(st), e.id)
            item = model.item(self.model_combo.count() - 1)
            item.setData(model_short_text(st), ModelCombo.SHORT_ROLE)
            usable = st.installed or (e.downloadable and not e.embedded)
            if not usable:
                item.setEnabled(False)
            item.setToolTip(e.note or e.description)
        index = self.model_combo.findData(wanted)
        if index < 0 or not model.item(index).isEnabled():
            index = next((i for i in range(self.model_combo.count())
                          if model.item(i).isEnabled()), -1)
        self.model_combo.setCurrentIndex(index)
        self.model_combo.blockSignals(False)
        self._sync_clean_up()
        self._on_changed()

    def select_model(self, model_id: str) -> None:
        """Pick ``model_id`` in the model list (re-reading the catalogue if it is new)."""
        if self.model_combo.findData(model_id) < 0:
            self.refresh_models()
        index = self.model_combo.findData(model_id)
        if index >= 0:
            self.model_combo.setCurrentIndex(index)

    def model_id(self) -> str:
        """The chosen catalogue id ('' when the catalogue offers nothing usable)."""
        return self.model_combo.currentData() or ""

    # --- detail <-> clean-up ------------------------------------------------------------------
    def clean_up_value(self) -> float | None:
        """The slider's value in 0..1, or None when the chosen model has no such control."""
        if not self.clean_up.isEnabled():
            return None
        return self.clean_up.value() / CLEAN_UP_STEPS

    def _sync_clean_up(self) -> None:
        """Enable the slider for models with a paper-exact and a photo version, else say why."""
        mid = self.model_id()
        try:
            pair = catalog.clean_up_pair(mid) if mid else None
            reason = catalog.clean_up_unavailable(mid) if mid else "No model is chosen."
        except FinescaleError:
            pair, reason = None, "The chosen model is not in the catalogue."
        self.clean_up.blockSignals(True)
        self.clean_up.setEnabled(pair is not None)
        if pair is not None:
            stored = self.settings.get("clean_up")
            default = catalog.get(pair[1]).clean_up
            value = stored if stored >= 0 else (default if default is not None else 1.0)
            if catalog.get(mid).kind == "paper-exact" and stored < 0:
                value = 0.0
            self.clean_up.setValue(round(value * CLEAN_UP_STEPS))
        self.clean_up.blockSignals(False)
        self.clean_up_reason.setText(reason or "")
        self.clean_up_reason.setVisible(bool(reason))
        self._update_clean_up_label()

    def _update_clean_up_label(self) -> None:
        v = self.clean_up_value()
        self.clean_up_label.setVisible(v is not None)
        if v is not None:
            what = ("the paper-exact model" if v == 0 else "the photo model" if v == 1
                    else "a blend of both")
            self.clean_up_label.setText(f"Clean-up {v:.2f}: {what}")

    # --- sizes ------------------------------------------------------------------------------
    def set_input_size(self, size: tuple[int, int] | None) -> None:
        """The size ``(width, height)`` of the picture shown, for the output size line."""
        self._input_size = size
        self._update_size_line()

    def output_size(self) -> tuple[int, int] | None:
        """``(width, height)`` the current picture will have, if one is shown."""
        if self._input_size is None:
            return None
        from sr_core.engine import output_size

        c = self.choice()
        w, h = self._input_size
        try:
            oh, ow = output_size(h, w, c.model_scale, scale=c.scale, out_width=c.width,
                                 out_height=c.height)
        except FinescaleError:
            return None
        return ow, oh

    def _update_size_line(self) -> None:
        size = self.output_size()
        self.size_result.setText(f"\u2192 {size[0]:,} \u00d7 {size[1]:,} pixels" if size else "")
        self.size_result.setVisible(size is not None)

    # --- the choice -------------------------------------------------------------------------
    def choice(self) -> OutputChoice:
        """The current choices."""
        mid = self.model_id()
        try:
            scale = catalog.get(mid).scale if mid else 4
        except FinescaleError:
            scale = 4
        mode = SIZE_MODES[self.size_mode.currentIndex()]
        fmt = self.format_combo.currentData()
        return OutputChoice(
            model=mid, model_scale=scale,
            scale=self.factor.value() if mode == "factor" else None,
            width=self.width_spin.value() if mode == "width" else None,
            height=self.height_spin.value() if mode == "height" else None,
            out_format=None if fmt == "same" else fmt, quality=self.quality.value(),
            device=self.device_combo.currentData(), clean_up=self.clean_up_value())

    def _on_changed(self) -> None:
        mid = self.model_id()
        try:
            entry = catalog.get(mid) if mid else None
        except FinescaleError:
            entry = None
        self.model_description.setText(self._model_text(mid, entry))
        self.size_mode.setItemText(0, f"Model's scale (\u00d7{entry.scale})" if entry
                                   else "Model's scale")
        self.size_stack.setCurrentIndex(self.size_mode.currentIndex())
        self.size_stack.setVisible(self.size_mode.currentIndex() > 0)
        self.quality.setEnabled(self.format_combo.currentData() in ("JPEG", "WEBP", "same"))
        self._update_clean_up_label()
        self._update_size_line()
        self._save()
        self.changed.emit()

    @staticmethod
    def _model_text(mid: str, entry: catalog.Entry | None) -> str:
        """The line under the picker: what the model needs before it runs, and what it is."""
        if entry is None:
            return "No model is available; open Manage models."
        try:
            installed = catalog.is_installed(mid)
        except FinescaleError:
            installed = False
        need = ""
        if not installed and entry.downloadable:
            size = f" ({size_text(entry.size)})" if entry.size else ""
            need = f"Downloaded when first used{size}. "
        elif not installed:
            need = "Not installed: see Manage models. "
        return need + entry.description

    def _restore(self) -> None:
        s = self.settings
        self.size_mode.setCurrentIndex(SIZE_MODES.index(s.get("scale_mode")))
        self.factor.setValue(s.get("scale_factor"))
        self.width_spin.setValue(s.get("out_width"))
        self.height_spin.setValue(s.get("out_height"))
        self.format_combo.setCurrentIndex(max(0, self.format_combo.findData(s.get("out_format"))))
        self.quality.setValue(s.get("quality"))
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(s.get("device"))))

    def _save(self) -> None:
        s = self.settings
        if self.model_id():
            s.set("model", self.model_id())
        s.set("scale_mode", SIZE_MODES[self.size_mode.currentIndex()])
        s.set("scale_factor", self.factor.value())
        s.set("out_width", self.width_spin.value())
        s.set("out_height", self.height_spin.value())
        s.set("out_format", self.format_combo.currentData())
        s.set("quality", self.quality.value())
        s.set("device", self.device_combo.currentData())
        if self.clean_up.isEnabled():
            s.set("clean_up", self.clean_up.value() / CLEAN_UP_STEPS)


def _default_id() -> str:
    try:
        return catalog.default_model()
    except FinescaleError:
        return ""
