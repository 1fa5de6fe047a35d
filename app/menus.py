"""The window's menus and keyboard shortcuts, each an action calling a window method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QWidget

Keys = tuple[QKeySequence | str | QKeySequence.StandardKey, ...]


def action(window: QMainWindow, menu: QMenu | None, text: str, slot: Callable[..., Any],
           keys: Keys = (), holder: QWidget | None = None) -> QAction:
    """An action in ``menu`` with shortcuts ``keys`` (only while the focus is inside
    ``holder``, when given)."""
    a = QAction(text, holder or window)
    if keys:
        a.setShortcuts([QKeySequence(k) for k in keys])
    a.triggered.connect(slot)
    if holder is not None:
        a.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        holder.addAction(a)
    else:
        window.addAction(a)
    if menu is not None:
        menu.addAction(a)
    return a


def build_menus(w: Any) -> None:
    """File, View, Models and Help for the main window ``w``; sets ``w.preview_action``,
    ``w.upscale_action`` and ``w.cancel_action``."""
    bar, c = w.menuBar(), w.compare
    f = bar.addMenu("&File")
    action(w, f, "&Open\u2026", w.open_dialog, (QKeySequence.StandardKey.Open,))
    action(w, f, "&Paste picture", w.paste, (QKeySequence.StandardKey.Paste,))
    action(w, f, "Convert a &folder\u2026", w.choose_batch_folder)
    f.addSeparator()
    w.preview_action = action(w, f, "&Preview the part in view", w.preview, ("P",))
    w.upscale_action = action(w, f, "&Upscale whole picture", w.upscale,
                              ("Ctrl+Return", "Ctrl+Enter"))
    w.cancel_action = action(w, f, "&Cancel", w.cancel, ("Esc",))
    f.addSeparator()
    action(w, f, "&Quit", w.close, (QKeySequence.StandardKey.Quit, "Ctrl+Q"))
    v = bar.addMenu("&View")
    action(w, v, "&Side by side", lambda: w.set_compare_mode("side"))
    action(w, v, "S&lider", lambda: w.set_compare_mode("wipe"))
    action(w, v, "&Flip before / after", w.flip, ("Space",), holder=w.picture_tab)
    v.addSeparator()
    action(w, v, "Zoom &in", c.zoom_in, ("Ctrl+=", "Ctrl++"))
    action(w, v, "Zoom &out", c.zoom_out, ("Ctrl+-",))
    action(w, v, "&Fit", c.fit, ("Ctrl+0",))
    for z in (1, 2, 4):  # triggered(checked) would fill the first argument: keep z apart
        action(w, v, f"&{z}00 %", lambda _=False, z=z: c.set_zoom(float(z)), (f"Ctrl+{z}",))
    action(w, bar.addMenu("&Models"), "&Manage models\u2026", w.show_models)
    h = bar.addMenu("&Help")
    action(w, h, "Open &sample picture", w.open_sample)
    action(w, h, "&About Finescale", w.show_about)
