"""The ``finescale`` command line.

Every sub-command prints one plain sentence for a user error (a
:class:`~sr_core.errors.FinescaleError`) and exits 1; usage errors exit 2; a traceback is
shown only with ``--debug``. Heavy imports (torch) happen inside the handlers so that
``--version`` and ``--help`` are instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__, archs, formats, guards
from .device import DEVICE_CHOICES, PRECISION_CHOICES
from .errors import FinescaleError

Handler = Callable[[argparse.Namespace], int]


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _error(message: str) -> None:
    print(f"finescale: error: {message}", file=sys.stderr)


# --- info -----------------------------------------------------------------------------------
def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show size, mode, bit depth and metadata of images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(handler=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from .imageio import probe_image

    rows, failed = [], 0
    for path in args.images:
        try:
            rows.append(probe_image(path))
        except FinescaleError as e:
            failed += 1
            _error(str(e))
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            flags = [k.upper() for k in ("icc", "exif", "alpha") if r.get(k)]
            print(f"{r['path']}: {r['width']}x{r['height']} {r['format']} {r['mode']} "
                  f"{r['bits']}-bit, orientation {r['orientation']}"
                  + (f", {' '.join(flags)}" if flags else ""))
    return 1 if failed else 0


# --- upscale --------------------------------------------------------------------------------
_FORMATS = formats.OPTION_NAMES


def _add_upscale(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="upscale images with a super-resolution model",
                       description="Upscale images. Outputs go beside each input as "
                                   "<stem>_x<scale>.<ext> unless -o or --out-dir says otherwise; "
                                   "inputs are never modified.")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="OUT", help="output file (one input only)")
    where.add_argument("--out-dir", metavar="DIR", help="folder for the outputs")
    p.add_argument("-m", "--model", help="checkpoint file or catalogue id (default: the "
                                         "catalogue's default model)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--scale", type=guards.scale,
                      help="output scale, e.g. 1.5 (default: the model's)")
    size.add_argument("--width", type=guards.side,
                      help="output width in pixels (keeps the aspect ratio)")
    size.add_argument("--height", type=guards.side,
                      help="output height in pixels (keeps the aspect ratio)")
    p.add_argument("--tile", default="auto", metavar="N|auto|0",
                   help="largest tile side in pixels, 'auto' (fit the memory) or 0 (whole image)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto")
    p.add_argument("--format", choices=tuple(formats.OPTION_NAMES),
                   help="output format (default: the output name's, else the input's)")
    p.add_argument("--quality", type=guards.quality, default=95,
                   help="JPEG/WebP quality 1-100 (default 95)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (regular files only)")
    _add_size_limit(p)
    _add_clean_up(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of results")
    p.set_defaults(handler=_cmd_upscale)


def _clean_up_value(text: str) -> float:
    from .cleanup import check_clean_up

    try:
        return check_clean_up(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_clean_up(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clean-up", type=_clean_up_value, metavar="0..1",
                   help="detail <-> clean-up: 0 = the paper-exact model (most detail, noise and "
                        "JPEG blocks kept sharp), 1 = the photo model (noise and blocks "
                        "removed); default: the photo model's recommended value. Only for "
                        "models with both versions (finescale models list: KIND)")


def _clean_up_refusal(model: str, clean_up: float | None) -> str | None:
    """Why ``--clean-up`` cannot be used with ``model`` (one sentence), or None."""
    if clean_up is None:
        return None
    from .loader import is_catalogue_id

    if not is_catalogue_id(model):
        return (f"--clean-up {clean_up:g}: {model} is a checkpoint file; clean-up needs a "
                "catalogue model with a paper-exact and a photo version.")
    from . import catalog

    return catalog.clean_up_unavailable(model)


def _add_size_limit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-output-megapixels", type=guards.megapixels, metavar="N",
                   help="refuse outputs above N megapixels (default: what fits in the free "
                        "memory and disk)")
    p.add_argument("--yes", action="store_true",
                   help="upscale even when the output is above the size limit")


def _size_limit(args: argparse.Namespace, folder: str | Path, bits: int = 8,
                channels: int = 3) -> tuple[int, bool]:
    """The output-pixel limit for a job and whether the user set it."""
    from .sizing import default_output_limit

    if args.yes:
        return 2**62, True
    if args.max_output_megapixels is not None:
        return int(args.max_output_megapixels * 1e6), True
    return default_output_limit(folder, channels=channels, bits=bits), False


def _default_model() -> str:
    """The model ``upscale`` runs when ``-m`` is not given (the one place that decides it)."""
    from . import catalog

    pick = getattr(catalog, "default_model", None)
    if pick is None:
        raise FinescaleError("No model given; pass one with -m (a checkpoint file or a "
                             "catalogue id).")
    return pick()


def _upscale_target(args: argparse.Namespace, name: str, photo: Any, model_scale: int) -> Path:
    """Where the upscaled ``photo``, read from ``name``, goes (the window names it alike)."""
    from .naming import output_suffix, upscaled_name

    src = Path(name)
    if args.output:
        return Path(args.output)
    fmt = _FORMATS[args.format] if args.format else None
    suffix = output_suffix(src.suffix, photo.format, fmt)
    folder = Path(args.out_dir) if args.out_dir else src.parent
    return folder / upscaled_name(src.stem, suffix, model_scale, in_width=photo.width,
                                  in_height=photo.height, scale=args.scale, width=args.width,
                                  height=args.height)


def _cmd_upscale(args: argparse.Namespace) -> int:
    import time
    import warnings

    from tqdm import tqdm

    from .device import dtype_name
    from .engine import Upscaler
    from .errors import SameFileError
    from .imageio import read_image, write_image

    if args.output and len(args.inputs) > 1:
        _error("-o/--output names one file; use --out-dir for several inputs.")
        return 2
    _check_upscale_places(args)  # before the model loads: a typo should not cost seconds

    def say(message: str) -> None:
        tqdm.write(f"finescale: {message}", file=sys.stderr)

    model = args.model or _default_model()
    refusal = _clean_up_refusal(model, args.clean_up)
    if refusal:
        _error(refusal)
        return 2
    up = Upscaler(model, device=args.device, precision=args.precision, tile=args.tile,
                  on_message=say, clean_up=args.clean_up)
    fmt = _FORMATS[args.format] if args.format else None
    results, failed = [], 0
    for name in args.inputs:
        row: dict[str, object] = {"input": name, "output": None, "ok": False}
        started = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                photo = read_image(name)
                dest = _upscale_target(args, name, photo, up.model.scale)
                if dest.resolve() == Path(name).resolve():
                    raise SameFileError(f"Refusing to write {dest}: it is the input file, and "
                                        "originals are never overwritten.")
                size = _check_job(args, up, name, photo, dest, fmt)
                if size.seconds is not None and size.seconds > 30:
                    say(f"{Path(name).name}: {size.describe()}")
                tiles = len(up.plan(photo.height, photo.width,
                                    channels=3 + (photo.alpha is not None)).tiles)
                with tqdm(total=tiles, unit="tile", desc=Path(name).name, file=sys.stderr,
                          dynamic_ncols=True, leave=False) as bar:
                    def progress(done: int, total: int, _eta: float, bar: tqdm = bar) -> None:
                        bar.total = total
                        bar.update(done - bar.n)

                    out = up.upscale(photo, progress=progress, scale=args.scale,
                                     width=args.width, height=args.height)
                del photo
                if args.out_dir:
                    guards.make_out_dir(args.out_dir)
                written = write_image(out, dest, format=fmt, quality=args.quality,
                                      overwrite=args.overwrite)
            for w in caught:
                if not issubclass(w.category, (DeprecationWarning, FutureWarning)):
                    say(f"{Path(name).name}: {w.message}")
            row.update(output=str(written), ok=True, width=out.width, height=out.height,
                       seconds=round(time.perf_counter() - started, 3), model=up.model.name,
                       device=str(up.device), precision=dtype_name(up.dtype))
            if not args.json:
                print(f"{name} -> {written} ({out.width}x{out.height}, "
                      f"{dtype_name(up.dtype)})")
            del out
        except (FinescaleError, OSError) as e:
            if args.debug:
                raise
            failed += 1
            text = guards.os_error_sentence(e) if isinstance(e, OSError) else str(e)
            row["error"] = text
            _error(text)
        results.append(row)
    if args.json:
        _print_json(results)
    return 1 if failed else 0


def _check_upscale_places(args: argparse.Namespace) -> None:
    """Refuse an unusable -o / --out-dir / --format before any work (one sentence)."""
    from .imageio import output_format

    fmt = _FORMATS[args.format] if args.format else None
    if args.output:
        output_format(args.output, fmt)
        guards.check_target(args.output, overwrite=args.overwrite)
        parent = Path(args.output).parent
        if not parent.is_dir():
            raise FinescaleError(f"Cannot write {args.output}: the folder {parent} does not "
                                 "exist.")
    if args.out_dir:
        guards.check_out_dir(args.out_dir)


def _check_job(args: argparse.Namespace, up: Any, name: str, photo: Any, dest: Path,
               fmt: str | None) -> Any:
    """Refuse a job that cannot be written or is too large, before the model runs; return
    its :class:`~sr_core.sizing.JobSize`."""
    from .engine import output_size
    from .imageio import check_output_size, output_format
    from .sizing import check_job, estimate

    guards.check_target(dest, overwrite=args.overwrite)
    out_fmt = output_format(dest, fmt)
    oh, ow = output_size(photo.height, photo.width, up.model.scale, scale=args.scale,
                         out_width=args.width, out_height=args.height)
    check_output_size(dest, out_fmt, ow, oh)
    channels = 3 + (photo.alpha is not None)
    plan = up.plan(photo.height, photo.width, channels=channels)
    sh, sw = plan.max_source
    size = estimate(photo.width, photo.height, ow, oh, family=up.model.arch,
                    device_type=up.device.type, channels=channels, bits=photo.bit_depth,
                    model_bytes=up.model.estimate_memory(sh, sw))
    folder = dest.parent if dest.parent.exists() else Path(args.out_dir or ".")
    limit, explicit = _size_limit(args, folder, photo.bit_depth, channels)
    check_job(name, size, limit, explicit=explicit)
    return size


# --- train ----------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train weights for one of the architectures (resumable)")
    p.add_argument("--arch", required=True, help=", ".join(archs.names()))
    p.add_argument("--variant", help="official variant (default: the smallest)")
    p.add_argument("--scale", type=int, required=True, choices=(2, 3, 4))
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="HR training folders")
    p.add_argument("--val", nargs="+", required=True, metavar="DIR",
                   help="HR validation folders (Set5)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder (resumes if it has last.pth)")
    p.add_argument("--iters", type=guards.positive_int, default=20000)
    p.add_argument("--batch", type=guards.positive_int, default=16)
    p.add_argument("--patch", type=guards.positive_int, default=48,
                   help="LR patch side in pixels")
    p.add_argument("--lr", type=guards.positive_number, default=5e-4)
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine")
    p.add_argument("--warmup", type=guards.count, default=200,
                   help="iterations of linear lr warm-up")
    p.add_argument("--ema-decay", type=guards.decay, default=0.999)
    p.add_argument("--val-every", type=guards.positive_int, default=500)
    p.add_argument("--ckpt-every", type=guards.positive_int, default=250)
    p.add_argument("--workers", type=guards.count, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help=f"{', '.join(DEVICE_CHOICES)} or cuda:N")
    p.add_argument("--budget-minutes", type=guards.positive_number, metavar="MIN",
                   help="train for this much time over all resumes; the schedule follows time")
    p.add_argument("--degradation", metavar="MODEL",
                   help="train a photo model: degrade each patch on the fly with this "
                        "real-world model (real: phone photos, scans, web JPEGs; realesrgan: "
                        "the Real-ESRGAN paper's heavier ranges); default: clean bicubic")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="start from these weights (file or catalogue id) of the same "
                        "architecture and scale, e.g. to fine-tune a photo model")
    p.add_argument("--init-partial", action="store_true",
                   help="allow --init weights of another scale: copy all but the upsampler")
    p.add_argument("--freq-loss", type=float, default=0.0, metavar="W",
                   help="add W x L1 of the Fourier amplitudes to the L1 loss (default 0)")
    p.add_argument("--time-limit", type=guards.positive_number, metavar="MIN",
                   help="stop this run after MIN minutes with a checkpoint to resume from")
    p.set_defaults(handler=_cmd_train)


def _known(lookup: Callable[[str], Any], name: str) -> bool:
    """True when ``lookup(name)`` finds it; else its one sentence is printed (a usage error)."""
    try:
        lookup(name)
    except FinescaleError as e:
        _error(str(e))
        return False
    return True


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, degradation_model, list_images, train

    if args.degradation is not None and not _known(degradation_model, args.degradation):
        return 2
    list_images(args.data)  # a missing or empty folder is one sentence, and no run folder
    list_images(args.val)
    cfg = TrainConfig(arch=args.arch, variant=args.variant, scale=args.scale, data=args.data,
                      val=args.val, out=args.out, iters=args.iters, batch=args.batch,
                      patch=args.patch, lr=args.lr, schedule=args.schedule, warmup=args.warmup,
                      ema_decay=args.ema_decay, val_every=args.val_every,
                      ckpt_every=args.ckpt_every, workers=args.workers, seed=args.seed,
                      device=args.device, budget_minutes=args.budget_minutes,
                      time_limit_minutes=args.time_limit, degradation=args.degradation,
                      init=args.init, init_partial=args.init_partial, freq_loss=args.freq_loss)
    summary = train(cfg, log=lambda m: print(m, file=sys.stderr))
    done = "stopped at the time limit" if summary["stopped"] == "time limit" else "finished"
    print(
        f"{done}: best validation PSNR {summary['best_psnr']:.3f} dB after "
        f"{summary['iterations']} iterations ({summary['train_minutes']:.1f} min); "
        f"weights in {summary['out']}/best_ema.safetensors")
    return 0


# --- eval -----------------------------------------------------------------------------------
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="PSNR / SSIM on benchmark folders in the papers' protocol")
    p.add_argument("-m", "--model", required=True,
                   help="checkpoint file, catalogue id, or 'bicubic' for the baseline")
    p.add_argument("--dataset", action="append", required=True, metavar="DIR",
                   help="folder of HR images, e.g. Set5 (repeat for several)")
    p.add_argument("--scale", type=int, required=True, help="upscaling factor (2, 3, 4)")
    p.add_argument("--protocol", choices=("auto", "official", "whole"), default="auto",
                   help="whole image, ASID's official 64/24 tiles, or what the authors did "
                        "(auto, the default)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    p.add_argument("--degradation", metavar="PRESET",
                   help="score on real-world inputs instead of clean bicubic LR, next to "
                        "Lanczos and bicubic enlargements of the same inputs. Fixed, seeded "
                        "presets: mild (a web JPEG: noise sigma 1-3/255, JPEG q70-80) and real "
                        "(a phone photo or scan: blur sigma 1.0, noise sigma 5-10/255, JPEG "
                        "q50-60)")
    p.add_argument("--clean-up", type=_clean_up_value, metavar="0..1",
                   help="score a photo model's pair at this detail <-> clean-up value")
    p.add_argument("--per-image", action="store_true", help="also list every image's scores")
    p.add_argument("--save-dir", metavar="DIR", help="write the SR images as DIR/<dataset>/*.png")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .evaluate import compare, evaluate, format_comparison, format_table, preset

    if args.degradation is not None and not _known(preset, args.degradation):
        return 2
    model: Any = args.model
    if args.clean_up is not None:
        refusal = _clean_up_refusal(model, args.clean_up)
        if refusal:
            _error(refusal)
            return 2
        from .loader import load_model

        model = load_model(model, clean_up=args.clean_up)
    with tqdm(unit="img", desc="eval", file=sys.stderr, dynamic_ncols=True) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        if args.degradation is not None:
            rows = compare(model, args.dataset, args.scale, degradation=args.degradation,
                           protocol=args.protocol, device=args.device, progress=progress)
        else:
            result = evaluate(model, args.dataset, args.scale, protocol=args.protocol,
                              device=args.device, save_dir=args.save_dir, progress=progress)
    if args.degradation is not None:
        if args.json:
            _print_json({"degradation": args.degradation, "scale": args.scale,
                         "rows": [r.to_dict(per_image=args.per_image) for r in rows]})
        else:
            print(format_comparison(rows))
        return 0
    if args.json:
        _print_json(result.to_dict(per_image=args.per_image))
    else:
        print(format_table(result, per_image=args.per_image))
    return 0


# --- models ---------------------------------------------------------------------------------
def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, download, verify, remove or import models",
                       description="The model catalogue and the local weight cache.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = msub.add_parser("list", help="every known model: size, installed, verified, licence")
    q.add_argument("--json", action="store_true", help="print a JSON list")
    q.add_argument("--installed", action="store_true", help="only the installed models")
    q.set_defaults(handler=_cmd_models_list)
    q = msub.add_parser("download", help="download models into the cache (resumable)")
    q.add_argument("ids", nargs="+", metavar="ID")
    q.set_defaults(handler=_cmd_models_download)
    q = msub.add_parser("remove", help="delete a model's cached weights")
    q.add_argument("ids", nargs="+", metavar="ID")
    q.set_defaults(handler=_cmd_models_remove)
    q = msub.add_parser("verify", help="re-hash cached weights (all installed models by default)")
    q.add_argument("ids", nargs="*", metavar="ID")
    q.set_defaults(handler=_cmd_models_verify)
    q = msub.add_parser("import", help="register a checkpoint file (arch and scale are detected)")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--name", help="the id to use (default: the catalogue id or the file name)")
    q.set_defaults(handler=_cmd_models_import)


def _size(n: int | None) -> str:
    from .units import format_bytes

    return format_bytes(n or None)


def _cmd_models_list(args: argparse.Namespace) -> int:
    from . import catalog

    rows = [catalog.status(e.id) for e in catalog.entries()]
    if args.installed:
        rows = [r for r in rows if r.installed]
    if args.json:
        _print_json([r.as_dict() for r in rows])
        return 0
    table = [("ID", "ARCH", "SCALE", "KIND", "SIZE", "STATUS", "VERIFIED", "LICENCE")]
    for r in rows:
        e = r.entry
        table.append((e.id, e.arch, f"x{e.scale}", e.kind, _size(r.size), str(r.availability),
                      "yes" if r.verified else "no", e.licence or "?"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"\ncache: {_cache_dir()}  (verified = checked against a published sha256; "
          "manual download = no direct link, see `finescale models download ID`; kind: "
          "paper-exact = "
          "trained on clean bicubic downscales as in the paper, photo = trained on real-world "
          "blur, noise and JPEG)")
    return 0


def _cache_dir() -> str:
    from .paths import cache_dir

    return str(cache_dir())


def _cmd_models_download(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import catalog, installer

    failed = 0
    for mid in args.ids:
        try:
            if catalog.is_installed(mid):
                print(f"{mid}: already installed ({catalog.model_path(mid)})")
                continue
            bars: list[tqdm] = []  # opened on the first byte, so errors print cleanly

            def progress(done: int, total: int | None, mid: str = mid, bars: list = bars) -> None:
                if not bars:
                    bars.append(tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=mid,
                                     file=sys.stderr, dynamic_ncols=True, leave=False))
                bars[0].total = total
                bars[0].update(done - bars[0].n)

            try:
                path = installer.install(mid, progress=progress)
            finally:
                for bar in bars:
                    bar.close()
            st = catalog.status(mid)
            note = "" if st.verified else " (unverified: no published hash, recorded for next time)"
            print(f"{mid}: installed, {_size(st.size)}{note} -> {path}")
        except FinescaleError as e:
            failed += 1
            _error(str(e))
    return 1 if failed else 0


def _cmd_models_remove(args: argparse.Namespace) -> int:
    from . import installer

    failed = 0
    for mid in args.ids:
        try:
            freed = installer.remove(mid)
            print(f"{mid}: removed ({_size(freed)} freed)")
        except FinescaleError as e:
            failed += 1
            _error(str(e))
    return 1 if failed else 0


def _cmd_models_verify(args: argparse.Namespace) -> int:
    from . import catalog, installer

    ids = args.ids or [e.id for e in catalog.entries() if catalog.is_installed(e.id)]
    if not ids:
        print("No models are installed.")
        return 0
    failed = 0
    for mid in ids:
        try:
            result = installer.verify(mid)
        except FinescaleError as e:
            failed += 1
            _error(str(e))
            continue
        print(f"{mid}: {'ok' if result.ok else 'DAMAGED'}, {result.message}")
        failed += not result.ok
    return 1 if failed else 0


def _cmd_models_import(args: argparse.Namespace) -> int:
    from . import catalog, installer

    entry = installer.import_checkpoint(args.file, name=args.name)
    st = catalog.status(entry.id)
    how = "verified against the catalogue" if st.verified else "unverified"
    print(f"{args.file}: imported as {entry.id} ({entry.title}, {how}); "
          f"use it with -m {entry.id}")
    return 0


# --- bench ----------------------------------------------------------------------------------
def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="latency, throughput, peak memory and GFLOP/s of a model")
    p.add_argument("-m", "--model", required=True, help="checkpoint file or catalogue id")
    p.add_argument("--size", default="256x256", metavar="HxW",
                   help="input size in pixels (default 256x256)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto")
    p.add_argument("--tile", default="auto",
                   help="'auto', 0 (whole image) or the tile side in pixels")
    p.add_argument("--repeat", type=int, default=3, help="timed runs (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .bench import format_result, parse_size, run_bench

    size = parse_size(args.size)
    with tqdm(unit="run", desc="bench", file=sys.stderr, dynamic_ncols=True) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = run_bench(args.model, size, device=args.device, precision=args.precision,
                           tile=args.tile, repeat=args.repeat, progress=progress)
    _remember_speed(args.model, result)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(format_result(result))
    return 0


def _remember_speed(model: str, result: Any) -> None:
    """Feed a bench measurement to the job-size cost model (ETAs follow this machine)."""
    from .loader import load_model
    from .sizing import record_measurement

    h, w = result.input
    if h * w < 256 * 256:  # fixed costs would dominate: not a fair figure for photos
        return
    try:
        family = load_model(model).arch
    except FinescaleError:
        return
    name = result.device.lower()
    device_type = "cuda" if "cuda" in name else "mps" if "mps" in name else "cpu"
    record_measurement(family, device_type, h * w, result.latency_s)


# --- batch ----------------------------------------------------------------------------------
_BATCH_FIELDS = (
    ("stem", "input file name without its extension"),
    ("ext", "output extension without the dot"),
    ("in_ext", "input extension without the dot"),
    ("scale", "upscale factor"),
    ("model", "model short name, e.g. HPINet-M"),
    ("width", "output width in pixels"),
    ("height", "output height in pixels"),
    ("in_width", "input width in pixels"),
    ("in_height", "input height in pixels"),
    ("folder", "name of the input's folder"),
)


def _add_batch(sub: argparse._SubParsersAction) -> None:
    fields = "\n".join(f"  {{{name}}}{' ' * (12 - len(name))}{text}"
                       for name, text in _BATCH_FIELDS)
    p = sub.add_parser(
        "batch", help="upscale every image in a folder; resumes after a crash",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Upscale the images of IN_DIR into OUT_DIR. Hidden and system files are "
                    "ignored, other files are listed as skipped with the reason. Outputs are "
                    "written atomically and OUT_DIR/finescale-report.json records every file, "
                    "so running the same command again after a crash or Ctrl-C redoes only "
                    "the unfinished files.",
        epilog=f"name template fields (default: {{stem}}_x{{scale}}_{{model}}.{{ext}}):\n"
               f"{fields}\nPython format specs work, e.g. {{width:05d}}.")
    p.add_argument("in_dir", metavar="IN_DIR")
    p.add_argument("out_dir", metavar="OUT_DIR", help="may be IN_DIR or inside it")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="include sub-folders (mirrored under OUT_DIR)")
    p.add_argument("-m", "--model", help="checkpoint file or catalogue id (default: the "
                                         "default model)")
    p.add_argument("--name", default="{stem}_x{scale}_{model}.{ext}", metavar="TEMPLATE",
                   help="output file name template (fields below)")
    p.add_argument("--format", default="same",
                   choices=("same", *formats.OPTION_NAMES),
                   help="output format (default: the same as each input)")
    p.add_argument("--quality", type=guards.quality, default=95,
                   help="JPEG / WebP quality (default 95)")
    policy = p.add_mutually_exclusive_group()
    policy.add_argument("--skip-existing", dest="existing", action="store_const", const="skip",
                        help="leave existing outputs alone (the default)")
    policy.add_argument("--overwrite", dest="existing", action="store_const",
                        const="overwrite", help="replace existing outputs")
    policy.add_argument("--keep-both", dest="existing", action="store_const", const="number",
                        help="keep existing outputs and give the new ones a numbered name")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--scale", type=guards.scale, help="output scale (default: the model's)")
    size.add_argument("--width", type=guards.side,
                      help="output width in pixels (keeps aspect ratio)")
    size.add_argument("--height", type=guards.side,
                      help="output height in pixels (keeps aspect ratio)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start over even if OUT_DIR holds an unfinished run's report")
    p.add_argument("--tile", default="auto",
                   help="'auto', 0 (whole image) or the tile side in pixels")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto")
    _add_clean_up(p)
    _add_size_limit(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    from .cluster import add_arguments as add_ray_arguments

    add_ray_arguments(p)
    p.set_defaults(handler=_cmd_batch, existing="skip")


def _cmd_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import cluster
    from .batch import (
        BatchOptions,
        BatchProgress,
        check_folders,
        describe_plan,
        plan_batch,
        run_batch,
    )

    if (problem := cluster.usage_error(args)) is not None:
        _error(problem)
        return 2
    if args.ray is not None:
        cluster.require_ray()  # before the model loads: say which extra is missing
    check_folders(args.in_dir, args.out_dir)
    options = BatchOptions(recursive=args.recursive, template=args.name, format=args.format,
                           existing=args.existing, quality=args.quality, scale=args.scale,
                           width=args.width, height=args.height, resume=args.resume)
    options.validate()  # before the model loads: a typo should not cost seconds
    from . import catalog
    from .engine import Upscaler

    model = args.model or catalog.default_model()
    refusal = _clean_up_refusal(model, args.clean_up)
    if refusal:
        _error(refusal)
        return 2
    say = lambda m: tqdm.write(f"finescale: {m}", file=sys.stderr)  # noqa: E731
    if args.ray is not None:
        up, run = cluster.cli_runner(args, model, say, clean_up=args.clean_up)
    else:
        up = Upscaler(model, device=args.device, precision=args.precision, tile=args.tile,
                      on_message=say, clean_up=args.clean_up)
        run = lambda plan, progress: run_batch(plan, up, progress=progress)  # noqa: E731
    plan = plan_batch(args.in_dir, args.out_dir, options, model=up)
    _check_batch_sizes(args, plan, up)
    print(f"{plan.in_dir}: {describe_plan(plan)}"
          + (" (resuming an interrupted run)" if plan.resumed else ""), file=sys.stderr)
    fmt = "{l_bar}{bar}| {n_fmt}/{total_fmt} files [{elapsed}{postfix}]"
    try:
        with tqdm(total=len(plan.jobs), unit="file", desc="batch", file=sys.stderr,
                  dynamic_ncols=True, bar_format=fmt) as bar:
            def progress(p: BatchProgress) -> None:
                bar.n = p.files_done
                eta = "?" if p.eta is None else tqdm.format_interval(p.eta)
                what = p.current or ""
                if p.current and p.tiles_total > 1:
                    what += f" tile {p.tiles_done}/{p.tiles_total}"
                bar.set_postfix_str(f"ETA {eta} {what}".rstrip(), refresh=True)
                if p.finished is not None:
                    for note in p.finished.notes:
                        tqdm.write(f"finescale: {p.finished.input}: {note}", file=sys.stderr)

            report = run(plan, progress)
    except KeyboardInterrupt:
        _error("interrupted; finished images are kept, run the same command again to go on.")
        return 130
    for row in report.failed:
        _error(row.reason or f"{row.input}: failed")
    if args.json:
        _print_json(report.to_dict())
    else:
        t = report.totals()
        print(f"{t['done']} done, {t['skipped']} skipped, {t['failed']} failed"
              + (f", {t['pending']} not done (cancelled)" if t["pending"] else "")
              + f"; report: {report.path}")
    return 1 if report.failed else 0


def _check_batch_sizes(args: argparse.Namespace, plan: Any, up: Any) -> None:
    """Refuse the batch before any work when an output is above the size limit."""
    from .sizing import check_job, estimate

    limit, explicit = _size_limit(args, plan.out_dir)
    # An Upscaler, or whatever else runs the batch (it may know less about its model).
    family = str(getattr(getattr(up, "model", up), "arch", ""))
    device_type = str(getattr(getattr(up, "device", None), "type", "cpu"))
    for job in plan.jobs:
        r = job.result
        size = estimate(int(r.width or 0), int(r.height or 0), int(r.out_width or 0),
                        int(r.out_height or 0), family=family, device_type=device_type)
        check_job(str(job.source), size, limit, explicit=explicit)


# --- the parser -----------------------------------------------------------------------------
#: Each entry adds one sub-command; later modules add theirs here.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_info, _add_upscale, _add_train, _add_eval, _add_bench, _add_models, _add_batch,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finescale",
        description="Upscale photos with recent super-resolution transformers.",
    )
    parser.add_argument("--version", action="version", version=f"finescale {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``finescale`` console script; returns the exit code."""
    guards.tolerant_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except FinescaleError as e:
        if args.debug:
            raise
        _error(str(e))
        return 1
    except OSError as e:  # a place or a disk no handler foresaw: still one sentence
        if args.debug:
            raise
        _error(guards.os_error_sentence(e))
        return 1
    except MemoryError:
        if args.debug:
            raise
        _error("Not enough memory for this job; try a smaller --tile, a smaller output or "
               "another device.")
        return 1
    except KeyboardInterrupt:
        _error("interrupted; nothing was written.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
