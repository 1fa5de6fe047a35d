"""The model catalogue and cache: models.toml, ensure_model / load_model by id, trust on
first use, safe conversion to safetensors, import, remove, verify, default model, the CLI.

Every download comes from a real HTTP server on 127.0.0.1 (FINESCALE_MIRROR points there);
no test touches the real network.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from weight_server import WeightServer

from sr_core import catalog, installer, load_model, paths
from sr_core.cli import main
from sr_core.download import DownloadOptions
from sr_core.errors import (
    CheckpointError,
    ChecksumError,
    DownloadError,
    FinescaleError,
    ModelNotFoundError,
    UnknownArchitectureError,
    UnsafeCheckpointError,
)

FAST = DownloadOptions(connect_timeout=2, read_timeout=2, retries=1, backoff=0.01)
HPINET_FILES = ("HPINet-S-x4.pth", "HPINet-M-x2.pth", "HPINet-M-x3.pth", "HPINet-M-x4.pth")


@pytest.fixture(scope="module")
def hpinet_dir(shared: Path) -> Path:
    return shared / "weights" / "hpinet"


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv(paths.CACHE_ENV, str(d))
    return d


@pytest.fixture()
def server(hpinet_dir, monkeypatch):
    with WeightServer() as srv:
        for name in HPINET_FILES:
            srv.add(name, (hpinet_dir / name).read_bytes())
        monkeypatch.setenv("FINESCALE_MIRROR", f"{srv.base}/files")
        yield srv


def _catalogue(tmp_path: Path, monkeypatch, text: str) -> None:
    """Use a catalogue of our own (resources dir with models.toml) for one test."""
    res = tmp_path / "resources"
    (res / "weights").mkdir(parents=True, exist_ok=True)
    (res / "models.toml").write_text(text)
    monkeypatch.setattr(paths, "resources_dir", lambda: res)


def _tofu_entry(mid: str, filename: str, arch: str = "hpinet", variant: str = "S",
                scale: int = 4) -> str:
    return (f'[models.{mid}]\narch = "{arch}"\nvariant = "{variant}"\nscale = {scale}\n'
            f'title = "{mid}"\nurls = ["https://example.invalid/{filename}"]\n'
            f'filename = "{filename}"\nlicence = "test"\n')


def _weights_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


# --- the shipped catalogue ----------------------------------------------------------------------
def test_shipped_catalogue_lists_every_official_model_with_its_facts():
    ids = [e.id for e in catalog.entries()]
    for want in ("hpinet-s-x4", "hpinet-m-x2", "hpinet-m-x3", "hpinet-m-x4", "hpinet-l-x4",
                 "hat-s-x2", "hat-x3", "hat-l-x4", "real-hat-gan-x4", "asid-x2", "asid-d8-x4",
                 "finescale-asid-x4"):
        assert want in ids
    assert len(ids) == len(set(ids))
    for e in catalog.entries():
        assert e.description and e.licence and e.source and e.params, e.id
        assert e.downloadable or e.embedded or "finescale models import" in e.note, e.id
    m4 = catalog.get("hpinet-m-x4")
    assert (m4.arch, m4.variant, m4.scale, m4.params) == ("hpinet", "M", 4, 895659)
    assert m4.psnr["Set5"] == pytest.approx(32.60) and m4.pinned
    assert not catalog.get("hpinet-l-x4").pinned  # hash unknown: trust on first use
    hat = catalog.get("hat-s-x4")
    assert hat.mirrors and not hat.urls and not hat.pinned  # third-party mirror: unverified
    ours = catalog.get("finescale-asid-x4")
    assert ours.embedded and ours.pinned and catalog.is_installed("finescale-asid-x4")
    for s in (2, 3, 4):  # our SPIN weights: no official ones exist
        spin = catalog.get(f"finescale-spin-x{s}")
        assert (spin.arch, spin.scale, spin.embedded, spin.pinned) == ("spin", s, True, True)
        assert catalog.is_installed(spin.id)
        assert load_model(installer.install(spin.id)).scale == s


def test_published_hashes_and_sizes_match_the_official_files(hpinet_dir):
    for name in HPINET_FILES:
        e = next(x for x in catalog.entries() if x.filename == name)
        data = (hpinet_dir / name).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (e.sha256, e.size), e.id


def test_unknown_id_is_one_clear_sentence():
    with pytest.raises(ModelNotFoundError, match=r"'hpinet-x4' is neither a file nor a known model "
                                                 r"\(did you mean .*hpinet"):
        catalog.get("hpinet-x4")


def test_cache_location_follows_platformdirs_and_the_environment(monkeypatch, tmp_path):
    from platformdirs import user_data_dir

    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    assert paths.cache_dir() == Path(user_data_dir("finescale")) / "models"
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c"


def test_resources_are_found_inside_a_pyinstaller_bundle(monkeypatch, tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "sr_core" / "resources").mkdir(parents=True)
    (bundle / "sr_core" / "resources" / "models.toml").write_text("schema = 1\n")
    monkeypatch.setattr("sys._MEIPASS", str(bundle), raising=False)
    assert paths.resources_dir() == bundle / "sr_core" / "resources"
    monkeypatch.delattr("sys._MEIPASS")
    assert (paths.resources_dir() / "models.toml").is_file()  # the checkout or the wheel
    with pytest.raises(ValueError):
        paths.resource_path("../pyproject.toml")


# --- downloads into the cache -------------------------------------------------------------------
def test_load_model_by_id_downloads_converts_and_then_hits_the_cache(cache, server, hpinet_dir):
    seen: list[int] = []
    path = installer.install("hpinet-s-x4", progress=lambda d, t: seen.append(d), options=FAST)
    assert path == cache / "hpinet-s-x4.safetensors" and seen[-1] == 1_974_687
    sd = load_file(str(path))  # a real safetensors file, keys already unwrapped
    assert not any(k.startswith("module.") for k in sd)
    assert catalog.status("hpinet-s-x4").verified and catalog.is_installed("hpinet-s-x4")
    assert not (cache / "downloads" / "HPINet-S-x4.pth").exists()  # the pickle is not kept
    model = load_model("hpinet-s-x4")  # cache hit: no second request
    assert len(server.requests_for("HPINet-S-x4.pth")) == 1
    assert (model.arch, model.variant, model.scale, model.num_params) == ("hpinet", "S", 4, 463131)
    direct = load_model(hpinet_dir / "HPINet-S-x4.pth").net.state_dict()
    ours = model.net.state_dict()
    assert ours.keys() == direct.keys() and all(torch.equal(ours[k], direct[k]) for k in ours)


def test_corrupted_download_is_rejected_and_the_cache_stays_clean(cache, server):
    server.files["HPINet-M-x2.pth"].mode = "corrupt"
    with pytest.raises(ChecksumError, match="^hpinet-m-x2: the file downloaded from 127.0.0.1"):
        installer.install("hpinet-m-x2", options=FAST)
    assert _weights_files(cache) == []
    assert not catalog.is_installed("hpinet-m-x2")


def test_missing_file_on_the_server_is_a_404_naming_the_model(cache, server):
    not_found = r"^hpinet-l-x4: .*HPINet-L-x4.pth not found \(HTTP 404\)"
    with pytest.raises(DownloadError, match=not_found):
        installer.install("hpinet-l-x4", options=FAST)
    assert _weights_files(cache) == []


def test_unwritable_cache_is_one_clear_sentence(tmp_path, monkeypatch, hpinet_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(paths.CACHE_ENV, str(blocker / "models"))
    with pytest.raises(FinescaleError, match="hpinet-m-x4: cannot write to the model cache .*"
                                             "set FINESCALE_CACHE_DIR to a writable folder"):
        installer.install("hpinet-m-x4")
    with pytest.raises(FinescaleError, match="cannot write to the model cache"):
        installer.import_checkpoint(hpinet_dir / "HPINet-S-x4.pth")


def test_models_without_a_direct_link_say_how_to_import_them(cache):
    with pytest.raises(ModelNotFoundError, match="no direct download for HAT_SRx2.pth; get it from "
                                                 "https://drive.google.com/.* --name hat-x2"):
        installer.install("hat-x2")


def test_trust_on_first_use_records_the_hash_and_checks_it_later(cache, server, tmp_path,
                                                                  monkeypatch, hpinet_dir):
    _catalogue(tmp_path, monkeypatch, "schema = 1\n" + _tofu_entry("tofu-s-x4", "tofu.pth"))
    data = (hpinet_dir / "HPINet-S-x4.pth").read_bytes()
    server.add("tofu.pth", data)
    installer.install("tofu-s-x4", options=FAST)
    trust = json.loads((cache / "trust.json").read_text())
    assert trust["tofu-s-x4"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert not catalog.status("tofu-s-x4").verified  # listed as unverified
    assert installer.verify("tofu-s-x4").ok
    installer.remove("tofu-s-x4")
    server.add("tofu.pth", data[:-10] + b"0123456789")  # the "same" file changed upstream
    with pytest.raises(ChecksumError, match="tofu-s-x4: .*not the expected one"):
        installer.install("tofu-s-x4", options=FAST)
    assert not catalog.is_installed("tofu-s-x4")


def test_unverified_download_of_the_wrong_model_is_refused(cache, server, tmp_path, monkeypatch,
                                                           hpinet_dir):
    _catalogue(tmp_path, monkeypatch, "schema = 1\n" + _tofu_entry(
        "hpinet-l-x4", "HPINet-L-x4.pth", variant="L"))
    server.add("HPINet-L-x4.pth", (hpinet_dir / "HPINet-S-x4.pth").read_bytes())
    with pytest.raises(CheckpointError, match="holds HPINet S x4 weights, not hpinet-l-x4"):
        installer.install("hpinet-l-x4", options=FAST)
    assert _weights_files(cache) == [] and not (cache / "trust.json").exists()


class _Payload:
    """Unpickling this writes a file: the attack weights_only=True must stop."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_its_payload_never_runs(cache, server, tmp_path,
                                                                monkeypatch):
    armed = tmp_path / "armed.txt"
    pickle.loads(pickle.dumps(_Payload(armed)))  # the payload is live: plain pickle runs it
    assert armed.read_text() == "pwned"
    marker = tmp_path / "payload-ran.txt"
    evil = tmp_path / "evil.pth"
    torch.save({"params": {"conv.weight": torch.zeros(1)}, "x": _Payload(marker)}, evil)
    legacy = tmp_path / "evil-legacy.pth"
    legacy.write_bytes(pickle.dumps({"conv.weight": _Payload(marker)}))
    _catalogue(tmp_path, monkeypatch, "schema = 1\n" + _tofu_entry("evil-x4", "evil.pth"))
    server.add("evil.pth", evil.read_bytes())
    with pytest.raises(UnsafeCheckpointError, match="nothing in it was run"):
        installer.install("evil-x4", options=FAST)
    for f in (evil, legacy):
        with pytest.raises(CheckpointError):
            installer.import_checkpoint(f)
    assert not marker.exists()
    assert _weights_files(cache) == []


