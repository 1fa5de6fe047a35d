"""The map's rules, checked on the code (docs/ARCHITECTURE.md, "The arrows").

Every import in ``sr_core/`` and ``app/`` counts, including those inside functions: a
function-level import is still an arrow, and a circle through one is still a circle.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sr_core", "app")
ARCH_FILES = ("hpinet", "hat", "spin", "asid")
QT = ("PySide6", "PyQt5", "PyQt6", "shiboken6")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
            if "resources" not in p.parts}


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for every import in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:
                yield module, a.name, node.lineno


def _target(module: str, name: str | None) -> str | None:
    """The project module an import reaches (``from . import catalog`` reaches
    ``sr_core.catalog``), or None for a third-party or standard module."""
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module if module in MODULES else None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, path in MODULES.items():
        for module, name, _ in _imports(m, path):
            t = _target(module, name)
            if t is not None and t != m:
                graph[m].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def _is_package_internal(a: str, b: str) -> bool:
    """A package and its own modules (``sr_core.batch`` re-exporting ``sr_core.batch.report``,
    which in turn imports ``sr_core.batch.options``) are one unit for the circle rule."""
    return a.startswith(b + ".") or b.startswith(a + ".")


def test_there_is_no_import_circle() -> None:
    graph = _graph()
    # The package __init__ re-exports its modules; its modules import each other, never the
    # __init__. Seen from outside it is one node.
    for m, targets in graph.items():
        graph[m] = {t for t in targets
                    if not (_is_package_internal(m, t) and MODULES[t].name == "__init__.py")}
    assert _cycles(graph) == []


def test_the_circle_test_finds_a_function_level_circle(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from . import catalog\n    from .models import x\n")
    found = {(m, n) for m, n, _ in _imports("sr_core.m", src)}
    assert found == {("sr_core", "catalog"), ("sr_core.models", "x")}


@pytest.mark.parametrize("family", ARCH_FILES)
def test_arch_files_import_only_torch_layers_and_errors(family: str) -> None:
    name = f"sr_core.archs.{family}"
    allowed = {"sr_core.archs.layers", "sr_core.errors"}
    bad = []
    for module, imported, line in _imports(name, MODULES[name]):
        top = module.split(".")[0]
        target = _target(module, imported)
        if target is not None:
            if target not in allowed:
                bad.append(f"line {line}: {target}")
        elif top not in sys.stdlib_module_names and top != "torch" and top != "__future__":
            bad.append(f"line {line}: {module}")
    assert bad == [], f"{name} imports more than torch, layers and errors"


def test_the_engine_never_imports_qt() -> None:
    bad = [f"{m}:{line} {module}" for m, path in MODULES.items() if m.startswith("sr_core")
           for module, _, line in _imports(m, path) if module.split(".")[0] in QT]
    assert bad == []


def _public(module: str) -> set[str]:
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    assert names is not None, f"{module} is used by the window but declares no __all__"
    return set(names)


def _app_uses() -> Iterator[tuple[str, str, str]]:
    """``(app module, sr_core module, name)`` for every sr_core name the window uses:
    ``from sr_core.x import name`` and ``x.name`` after ``from sr_core import x``."""
    for m, path in MODULES.items():
        if not m.startswith("app"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sr_core"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    if sub in MODULES:
                        aliases[a.asname or a.name] = sub
                    else:
                        yield m, str(node.module), a.name
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("sr_core"):
                        aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases:
                yield m, aliases[node.value.id], node.attr


def test_the_window_uses_only_what_the_engine_declares_public() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    bad = []
    for app_module, module, name in _app_uses():
        short = module.removeprefix("sr_core.").replace(".", "/")
        if module != "sr_core" and short.split("/")[-1] not in text:
            bad.append(f"{app_module}: {module} is not in docs/ARCHITECTURE.md")
        elif name not in _public(module):
            bad.append(f"{app_module}: {module}.{name} is not in its __all__")
    assert sorted(set(bad)) == []


def test_every_family_keeps_the_typed_contract() -> None:
    import torch

    from sr_core import archs
    from sr_core.archs import Family, FamilyConfig

    fams = archs.families()
    assert tuple(f.INFO.name for f in fams) == archs.names()
    assert archs.titles() == "HPINet, HAT, SPIN and ASID"
    stranger = {"conv_first.weight": torch.zeros(4, 3, 3, 3)}
    for fam in fams:
        assert isinstance(fam, Family), fam.INFO.name
        assert archs.by_name(fam.INFO.title) is fam
        cfg = next(iter(fam.VARIANTS.values()))
        assert isinstance(cfg, FamilyConfig) and cfg.scale == 4
        net = fam.build(cfg)
        assert not net.training, f"{fam.INFO.name}.build() must return eval mode"
        assert fam.detect(stranger) is None, f"{fam.INFO.name} claims weights not its own"
        found = fam.detect(net.state_dict())
        assert (found.variant, found.scale) == (cfg.variant, cfg.scale)
        assert fam.estimate_memory(cfg, 64, 64) > 0
