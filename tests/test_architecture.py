"""The shape of the code: layering and no import cycles (import-linter), module and function sizes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_rpsam2"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def test_import_contracts_are_kept():
    """engine -> application -> front ends; no Qt/napari below the front ends; no cycles."""
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout


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
    assert not long_functions, "functions over 60 lines: " + ", ".join(long_functions)
