"""The packaged application: PyInstaller builds one folder whose CLI upscales a picture and whose
window starts and stops cleanly, without the source tree, the virtual environment or a console.

PyInstaller comes with the ``dev`` extra (CI installs it), so the test never reaches the
network; the build itself takes about two minutes on two cores.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample.png"
#: The size target of the CPU bundle, in MiB as `du -sh` shows it.
MAX_BUNDLE_MIB = 900

pytestmark = pytest.mark.skipif(sys.platform != "linux",
                                reason="the bundle test drives a Linux build with POSIX signals")


def _bundle_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.lstat().st_mtime for p in folder.rglob("*")}


def _clean_env(home: Path) -> dict[str, str]:
    """The environment of a user who never ran Finescale: no venv, no source tree, no cache."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "FINESCALE_", "XDG_", "QT_"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"),
               XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"),
               PATH="/usr/bin:/bin", QT_QPA_PLATFORM="offscreen")
    return env


def _close_std_streams() -> None:
    # What a windowed start gives the program: no stdout/stderr at all, so Python sets
    # sys.stdout and sys.stderr to None.
    os.close(1)
    os.close(2)


def _catches_sigterm(pid: int) -> bool:
    # The window installs its SIGTERM handler right before the event loop starts, so a caught
    # SIGTERM in /proc means "the window is up".
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """Build the bundle once for this module with packaging/build.py, as a user would."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        pytest.fail('PyInstaller is missing: pip install -e ".[dev]" installs it')
    tmp = tmp_path_factory.mktemp("pyinstaller")
    start = time.monotonic()
    built = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build.py"),
         "--dist", str(tmp / "dist"), "--work", str(tmp / "work")],
        capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, f"the build failed:\n{built.stdout[-3000:]}{built.stderr[-6000:]}"
    print(f"bundle built in {time.monotonic() - start:.0f} s: {built.stdout.strip()}")
    return tmp / "dist" / "finescale"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small HPINet x4 with seeded random weights (no download; fast on a CPU)."""
    import torch
    from safetensors.torch import save_file

    from sr_core.archs import hpinet

    cfg = dataclasses.replace(hpinet.config("S", 4), dim=16, qk_dim=8, mlp_dim=16,
                              layers_per_block=1)
    torch.manual_seed(0)
    net = hpinet.build(cfg)
    path = tmp_path_factory.mktemp("model") / "tiny-hpinet-x4.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.mark.slow
def test_bundle_holds_both_programs_and_its_resources_within_the_size_target(bundle):
    for exe in ("finescale", "finescale-gui"):
        assert os.access(bundle / exe, os.X_OK), f"{exe} is missing from the bundle"
    resources = bundle / "_internal" / "sr_core" / "resources"
    assert (resources / "models.toml").is_file() and (resources / "sample.png").is_file()
    internal = bundle / "_internal"
    assert (internal / "torch" / "bin" / "torch_shm_manager").is_file()
    assert not (internal / "torch" / "include").exists(), "torch's C++ headers were bundled"
    assert not (internal / "torch" / "test").exists(), "torch's test suite was bundled"
    assert not list(internal.rglob("test_jit*")), "torch's test programs were bundled"
    plugins = {p.parent.name + "/" + p.name for p in internal.rglob("plugins/*/*")}
    assert {"platforms/libqxcb.so", "platforms/libqoffscreen.so"} <= plugins
    assert not [p for p in plugins if p.startswith(("imageformats", "platformthemes"))]
    size = _bundle_size(bundle)
    print(f"bundle size: {size / 2**20:.0f} MiB ({size / 1e6:.0f} MB)")
    assert size <= MAX_BUNDLE_MIB * 2**20, f"the bundle grew to {size / 2**20:.0f} MiB"


