"""``finescale batch --ray``: the batch's guarantees on a real Ray cluster.

The cluster is a private local one on 127.0.0.1 with 2 workers of 1 CPU each (started once
for the module; the CLI tests start their own with ``--ray local:2``). The model is the tiny
random HPINet of test_batch: the guarantees do not depend on what the pixels look like.
Nothing here waits on the machine's speed: the worker that dies is killed by its own
encoder, and the driver is killed while its workers wait at a gate that only the test opens.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_batch import _files, _flat, _out_name, _temporaries, _tree
from test_batch import tiny_model as tiny_model_fixture  # noqa: F401 - the fixture tiny_model

from sr_core import cli
from sr_core.batch import LOCK_NAME, REPORT_NAME, BatchOptions, load_report, plan_batch, run_batch
from sr_core.cluster import RayOptions, connect, parse_address, run_batch_ray
from sr_core.engine import Upscaler
from sr_core.errors import FinescaleError
from sr_core.loader import load_model

WORKER = {"device": "cpu", "precision": "fp32", "tile": 0}
# Fields that differ between any two runs of the same batch (times, where the output is).
VOLATILE = {"started", "updated", "finished", "seconds"}


def _need_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        msg = "Ray is not installed (pip install -e '.[dev,cluster]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def tiny_model(request: pytest.FixtureRequest) -> Path:
    """test_batch's tiny random x2 HPINet checkpoint (imported above as a fixture)."""
    return request.getfixturevalue("tiny_model_fixture")


@pytest.fixture(scope="module")
def ray_cluster() -> int:
    """A private local Ray cluster: 2 workers of 1 CPU, bound to 127.0.0.1."""
    _need_ray()
    import ray

    with connect(RayOptions(address="local:2")) as workers:
        node = ray.nodes()[0]
        assert node["NodeManagerAddress"] == "127.0.0.1"
        assert ray.cluster_resources()["CPU"] == 2
        yield workers
    assert not ray.is_initialized()


def _report(path: Path) -> dict:
    """The report without what differs between two runs of the same batch."""
    data = json.loads(path.read_text())
    for k in VOLATILE | {"output_dir"}:
        data.pop(k, None)
    data["files"] = [{k: v for k, v in f.items() if k not in VOLATILE} for f in data["files"]]
    return data


def _reference(src: Path, dst: Path, model: Path, options: BatchOptions) -> None:
    import torch

    # Each Ray worker runs torch on 1 thread (its 1 CPU); float sums split over another
    # thread count may round differently, so the reference runs on 1 thread as well.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        up = Upscaler(str(model), **WORKER)
        run_batch(plan_batch(src, dst, options, model=up), up)
    finally:
        torch.set_num_threads(threads)


def _same_outputs(a: Path, b: Path) -> None:
    assert _files(a) == _files(b)
    for rel in _files(a) - {REPORT_NAME}:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


# --- no cluster needed ----------------------------------------------------------------------
def test_addresses_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_address("local") == parse_address("local")
    assert parse_address("local:3").workers == 3 and parse_address("local:3").local
    assert parse_address("ray://head:10001").address == "ray://head:10001"
    assert parse_address("10.0.0.5:6379").address == "10.0.0.5:6379"
    assert not parse_address("auto").local
    for bad in ("local:0", "local:two", "head", "ray://head", "http://x/y:1"):
        with pytest.raises(ValueError):
            parse_address(bad)

    _flat(tmp_path / "in", 1)
    base = ["batch", str(tmp_path / "in"), str(tmp_path / "out")]
    for argv, says in ((["--ray", "lokal"], "--ray: 'lokal' is not"),
                       (["--ray-workers", "2"], "--ray-workers need --ray ADDRESS"),
                       (["--ray", "local", "--ray-gpus-per-worker", "-1"], "-1.0 GPUs")):
        with pytest.raises(SystemExit) as exit_:
            code = cli.main(base + argv)
            raise SystemExit(code)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and says in err[-1], err
    assert not (tmp_path / "out").exists()


