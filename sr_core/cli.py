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

from . import __version__
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


# --- the parser -----------------------------------------------------------------------------
#: Each entry adds one sub-command; later modules add theirs here.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_info]


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
    except KeyboardInterrupt:
        _error("interrupted; nothing was written.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
