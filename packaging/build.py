"""Build Finescale's one-folder application with PyInstaller.

    python packaging/build.py [--dist DIR] [--work DIR] [--keep-cache]

Produces ``DIR/finescale/`` (default ``dist/finescale/``) holding ``finescale`` (the CLI) and
``finescale-gui`` (the window) beside their shared libraries, then checks that the CLI starts
and prints the folder's size. The torch installed in the running environment decides the
variant: the CPU wheel gives the CPU build, a CUDA wheel the CUDA build (same spec).
Works on Linux, Windows and macOS; run it from any folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "finescale.spec"
EXE_SUFFIX = ".exe" if os.name == "nt" else ""


def folder_size(path: Path) -> int:
    """Bytes held by the regular files under ``path`` (symbolic links counted once, as links)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def build(dist: Path, work: Path, clean: bool = True) -> Path:
    """Run PyInstaller on the spec; returns the bundle folder. Raises on a failed build."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise SystemExit("PyInstaller is not installed: pip install -e \".[packaging]\"") from None
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work)]
    if clean:
        cmd.append("--clean")
    subprocess.run([*cmd, str(SPEC)], check=True, cwd=ROOT)
    bundle = dist / "finescale"
    for exe in ("finescale", "finescale-gui"):
        if not (bundle / f"{exe}{EXE_SUFFIX}").is_file():
            raise SystemExit(f"the build finished but {bundle / exe} is missing")
    return bundle


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: build, smoke-test the CLI, print where and how big."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    p.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller",
                   help="PyInstaller's work folder (default build/pyinstaller/)")
    p.add_argument("--keep-cache", action="store_true",
                   help="reuse PyInstaller's analysis cache from an earlier build (faster)")
    args = p.parse_args(argv)

    start = time.monotonic()
    bundle = build(args.dist.resolve(), args.work.resolve(), clean=not args.keep_cache)
    version = subprocess.run([str(bundle / f"finescale{EXE_SUFFIX}"), "--version"],
                             capture_output=True, text=True, timeout=300)
    if version.returncode != 0:
        sys.stderr.write(version.stderr)
        raise SystemExit(f"the bundled CLI does not start (exit code {version.returncode})")
    size = folder_size(bundle)
    print(f"{bundle}: {version.stdout.strip()}, {size / 1e6:.0f} MB, "
          f"built in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