def test_without_ray_the_cli_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    _flat(tmp_path / "in", 1)
    code = cli.main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--ray", "local:2",
                     "-m", str(tmp_path / "no-such-model.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "install finescale[cluster]" in err[0]  # before the (missing) model is looked at
    assert not (tmp_path / "out").exists()


def test_unreachable_cluster_is_one_sentence(tmp_path: Path, tiny_model: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _need_ray()
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _flat(tmp_path / "in", 1)
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        code = cli.main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--ray", address,
                         "-m", str(tmp_path / "never-loaded.safetensors")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1, err
        assert err[0] == (f"finescale: error: Cannot reach the Ray cluster at {address}: "
                          "connection refused.")
    model = load_model(str(tiny_model))
    with pytest.raises(FinescaleError, match="has no room for a worker of 1 GPU"):
        run_batch_ray(plan_batch(tmp_path / "in", tmp_path / "out2", model=model), model,
                      RayOptions(address="local:1", gpus_per_worker=1))


def test_nothing_to_convert_needs_no_cluster(tmp_path: Path, tiny_model: Path) -> None:
    _need_ray()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not a photo\n")
    model = load_model(str(tiny_model))
    plan = plan_batch(tmp_path / "in", tmp_path / "out", model=model)
    report = run_batch_ray(plan, model, RayOptions(address="127.0.0.1:1"))  # never contacted
    assert report.state == "finished" and [r.status for r in report.rows] == ["skipped"]
    assert load_report(tmp_path / "out" / REPORT_NAME)["state"] == "finished"


# --- a real local cluster -------------------------------------------------------------------
def test_a_worker_that_cannot_load_the_model_is_one_sentence(
        tmp_path: Path, tiny_model: Path, ray_cluster: int) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    _flat(tmp_path / "in", 2)
    model = load_model(str(tiny_model))
    plan = plan_batch(tmp_path / "in", tmp_path / "out", model=model)
    with pytest.raises(FinescaleError) as e:
        run_batch_ray(plan, model, RayOptions(device="cuda"))
    assert str(e.value).startswith("A Ray worker on ") and "cannot run the model: Device "\
        "'cuda' cannot be used" in str(e.value) and "\n" not in str(e.value)
    assert load_report(tmp_path / "out" / REPORT_NAME) is None  # the folder was not touched


@pytest.mark.slow
@pytest.mark.parametrize("ship_files", [False, True], ids=["shared-folders", "ship-files"])
def test_outputs_and_report_equal_the_single_process_batch(
        tmp_path: Path, tiny_model: Path, ray_cluster: int, ship_files: bool) -> None:
    src, ref, out = tmp_path / "in", tmp_path / "single", tmp_path / "ray"
    good, bad = _tree(src)
    options = BatchOptions(recursive=True)
    _reference(src, ref, tiny_model, options)
    model = load_model(str(tiny_model))
    events = []
    plan = plan_batch(src, out, options, model=model)
    report = run_batch_ray(plan, model, RayOptions(ship_files=ship_files, **WORKER),
                           progress=events.append)

    assert report.state == "finished" and len(report.done) == len(good)
    _same_outputs(ref, out)
    assert _report(out / REPORT_NAME) == _report(ref / REPORT_NAME)
    assert {r.input: r.status for r in report.rows if r.status != "done"} == bad
    ends = [e for e in events if e.finished is not None]
    assert [e.files_done for e in ends] == list(range(1, len(plan.jobs) + 1))
    assert _temporaries(out) == [] and not (out / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_worker_killed_mid_write_gives_every_file_exactly_once(
        tmp_path: Path, tiny_model: Path, ray_cluster: int) -> None:
    src, ref, out = tmp_path / "in", tmp_path / "single", tmp_path / "ray"
    names = _flat(src, 8)
    keep_both = BatchOptions(existing="number")  # a file done twice would show as "_2"
    _reference(src, ref, tiny_model, keep_both)
    marker, marker2 = tmp_path / "killed", tmp_path / "killed-after-rename"
    victim, victim2 = _out_name("img3.png"), _out_name("img5.png")

    def die_mid_write() -> None:
        """In the worker: the first time img3's output is encoded, write half, then die;
        the first time img5's output is renamed into place, die right after the rename."""
        import sr_core.imageio as imageio

        real = imageio._ENCODERS["PNG"]
        real_link = os.link

        def link(src, dst, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            real_link(src, dst, *args, **kwargs)
            if victim2 in os.path.basename(dst) and not os.path.exists(marker2):
                Path(marker2).write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)

        os.link = link

        def encode(job, f):  # noqa: ANN001, ANN202
            if victim in os.path.basename(f.name):
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return real(job, f)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                f.write(b"\x89PNG half an image")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real(job, f)

        imageio._ENCODERS["PNG"] = encode

    model = load_model(str(tiny_model))
    report = run_batch_ray(plan_batch(src, out, keep_both, model=model), model,
                           RayOptions(worker_setup=die_mid_write, **WORKER))

    for m in (marker, marker2):  # both workers really died where they were meant to
        with pytest.raises(ProcessLookupError):
            os.kill(int(m.read_text()), 0)
    assert report.state == "finished" and [r.status for r in report.rows] == ["done"] * 8
    _same_outputs(ref, out)  # every output once, each whole, no "_2" copy
    assert _files(out) == {_out_name(n) for n in names} | {REPORT_NAME}
    # img3's half-written temporary and img5's, left behind after its rename, are gone.
    assert _temporaries(out) == [] and report.removed_temporaries == 2
    rows = {r.input: r for r in report.rows}
    assert rows["img3.png"].notes == ["redone after its first Ray worker stopped"]
    assert rows["img5.png"].notes == ["finished just before its Ray worker stopped"]
    saved = load_report(out / REPORT_NAME)
    assert saved["state"] == "finished" and saved["removed_temporaries"] == 2


# --- the driver interrupted, then killed, then run again ------------------------------------
_GATED = textwrap.dedent("""
    import dataclasses, sys
    import sr_core.cluster as c
    from sr_core import cli

    GO, OPEN = sys.argv[1], sys.argv[2].split(",")

    def gate():
        # In each worker: files not in OPEN wait until the test creates GO (it never does).
        import os, time
        from sr_core import engine
        real = engine.Upscaler.upscale
        def upscale(self, photo, **kw):
            while photo.source.name not in OPEN and not os.path.exists(GO):
                time.sleep(0.05)
            return real(self, photo, **kw)
        engine.Upscaler.upscale = upscale

    make = c.options_from_args
    c.options_from_args = lambda args: dataclasses.replace(make(args), worker_setup=gate)
    sys.exit(cli.main(sys.argv[3:]))
""")


def _session_processes(sid: int) -> dict[int, str]:
    """Processes of the session ``sid`` (the driver's and every Ray process it started)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(
                    b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


@pytest.fixture
def sessions() -> list[int]:
    """Session ids of the drivers a test starts; whatever is left of them is ended after."""
    started: list[int] = []
    yield started
    for sid in started:
        for pid in _session_processes(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _start(cmd: list[str], log: Path, sessions: list[int]) -> subprocess.Popen:
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=f, start_new_session=True)
    sessions.append(proc.pid)
    return proc


def _wait_report(proc: subprocess.Popen, path: Path, log: Path, ok) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        data = load_report(path)
        if data and ok(data):
            return data
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    pytest.fail(f"the report never showed what the test waits for: {log.read_text()}")


def _reap(sid: int) -> None:
    """Wait for the Ray processes of a stopped driver to end; end the stragglers.

    Ray's gcs_server, raylet and workers must go with the driver (so nothing writes after
    it); its log/dashboard agents may linger for a minute, which is harmless: they are ended.
    """
    deadline = time.monotonic() + 60
    core = ("gcs_server", "raylet", "ray::_Worker", "ray::IDLE")
    while time.monotonic() < deadline:
        left = _session_processes(sid)
        if not any(k in cmd for cmd in left.values() for k in core):
            break
        time.sleep(0.2)
    else:
        left = _session_processes(sid)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not any(k in cmd for cmd in left.values() for k in core), left


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_ctrl_c_stops_cleanly_and_a_sigkilled_driver_resumes(
        tmp_path: Path, tiny_model: Path, sessions: list[int]) -> None:
    _need_ray()
    src, ref, out = tmp_path / "in", tmp_path / "single", tmp_path / "ray"
    good, bad = _tree(src)
    args = ["batch", str(src), str(out), "--recursive", "-m", str(tiny_model), "--device",
            "cpu", "--precision", "fp32", "--tile", "0", "--keep-both", "--ray", "local:2"]
    _reference(src, ref, tiny_model, BatchOptions(recursive=True, existing="number"))
    gated = [sys.executable, "-c", _GATED, str(tmp_path / "GO")]
    report_path = out / REPORT_NAME

    # Jobs in plan order: pic00.png, pic03.bmp, pic06.jpg, pic09.tif, ... (the top folder
    # first). Each run lets some through its workers' gate; the others wait there.
    # 1. Ctrl-C (to the whole process group, as a terminal sends it) while both workers
    # wait at the gate: exit 130 and a report that says so.
    first = _start(gated + ["pic00.png,pic03.bmp"] + args, tmp_path / "first.log", sessions)
    _wait_report(first, report_path, tmp_path / "first.log",
                 lambda d: sum(f["status"] == "done" for f in d["files"]) == 2)
    os.killpg(first.pid, signal.SIGINT)
    assert first.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()
    text = (tmp_path / "first.log").read_text()
    assert "interrupted; finished images are kept" in text and "Traceback" not in text
    _reap(first.pid)
    stopped = load_report(report_path)
    assert stopped["state"] == "interrupted"

    # 2. Resumed, then SIGKILLed while its workers are half-way through files.
    second = _start(gated + ["pic06.jpg"] + args, tmp_path / "second.log", sessions)
    _wait_report(second, report_path, tmp_path / "second.log",
                 lambda d: d["state"] == "running" and d["resumed"] == 1
                 and any(f["input"] == "pic06.jpg" and f["status"] == "done"
                         for f in d["files"]))
    os.kill(second.pid, signal.SIGKILL)
    second.wait()
    _reap(second.pid)
    killed = load_report(report_path)
    assert killed["state"] == "running"
    assert sorted(f["input"] for f in killed["files"] if f["status"] == "done") == [
        "pic00.png", "pic03.bmp", "pic06.jpg"]

    # 3. The same command again finishes the batch: every image exactly once.
    third = subprocess.run([sys.executable, "-m", "sr_core.cli"] + args, capture_output=True,
                           text=True, timeout=600, start_new_session=True)
    assert third.returncode == 1, third.stderr  # the two damaged files
    assert "resuming" in third.stderr
    _same_outputs(ref, out)  # no "_2" copies, no temporaries, every byte as single-process
    report = json.loads(report_path.read_text())
    assert report["state"] == "finished" and report["resumed"] == 2
    rows = {f["input"]: f["status"] for f in report["files"]}
    assert {k: v for k, v in rows.items() if v != "done"} == bad
    assert _temporaries(out) == [] and not (out / LOCK_NAME).exists()
    single = {f["input"]: f for f in _report(ref / REPORT_NAME)["files"]}
    for f in _report(report_path)["files"]:
        f.pop("notes", None)
        single[f["input"]].pop("notes", None)
        assert f == single[f["input"]]
