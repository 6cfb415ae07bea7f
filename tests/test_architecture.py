"""The architecture, checked: module and folder sizes, no import cycles, the worker boundary
and a transport-free core. These read the source (``ast``), so they are fast and fail on the
commit that breaks a rule, naming the module."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "lms_jupyter"
MAX_LINES = 600
MAX_MODULES_PER_FOLDER = 12
# What only runs inside a model's worker process (native llama.cpp code).
WORKER_ONLY = "lms_jupyter.engine.local"
WORKER_ENTRY = {"lms_jupyter.engine.worker.child"}
# The core knows nothing of its transports (handlers, magics and widgets are thin adapters).
CORE = ("lms_jupyter.api", "lms_jupyter.engine", "lms_jupyter.chat", "lms_jupyter.models")
TRANSPORTS = ("tornado", "jupyter_server", "IPython", "ipywidgets", "ipykernel")


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        if "labextension" in rel.parts:
            continue
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path, *, top_level_only: bool) -> set[str]:
    """The lms_jupyter modules (and other top-level packages) ``name`` imports."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:
            continue  # `if TYPE_CHECKING:` and optional imports are not import-time edges
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            for alias in node.names:  # `from pkg import module`
                if f"{base}.{alias.name}" in MODULES:
                    out.add(f"{base}.{alias.name}")
    return out


def test_no_module_is_longer_than_600_lines():
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_folder_holds_more_than_12_modules():
    counts: dict[Path, int] = defaultdict(int)
    for path in MODULES.values():
        if path.name != "__init__.py":
            counts[path.parent] += 1
    crowded = {
        str(folder.relative_to(ROOT.parent)): n
        for folder, n in counts.items()
        if n > MAX_MODULES_PER_FOLDER
    }
    assert not crowded, f"folders with more than {MAX_MODULES_PER_FOLDER} modules: {crowded}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package_edges(name: str, targets: set[str]) -> set[str]:
    """Import edges, with a package's own ``__init__`` re-exports not counted as a dependency
    of its submodules on the package (``from pkg.sub import x`` executes ``pkg`` first, but
    ``pkg`` importing ``pkg.sub`` back is the normal facade pattern, not a cycle)."""
    return {
        t
        for t in targets
        if t in MODULES
        and t != name
        and not (name.startswith(t + ".") and MODULES[t].name == "__init__.py")
    }


def test_no_import_cycles_at_import_time():
    graph = {
        name: _package_edges(name, _imports(name, path, top_level_only=True))
        for name, path in MODULES.items()
    }
    cycles = _cycles(graph)
    assert not cycles, f"import cycles: {cycles}"


def test_only_the_worker_imports_the_native_engine():
    offenders = {}
    for name, path in MODULES.items():
        if name.startswith(WORKER_ONLY) or name in WORKER_ENTRY:
            continue
        bad = {
            t
            for t in _imports(name, path, top_level_only=False)
            if t == WORKER_ONLY
            or t.startswith(WORKER_ONLY + ".")
            or t == "llama_cpp"
            or t.startswith("llama_cpp.")
        }
        if bad:
            offenders[name] = sorted(bad)
    assert not offenders, f"outside a worker process, these import native engine code: {offenders}"


@pytest.mark.parametrize("layer", CORE)
def test_the_core_knows_no_transport(layer):
    offenders = {}
    for name, path in MODULES.items():
        if not (name == layer or name.startswith(layer + ".")):
            continue
        bad = {
            t for t in _imports(name, path, top_level_only=False) if t.split(".")[0] in TRANSPORTS
        }
        if bad:
            offenders[name] = sorted(bad)
    assert not offenders, f"{layer} imports a transport: {offenders}"


def test_the_checks_can_fail():
    """The cycle finder and the size rule see a planted cycle and a planted long module."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert len(Path(__file__).read_text().splitlines()) < MAX_LINES