def test_two_threads_asking_for_one_model_download_it_once(cache, server):
    server.files["HPINet-M-x3.pth"].mode = "slow"
    server.files["HPINet-M-x3.pth"].delay = 0.01
    results: list[Path | BaseException] = []

    def worker() -> None:
        try:
            results.append(installer.install("hpinet-m-x3", options=FAST))
        except BaseException as e:  # pragma: no cover - reported by the assert below
            results.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [cache / "hpinet-m-x3.safetensors"] * 2
    assert server.files["HPINet-M-x3.pth"].hits == 1
    assert installer.verify("hpinet-m-x3").ok


# --- remove, verify, default --------------------------------------------------------------------
def test_remove_and_verify(cache, server):
    path = installer.install("hpinet-m-x4", options=FAST)
    assert installer.verify("hpinet-m-x4").message == "matches the published sha256"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    result = installer.verify("hpinet-m-x4")
    assert not result.ok and "changed since it was stored" in result.message
    assert installer.remove("hpinet-m-x4") > 3_000_000
    assert not catalog.is_installed("hpinet-m-x4") and not path.exists()
    with pytest.raises(ModelNotFoundError, match="hpinet-m-x4: is not installed"):
        installer.remove("hpinet-m-x4")
    with pytest.raises(FinescaleError, match="finescale-asid-x4: ships with Finescale"):
        installer.remove("finescale-asid-x4")


