"""A hostile corpus made at test time: broken images, bad checkpoints, bad places, bad options.

Nothing binary is committed: :func:`build` writes every file into a temporary folder from a
fixed seed and returns the cases. Each case is one ``finescale`` command line that must fail
cleanly: exit code 1 or 2, one sentence and no traceback, nothing written where the output
would go, and its inputs unchanged.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file


@dataclass
class Case:
    """One command line that must fail cleanly.

    ``inputs`` must be byte-for-byte unchanged afterwards; ``outputs`` must not exist
    afterwards (or, if they existed before, be unchanged); ``watch`` are folders whose
    listing must not change (an output folder, the model cache).
    """

    name: str
    argv: list[str]
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    watch: list[Path] = field(default_factory=list)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def _png(width: int, height: int, *, depth: int = 8, colour: int = 2, idat: bytes | None = None,
         interlace: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    body = _chunk(b"IHDR", ihdr)
    if idat is not None:
        body += _chunk(b"IDAT", idat)
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IEND", b"")


def _encoded(fmt: str, rgb: np.ndarray, **options: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **options)
    return buf.getvalue()


def _jpeg_claiming(width: int, height: int, base: bytes) -> bytes:
    """``base`` (a JPEG) with its SOF0 frame size replaced."""
    i = base.index(b"\xff\xc0")
    return base[:i + 5] + struct.pack(">HH", height, width) + base[i + 9:]


def _tiny_state() -> dict[str, torch.Tensor]:
    import dataclasses

    from sr_core.archs import hpinet

    cfg = dataclasses.replace(hpinet.config("S", 2), variant="custom", dim=8, qk_dim=8,
                              mlp_dim=8, layers_per_block=1)
    torch.manual_seed(0)
    return {k: v.contiguous().clone() for k, v in hpinet.build(cfg).state_dict().items()}


class _Evil:
    """Pickles into a call of os.system: must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def build(root: Path) -> tuple[list[Case], Path, list[Path]]:
    """Write the corpus under ``root``; return the cases, the good model and sockets to close.

    The good model is a tiny HPINet checkpoint that image and path cases run with, so that a
    case fails for its own reason and quickly.
    """
    rng = random.Random(18)
    nrng = np.random.default_rng(18)
    img_dir, ck_dir, out = root / "images", root / "checkpoints", root / "out"
    for d in (img_dir, ck_dir):
        d.mkdir(parents=True)
    good_model = ck_dir / "good.safetensors"
    state = _tiny_state()
    save_file(state, str(good_model))
    photo = nrng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    good_png = img_dir / "good.png"
    good_png.write_bytes(_encoded("PNG", photo))
    cases: list[Case] = []
    keep: list[Path] = []

    def image_cases(name: str, data: bytes) -> None:
        path = img_dir / name
        path.write_bytes(data)
        target = out / f"{Path(name).stem}_up.png"
        cases.append(Case(f"info {name}", ["info", str(path)], [path]))
        cases.append(Case(f"upscale {name}", ["upscale", str(path), "-m", str(good_model),
                                              "-o", str(target)], [path], [target]))

    # --- images: truncated, corrupted, lying headers, impostors ------------------------------
    encoded = {"png": _encoded("PNG", photo), "jpg": _encoded("JPEG", photo, quality=90),
               "webp": _encoded("WEBP", photo, quality=90), "tif": _encoded("TIFF", photo),
               "bmp": _encoded("BMP", photo)}
    for ext, data in encoded.items():
        for frac in (0.02, 0.3, 0.55, 0.8):
            image_cases(f"trunc{int(frac * 100)}.{ext}", data[:max(8, int(len(data) * frac))])
        magic = data[:12]
        image_cases(f"magic_then_noise.{ext}", magic + rng.randbytes(300))
        image_cases(f"noise.{ext}", rng.randbytes(2000))
        image_cases(f"empty.{ext}", b"")
        image_cases(f"zeros.{ext}", b"\0" * 4096)
        image_cases(f"text.{ext}", b"just some words, not a picture\n" * 4)
    png = encoded["png"]
    idat = png.index(b"IDAT")
    flipped = bytearray(png)
    flipped[idat + 10] ^= 0x55
    image_cases("bad_idat_crc.png", bytes(flipped))
    ihdr_flip = bytearray(png)
    ihdr_flip[20] ^= 0x01
    image_cases("bad_ihdr_crc.png", bytes(ihdr_flip))
    image_cases("claims_100k.png", _png(100_000, 100_000))
    image_cases("claims_no_idat.png", _png(300, 200))
    image_cases("claims_zero_width.png", _png(0, 20, idat=zlib.compress(b"\0" * 64)))
    image_cases("bad_depth.png", _png(20, 20, depth=3, idat=zlib.compress(b"\0" * 2000)))
    image_cases("bad_colour.png", _png(20, 20, colour=5, idat=zlib.compress(b"\0" * 2000)))
    image_cases("short_idat.png", _png(64, 64, idat=zlib.compress(b"\0" * 100)))
    image_cases("not_zlib.png", _png(16, 16, idat=rng.randbytes(200)))
    flat = zlib.compressobj(9)
    bomb = b"".join(flat.compress(b"\0" * (1 + 3 * 6000)) for _ in range(5000)) + flat.flush()
    image_cases("bomb_6000x5000.png", _png(6000, 5000, idat=bomb))
    jpeg = encoded["jpg"]
    image_cases("jpeg_claims_14000.jpg", _jpeg_claiming(14000, 14000, jpeg)[:3000])
    image_cases("jpeg_claims_zero.jpg", _jpeg_claiming(0, 40, jpeg))
    image_cases("jpeg_claims_65535.jpg", _jpeg_claiming(65535, 65535, jpeg))
    image_cases("jpeg_soi_only.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 30)
    tif = encoded["tif"]
    image_cases("tiff_header_only.tif", tif[:8])
    image_cases("tiff_bad_ifd.tif", tif[:4] + struct.pack("<I", 10**9) + tif[8:])
    bmp = bytearray(encoded["bmp"])
    bmp[18:26] = struct.pack("<ii", 100_000, 100_000)
    image_cases("bmp_claims_100k.bmp", bytes(bmp))
    bmp2 = bytearray(encoded["bmp"])
    bmp2[28:30] = struct.pack("<H", 7)
    image_cases("bmp_bad_bits.bmp", bytes(bmp2))
    image_cases("png_named_jpg.jpg", png[: len(png) // 2])
    image_cases("heic_named.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + rng.randbytes(64))
    image_cases("avif_named.avif", b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + rng.randbytes(64))
    image_cases("gif_disguised.png", b"GIF89a" + rng.randbytes(200))
    image_cases("pdf_disguised.jpg", b"%PDF-1.7\n" + b"x" * 200)

    # --- checkpoints: absurd shapes, bad values, bad files, payloads ------------------------
    marker = root / "PAYLOAD_RAN"

    def checkpoint_case(name: str, make: Callable[[Path], None]) -> None:
        path = ck_dir / name
        make(path)
        target = out / f"ck_{Path(name).stem}.png"
        cases.append(Case(f"upscale -m {name}", ["upscale", str(good_png), "-m", str(path),
                                                  "-o", str(target)],
                          [path, good_png], [target, marker]))
        cases.append(Case(f"models import {name}", ["models", "import", str(path), "--name",
                                                    "hostile-import"],
                          [path], [marker], [root / "cache"]))

    def with_change(key: str, value: torch.Tensor | None) -> Callable[[Path], None]:
        def make(path: Path) -> None:
            sd = {k: v.clone() for k, v in state.items()}
            if value is None:
                del sd[key]
            else:
                sd[key] = value
            save_file(sd, str(path))
        return make

    first = "first_conv.weight"
    w = state[first]
    checkpoint_case("wide.safetensors", with_change(first, torch.zeros(65536, *w.shape[1:])))
    checkpoint_case("zero_d.safetensors", with_change(first, torch.tensor(1.0)))
    checkpoint_case("one_d.safetensors", with_change(first, torch.ones(8)))
    checkpoint_case("five_d.safetensors", with_change(first, torch.ones(1, *w.shape)))
    nan_w, inf_w = w.clone(), w.clone()
    nan_w.view(-1)[0], inf_w.view(-1)[0] = float("nan"), float("-inf")
    checkpoint_case("nan.safetensors", with_change(first, nan_w))
    checkpoint_case("inf.safetensors", with_change(first, inf_w))
    checkpoint_case("int.safetensors", with_change(first, w.to(torch.int32)))
    checkpoint_case("bool.safetensors", with_change(first, w > 0))
    checkpoint_case("missing.safetensors", with_change("last_conv.weight", None))
    checkpoint_case("wrong_shape.safetensors",
                    with_change("last_conv.weight", torch.zeros(3, 8, 5, 5)))
    checkpoint_case("no_weights.safetensors", lambda p: save_file({"x": torch.zeros(2)}, str(p)))
    checkpoint_case("deep.safetensors", with_change(
        "blocks.0.layers.40.0.fn.to_q.weight", torch.zeros(8, 8)))
    checkpoint_case("noise.pth", lambda p: p.write_bytes(rng.randbytes(4096)))
    checkpoint_case("noise.safetensors", lambda p: p.write_bytes(rng.randbytes(4096)))
    checkpoint_case("empty.pth", lambda p: p.write_bytes(b""))
    checkpoint_case("text.pth", lambda p: p.write_text("weights? no\n"))
    checkpoint_case("json_header_lies.safetensors", lambda p: p.write_bytes(
        struct.pack("<Q", 60) + b'{"a":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4]}}'))

    def truncated_torch(p: Path) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])

    checkpoint_case("truncated.pth", truncated_torch)
    checkpoint_case("evil.pth", lambda p: p.write_bytes(pickle.dumps({"params": _Evil(marker)})))
    checkpoint_case("evil_torch.pth", lambda p: torch.save({"params": _Evil(marker)}, p))
    checkpoint_case("list.pth", lambda p: torch.save([1, 2, 3], p))
    checkpoint_case("number.pth", lambda p: torch.save(torch.tensor(3.0), p))
    for name in ("folder.pth",):
        (ck_dir / name).mkdir()
        cases.append(Case(f"upscale -m {name}", ["upscale", str(good_png), "-m",
                                                  str(ck_dir / name), "-o", str(out / "f.png")],
                          [good_png], [out / "f.png"]))

    # --- paths and places --------------------------------------------------------------------
    places = root / "places"
    places.mkdir()
    a_file = places / "a_file"
    a_file.write_text("x")
    existing = places / "existing.png"
    existing.write_bytes(png)
    folder_png = places / "folder.png"
    folder_png.mkdir()
    fifo = places / "pipe.png"
    os.mkfifo(fifo)
    sock_path = places / "sock.png"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    keep.append(sock_path)
    _SOCKETS.append(sock)
    long_name = places / ("n" * 300 + ".png")
    bad_bytes = Path(os.fsdecode(bytes(places) + b"/bad_\xff\xfe.png"))
    um = ["-m", str(good_model)]

    def path_case(name: str, argv: list[str], outputs: list[Path] | None = None,
                  inputs: list[Path] | None = None, watch: list[Path] | None = None) -> None:
        cases.append(Case(name, argv, inputs or [good_png], outputs or [], watch or []))

    for what, p in (("missing", places / "missing.png"), ("a folder", folder_png),
                    ("a FIFO", fifo), ("a socket", sock_path), ("a device", Path("/dev/zero")),
                    ("a non-UTF-8 missing name", bad_bytes),
                    ("a name over 255 bytes", long_name)):
        path_case(f"info on {what}", ["info", str(p)])
        path_case(f"upscale {what}", ["upscale", str(p), *um, "-o", str(out / "p.png")],
                  [out / "p.png"])
    path_case("-o is an existing file", ["upscale", str(good_png), *um, "-o", str(existing)],
              inputs=[good_png, existing])
    for what, p in (("/dev/full", Path("/dev/full")), ("/dev/null", Path("/dev/null")),
                    ("a folder", folder_png), ("a FIFO", fifo), ("a socket", sock_path)):
        path_case(f"-o {what} --overwrite", ["upscale", str(good_png), *um, "-o", str(p),
                                             "--format", "png", "--overwrite"])
    path_case("-o name over 255 bytes", ["upscale", str(good_png), *um, "-o", str(long_name)],
              [long_name])
    path_case("-o in a missing folder", ["upscale", str(good_png), *um, "-o",
                                         str(places / "nope" / "x.png")],
              [places / "nope"])
    path_case("-o under a file", ["upscale", str(good_png), *um, "-o", str(a_file / "x.png")])
    path_case("-o with an unknown extension", ["upscale", str(good_png), *um, "-o",
                                               str(out / "x.xyz")], [out / "x.xyz"])
    path_case("-o without an extension", ["upscale", str(good_png), *um, "-o",
                                          str(out / "noext")], [out / "noext"])
    path_case("-o is the input", ["upscale", str(good_png), *um, "-o", str(good_png),
                                  "--overwrite"])
    path_case("--out-dir is a file", ["upscale", str(good_png), *um, "--out-dir", str(a_file)],
              inputs=[good_png, a_file])
    path_case("--out-dir under a file", ["upscale", str(good_png), *um, "--out-dir",
                                         str(a_file / "sub")], inputs=[good_png, a_file])
    path_case("--out-dir is a device", ["upscale", str(good_png), *um, "--out-dir",
                                        "/dev/null"])
    path_case("-o twice the inputs", ["upscale", str(good_png), str(good_png), *um, "-o",
                                      str(out / "two.png")], [out / "two.png"])
    batch_in = root / "batch_in"
    batch_in.mkdir()
    (batch_in / "x.png").write_bytes(png)
    path_case("batch IN_DIR is a file", ["batch", str(a_file), str(out / "b1"), *um],
              [out / "b1"], [a_file])
    path_case("batch IN_DIR is missing", ["batch", str(places / "gone"), str(out / "b2"), *um],
              [out / "b2"])
    path_case("batch OUT_DIR is a file", ["batch", str(batch_in), str(a_file), *um],
              inputs=[a_file, batch_in / "x.png"])
    path_case("batch OUT_DIR is a device", ["batch", str(batch_in), "/dev/null", *um],
              inputs=[batch_in / "x.png"])
    path_case("batch model missing", ["batch", str(batch_in), str(out / "b3"), "-m",
                                      str(places / "nomodel.pth")], [out / "b3"],
              [batch_in / "x.png"])
    path_case("model is a FIFO", ["upscale", str(good_png), "-m", str(fifo), "-o",
                                  str(out / "m.png")], [out / "m.png"])
    path_case("model is /dev/zero", ["upscale", str(good_png), "-m", "/dev/zero", "-o",
                                     str(out / "m.png")], [out / "m.png"])
    path_case("model id unknown", ["upscale", str(good_png), "-m", "no-such-model-id", "-o",
                                   str(out / "m.png")], [out / "m.png"])
    path_case("models import a folder", ["models", "import", str(folder_png)],
              watch=[root / "cache"])
    path_case("models import a FIFO", ["models", "import", str(fifo)], watch=[root / "cache"])

    # --- options -----------------------------------------------------------------------------
    target = out / "opt.png"

    def option_case(name: str, extra: list[str], command: str = "upscale",
                    dest: Path = target) -> None:
        if command == "upscale":
            argv = ["upscale", str(good_png), *um, "-o", str(dest), *extra]
        else:
            argv = ["batch", str(batch_in), str(out / "ob"), *um, *extra]
            dest = out / "ob"
        cases.append(Case(f"{command} {' '.join(extra)}", argv,
                          [good_png, batch_in / "x.png"], [dest]))

    for bad in ("0", "101", "-5", "abc", "9999999999999999999999"):
        option_case(f"--quality {bad}", ["--quality", bad])
        option_case(f"--quality {bad}", ["--quality", bad], "batch")
    for bad in ("0", "-1", "nan", "inf", "1000", "1e308", "x"):
        option_case(f"--scale {bad}", ["--scale", bad])
        option_case(f"--scale {bad}", ["--scale", bad], "batch")
    for bad in ("0", "-5", "2000000", "1.5", "many"):
        option_case(f"--width {bad}", ["--width", bad])
        option_case(f"--height {bad}", ["--height", bad], "batch")
    for bad in ("-1", "abc", "5", "1e9"):
        option_case(f"--tile {bad}", ["--tile", bad])
    option_case("--format bogus", ["--format", "bogus"])
    option_case("--device bogus", ["--device", "bogus"])
    option_case("--precision bogus", ["--precision", "bogus"])
    option_case("--scale and --width", ["--scale", "2", "--width", "100"])
    option_case("--max-output-megapixels 0", ["--max-output-megapixels", "0"])
    option_case("--max-output-megapixels -3", ["--max-output-megapixels", "-3"])
    option_case("--max-output-megapixels nan", ["--max-output-megapixels", "nan"])
    option_case("output above the limit", ["--scale", "8", "--max-output-megapixels", "0.01"])
    option_case("JPEG wider than 65500", ["--width", "70000"], dest=out / "wide.jpg")
    option_case("WebP wider than 16383", ["--width", "17000"], dest=out / "wide.webp")
    option_case("WebP 5000x2 at scale", ["--width", "20000", "--format", "webp"],
                dest=out / "w2.webp")
    for tmpl in ("{bogus}", "../{stem}.{ext}", "{stem", ".{stem}", "{width:q}"):
        option_case(f"--name {tmpl}", ["--name", tmpl], "batch")
    option_case("batch --format bogus", ["--format", "bogus"], "batch")
    option_case("batch --max-output-megapixels 0.001", ["--max-output-megapixels", "0.001"],
                "batch")
    cases.append(Case("no command", [], []))
    cases.append(Case("unknown command", ["explode"], []))
    cases.append(Case("bench --size abc", ["bench", "-m", str(good_model), "--size", "abc"]))
    cases.append(Case("bench --repeat 0", ["bench", "-m", str(good_model), "--repeat", "0",
                                           "--size", "16x16"]))
    cases.append(Case("eval on a missing folder", ["eval", "-m", "bicubic", "--dataset",
                                                   str(places / "gone"), "--scale", "2"]))
    cases.append(Case("eval --scale 0", ["eval", "-m", "bicubic", "--dataset", str(batch_in),
                                         "--scale", "0"]))
    empty = root / "empty_folder"
    empty.mkdir()
    train = ["train", "--arch", "asid", "--scale", "2", "--out", str(out / "run")]
    for name, extra in (("--arch bogus", ["--arch", "bogus"]),
                        ("empty data", ["--data", str(empty)]),
                        ("missing data", ["--data", str(places / "gone")]),
                        ("data is a file", ["--data", str(a_file)]),
                        ("--iters 0", ["--iters", "0"]), ("--batch 0", ["--batch", "0"]),
                        ("--patch -3", ["--patch", "-3"]), ("--lr nan", ["--lr", "nan"]),
                        ("--lr -1", ["--lr", "-1"]), ("--val-every 0", ["--val-every", "0"]),
                        ("--workers -1", ["--workers", "-1"]),
                        ("--ema-decay 1", ["--ema-decay", "1"]),
                        ("--budget-minutes 0", ["--budget-minutes", "0"]),
                        ("--time-limit inf", ["--time-limit", "inf"]),
                        ("--scale 5", ["--scale", "5"])):
        data = [] if "--data" in extra else ["--data", str(batch_in)]
        cases.append(Case(f"train {name}", [*train, *data, "--val", str(batch_in), *extra],
                          [batch_in / "x.png"], [out / "run"]))
    for name, extra in (("dataset is a file", ["--dataset", str(a_file)]),
                        ("empty dataset", ["--dataset", str(empty)]),
                        ("model missing", ["-m", str(places / "nomodel.pth")])):
        args = ["eval", "-m", "bicubic", "--dataset", str(batch_in), "--scale", "2",
                "--save-dir", str(out / "sr")]
        for flag, value in zip(extra[::2], extra[1::2], strict=True):
            args[args.index(flag) + 1] = value
        cases.append(Case(f"eval {name}", args, [batch_in / "x.png"], [out / "sr"]))
    return cases, good_model, keep


_SOCKETS: list[socket.socket] = []


def close_sockets() -> None:
    """Close the sockets the corpus bound."""
    while _SOCKETS:
        _SOCKETS.pop().close()
