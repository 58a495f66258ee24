"""Import torch's compiler stack without loading triton next to the canvas's LLVM.

torch's optimizers import ``torch._dynamo`` on first use, and that import
loads ``triton`` when it is installed.  Under Mesa OpenGL (llvmpipe, radeonsi)
napari's canvas has already mapped ``libLLVM``; triton's own LLVM loaded on
top of it crashes the process (segmentation fault, seen under Xvfb).

:func:`import_torch_compiler` imports ``torch._dynamo`` once, and only in
that case refuses ``import triton`` *while* it runs: torch then records
(and caches) that triton is unavailable and never tries again.  Nothing in
``sys.modules`` is replaced and the import hook is removed right after.
Call it from the worker thread that will build the optimizer (it takes
seconds), never from the GUI thread.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator

__all__ = ["import_torch_compiler", "refusing_import", "llvm_mapped"]


class _Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, name, path=None, target=None):  # noqa: D401 - importlib protocol
        if name == self.package or name.startswith(self.package + "."):
            raise ImportError(f"{self.package} is not loaded inside napari (its LLVM clashes with the canvas's)")
        return None


@contextlib.contextmanager
def refusing_import(package: str) -> Iterator[None]:
    """Within the block, ``import <package>`` raises ImportError (unless it is already imported)."""
    finder = _Refuse(package)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def llvm_mapped() -> bool:
    """Whether this (Linux) process has a ``libLLVM`` mapped, e.g. by Mesa's OpenGL."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/maps") as fh:
            return "libLLVM" in fh.read()
    except OSError:
        return False


def import_torch_compiler() -> None:
    """Import ``torch._dynamo`` (needed by ``torch.optim``) safely; a no-op once imported."""
    if "torch._dynamo" in sys.modules:
        return
    if "triton" not in sys.modules and llvm_mapped():
        with refusing_import("triton"):
            import torch._dynamo  # noqa: F401
    else:
        import torch._dynamo  # noqa: F401