def test_default_model_names_what_to_download_until_one_is_installed(cache, server, tmp_path,
                                                                     monkeypatch):
    # The shipped catalogue, as in an installation whose embedded weights went missing.
    shipped = (paths.resources_dir() / "models.toml").read_text()
    _catalogue(tmp_path, monkeypatch, shipped)
    assert not catalog.is_installed("finescale-asid-x4")
    with pytest.raises(ModelNotFoundError, match="run `finescale models download hpinet-m-x4`"):
        catalog.default_model()
    installer.install("hpinet-m-x4", options=FAST)
    assert catalog.default_model() == "hpinet-m-x4"


def test_embedded_weights_count_as_installed_and_are_the_default(cache, tmp_path, monkeypatch,
                                                                  golden):
    src = golden / "hpinet_S_x4_37x53.weights.safetensors"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    _catalogue(tmp_path, monkeypatch, f'''schema = 1
default = ["ours-x4", "hpinet-m-x4"]
[models.ours-x4]
arch = "hpinet"
variant = "S"
scale = 4
title = "Ours x4"
file = "weights/ours-x4.safetensors"
sha256 = "{digest}"
[models.hpinet-m-x4]
arch = "hpinet"
variant = "M"
scale = 4
title = "HPINet-M x4"
urls = ["https://example.invalid/HPINet-M-x4.pth"]
''')
    with pytest.raises(ModelNotFoundError, match="download hpinet-m-x4"):
        catalog.default_model()
    with pytest.raises(ModelNotFoundError, match="ours-x4: its weights ship with Finescale"):
        installer.install("ours-x4")
    (tmp_path / "resources" / "weights" / "ours-x4.safetensors").write_bytes(src.read_bytes())
    assert catalog.default_model() == "ours-x4" and catalog.is_installed("ours-x4")
    shipped = tmp_path / "resources" / "weights" / "ours-x4.safetensors"
    assert installer.install("ours-x4") == shipped
    assert installer.verify("ours-x4").ok and catalog.status("ours-x4").verified
    assert load_model("ours-x4").variant == "S"
    assert not cache.exists()  # nothing was downloaded or copied


