"""Architecture rules that a grep cannot be trusted with: the pure library never imports dagster, its
rooms import one another downhill only (no package-level import cycle), and only the checkpoint room
touches checkpoint files."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import plus_ultra_ml

LIBRARY = Path(plus_ultra_ml.__file__).resolve().parent


def test_no_dagster_import_in_library_source():
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(LIBRARY)}: {n}" for n in names if n.split(".")[0].startswith("dagster")]
    assert offenders == []


def test_importing_every_library_module_loads_no_dagster():
    modules = sorted(
        "plus_ultra_ml." + ".".join(p.relative_to(LIBRARY).with_suffix("").parts)
        for p in LIBRARY.rglob("*.py") if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0].startswith('dagster')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout


# ------------------------------------------------------------------------------------------ package layering
def _imported_modules(path: Path, package: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Dotted names (as tuples) that a module imports, relative imports resolved against `package`."""
    out: list[tuple[str, ...]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [tuple(alias.name.split(".")) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            module = base + tuple((node.module or "").split(".")) if node.module else base
            out.append(module)
            out += [module + (alias.name,) for alias in node.names]  # `from pkg import room` names a room
    return out


def package_graph(library: Path) -> dict[str, dict[str, set[str]]]:
    """Import arrows between the rooms of a package: {room: {imported room: {importing files}}}.

    A room is the first component under the package (a subpackage, or a top-level module such as
    config.py on its own). Every import counts, at module level or inside a function, absolute or
    relative; imports within one room are not arrows.
    """
    root = library.name
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(library.rglob("*.py")):
        parts = path.relative_to(library).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package's own __init__ is not a room
        room = parts[0]
        package = (root, *parts[:-1])  # a module's package; an __init__'s package is its own folder
        graph.setdefault(room, {})
        for name in _imported_modules(path, package):
            if len(name) > 1 and name[0] == root and name[1] != room:
                graph[room].setdefault(name[1], set()).add(str(path.relative_to(library)))
    return graph


def find_cycle(graph: dict[str, dict[str, set[str]]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search, rooms in sorted order)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def assert_no_cycle(library: Path) -> None:
    graph = package_graph(library)
    cycle = find_cycle(graph)
    if cycle:
        arrows = "; ".join(f"{a} -> {b} ({', '.join(sorted(graph[a][b]))})" for a, b in zip(cycle, cycle[1:]))
        raise AssertionError(f"package import cycle {' -> '.join(cycle)}: {arrows}")


def test_package_import_graph_has_no_cycle():
    assert_no_cycle(LIBRARY)


def test_the_experiments_room_sits_above_training_rl_and_evaluation():
    graph = package_graph(LIBRARY)
    assert {"training", "rl", "evaluation"} <= set(graph["experiments"])
    assert not [room for room, arrows in graph.items() if "experiments" in arrows and room != "cli"]


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_planted_cycle_fails_and_names_its_arrows(tmp_path):
    library = _write(tmp_path / "pkg", {
        "__init__.py": "",
        "config.py": "",
        "a/__init__.py": "",
        "a/x.py": "from pkg.b.y import g\nfrom pkg import config\n",  # absolute: a -> b, a -> config
        "b/__init__.py": "",
        "b/y.py": "def g():\n    from ..a import x  # relative, inside a function: b -> a\n",
        "c.py": "import pkg.config\n",
    })
    graph = package_graph(library)
    assert {room: set(arrows) for room, arrows in graph.items()} == {
        "a": {"b", "config"}, "b": {"a"}, "c": {"config"}, "config": set()}
    assert find_cycle(graph) == ["a", "b", "a"]
    with pytest.raises(AssertionError, match=r"cycle a -> b -> a: a -> b \(a/x.py\); b -> a \(b/y.py\)"):
        assert_no_cycle(library)


def test_a_layered_package_passes(tmp_path):
    library = _write(tmp_path / "pkg", {
        "__init__.py": "", "config.py": "", "low/__init__.py": "from pkg import config\n",
        "high/__init__.py": "from ..low import thing\nfrom . import local\n",
    })
    assert find_cycle(package_graph(library)) is None
    assert_no_cycle(library)


def test_the_checkpoint_room_sits_below_training_rl_and_serving():
    """It owns the file format; the rooms that train and serve call it, never the reverse."""
    graph = package_graph(LIBRARY)
    assert set(graph["checkpoints"]) <= {"models", "data", "config", "lineage", "artifacts", "errors"}, \
        graph["checkpoints"]
    assert {"training", "rl", "serving"} <= {room for room, arrows in graph.items() if "checkpoints" in arrows}


def torch_file_calls(library: Path) -> list[str]:
    """`torch.save(...)` / `torch.load(...)` calls as 'file:line', outside the checkpoint room."""
    found = []
    for path in sorted(library.rglob("*.py")):
        if path.relative_to(library).parts[0] == "checkpoints":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("save", "load")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                found.append(f"{path.relative_to(library)}:{node.lineno}")
    return found


def test_only_the_checkpoint_room_writes_or_reads_checkpoint_files(tmp_path):
    assert torch_file_calls(LIBRARY) == []
    planted = _write(tmp_path / "lib", {"training/fit.py": "import torch\ntorch.save({}, 'x.pt')\n",
                                        "checkpoints/format.py": "import torch\ntorch.load('x.pt')\n"})
    assert torch_file_calls(planted) == ["training/fit.py:2"]
