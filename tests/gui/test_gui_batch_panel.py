"""The batch tab converts a small folder through sr_core.batch and reports every file."""

from __future__ import annotations

import json

import pytest
from gui_helpers import write_picture

from sr_core.imageio import read_image

pytestmark = pytest.mark.timeout(120)


def test_a_batch_run_over_a_small_folder(qtbot, tiny_model, window, tmp_path):
    src, dst = tmp_path / "photos", tmp_path / "photos-x2"
    write_picture(src / "a.png", 64, 48, seed=1)
    write_picture(src / "b.jpg", 40, 40, seed=2)
    write_picture(src / "trip" / "c.png", 50, 30, seed=3)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (src / "notes.txt").write_text("not a picture")
    window.options.select_model(tiny_model)
    panel = window.batch
    window.tabs.setCurrentWidget(panel)
    panel.in_edit.setText(str(src))
    panel.out_edit.setText(str(dst))
    panel.recursive.setChecked(True)
    panel.start_button.click()
    assert panel.is_running() and not panel.start_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=90_000)

    assert panel.last_state == "finished", panel.summary.text()
    assert panel.last_totals["done"] == 3 and panel.last_totals["failed"] == 1
    outs = {p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()}
    assert {"a_x2_ASID-D1.png", "b_x2_ASID-D1.jpg", "trip/c_x2_ASID-D1.png"} <= outs
    assert (read_image(dst / "trip" / "c_x2_ASID-D1.png").width,
            read_image(dst / "trip" / "c_x2_ASID-D1.png").height) == (100, 60)
    report = json.loads((dst / "finescale-report.json").read_text())
    assert report["totals"]["done"] == 3

    rows = {panel.table.item(i, 0).text(): (panel.table.item(i, 1).text(),
                                             panel.table.item(i, 2).text())
            for i in range(panel.table.rowCount())}
    assert rows["a.png"][0] == "done" and rows["trip/c.png"][0] == "done"
    status, reason = rows["broken.png"]
    assert status == "failed" and "broken.png" in reason
    assert rows["notes.txt"][0] == "skipped"
    times = {panel.table.item(i, 0).text(): panel.table.item(i, 3).text()
             for i in range(panel.table.rowCount())}
    assert times["a.png"].startswith("took ") and times["notes.txt"] == ""  # each file's own
    summary = panel.summary.text()
    assert "3 done" in summary and "1 failed" in summary and "broken.png" in summary
    assert panel.progress.value() == panel.progress.maximum()


def test_batch_problems_are_one_sentence(qtbot, tiny_model, window, tmp_path):
    panel = window.batch
    window.options.select_model(tiny_model)
    panel.in_edit.setText(str(tmp_path / "missing"))
    panel.out_edit.setText(str(tmp_path / "out"))
    panel.start()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60_000)
    assert panel.last_state == "failed"
    assert "missing" in panel.summary.text() and "\n" not in panel.summary.text()
    assert window.message.is_error and "missing" in window.message.text()

    panel.in_edit.setText("")
    panel.start()
    assert not panel.is_running()
    assert panel.summary.text() == "Choose the folder with the pictures to upscale first."


def test_batch_cancel_keeps_the_rest_for_next_time(qtbot, tiny_model, window, tmp_path,
                                                   monkeypatch):
    from sr_core import engine

    monkeypatch.setattr(engine, "memory_budget", lambda device: 1)  # many small tiles
    src, dst = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        write_picture(src / f"p{i}.png", 300, 200, seed=i)
    window.options.select_model(tiny_model)
    panel = window.batch
    panel.in_edit.setText(str(src))
    panel.out_edit.setText(str(dst))
    panel.start()
    qtbot.waitUntil(lambda: "tile" in panel.status_label.text(), timeout=60_000)
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60_000)
    assert panel.last_state == "cancelled"
    assert "redone when you start it again" in panel.summary.text()
    assert not [p for p in dst.rglob("*.part")]
    assert panel.start_button.isEnabled()
