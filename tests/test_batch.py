"""Batch folder conversion: discovery, naming, existing-output policies, resume after SIGKILL,
cancel, the report, prefetch and the ETA.

The model is a random-initialised HPINet with 8-channel features (about 10k parameters): the
batch logic does not care what the pixels look like, and a real model would make the 20-image
SIGKILL test minutes long on a 2-core machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_core import cli
from sr_core.batch import (
    LOCK_NAME,
    REPORT_NAME,
    TEMPLATE_FIELDS,
    BatchOptions,
    BatchProgress,
    EtaEstimator,
    ModelLabel,
    load_report,
    plan_batch,
    run_batch,
)
from sr_core.engine import Upscaler
from sr_core.errors import FinescaleError
from sr_core.imageio import read_image

MODEL_NAME = "HPINet-custom"


# --- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny x2 HPINet saved as safetensors (what `finescale batch -m FILE` loads)."""
    from safetensors.torch import save_file

    from sr_core.archs import hpinet

    cfg = dataclasses.replace(hpinet.config("S", 2), variant="custom", dim=8, qk_dim=8,
                              mlp_dim=8, layers_per_block=1)
    torch.manual_seed(0)
    sd = {k: v.contiguous() for k, v in hpinet.build(cfg).state_dict().items()}
    path = tmp_path_factory.mktemp("model") / "tiny-hpinet-x2.safetensors"
    save_file(sd, str(path))
    return path


@pytest.fixture(scope="session")
def upscaler(tiny_model: Path) -> Upscaler:
    return Upscaler(str(tiny_model), device="cpu", precision="fp32", tile=0)


