"""Read checkpoint files safely and unwrap the official containers into a flat state dict.

Only tensors and plain containers are ever read: ``.pth/.pt/.ckpt`` go through
``torch.load(weights_only=True)`` (its restricted unpickler refuses any other global, so a
malicious payload never runs) and ``.safetensors`` cannot hold code at all.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, UnsafeCheckpointError

#: Container keys of the official training/EMA wrappers, most preferred first
#: (BasicSR: params_ema then params; SPIN: model_state_dict; Lightning & co: state_dict).
CONTAINER_KEYS = (
    "params_ema",
    "params",
    "model_state_dict",
    "state_dict",
    "model",
    "net",
    "generator",
)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return its flat state dict (CPU tensors, no prefixes).

    Raises :class:`CheckpointError` (one sentence naming the file) when the file is missing,
    unreadable, unsafe (pickled code) or holds no tensors.
    """
    p = Path(path)
    name = p.name
    try:
        st = p.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{name}: no such file.") from None
    except OSError as e:
        why = (e.strerror or str(e)).lower()
        raise CheckpointError(f"{name}: cannot be read ({why}).") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{name}: is a folder, not a checkpoint file.")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{name}: is a device, pipe or socket, not a checkpoint file.")
    if st.st_size == 0:
        raise CheckpointError(f"{name}: the file is empty.")
    if p.suffix.lower() == ".safetensors" or _looks_like_safetensors(p):
        return unwrap_state_dict(_read_safetensors(p), name)
    return unwrap_state_dict(_read_pickle(p), name)


def _looks_like_safetensors(p: Path) -> bool:
    with p.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{p.name}: not a readable safetensors file ({_first_line(e)})."
        ) from e


def _read_pickle(p: Path) -> Any:
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _unsafe_global(str(e))
        if not found:  # random bytes or a damaged file, not a payload
            raise CheckpointError(
                f"{p.name}: not a readable PyTorch checkpoint (the file is damaged or not a "
                "checkpoint at all)."
            ) from e
        what = f" ({found})"
        raise UnsafeCheckpointError(
            f"{p.name}: refused to load, the file contains pickled code or objects{what}, "
            "not just tensors; nothing in it was run."
        ) from e
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        AttributeError,
        ImportError,
        TypeError,
        KeyError,
        IndexError,
    ) as e:
        raise CheckpointError(
            f"{p.name}: not a readable PyTorch checkpoint (truncated or corrupt: {_first_line(e)})."
        ) from e


#: Pickle opcodes that import or call something: refused by torch's restricted unpickler,
#: they are what a code payload is made of (GLOBAL, STACK_GLOBAL, INST, OBJ, REDUCE, BUILD,
#: NEWOBJ, NEWOBJ_EX, EXT1/2/4). Any other unsupported opcode means damaged or random bytes.
_CODE_OPCODES = frozenset(b"c\x93ioRb\x81\x92\x82\x83\x84")


def _unsafe_global(message: str) -> str:
    """What in a refused pickle could run code ("it references os.system"), or ""."""
    # torch words it "Unsupported global: GLOBAL io.open was not an allowed global ..."
    m = re.search(r"Unsupported (global|operand)[: ]+(?:GLOBAL )?([\w.]+)", message)
    if not m:
        return ""
    if m.group(1) == "global":
        return f"it references {m.group(2)}"
    op = m.group(2)
    code = int(op) if op.isdigit() else (ord(op) if len(op) == 1 else -1)
    return f"operand {op}" if code in _CODE_OPCODES else ""


def _first_line(e: BaseException) -> str:
    """The first sentence of an exception's text, for a one-sentence user message."""
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    first = re.split(r"(?<=[a-z0-9])\. ", first, maxsplit=1)[0].rstrip(".")
    return first[:160]


def unwrap_state_dict(obj: Any, origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap official containers and ``module.`` prefixes into ``{key: cpu tensor}``.

    Accepts a bare state dict, BasicSR (``params_ema`` / ``params``), SPIN training
    checkpoints (``model_state_dict``), ``state_dict`` wrappers, and ``module.`` prefixes
    from ``DataParallel``. Raises :class:`CheckpointError` when no state dict is found.
    """
    seen = 0
    while isinstance(obj, Mapping) and seen < 4:
        seen += 1
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next(
            (obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping) and obj[k]), None
        )
        if inner is None:
            # A dict mixing tensors and bookkeeping: keep the tensors only.
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors:
                obj = tensors
                break
            keys = ", ".join(map(str, list(obj)[:6]))
            raise CheckpointError(f"{origin}: holds no weights (found entries: {keys}).")
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{origin}: holds no weights (found {type(obj).__name__}).")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        k = str(key)
        while k.startswith("module."):
            k = k[len("module.") :]
        t = value.detach().to("cpu")
        if t.is_floating_point() and t.dtype != torch.float32:
            t = t.float()
        out[k] = t.contiguous()
    if not out:
        raise CheckpointError(f"{origin}: holds no tensors.")
    return out
