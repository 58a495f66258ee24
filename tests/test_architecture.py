"""The shape of the code: layering and no import cycles (import-linter), module and function sizes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_rpsam2"
# The guides are ~400 lines a module and ~60 a function; the test fails only well past them, so that code is
# split by responsibility, never to squeeze under a number.
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_import_contracts_are_kept():
    """engine -> application -> front ends; no Qt/napari below the front ends; no cycles."""
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout


def _contracts() -> list[dict]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]


def _top_level_parts() -> set[str]:
    """Every package and module directly under napari_rpsam2 (what the contracts must name)."""
    parts = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    parts |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    return {f"napari_rpsam2.{name}" for name in parts}


def test_every_package_is_named_by_the_contracts():
    """A new package or module cannot slip past the layers (nor, below the docks, the Qt ban)."""
    import re

    contracts = _contracts()
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    in_layers = {m for layer in layers for m in re.findall(r"napari_rpsam2[.\w]*", layer)}
    forbidden = set(next(c for c in contracts if c["type"] == "forbidden")["source_modules"])
    parts = _top_level_parts()
    assert parts - in_layers == set(), f"not in the layers contract: {sorted(parts - in_layers)}"
    qt_free = parts - {"napari_rpsam2._widgets"}
    assert qt_free - forbidden == set(), f"not in the no-Qt contract: {sorted(qt_free - forbidden)}"
    assert "napari_rpsam2.cli" in parts, "the command line is the cli/ package"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_modules_stay_small():
    too_long = {str(p.relative_to(PACKAGE)): n for p in _modules()
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_functions_stay_short():
    long_functions = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body_start = node.body[0].lineno
                if isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None),
                                                                     ast.Constant) and len(node.body) > 1:
                    body_start = node.body[1].lineno  # the docstring does not count
                length = node.end_lineno - body_start + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length})")
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: " + ", ".join(long_functions)