def _image(path: Path, w: int = 32, h: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _flat(root: Path, n: int) -> list[str]:
    return [_image(root / f"img{i}.png", seed=i).name for i in range(n)]


def _out_name(rel: str, model: str = MODEL_NAME) -> str:
    p = Path(rel)
    return str(p.parent / f"{p.stem}_x2_{model}{p.suffix}").removeprefix("./")


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _temporaries(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.name.endswith(".part"))


def _tree(root: Path) -> tuple[list[str], dict[str, str]]:
    """20 good images in three levels, plus damaged, unsupported and hidden files.

    Returns the good images' relative paths and {relative path: "failed" | "skipped"}.
    """
    good = []
    suffixes = (".png", ".jpg", ".webp", ".bmp", ".tif")
    for i in range(20):
        folder = ("", "sub", "sub/deeper")[i % 3]
        rel = f"{folder}/pic{i:02d}{suffixes[i % len(suffixes)]}".lstrip("/")
        _image(root / rel, w=32 + (i % 3) * 4, h=32, seed=i)
        good.append(rel)
    png = (root / "pic00.png").read_bytes()
    (root / "sub" / "truncated.png").write_bytes(png[: len(png) // 2])  # header fine, data cut
    (root / "damaged.png").write_bytes(png[:16] + b"\0" * 64)  # PNG magic, broken header
    (root / "fake.jpg").write_text("this is not a photo\n")
    (root / "notes.txt").write_text("holiday 2024\n")
    (root / "sub" / "raw.cr2").write_bytes(b"\x00\x01" * 50)
    for hidden in (".DS_Store", "Thumbs.db", "desktop.ini", ".hidden.png", ".cache/pic.png"):
        _image(root / hidden) if hidden.endswith(".png") else (root / hidden).write_bytes(b"x")
    bad = {"sub/truncated.png": "failed", "damaged.png": "failed", "fake.jpg": "skipped",
           "notes.txt": "skipped", "sub/raw.cr2": "skipped"}
    return good, bad


# --- discovery ------------------------------------------------------------------------------
def test_plan_finds_images_lists_unsupported_and_ignores_hidden(tmp_path: Path) -> None:
    good, bad = _tree(tmp_path / "in")
    plan = plan_batch(tmp_path / "in", tmp_path / "out", BatchOptions(recursive=True),
                      model=ModelLabel(MODEL_NAME, 2))
    # A truncated PNG is found out from its chunks while planning, before any model runs.
    assert sorted(j.result.input for j in plan.jobs) == sorted(good)
    assert {r.input: r.status for r in plan.rows if r.status != "pending"} == bad
    assert "truncated" in (plan.rows[[r.input for r in plan.rows].index("sub/truncated.png")]
                           .reason or "")
    assert plan.hidden == 5  # .DS_Store, Thumbs.db, desktop.ini, .hidden.png, .cache
    reasons = {r.input: r.reason or "" for r in plan.rows}
    assert "'.txt' files are not images" in reasons["notes.txt"]
    assert "holds text" in reasons["fake.jpg"]
    assert "damaged" in reasons["damaged.png"] and str(tmp_path) in reasons["damaged.png"]
    # Outputs mirror the tree.
    assert {j.result.input: j.result.output for j in plan.jobs}["sub/deeper/pic02.webp"] == \
        f"sub/deeper/pic02_x2_{MODEL_NAME}.webp"

    flat = plan_batch(tmp_path / "in", tmp_path / "out", model=ModelLabel(MODEL_NAME, 2))
    assert all("/" not in r.input for r in flat.rows)
    assert len(flat.jobs) == len([g for g in good if "/" not in g])


def test_symlink_loop_ends_and_each_image_is_found_once(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _image(src / "a" / "one.png")
    _image(src / "b" / "two.png")
    os.symlink(src, src / "a" / "loop")  # in/a/loop -> in
    os.symlink(src / "a", src / "b" / "back")  # in/b/back -> in/a
    (src / "z").mkdir()
    os.symlink(src / "a" / "one.png", src / "z" / "same.png")  # a second name for one file
    result: list = []
    t = threading.Thread(target=lambda: result.append(plan_batch(
        src, tmp_path / "out", BatchOptions(recursive=True), model=ModelLabel("M", 2))))
    t.start()
    t.join(timeout=30)
    assert not t.is_alive(), "discovery did not end: a symbolic-link loop was followed"
    plan = result[0]
    assert sorted(j.result.input for j in plan.jobs) == ["a/one.png", "b/two.png"]
    dup = next(r for r in plan.rows if r.input == "z/same.png")
    assert dup.status == "skipped" and "same file as a/one.png" in (dup.reason or "")


# --- naming ---------------------------------------------------------------------------------
def test_template_fields_format_choice_and_bad_templates(tmp_path: Path,
                                                         upscaler: Upscaler) -> None:
    _image(tmp_path / "in" / "shot.png", w=40, h=32)
    opts = BatchOptions(template="{folder}-{stem}-{width}x{height}-{in_ext}", format="jpeg")
    plan = plan_batch(tmp_path / "in", tmp_path / "out", opts, model=upscaler)
    assert [j.output.name for j in plan.jobs] == ["in-shot-80x64-png.jpg"]
    report = run_batch(plan, upscaler)
    out = read_image(tmp_path / "out" / "in-shot-80x64-png.jpg")
    assert out.format == "JPEG" and (out.width, out.height) == (80, 64)
    assert report.state == "finished"

    for bad, words in (("{stem}_{colour}.{ext}", "unknown field {colour}"),
                       ("{stem}/{model}.{ext}", "not a file name"),
                       ("{stem", "not valid")):
        with pytest.raises(FinescaleError, match=words):
            plan_batch(tmp_path / "in", tmp_path / "out", BatchOptions(template=bad),
                       model=upscaler)


def test_help_documents_every_template_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["batch", "--help"])
    text = capsys.readouterr().out
    for name in TEMPLATE_FIELDS:
        assert f"{{{name}}}" in text


# --- policies -------------------------------------------------------------------------------
def test_skip_overwrite_and_numbered_policies(tmp_path: Path, upscaler: Upscaler) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    names = _flat(src, 2)
    outs = {_out_name(n) for n in names}

    first = run_batch(plan_batch(src, dst, model=upscaler), upscaler)
    assert len(first.done) == 2 and _files(dst) == outs | {REPORT_NAME}
    stamp = {n: (dst / n).stat().st_mtime_ns for n in outs}

    again = plan_batch(src, dst, model=upscaler)  # default: skip
    assert not again.jobs and all("already exists" in (r.reason or "") for r in again.skipped)
    run_batch(again, upscaler)
    assert {n: (dst / n).stat().st_mtime_ns for n in outs} == stamp

    inode = {n: (dst / n).stat().st_ino for n in outs}
    over = run_batch(plan_batch(src, dst, BatchOptions(existing="overwrite"), model=upscaler),
                     upscaler)
    assert len(over.done) == 2 and _files(dst) == outs | {REPORT_NAME}
    assert all((dst / n).stat().st_ino != inode[n] for n in outs)  # replaced by a rename

    numbered = BatchOptions(existing="number")
    run_batch(plan_batch(src, dst, numbered, model=upscaler), upscaler)
    run_batch(plan_batch(src, dst, numbered, model=upscaler), upscaler)
    stems = [n.removesuffix(".png") for n in sorted(outs)]
    assert _files(dst) == outs | {REPORT_NAME} | {
        f"{s}_{k}.png" for s in stems for k in (2, 3)}
    assert _temporaries(dst) == []


def test_output_never_replaces_an_input_when_out_dir_is_in_dir(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    names = _flat(src, 2)
    before = {n: (src / n).read_bytes() for n in names}
    label = ModelLabel("M", 2)
    same = BatchOptions(template="{stem}.{ext}", existing="overwrite")
    plan = plan_batch(src, src, same, model=label)
    assert not plan.jobs
    assert all("is an input file" in (r.reason or "") for r in plan.skipped)
    numbered = plan_batch(src, src, dataclasses.replace(same, existing="number"), model=label)
    assert sorted(j.output.name for j in numbered.jobs) == ["img0_2.png", "img1_2.png"]
    assert {n: (src / n).read_bytes() for n in names} == before


def test_out_dir_equal_to_in_dir_does_not_reprocess_outputs(tmp_path: Path,
                                                            upscaler: Upscaler) -> None:
    src = tmp_path / "photos"
    _flat(src, 2)
    run_batch(plan_batch(src, src, model=upscaler), upscaler)
    keep = BatchOptions(existing="number")
    second = plan_batch(src, src, keep, model=upscaler)
    assert sorted(j.result.input for j in second.jobs) == ["img0.png", "img1.png"]
    assert all("upscaled output of" in (r.reason or "") for r in second.skipped)
    over = plan_batch(src, src, BatchOptions(existing="overwrite"), model=upscaler)
    assert sorted(j.output.name for j in over.jobs) == sorted(
        _out_name(n) for n in ("img0.png", "img1.png"))  # replaces its own outputs only
    run_batch(second, upscaler)
    third = plan_batch(src, src, keep, model=upscaler)  # the "_2" copies are ours too
    assert sorted(j.result.input for j in third.jobs) == ["img0.png", "img1.png"]
    assert not any(MODEL_NAME + "_x2" in n for n in _files(src))


def test_out_dir_inside_in_dir_with_recursion(tmp_path: Path, upscaler: Upscaler) -> None:
    src = tmp_path / "photos"
    _flat(src, 2)
    _image(src / "trip" / "beach.png", seed=7)
    dst = src / "upscaled"
    opts = BatchOptions(recursive=True)
    run_batch(plan_batch(src, dst, opts, model=upscaler), upscaler)
    assert _files(dst) == {_out_name("img0.png"), _out_name("img1.png"),
                           _out_name("trip/beach.png"), REPORT_NAME}
    again = plan_batch(src, dst, dataclasses.replace(opts, existing="number"), model=upscaler)
    assert sorted(j.result.input for j in again.jobs) == ["img0.png", "img1.png",
                                                          "trip/beach.png"]
    assert not any(r.input.startswith("upscaled") for r in again.rows)


# --- running: failures, cancel, resume, prefetch, progress ----------------------------------
class _Recorder:
    """Wraps an Upscaler: records which files had been read when each upscale started, and
    whether the next file was read while this one was still being upscaled (it waits for
    that read, so the check is about order, never about how fast the machine is)."""

    def __init__(self, inner: Upscaler, read: dict[str, threading.Event],
                 fail: str | None = None) -> None:
        self.model = inner.model
        self.inner = inner
        self.read = read
        self.fail = fail
        self.read_at_start: dict[str, set[str]] = {}
        self.next_read_during: dict[str, bool] = {}

    def upscale(self, photo, **kw):  # noqa: ANN001, ANN003 - the Upscaler's signature
        name = photo.source.name
        self.read_at_start[name] = {n for n, e in self.read.items() if e.is_set()}
        if self.fail and name == self.fail:
            raise RuntimeError("simulated bug\nsecond line")
        nxt = f"img{int(name[3]) + 1}.png"
        if nxt in self.read:
            # 60 s only guards against a hang: a prefetching batch reads it meanwhile.
            self.next_read_during[name] = self.read[nxt].wait(timeout=60)
        return self.inner.upscale(photo, **kw)


def test_prefetch_on_background_thread_and_a_bad_file_does_not_stop_the_batch(
        tmp_path: Path, upscaler: Upscaler, monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_core.batch import running as batch

    src, dst = tmp_path / "in", tmp_path / "out"
    _flat(src, 3)
    threads: dict[str, str] = {}
    read = {f"img{i}.png": threading.Event() for i in range(3)}
    real_read = batch._read

    def spy(job):  # noqa: ANN001, ANN202
        photo = real_read(job)
        threads[job.source.name] = threading.current_thread().name
        read[job.source.name].set()
        return photo

    monkeypatch.setattr(batch, "_read", spy)
    rec = _Recorder(upscaler, read, fail="img1.png")
    events: list[BatchProgress] = []
    report = run_batch(plan_batch(src, dst, model=upscaler), rec, progress=events.append)

    assert all(name.startswith("finescale-prefetch") for name in threads.values())
    # One ahead: img1 is read while img0 is upscaled, and img2 not before img0 started.
    assert rec.next_read_during["img0.png"] and "img2.png" not in rec.read_at_start["img0.png"]
    assert [r.input for r in report.done] == ["img0.png", "img2.png"]
    failed = report.failed[0]
    assert failed.input == "img1.png" and "RuntimeError (simulated bug)" in failed.reason
    assert _files(dst) == {_out_name("img0.png"), _out_name("img2.png"), REPORT_NAME}

    done = [e.files_done for e in events]
    assert done == sorted(done) and done[-1] == 3 and {e.files_total for e in events} == {3}
    assert any(e.current == "img2.png" and e.tiles_total == 1 for e in events)
    assert events[-1].finished is not None and events[-1].eta == 0.0


def test_cancel_between_tiles_writes_nothing_and_the_next_run_resumes(
        tmp_path: Path, tiny_model: Path) -> None:
    up = Upscaler(str(tiny_model), device="cpu", precision="fp32", tile=120)
    src, dst = tmp_path / "in", tmp_path / "out"
    for i in range(3):  # big1 is 4 tiles of 120 px (context included); the others 1
        _image(src / f"big{i}.png", w=128 if i == 1 else 32, h=32, seed=i)
    cancel = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(p: BatchProgress) -> None:
        if p.current == "big1.png" and p.tiles_done >= 1:
            seen.append((p.tiles_done, p.tiles_total))
            cancel.set()

    report = run_batch(plan_batch(src, dst, model=up), up, progress=progress, cancel=cancel)
    assert seen == [(1, seen[0][1])] and seen[0][1] > 1  # stopped after the first tile
    assert report.state == "cancelled"
    assert [(r.input, r.status) for r in report.rows] == [
        ("big0.png", "done"), ("big1.png", "pending"), ("big2.png", "pending")]
    assert _files(dst) == {_out_name("big0.png"), REPORT_NAME} and _temporaries(dst) == []
    assert load_report(dst / REPORT_NAME)["state"] == "cancelled"

    resumed = plan_batch(src, dst, model=up)
    assert resumed.resumed and [r.input for r in resumed.done_before] == ["big0.png"]
    assert [j.result.input for j in resumed.jobs] == ["big1.png", "big2.png"]
    final = run_batch(resumed, up)
    assert final.state == "finished" and len(final.done) == 3 and final.resumed == 1
    assert _files(dst) == {_out_name(f"big{i}.png") for i in range(3)} | {REPORT_NAME}


def test_resume_counts_an_output_finished_after_the_last_report_write(
        tmp_path: Path, upscaler: Upscaler) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    _flat(src, 2)
    numbered = BatchOptions(existing="number")
    run_batch(plan_batch(src, dst, numbered, model=upscaler), upscaler)
    # What a kill leaves when it strikes after img1's rename but before the report said so.
    report = json.loads((dst / REPORT_NAME).read_text())
    report["state"] = "running"
    report["files"][1]["status"] = "pending"
    (dst / REPORT_NAME).write_text(json.dumps(report))
    plan = plan_batch(src, dst, numbered, model=upscaler)
    assert plan.resumed and not plan.jobs  # not redone as a numbered copy
    assert "finished just before" in plan.done_before[1].notes[0]

    # Overwrite policy: a pending output that still has the old file's mtime is not ours.
    out1 = dst / _out_name("img1.png")
    report["files"][1]["replaces_mtime_ns"] = out1.stat().st_mtime_ns
    (dst / REPORT_NAME).write_text(json.dumps(report))
    again = plan_batch(src, dst, BatchOptions(existing="overwrite"), model=upscaler)
    assert [j.result.input for j in again.jobs] == ["img1.png"]

    # An input changed since the interrupted run is redone, and a finished run is not resumed.
    _image(src / "img0.png", seed=99)
    assert "img0.png" in [j.result.input for j in
                          plan_batch(src, dst, numbered, model=upscaler).jobs]
    report["state"] = "finished"
    (dst / REPORT_NAME).write_text(json.dumps(report))
    assert not plan_batch(src, dst, numbered, model=upscaler).resumed


def test_stale_temporaries_are_removed_and_a_second_batch_is_locked_out(
        tmp_path: Path, upscaler: Upscaler) -> None:
    from filelock import FileLock

    src, dst = tmp_path / "in", tmp_path / "out"
    _flat(src, 1)
    (dst / "sub").mkdir(parents=True)
    stale = [dst / ".img0_x2_M.png.0123abcd.part", dst / "sub" / ".a.tif.deadbeef.part",
             dst / f".{REPORT_NAME}.00ff00ff.part"]
    mine = [dst / ".notes.part", dst / "draft.part", dst / ".a.png.xyz.part"]
    for p in stale + mine:
        p.write_bytes(b"half")
    plan = plan_batch(src, dst, model=upscaler)
    with FileLock(str(dst / LOCK_NAME)), pytest.raises(FinescaleError,
                                                       match="Another Finescale batch"):
        run_batch(plan, upscaler)
    assert all(p.exists() for p in stale)  # the lock holder's files were left alone
    report = run_batch(plan, upscaler)
    assert report.removed_temporaries == 3
    assert not any(p.exists() for p in stale) and all(p.exists() for p in mine)
    assert not (dst / LOCK_NAME).exists()


def test_eta_counts_pixels_not_files() -> None:
    now = [0.0]
    eta = EtaEstimator(total_pixels=1_000_000, clock=lambda: now[0])
    assert eta.seconds_left(0) is None
    eta.start()
    now[0] = 10.0
    # A 100k-pixel photo took 10 s; 900k pixels are left, whatever the number of files.
    assert eta.seconds_left(100_000) == pytest.approx(90.0)
    eta.drop(400_000)  # a 400k-pixel file failed: it will not be processed
    assert eta.seconds_left(100_000) == pytest.approx(50.0)


def test_cli_bad_template_is_one_sentence_before_loading_a_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _flat(tmp_path / "in", 1)
    code = cli.main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "-m",
                     str(tmp_path / "missing.safetensors"), "--name", "{stem}_{colour}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "unknown field {colour}" in err[0]
    assert not (tmp_path / "out").exists()


# --- the process killed with SIGKILL, then started again ------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_midway_then_restart_produces_every_image_exactly_once(
        tmp_path: Path, tiny_model: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    good, bad = _tree(src)
    # --keep-both: redoing a finished file would show up as a "_2" copy.
    cmd = [sys.executable, "-m", "sr_core.cli", "batch", str(src), str(dst), "--recursive",
           "-m", str(tiny_model), "--device", "cpu", "--precision", "fp32", "--tile", "0",
           "--keep-both"]
    report_path = dst / REPORT_NAME
    with open(tmp_path / "first.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline:
                data = load_report(report_path)
                if data and any(f["status"] == "done" for f in data["files"]):
                    break
                assert proc.poll() is None, (tmp_path / "first.log").read_text()
                time.sleep(0.02)
            else:
                pytest.fail("no file was finished in time")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    killed = load_report(report_path)
    assert killed["state"] == "running"
    done_before = sum(f["status"] == "done" for f in killed["files"])
    assert 1 <= done_before < len(good)
    for rel in _files(dst) - {REPORT_NAME}:  # whatever exists under a final name is whole
        if not rel.split("/")[-1].startswith("."):
            read_image(dst / rel)

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 1, second.stderr  # two damaged files
    assert "resuming" in second.stderr

    expected = {_out_name(g) for g in good}
    assert _files(dst) == expected | {REPORT_NAME}  # exactly once: no "_2" copies, no temps
    for rel in expected:
        src_rel = next(g for g in good if _out_name(g) == rel)
        i = int(Path(src_rel).stem[3:])
        out = read_image(dst / rel)
        assert (out.width, out.height) == (2 * (32 + (i % 3) * 4), 64)
    assert _temporaries(dst) == [] and not (dst / LOCK_NAME).exists()

    report = json.loads(report_path.read_text())
    assert report["state"] == "finished" and report["resumed"] == 1
    rows = {f["input"]: f for f in report["files"]}
    assert {k: v["status"] for k, v in rows.items() if v["status"] != "done"} == bad
    assert sorted(k for k, v in rows.items() if v["status"] == "done") == sorted(good)
    for rel in bad:
        assert rows[rel]["reason"] and (str(src / rel) in rows[rel]["reason"])
    assert all(rows[g].get("seconds") is not None or "finished just before" in
               " ".join(rows[g].get("notes", [])) for g in good)
    for rel in ("sub/truncated.png", "damaged.png"):
        assert rows[rel]["reason"] in second.stderr


# --- hostile names and entries (issue 18) ---------------------------------------------------
@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes")
def test_a_name_that_is_not_utf8_is_converted_and_recorded_exactly(
        tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    raw = b"bad_\xff\xfe.png"
    _image(Path(os.fsdecode(bytes(src) + b"/" + raw)))
    out = tmp_path / "out"
    for _ in range(2):  # the crash was on every rerun
        code = cli.main(["batch", str(src), str(out), "-m", str(tiny_model), "--tile", "0",
                         "--device", "cpu"])
        assert code == 0
        assert "Traceback" not in capsys.readouterr().err
    report = json.loads((out / REPORT_NAME).read_bytes().decode("utf-8"))
    row = report["files"][0]
    assert bytes.fromhex(row["name_bytes"]) == raw
    assert os.fsencode(row["input"]) == raw  # the escaped name round-trips too
    written = os.listdir(bytes(out))
    assert bytes.fromhex(row["output_name_bytes"]) in written


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_pipes_devices_and_folders_named_like_images_are_listed_with_the_true_reason(
        tmp_path: Path) -> None:
    src = tmp_path / "in"
    _image(src / "good.png")
    os.mkfifo(src / "pipe.png")
    (src / "folder.jpg").mkdir()
    (src / "broken.png").symlink_to(src / "nowhere.png")
    if os.path.exists("/dev/null"):
        (src / "device.png").symlink_to("/dev/null")
    plan = plan_batch(src, tmp_path / "out", BatchOptions(), model=ModelLabel("M", 2))
    reasons = {r.input: r.reason for r in plan.skipped}
    assert "named pipe" in reasons["pipe.png"]
    assert "it is a folder" in reasons["folder.jpg"] and "--recursive" in reasons["folder.jpg"]
    assert "broken link" in reasons["broken.png"]
    if "device.png" in reasons:
        assert "a device" in reasons["device.png"] and "broken" not in reasons["device.png"]
    assert [j.source.name for j in plan.jobs] == ["good.png"]


def test_batch_finds_phone_formats_by_the_shared_suffix_list(tmp_path: Path) -> None:
    from sr_core import formats

    if "HEIF" not in formats.read_formats():
        pytest.skip("pillow-heif is not installed")
    src = tmp_path / "in"
    src.mkdir()
    rgb = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "IMG_0002.HEIC", format="HEIF", quality=90)
    plan = plan_batch(src, tmp_path / "out", BatchOptions(), model=ModelLabel("M", 2))
    assert [j.source.name for j in plan.jobs] == ["IMG_0002.HEIC"]
    assert plan.jobs[0].format == "HEIF" and plan.jobs[0].output.suffix == ".HEIC"
