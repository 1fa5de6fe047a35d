"""The main window as a user drives it: drop, upscale, cancel, close, errors, shortcuts."""

from __future__ import annotations

import signal
import threading

import pytest
from gui_helpers import on_message, open_picture, write_picture
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication

from app.messages import Progress, TileDone
from sr_core.imageio import read_image

pytestmark = pytest.mark.timeout(120)


def _file_drop_events(paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(300, 300)
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    return mime, enter, drop


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_dropping_a_file_opens_it_and_the_title_names_it(qtbot, window, tmp_path):
    pic = write_picture(tmp_path / "holiday.png", 40, 30)
    _, enter, drop = _file_drop_events([pic])
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    assert window.overlay.isVisible() and window.overlay.text == "Drop to open"
    QApplication.sendEvent(window, drop)
    assert not window.overlay.isVisible()
    qtbot.waitUntil(lambda: window.picture is not None, timeout=20_000)
    assert window.picture.path == pic
    assert (window.compare.before.image.width, window.compare.before.image.height) == (40, 30)
    assert "holiday.png" in window.windowTitle()
    assert window.statusBar().currentMessage() == "holiday.png: 40 \u00d7 30 pixels."


def test_a_drag_without_files_is_refused(window):
    mime = QMimeData()
    mime.setText("just words")
    enter = QDragEnterEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert not enter.isAccepted()
    assert not window.overlay.isVisible()


def test_dropping_a_folder_sets_up_the_batch_tab(qtbot, window, tmp_path):
    folder = tmp_path / "album"
    write_picture(folder / "a.png", 20, 20)
    _, enter, drop = _file_drop_events([folder])
    QApplication.sendEvent(window, enter)
    assert window.overlay.text == "Drop to convert this folder"
    QApplication.sendEvent(window, drop)
    assert window.tabs.currentWidget() is window.batch
    assert window.batch.in_edit.text() == str(folder)
    assert window.batch.out_edit.text() == str(tmp_path / "album-upscaled")


def test_a_corrupt_file_is_one_sentence_in_the_window(qtbot, window, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    window.open_paths([bad])
    qtbot.waitUntil(lambda: window.message.text() != "", timeout=20_000)
    text = window.message.text()
    assert window.message.is_error
    assert "broken.png" in text and "Traceback" not in text and "\n" not in text
    assert window.picture is None and window.isVisible()


def test_upscale_finishes_shows_the_result_and_the_window_stays_responsive(
        qtbot, window, tiny_model, tmp_path):
    pic = write_picture(tmp_path / "in" / "street.png", 480, 360)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    assert window.options.size_result.text() == "\u2192 960 \u00d7 720 pixels"

    # The window stays responsive because the model runs outside the GUI thread: checked by
    # where the work happens, not by timing the event loop (a busy CI machine stalls any
    # thread now and then).
    gui_thread = threading.get_ident()
    work_threads: set[int] = set()
    progress: list[tuple[int, int]] = []
    tiles: list[tuple[int, int]] = []
    on_message(window, Progress, lambda m: progress.append((m.done, m.total)))
    on_message(window, Progress, lambda m: work_threads.add(threading.get_ident()),
               direct=True)
    on_message(window, TileDone, lambda m: tiles.append(m.rgb.shape[:2]))

    qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert window.cancel_button.isEnabled() and not window.upscale_button.isEnabled()
    qtbot.waitUntil(lambda: window.result is not None or window.message.is_error,
                    timeout=60_000)
    assert window.result is not None, window.message.text()

    out = window.result.path
    assert out.parent == pic.parent and out.name == "street_x2.png"
    assert (read_image(out).width, read_image(out).height) == (960, 720)
    after = window.compare.after.image
    assert (after.width, after.height) == (960, 720)
    assert (window.compare.state.scene_w, window.compare.state.scene_h) == (960, 720)
    assert window.compare.right.isVisible() and window.compare.right.layer is window.compare.after
    assert progress and progress[-1][0] == progress[-1][1]
    assert tiles  # low-resolution previews of finished tiles arrived
    assert "street.png" in window.windowTitle() and out.name in window.windowTitle()
    assert work_threads and gui_thread not in work_threads


@pytest.fixture()
def small_tiles(monkeypatch):
    """Make tile="auto" choose the smallest tiles, so that a small picture has many."""
    from sr_core import engine

    monkeypatch.setattr(engine, "memory_budget", lambda device: 1)


def test_cancel_mid_run_stops_within_a_tile_and_writes_nothing(qtbot, window, tiny_model,
                                                                tmp_path, small_tiles):
    folder = tmp_path / "in"
    pic = write_picture(folder / "tower.png", 400, 300)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    jobs = []
    # Recorded in the worker's thread as each tile finishes: was cancel already pressed?
    emitted: list[tuple[bool, int]] = []
    on_message(window, Progress, lambda m: emitted.append(
        (bool(jobs) and jobs[0].cancel.is_set(), m.total)), direct=True)
    window.upscale()
    jobs.append(window._job)
    qtbot.waitUntil(lambda: window.progress.value() > 0, timeout=30_000)
    window.cancel_button.click()
    qtbot.waitUntil(lambda: window._job is None, timeout=30_000)
    total = emitted[0][1]
    assert total >= 4, "the picture should have been cut into several tiles"
    assert len(emitted) < total
    assert sum(after for after, _ in emitted) <= 1  # at most the tile under way
    assert window.run_label.text() == "Cancelled; nothing was written."
    assert _files(folder) == ["tower.png"]  # no output, no temporary file
    assert window.result is None and window.compare.after is None
    assert window.upscale_button.isEnabled()


def test_escape_cancels(qtbot, window, tiny_model, tmp_path, small_tiles):
    pic = write_picture(tmp_path / "in" / "bridge.png", 400, 300)
    open_picture(qtbot, window, pic)
    window.options.select_model(tiny_model)
    first = []
    on_message(window, Progress, first.append)
    window.upscale()
    qtbot.waitUntil(lambda: bool(first), timeout=30_000)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: window._job is None, timeout=30_000)
    assert window.result is None
    assert _files(pic.parent) == ["bridge.png"]


def test_closing_the_window_during_a_run_stops_the_worker_cleanly(qtbot, settings, cache,
                                                                   tiny_model, tmp_path,
                                                                   small_tiles):
    from app.main_window import MainWindow

    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    pic = write_picture(tmp_path / "in" / "harbour.png", 400, 300)
    open_picture(qtbot, w, pic)
    w.options.select_model(tiny_model)
    seen = []
    on_message(w, Progress, seen.append)
    w.upscale()
    qtbot.waitUntil(lambda: bool(seen), timeout=30_000)
    w.close()
    # Closing cancelled the job (it did not wait for the whole picture).
    assert seen[-1].done < seen[-1].total
    assert w._thread.thread.isFinished()
    assert w.batch._thread.thread.isFinished()
    assert _files(pic.parent) == ["harbour.png"]


def test_pasting_a_picture_from_the_clipboard(qtbot, window):
    image = QImage(64, 48, QImage.Format.Format_RGB32)
    image.fill(0xFF3366CC)
    QApplication.clipboard().setImage(image)
    qtbot.keyClick(window, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.picture is not None, timeout=20_000)
    assert window.picture.path is None and window.picture.name == "Pasted picture"
    px = window.picture.photo.rgb[10, 10]
    assert [round(float(v) * 255) for v in px] == [0x33, 0x66, 0xCC]
    assert window.picture.photo.alpha is None


def test_the_sample_picture_opens_from_the_help_menu(qtbot, window):
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    sample = next(a for a in help_menu.actions() if "sample" in a.text())
    sample.trigger()
    qtbot.waitUntil(lambda: window.picture is not None, timeout=20_000)
    assert window.picture.name == "sample.png"


def test_the_about_box_lists_every_model_family_with_licence_and_paper():
    from app.main_window import about_html

    html = about_html()
    for needle in ("HPINet-M x4", "HAT-L x4", "SPIN x4", "ASID x2", "Apache-2.0",
                   "Activating More Pixels", "Superpixel Token Interaction", "AAAI 2025"):
        assert needle in html


def test_settings_are_remembered_between_runs(qtbot, settings, cache, tmp_path):
    from app.main_window import MainWindow
    from app.settings import Settings

    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.options.format_combo.setCurrentIndex(w.options.format_combo.findData("JPEG"))
    w.options.quality.setValue(81)
    w.options.size_mode.setCurrentIndex(2)
    w.options.width_spin.setValue(2000)
    w.out_edit.setText(str(tmp_path / "results"))
    w.set_compare_mode("wipe")
    w.close()

    again = MainWindow(Settings(settings.file))
    qtbot.addWidget(again)
    c = again.options.choice()
    assert (c.out_format, c.quality, c.width, c.scale) == ("JPEG", 81, 2000, None)
    assert again.out_edit.text() == str(tmp_path / "results")
    assert again.compare.mode == "wipe" and again.wipe_button.isChecked()
    again.close()


def test_zoom_shortcuts(qtbot, window, tmp_path):
    open_picture(qtbot, window, write_picture(tmp_path / "z.png", 300, 200))
    window.compare.setFocus()
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert window.compare.zoom == pytest.approx(1.0)
    assert window.zoom_label.text() == "100 %"
    qtbot.keyClick(window, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert window.compare.zoom == pytest.approx(1.25)
    qtbot.keyClick(window, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert window.compare.zoom == pytest.approx(1.0)
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert window.compare.zoom == pytest.approx(2.0)
    qtbot.keyClick(window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert window.compare.state.fit


def test_space_flips_before_and_after_while_the_picture_tab_has_the_focus(qtbot, window,
                                                                          tmp_path):
    open_picture(qtbot, window, write_picture(tmp_path / "f.png", 60, 40))
    window.compare.left.setFocus()
    qtbot.keyClick(window.compare.left, Qt.Key.Key_Space)
    assert window.compare.flipped
    window.tabs.setCurrentWidget(window.batch)
    window.batch.recursive.setFocus()
    checked = window.batch.recursive.isChecked()
    qtbot.keyClick(window.batch.recursive, Qt.Key.Key_Space)  # a checkbox keeps its Space
    assert window.batch.recursive.isChecked() != checked and window.compare.flipped


def test_finescale_gui_opens_the_files_given_on_its_command_line(qtbot, cache, tmp_path):
    from app.__main__ import main
    from app.main_window import MainWindow

    pic = write_picture(tmp_path / "cli.png", 32, 24)
    seen: dict[str, object] = {}

    def check() -> None:
        win = next(w for w in QApplication.topLevelWidgets()
                   if isinstance(w, MainWindow) and w.isVisible())
        qtbot.waitUntil(lambda: win.picture is not None, timeout=20_000)
        seen["title"] = win.windowTitle()
        win.close()
        QApplication.instance().quit()

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    QTimer.singleShot(0, check)
    try:
        assert main([str(pic), "--settings", str(tmp_path / "s.ini")]) == 0
    finally:  # main() may install its own handlers; give pytest its Ctrl+C back
        for s, h in handlers.items():
            signal.signal(s, h)
    assert seen["title"] == "cli.png \u2014 Finescale"


def test_a_long_job_asks_first_and_no_means_nothing_starts(window, monkeypatch) -> None:
    """Issue 18: the window sizes the job and asks before one of more than a few minutes."""
    from sr_core import sizing

    w = window
    asked: list[str] = []
    monkeypatch.setattr(w, "confirm", lambda text: asked.append(text) or False)
    monkeypatch.setattr(sizing, "seconds_per_megapixel", lambda family, device="cpu": 1e6)
    c = w.options.choice()

    class _Pic:
        class photo:
            width, height, alpha, bit_depth = 400, 300, None, 8

    monkeypatch.setattr(w.session, "picture", _Pic())
    assert w._ready_for(c, (1600, 1200)) is False
    assert len(asked) == 1 and "1600x1200" in asked[0] and "h" in asked[0]
    monkeypatch.setattr(sizing, "seconds_per_megapixel", lambda family, device="cpu": 1.0)
    assert w._ready_for(c, (1600, 1200)) is True and len(asked) == 1