@pytest.mark.slow
def test_bundled_cli_upscales_the_sample_like_the_source_tree(bundle, tiny_checkpoint, tmp_path):
    home = tmp_path / "home"
    env = _clean_env(home)
    before = _snapshot(bundle)
    cli = str(bundle / "finescale")

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([cli, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"finescale {' '.join(args)} failed:\n{done.stderr[-3000:]}"
        return done

    # The model goes into the user's data folder (platformdirs), never into the bundle.
    run("models", "import", str(tiny_checkpoint), "--name", "tiny-x4")
    cached = list((home / "data" / "finescale" / "models").rglob("*"))
    assert [p for p in cached if p.is_file()], "the imported model is not in the user's cache"
    listed = run("models", "list").stdout
    assert "tiny-x4" in listed and "hpinet-m-x4" in listed  # catalogue read from the bundle

    run("upscale", str(SAMPLE), "-m", "tiny-x4", "--out-dir", str(tmp_path / "out"))
    out = np.asarray(Image.open(tmp_path / "out" / "sample_x4.png").convert("RGB"))
    with Image.open(SAMPLE) as src:
        assert out.shape == (src.height * 4, src.width * 4, 3)
    assert out.std() > 10 and len(np.unique(out.reshape(-1, 3), axis=0)) > 1000, "blank output"

    # The frozen torch computes what the source tree's torch computes.
    from sr_core.cli import main

    ref_dir = tmp_path / "ref"
    assert main(["upscale", str(SAMPLE), "-m", str(tiny_checkpoint),
                 "--out-dir", str(ref_dir)]) == 0
    ref = np.asarray(Image.open(ref_dir / "sample_x4.png").convert("RGB"))
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05, f"max {diff.max()}, mean {diff.mean():.3f}"
    assert _snapshot(bundle) == before, "running the CLI wrote into the bundle"


@pytest.mark.slow
def test_bundled_window_runs_without_console_and_quits_cleanly_on_sigterm(bundle, tmp_path):
    home = tmp_path / "home"
    env = _clean_env(home)
    before = _snapshot(bundle)
    gui = [str(bundle / "finescale-gui"), str(SAMPLE)]

    proc = subprocess.Popen(gui, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                            preexec_fn=_close_std_streams)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and not _catches_sigterm(proc.pid):
            assert time.monotonic() < deadline, \
                "the window did not come up (install its SIGTERM handler) within 120 s"
            time.sleep(0.2)
        time.sleep(4)  # a few seconds of life, the picture loading in the background
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not alive or code != 0:
        # Run it again with a console, so that the failure says why.
        again = subprocess.Popen(gui, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            said = again.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            again.kill()
            said = again.communicate()[0]
        pytest.fail(f"the window {'died' if not alive else 'did not quit cleanly'} "
                    f"(exit code {proc.returncode}); with a console it said:\n{said[-5000:]}")

    # Settings were saved on the way out, in the user's config folder, not in the bundle.
    assert (home / "config" / "Finescale" / "Finescale.ini").is_file()
    assert _snapshot(bundle) == before, "running the window wrote into the bundle"


def test_window_code_survives_without_stdout_and_stderr(tmp_path):
    """Windowed starts (pythonw, the bundle) have no stdout/stderr: progress bars, prints and
    tracebacks from code running in the window must not crash it."""
    script = textwrap.dedent(f"""
        import sys, traceback
        from pathlib import Path
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from app.__main__ import main

        def chatter():
            try:
                from tqdm import tqdm
                for _ in tqdm(range(3), desc="progress"):
                    pass
                print("hello")
                traceback.print_exception(ValueError("a bug's traceback"))
                Path({str(tmp_path / "result")!r}).write_text("ok")
            except BaseException as e:
                Path({str(tmp_path / "result")!r}).write_text(repr(e))
            finally:
                QApplication.instance().quit()

        app = QApplication([sys.argv[0]])
        QTimer.singleShot(0, chatter)
        sys.exit(main(["--settings", {str(tmp_path / "s.ini")!r}]))
    """)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", FINESCALE_CACHE_DIR=str(tmp_path / "c"))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, timeout=120,
                          stdin=subprocess.DEVNULL, preexec_fn=_close_std_streams)
    assert (tmp_path / "result").read_text() == "ok"
    assert done.returncode == 0


@pytest.mark.slow
def test_the_community_extra_keeps_the_installed_torch(tmp_path):
    """`pip install -e ".[community]"` must not replace torch 2.13.0 (the CPU wheel) by a
    newer CUDA build: pip is asked what it would install, nothing is installed."""
    import json

    import torch

    report = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report",
         str(report), f"{ROOT}[community]"],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    wanted = {item["metadata"]["name"].lower(): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    assert "torch" not in wanted, (
        f"the extra would replace torch {torch.__version__} with {wanted.get('torch')}")
    assert not [n for n in wanted if n.startswith("nvidia")], sorted(wanted)
    assert "spandrel" in wanted or _installed("spandrel")


def _installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True
