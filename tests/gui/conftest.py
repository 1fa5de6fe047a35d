"""Fixtures for the window's tests: offscreen Qt, a private settings file and model cache,
a tiny fast model, and small pictures."""

from __future__ import annotations

import gc
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

from pathlib import Path

import pytest
from gui_helpers import tiny_state_dict

from sr_core import paths


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread while a window test runs: these tests check behaviour, not
    speed, and on a shared two-core machine OpenMP's spinning threads fighting other
    processes made a 120-pixel tile take seconds instead of a tenth of one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def collect_garbage_between_tests():
    """Collect a finished test's Qt objects here, after its widgets closed and its worker
    threads stopped, rather than in a collection Python starts at a random moment of a later
    test while that test's worker thread runs (which once crashed the run under load)."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny model saved as a safetensors file."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("model") / "tiny-asid-x2.safetensors"
    save_file(tiny_state_dict(), str(path))
    return path


@pytest.fixture(scope="session")
def tiny_pth(tmp_path_factory) -> Path:
    """The tiny model as a plain torch checkpoint (what a download serves)."""
    import torch

    path = tmp_path_factory.mktemp("model-pth") / "tiny-asid-x2.pth"
    torch.save({"params": tiny_state_dict()}, path)
    return path


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """An empty private model cache; no mirror."""
    d = tmp_path / "cache"
    monkeypatch.setenv(paths.CACHE_ENV, str(d))
    monkeypatch.delenv("FINESCALE_MIRROR", raising=False)
    return d


@pytest.fixture()
def tiny_model(cache, tiny_checkpoint) -> str:
    """The tiny model imported into the private cache; returns its id."""
    from sr_core import installer

    return installer.import_checkpoint(tiny_checkpoint, name="tiny-x2").id


@pytest.fixture()
def settings(tmp_path):
    """A settings file of this test's own."""
    from app.settings import Settings

    return Settings(tmp_path / "settings.ini")


@pytest.fixture()
def window(qtbot, settings, cache):
    """The main window, shown; closed (workers stopped) after the test."""
    from app.main_window import MainWindow

    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.resize(1100, 720)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()
