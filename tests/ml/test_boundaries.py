"""Architecture rules that a grep cannot be trusted with: the pure library never imports dagster."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
