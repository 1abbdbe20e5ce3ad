"""Lint (ruff), types (mypy strict on the runtime and the training package) and the modules' doctests
run as part of the test command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("package", ["cvae_sdk", "training"])
def test_mypy_is_clean(package: str) -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", package], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


MAX_FUNCTION_LINES = 80


def _trees(package: str) -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in sorted((ROOT / package).rglob("*.py"))]


@pytest.mark.parametrize("package", ["cvae_sdk", "training"])
def test_no_function_is_longer_than_80_lines(package: str) -> None:
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, tree in _trees(package) for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


@pytest.mark.parametrize("package", ["cvae_sdk", "training"])
def test_no_module_reads_another_objects_private_attributes(package: str) -> None:
    """``x._name`` only on ``self``/``cls`` (and ``super()``, for the hooks torch asks subclasses to
    override); private module names are not imported from another module either."""
    def own(value: ast.expr) -> bool:
        return (isinstance(value, ast.Name) and value.id in ("self", "cls")) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super")

    reads = [f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}"
             for path, tree in _trees(package) for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
             and not own(node.value)]
    imports = [f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}"
               for path, tree in _trees(package) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert reads == [] and imports == []
