"""Downloads against a real HTTP server on 127.0.0.1 serving ../shared/weights/hpinet."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from weight_server import WeightServer

from sr_core import download
from sr_core.download import DownloadOptions, fetch
from sr_core.errors import ChecksumError, DiskFullError, DownloadError

FAST = DownloadOptions(connect_timeout=2, read_timeout=2, retries=2, backoff=0.01,
                       chunk_size=1 << 16)
SHA_S_X4 = "675abc363c9a2ea92a42d54d546bbdd19118cab10bb35b3fa1eeaa18158d0f58"  # ARCHITECTURES §1.2
NAME = "HPINet-S-x4.pth"


@pytest.fixture(scope="module")
def weights(shared: Path) -> bytes:
    return (shared / "weights" / "hpinet" / NAME).read_bytes()


@pytest.fixture()
def server():
    with WeightServer() as srv:
        yield srv


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_is_verified_and_reports_progress(server, weights, tmp_path):
    server.add(NAME, weights)
    seen: list[tuple[int, int | None]] = []
    got = fetch([server.url(NAME)], tmp_path / NAME, sha256=_sha(weights), size=len(weights),
                progress=lambda d, t: seen.append((d, t)), options=FAST)
    assert (tmp_path / NAME).read_bytes() == weights
    assert got.sha256 == _sha(weights) == SHA_S_X4
    assert got.url == server.url(NAME)
    assert not (tmp_path / f"{NAME}.part").exists()
    assert seen[-1] == (len(weights), len(weights))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_cut_transfer_resumes_from_the_part_with_range(server, weights, tmp_path):
    cut = 700_000
    server.add(NAME, weights, mode="cut", cut_at=cut)
    fetch([server.url(NAME)], tmp_path / NAME, sha256=_sha(weights), options=FAST)
    reqs = server.requests_for(NAME)
    assert [r["range"] for r in reqs] == [None, f"bytes={cut}-"]
    assert (tmp_path / NAME).read_bytes() == weights


def test_part_left_by_an_earlier_run_is_resumed(server, weights, tmp_path):
    cut = 500_000
    server.add(NAME, weights, mode="cut", cut_at=cut)
    once = DownloadOptions(connect_timeout=2, read_timeout=2, retries=0, backoff=0.01)
    with pytest.raises(DownloadError, match="closed after 500,000 of 1,974,687 bytes"):
        fetch([server.url(NAME)], tmp_path / NAME, sha256=_sha(weights), options=once)
    part = tmp_path / f"{NAME}.part"
    assert part.stat().st_size == cut and not (tmp_path / NAME).exists()
    fetch([server.url(NAME)], tmp_path / NAME, sha256=_sha(weights), options=once)
    assert server.requests_for(NAME)[-1]["range"] == f"bytes={cut}-"
    assert (tmp_path / NAME).read_bytes() == weights and not part.exists()


def test_server_ignoring_range_restarts_cleanly(server, weights, tmp_path):
    server.add(NAME, weights, mode="norange")
    (tmp_path / f"{NAME}.part").write_bytes(b"x" * 1000)  # stale part: must not be kept
    fetch([server.url(NAME)], tmp_path / NAME, sha256=_sha(weights), options=FAST)
    assert (tmp_path / NAME).read_bytes() == weights


def test_corrupted_file_is_rejected_and_nothing_is_left(server, weights, tmp_path):
    server.add(NAME, weights, mode="corrupt")
    with pytest.raises(ChecksumError, match="HPINet-S-x4.pth: the file downloaded from 127.0.0.1"):
        fetch([server.url(NAME)], tmp_path / NAME, sha256=_sha(weights), options=FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks"]


def test_wrong_size_is_refused_before_downloading(server, weights, tmp_path):
    server.add(NAME, weights)
    with pytest.raises(ChecksumError, match="offers 1,974,687 bytes but 1,000 are expected"):
        fetch([server.url(NAME)], tmp_path / NAME, size=1000, options=FAST)
    assert not (tmp_path / NAME).exists()


def test_404_is_a_clear_error_without_retries(server, tmp_path):
    url = server.url("missing.pth")
    with pytest.raises(DownloadError, match=r"^model-x: .*missing.pth not found \(HTTP 404\)\.$"):
        fetch([url], tmp_path / "missing.pth", what="model-x", options=FAST)
    assert len(server.requests_for("missing.pth")) == 1


def test_transient_503_is_retried_with_backoff(server, weights, tmp_path):
    server.add(NAME, weights, mode="flaky", times=2)
    fetch([server.url(NAME)], tmp_path / NAME, sha256=_sha(weights), options=FAST)
    assert len(server.requests_for(NAME)) == 3
    assert (tmp_path / NAME).read_bytes() == weights


def test_stalled_server_hits_the_read_timeout_quickly(server, weights, tmp_path):
    server.add(NAME, weights, mode="stall")
    opts = DownloadOptions(connect_timeout=2, read_timeout=0.4, retries=1, backoff=0.01)
    # The read timeout fired on each attempt (the message says so): no wall-clock bound,
    # which a busy machine could miss.
    stalled = r"failed after 2 attempts: no data for 0.4 s \(stalled\)"
    with pytest.raises(DownloadError, match=stalled):
        fetch([server.url(NAME)], tmp_path / NAME, sha256=_sha(weights), options=opts)
    assert len(server.requests_for(NAME)) == 2


def test_no_network_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="refused"):
        fetch([f"http://127.0.0.1:{port}/x.pth"], tmp_path / "x.pth", what="hpinet-m-x4",
              options=FAST)


def test_second_url_is_used_when_the_first_fails(server, weights, tmp_path):
    server.add(NAME, weights)
    got = fetch([server.url("gone.pth"), server.url(NAME)], tmp_path / NAME,
                sha256=_sha(weights), options=FAST)
    assert got.url == server.url(NAME)


def test_proxy_environment_is_honoured(server, weights, tmp_path, monkeypatch):
    server.add(NAME, weights)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("http_proxy", server.base)
    url = f"http://weights.finescale-test.invalid/files/{NAME}"
    fetch([url], tmp_path / NAME, sha256=_sha(weights), options=FAST)
    req = server.requests_for(NAME)[0]
    assert req["path"] == url and req["host"] == "weights.finescale-test.invalid"


def test_disk_space_is_checked_before_writing(server, weights, tmp_path, monkeypatch):
    server.add(NAME, weights)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: SimpleNamespace(free=1000))
    needed = r"not enough disk space .* \(2.0 MB needed, 1.0 KB free\)"
    with pytest.raises(DiskFullError, match=needed):
        fetch([server.url(NAME)], tmp_path / NAME, options=FAST)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux /dev/full")
def test_disk_full_while_writing_is_a_clear_error(server, weights, tmp_path):
    server.add(NAME, weights)
    (tmp_path / f"{NAME}.part").symlink_to("/dev/full")  # every write fails with ENOSPC
    with pytest.raises(DiskFullError, match="is full; free some space and download again"):
        fetch([server.url(NAME)], tmp_path / NAME, options=FAST)


@pytest.mark.parametrize("mode", ["drive-form", "drive-cookie"])
def test_google_drive_large_file_two_step_flow(server, weights, tmp_path, mode):
    server.add(NAME, weights, mode=mode)
    fetch([server.url(NAME)], tmp_path / NAME, sha256=_sha(weights), options=FAST)
    first, second = server.requests_for(NAME)
    assert "confirm" not in first["query"]
    if mode == "drive-form":
        assert second["query"] == {"id": NAME, "export": "download", "confirm": "t",
                                   "uuid": "u-123"}
    else:
        assert second["query"]["confirm"] == "TOKEN42" and "TOKEN42" in second["cookie"]
    assert (tmp_path / NAME).read_bytes() == weights


def test_a_web_page_that_is_not_drive_is_refused(server, tmp_path):
    server.add("page.pth", b"<html><p>Too many users have downloaded it</p></html>", mode="page")
    with pytest.raises(DownloadError, match="sent a web page instead of the file"):
        fetch([server.url("page.pth")], tmp_path / "page.pth", options=FAST)


def test_google_drive_confirm_parsing_of_all_three_page_kinds():
    form = ('<form id="download-form" action="https://drive.usercontent.google.com/download" '
            'method="get"><input type="hidden" name="id" value="ABC"><input type="hidden" '
            'name="export" value="download"><input type="hidden" name="confirm" value="t">'
            '<input type="hidden" name="uuid" value="9f0e"></form>')
    page_url = "https://drive.usercontent.google.com/download?id=ABC&export=download"
    assert download.google_drive_confirm_url(form, page_url, {}) == (
        "https://drive.usercontent.google.com/download?id=ABC&export=download&confirm=t&uuid=9f0e")
    link = '<a href="/uc?export=download&amp;confirm=Xy_1&amp;id=ABC">Download</a>'
    assert download.google_drive_confirm_url(link, "https://drive.google.com/uc?id=ABC", {}) == (
        "https://drive.google.com/uc?export=download&confirm=Xy_1&id=ABC")
    cookie = {"download_warning_13": "TK"}
    assert download.google_drive_confirm_url("<p>warning</p>", page_url, cookie) == (
        "https://drive.usercontent.google.com/download?id=ABC&export=download&confirm=TK")
    assert download.google_drive_confirm_url("<p>Quota exceeded</p>", page_url, {}) is None


def test_google_drive_share_links_become_direct_downloads():
    direct = "https://drive.usercontent.google.com/download?id=1AbCdEfGhIjK&export=download"
    for link in ("https://drive.google.com/file/d/1AbCdEfGhIjK/view?usp=sharing",
                 "https://drive.google.com/uc?id=1AbCdEfGhIjK&export=download",
                 "https://drive.google.com/open?id=1AbCdEfGhIjK", "gdrive:1AbCdEfGhIjK"):
        assert download.google_drive_url(link) == direct
    assert download.google_drive_url("https://github.com/a/b/raw/c/x.pth") == "https://github.com/a/b/raw/c/x.pth"


def test_mirror_variable_replaces_every_url_by_file_name(monkeypatch):
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    assert download.mirror_urls(["https://a/x.pth"], "x.pth") == ["https://a/x.pth"]
    monkeypatch.setenv(download.MIRROR_ENV, "http://mirror.lan/sr/")
    assert download.mirror_urls(["https://a/x.pth", "https://b/y.pth"], "HAT-S SRx2.pth") == [
        "http://mirror.lan/sr/HAT-S%20SRx2.pth"]


def test_two_processes_downloading_the_same_file_take_turns(server, weights, tmp_path):
    server.add(NAME, weights, mode="slow", delay=0.02)  # ~0.6 s per transfer
    script = textwrap.dedent(f"""
        from sr_core.download import fetch, DownloadOptions
        got = fetch([{server.url(NAME)!r}], {str(tmp_path / NAME)!r}, sha256={_sha(weights)!r},
                    options=DownloadOptions(retries=0))
        print(got.sha256)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all(o.strip() == _sha(weights) for o, _ in outs)
    assert server.files[NAME].hits == 1  # the second process found the finished file
    assert (tmp_path / NAME).read_bytes() == weights