# --- import -------------------------------------------------------------------------------------
def test_import_of_an_official_file_becomes_the_verified_catalogue_entry(cache, hpinet_dir):
    entry = installer.import_checkpoint(hpinet_dir / "HPINet-M-x2.pth")
    assert entry.id == "hpinet-m-x2" and catalog.status("hpinet-m-x2").verified
    assert load_model("hpinet-m-x2").scale == 2


def test_import_of_an_own_checkpoint_under_a_name(cache, tmp_path, golden):
    sd = load_file(str(golden / "hpinet_M_x3_24x24.weights.safetensors"))
    mine = tmp_path / "My HPINet (x3).pth"
    torch.save({"params_ema": {f"module.{k}": v for k, v in sd.items()}}, mine)
    entry = installer.import_checkpoint(mine)
    assert entry.id == "my-hpinet-x3" and entry.origin == "import"
    assert (entry.arch, entry.scale) == ("hpinet", 3)
    assert "my-hpinet-x3" in [e.id for e in catalog.entries()]
    st = catalog.status("my-hpinet-x3")
    assert st.installed and not st.verified
    assert installer.verify("my-hpinet-x3").ok
    assert load_model("my-hpinet-x3").variant == "M"
    with pytest.raises(FinescaleError, match="already installed"):
        installer.import_checkpoint(mine)
    with pytest.raises(CheckpointError, match="not HPINet-M x4; import it under another --name"):
        installer.import_checkpoint(mine, name="hpinet-m-x4")
    installer.remove("my-hpinet-x3")
    with pytest.raises(ModelNotFoundError):
        catalog.get("my-hpinet-x3")


