"""The model manager against a real HTTP server on 127.0.0.1: status, size, licence,
verification; download with progress and cancel; remove; import. And the window fetching
a model on demand when an upscale needs it."""

from __future__ import annotations

import hashlib
import os

import pytest
from gui_helpers import on_message, open_picture, write_picture
from PySide6.QtWidgets import QMessageBox
from weight_server import WeightServer

from app.messages import Download
from sr_core import catalog, paths

pytestmark = pytest.mark.timeout(120)

CATALOGUE = """
schema = 1
default = ["tiny-dl"]

[models.tiny-dl]
arch = "asid"
variant = "ASID-D1"
scale = 2
title = "Tiny ASID x2"
description = "A tiny model for tests."
filename = "tiny-asid-x2.pth"
urls = ["https://example.invalid/tiny-asid-x2.pth"]
sha256 = "{sha}"
size = {size}
licence = "MIT"
source = "https://example.invalid/tiny"
paper = "Nobody, A Tiny Network, 2025"

[models.slow-dl]
arch = "asid"
variant = "ASID-D1"
scale = 2
title = "Slow download"
description = "Served slowly, to be cancelled."
filename = "slow.pth"
urls = ["https://example.invalid/slow.pth"]
licence = "CC0-1.0"
source = "https://example.invalid/slow"

[models.manual]
arch = "hat"
variant = "HAT"
scale = 4
title = "Manual only"
description = "No direct download."
filename = "manual.pth"
licence = "Apache-2.0"
source = "https://example.invalid/manual"
note = "Download it yourself and import it."
"""


@pytest.fixture()
def served(tmp_path, monkeypatch, cache, tiny_pth):
    """A catalogue of our own whose files come from a local server (FINESCALE_MIRROR)."""
    data = tiny_pth.read_bytes()
    res = tmp_path / "resources"
    res.mkdir()
    (res / "models.toml").write_text(CATALOGUE.format(sha=hashlib.sha256(data).hexdigest(),
                                                      size=len(data)))
    monkeypatch.setattr(paths, "resources_dir", lambda: res)
    with WeightServer() as srv:
        srv.add("tiny-asid-x2.pth", data)
        srv.add("slow.pth", os.urandom(6 << 20), mode="slow", delay=0.05)
        monkeypatch.setenv("FINESCALE_MIRROR", f"{srv.base}/files")
        yield srv


@pytest.fixture()
def dialog(qtbot, served):
    from app.models_dialog import ModelsDialog

    d = ModelsDialog()
    qtbot.addWidget(d)
    d.show()
    yield d
    d.shutdown()


def test_the_catalogue_with_status_size_licence_and_verification(dialog, tiny_pth):
    from app.models_dialog import size_text

    assert dialog.cell("tiny-dl", "Status") == "Available"
    assert dialog.cell("tiny-dl", "Size") == size_text(tiny_pth.stat().st_size)
    assert dialog.cell("slow-dl", "Size") == "\u2014"  # unknown until downloaded
    assert dialog.cell("tiny-dl", "Licence") == "MIT"
    assert dialog.cell("tiny-dl", "Verified") == "verified"
    assert dialog.cell("slow-dl", "Verified").startswith("unverified")
    assert dialog.cell("manual", "Status") == "Manual download"
    dialog.select("manual")
    assert not dialog.download_button.isEnabled() and not dialog.remove_button.isEnabled()
    assert "Download it yourself" in dialog.details.text()


def test_download_then_remove(qtbot, dialog, served):
    dialog.select("tiny-dl")
    assert dialog.download_button.isEnabled()
    with qtbot.waitSignal(dialog.models_changed, timeout=60_000):
        dialog.download_button.click()
        assert dialog.is_busy() and dialog.progress.isVisible()
    assert dialog.cell("tiny-dl", "Status") == "Installed"
    assert dialog.message.text() == "Tiny ASID x2 is installed."
    assert catalog.is_installed("tiny-dl") and served.files["tiny-asid-x2.pth"].hits == 1
    assert dialog.remove_button.isEnabled() and not dialog.download_button.isEnabled()

    dialog.remove_selected(confirm=False)
    assert dialog.cell("tiny-dl", "Status") == "Available"
    assert not catalog.is_installed("tiny-dl")
    assert dialog.message.text().startswith("Tiny ASID x2 was removed")


