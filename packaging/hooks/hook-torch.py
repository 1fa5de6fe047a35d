"""PyInstaller hook for torch, replacing the contrib one for Finescale's bundle.

The contrib hook calls ``collect_submodules("torch")`` (minutes of analysis on two cores, and
hundreds of MB of compiler, test and tooling modules) and collects every data file of the
wheel (headers, test programs, protoc). Finescale only runs eager inference, so the module
graph is what ``import torch`` and our code reach; the shared libraries torch loads by
itself (dlopen, helper programs) are added here by name.
"""

import re
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from PyInstaller import compat
from PyInstaller.utils.hooks import get_package_paths

# Keep the sources beside the byte code: TorchScript and torch's overload checks read them
# with inspect at import time.
module_collection_mode = "pyz+py"
warn_on_missing_hiddenimports = False

_TORCH = Path(get_package_paths("torch")[1])
# Libraries in torch/lib that only torch's own C++ tests load.
_TEST_LIBS = re.compile(r"test|backend_with_compiler|aoti_custom_ops")


def _libraries() -> list[tuple[str, str]]:
    # Every runtime library of torch/lib: the CPU wheel's libtorch_global_deps is dlopen()ed
    # by torch/__init__.py, and CUDA wheels dlopen more (libtorch_cuda_linalg, cuDNN's
    # engines) that no link-time analysis can see.
    libs = [p for pattern in ("*.so*", "*.dll", "*.dylib") for p in _TORCH.glob(f"lib/{pattern}")]
    return [(str(p), "torch/lib") for p in libs if p.is_file() and not _TEST_LIBS.search(p.name)]


def _cuda_packages() -> list[str]:
    # A CUDA wheel from PyPI takes CUDA from nvidia-*-cuXX distributions; each maps to a
    # package nvidia.<name> whose contrib hook collects its libraries.
    from packaging.requirements import Requirement

    try:
        requires = [Requirement(r) for r in distribution("torch").requires or []]
    except PackageNotFoundError:
        return []
    names = [r.name for r in requires if r.marker is None or r.marker.evaluate()]
    found = [re.fullmatch(r"nvidia-(.+)-cu\d+", n) for n in names]
    return ["nvidia." + m.group(1).replace("-", "_") for m in found if m]


# torch_shm_manager is started by libshm when tensors are shared between processes, and
# torch/__init__.py refuses to import without it.
binaries = _libraries() + [(str(p), "torch/bin") for p in _TORCH.glob("bin/torch_shm_manager*")]
hiddenimports = _cuda_packages()

if compat.is_linux:
    # Links to torch's libraries in the bundle's top folder confuse torch's search for the
    # libraries it loads at run time beside itself.
    bindepend_symlink_suppression = ["**/torch/lib/*.so*"]