def test_import_refuses_a_different_file_under_a_verified_id(cache, tmp_path, golden):
    src = golden / "hpinet_S_x4_37x53.weights.safetensors"  # HPINet-S x4, but not the official
    with pytest.raises(ChecksumError, match="is not the HPINet-S x4 file"):
        installer.import_checkpoint(src, name="hpinet-s-x4")


def test_import_of_a_foreign_architecture_explains_spandrel(cache, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "spandrel", None)  # not installed
    odd = tmp_path / "esrgan.safetensors"
    save_file({"conv_first.weight": torch.zeros(64, 3, 3, 3), "body.0.w": torch.zeros(4)}, odd)
    with pytest.raises(UnknownArchitectureError,
                       match=r"need the optional spandrel package, which is not installed: "
                             r"pip install \"finescale\[community\]\""):
        installer.import_checkpoint(odd)
    assert not cache.exists() or _weights_files(cache) == []


def test_import_of_a_foreign_architecture_through_spandrel(cache, tmp_path):
    spandrel = pytest.importorskip("spandrel", reason="optional extra finescale[community]")
    from spandrel.architectures.ESRGAN import ESRGAN

    net = ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=1, scale=4).eval()
    src = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, src)
    entry = installer.import_checkpoint(src)
    assert (entry.id, entry.arch, entry.scale, entry.community) == ("tiny", "esrgan", 4, True)
    model = load_model("tiny")  # the same SRModel convention as our own families
    x = torch.rand(1, 3, 20, 23)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    assert model.name == "ESRGAN x4" and spandrel.__version__


# --- the command line ---------------------------------------------------------------------------
def test_cli_models_list_download_verify_remove(cache, server, capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    row = next(r for r in rows if r["id"] == "hpinet-m-x4")
    assert {k: row[k] for k in ("arch", "scale", "size", "installed", "verified", "licence")} == {
        "arch": "hpinet", "scale": 4, "size": 3698017, "installed": False, "verified": True,
        "licence": "none stated"}
    assert main(["models", "download", "hpinet-m-x4", "hpinet-s-x4"]) == 0
    out = capsys.readouterr().out
    assert "hpinet-m-x4: installed" in out and "hpinet-s-x4: installed" in out
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert any(line.split()[:6] == ["hpinet-m-x4", "hpinet", "x4", "paper-exact", "3.6", "MB"]
               and " yes " in line for line in table.splitlines())
    assert any(line.split()[:4] == ["finescale-asid-x4-photo", "asid", "x4", "photo"]
               for line in table.splitlines())
    assert main(["models", "verify"]) == 0
    assert "hpinet-m-x4: ok" in capsys.readouterr().out
    assert main(["models", "remove", "hpinet-s-x4"]) == 0
    assert main(["models", "download", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'no-such-model' is neither a file nor a known model" in err


def test_cli_models_import(cache, hpinet_dir, capsys):
    official = str(hpinet_dir / "HPINet-S-x4.pth")
    assert main(["models", "import", official, "--name", "hpinet-s-x4"]) == 0
    out = capsys.readouterr().out
    assert "imported as hpinet-s-x4 (HPINet-S x4, verified against the catalogue)" in out
    assert main(["models", "import", str(cache / "nope.pth")]) == 1
    assert "nope.pth: no such file." in capsys.readouterr().err
