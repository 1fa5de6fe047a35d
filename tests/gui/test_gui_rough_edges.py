"""The rough edges a new user hit: cut-off model names and descriptions, a stale status,
the single picture's size on the Batch tab, a banner that pushed the layout, and batch rows
that could not be opened."""

from __future__ import annotations

import pytest
from gui_helpers import open_picture, write_picture
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QApplication

pytestmark = pytest.mark.timeout(120)


def test_the_model_picker_shows_every_model_whole(qtbot, window):
    combo = window.options.model_combo
    fm = combo.fontMetrics()
    assert combo.count() > 5
    for i in range(combo.count()):
        combo.setCurrentIndex(i)
        QApplication.processEvents()
        shown = combo.shown_text()
        assert "[" in shown  # the kind: photo or paper-exact
        assert fm.horizontalAdvance(shown) <= combo.text_room(), shown
        assert fm.horizontalAdvance(combo.itemText(i)) + 20 <= combo.list_width()


def test_a_model_to_download_says_so_under_the_picker(qtbot, window):
    from sr_core import catalog

    combo = window.options.model_combo
    mid = next(e.id for e in catalog.entries()
               if e.downloadable and e.size and not catalog.is_installed(e.id))
    window.options.select_model(mid)
    assert combo.itemText(combo.currentIndex()).endswith("MB")  # the list says the size
    assert window.options.model_description.text().startswith("Downloaded when first used (")


def test_model_descriptions_are_not_cut_off_in_the_manager(qtbot, window):
    from app.models_dialog import COLUMNS

    window.show_models()
    dialog = window._models_dialog
    QApplication.processEvents()
    table = dialog.table
    col = COLUMNS.index("Description") if "Description" in COLUMNS else len(COLUMNS) - 1
    fm = table.fontMetrics()
    for row in range(table.rowCount()):
        text = table.item(row, col).text()
        room = table.columnWidth(col) - 8
        need = fm.boundingRect(QRect(0, 0, room, 10_000), Qt.TextFlag.TextWordWrap, text)
        assert table.rowHeight(row) >= need.height(), text
    mid = dialog._ids[0]
    dialog.select(mid)
    from sr_core import catalog

    assert catalog.get(mid).description in dialog.details.text()


def test_a_later_run_replaces_cancelled_in_the_status_bar(qtbot, window, tiny_model, tmp_path):
    pic = write_picture(tmp_path / "in" / "cat.png", 80, 60)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    window.upscale()
    window._job.cancel.set()
    qtbot.waitUntil(lambda: window._job is None, timeout=60_000)
    assert window.statusBar().currentMessage() == "Cancelled; nothing was written."
    window.preview()
    assert "Cancelled" not in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: window._job is None, timeout=60_000)
    window.statusBar().showMessage("Cancelled; nothing was written.")
    window.batch.in_edit.setText(str(pic.parent))
    window.batch.out_edit.setText(str(tmp_path / "out"))
    window.tabs.setCurrentWidget(window.batch)
    window.batch.start()
    assert window.statusBar().currentMessage() == "Converting the folder\u2026"
    qtbot.waitUntil(lambda: not window.batch.is_running(), timeout=60_000)


def test_the_batch_tab_hides_the_single_pictures_output_size(qtbot, window, tmp_path):
    pic = write_picture(tmp_path / "owl.png", 50, 40)
    open_picture(qtbot, window, pic)
    size_line = window.options.size_result
    assert size_line.isVisible() and "\u00d7" in size_line.text()
    window.tabs.setCurrentWidget(window.batch)
    assert not size_line.isVisible()
    window.tabs.setCurrentWidget(window.picture_tab)
    assert size_line.isVisible()


def test_the_result_banner_does_not_move_the_layout(qtbot, window):
    QApplication.processEvents()
    before = (window.compare.geometry(), window.tabs.geometry())
    window.message.show_message("Saved a_rather_long_name_x4_ASID.png (4,000 \u00d7 3,000) in "
                                "/home/someone/Pictures/holidays/2024.", error=False)
    QApplication.processEvents()
    assert (window.compare.geometry(), window.tabs.geometry()) == before
    bar = window.message.geometry()
    view = QRect(window.compare.mapTo(window.centralWidget(), window.compare.rect().topLeft()),
                 window.compare.size())
    assert view.contains(bar)  # over the picture, all of it on screen
    assert bar.height() >= window.message.label.heightForWidth(window.message.label.width())


def test_double_clicking_a_converted_batch_row_compares_it(qtbot, window, tiny_model, tmp_path):
    src, dst = tmp_path / "photos", tmp_path / "photos-x2"
    write_picture(src / "a.png", 64, 48, seed=1)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    window.options.select_model(tiny_model)
    panel = window.batch
    window.tabs.setCurrentWidget(panel)
    panel.in_edit.setText(str(src))
    panel.out_edit.setText(str(dst))
    panel.start()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=90_000)
    rows = {panel.table.item(i, 0).text(): i for i in range(panel.table.rowCount())}
    assert panel.pair_of(rows["broken.png"]) is None
    panel.table.cellDoubleClicked.emit(rows["a.png"], 0)
    qtbot.waitUntil(lambda: window.picture is not None and window.result is not None,
                    timeout=30_000)
    assert window.tabs.currentWidget() is window.picture_tab
    assert window.picture.path == src / "a.png"
    assert window.result.path == dst / "a_x2_ASID-D1.png"
    assert (window.compare.before.image.width, window.compare.after.image.width) == (64, 128)
    assert window.compare.right.isVisible() or window.compare.left.under is not None