def test_remove_asks_first(qtbot, dialog, monkeypatch):
    dialog.select("tiny-dl")
    with qtbot.waitSignal(dialog.models_changed, timeout=60_000):
        dialog.download_selected()
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.No)
    dialog.remove_selected()
    assert catalog.is_installed("tiny-dl")


def test_cancel_a_download(qtbot, dialog, cache):
    dialog.select("slow-dl")
    dialog.download_selected()
    qtbot.waitUntil(lambda: dialog.progress.maximum() == 1000 and dialog.progress.value() > 0,
                    timeout=30_000)
    assert dialog.cancel_button.isEnabled()
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=30_000)
    assert "cancelled" in dialog.message.text().lower()
    assert dialog.cell("slow-dl", "Status") == "Available"
    assert not catalog.is_installed("slow-dl")
    assert (cache / "downloads" / "slow.pth.part").is_file()  # kept, resumed next time


def test_a_failed_download_is_one_sentence(qtbot, dialog, served):
    served.files["tiny-asid-x2.pth"].mode = "404"
    dialog.select("tiny-dl")
    dialog.download_selected()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=60_000)
    text = dialog.message.text()
    assert "tiny-dl" in text and "404" in text and "\n" not in text
    assert dialog.cell("tiny-dl", "Status") == "Available"


def test_import_a_checkpoint_file(qtbot, dialog, tiny_checkpoint):
    with qtbot.waitSignal(dialog.models_changed, timeout=60_000):
        dialog.import_file(tiny_checkpoint)
    mid = "tiny-asid-x2"
    assert dialog.cell(mid, "Status") == "Installed"
    assert dialog.cell(mid, "Verified") == "unverified (imported)"
    assert dialog.selected_id() == mid
    assert "imported as tiny-asid-x2" in dialog.message.text()


def test_importing_a_bad_file_is_one_sentence(qtbot, dialog, tmp_path):
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint")
    dialog.import_file(bad)
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=30_000)
    assert "junk.pth" in dialog.message.text() and "\n" not in dialog.message.text()


def test_the_window_downloads_the_model_on_demand(qtbot, served, settings, tmp_path):
    from app.main_window import MainWindow

    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    assert w.options.model_id() == "tiny-dl"
    assert w.options.model_combo.currentText().startswith(
        "Tiny ASID x2  [paper-exact]  \u2014  download")
    open_picture(qtbot, w, write_picture(tmp_path / "in" / "p.png", 48, 32))
    seen: list[tuple[int, int]] = []
    on_message(w, Download, lambda m: seen.append((m.done, m.total)))
    w.upscale()
    qtbot.waitUntil(lambda: w.result is not None or w.message.is_error, timeout=60_000)
    assert w.result is not None, w.message.text()
    assert seen and seen[-1][0] == seen[-1][1] > 0
    assert catalog.is_installed("tiny-dl")
    assert "download" not in w.options.model_combo.currentText()  # installed: no suffix
    w.close()


def test_the_manager_tells_photo_models_from_paper_exact_ones(qtbot) -> None:
    from app.models_dialog import ModelsDialog

    dlg = ModelsDialog()  # the shipped catalogue
    qtbot.addWidget(dlg)
    assert dlg.cell("finescale-asid-x4-photo", "Kind") == "photo"
    assert dlg.cell("finescale-asid-x4", "Kind") == "paper-exact"
    dlg.select("finescale-asid-x4-photo")
    assert "photo)" in dlg.details.text()
    dlg.shutdown()
