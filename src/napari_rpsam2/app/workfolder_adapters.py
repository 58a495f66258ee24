"""The SAM2 adapters a work folder's events were made with, for ``rpsam2 rerun``.

Each event's ``model.adapter`` is the digest of the adapters hooked onto
SAM2 when it was made (``None``: plain SAM2).  A re-run hooks the same
adapters on for those events and takes them off for the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["recorded_adapters", "adapter_refusal", "use_adapters_of"]


def recorded_adapters(folder: Any) -> dict[str, list[int]]:
    """The SAM2 adapter digests the events in effect were made with: ``digest -> [event seq, ...]``."""
    found: dict[str, list[int]] = {}
    for event in folder.live_events()[0]:
        digest = (event.get("model") or {}).get("adapter")
        if digest:
            found.setdefault(str(digest), []).append(int(event["seq"]))
    return found


def adapter_refusal(folder: Any, model: Any) -> str | None:
    """Why ``model``'s adapters (or their absence) cannot re-run ``folder``'s events, or ``None``.

    Events made with adapters need the model to carry adapters of the same
    digest (``rpsam2 rerun --adapters FILE``); adapters that no event used are
    refused too.  Events made without adapters are re-run on plain SAM2.
    """
    recorded = recorded_adapters(folder)
    loaded = getattr(model.backbone, "adapters", None)
    digest = None if loaded is None else loaded.digest()
    if digest is not None and digest not in recorded:
        saved = ", ".join(d[:12] for d in recorded) or "none"
        return (f"the adapters given have digest {digest[:12]}, but the saved events used {saved}: "
                "give the adapter file the objects were made with")
    missing = {d: seqs for d, seqs in recorded.items() if d != digest}
    if digest is None and missing:
        d, seqs = next(iter(missing.items()))
        return (f"event(s) {', '.join(f'#{s}' for s in seqs)} were made with SAM2 adapters (digest {d[:12]}): "
                "give that adapter file with --adapters")
    return None


def use_adapters_of(event: Mapping, model: Any, loaded: Any, header: dict) -> str:
    """Hook the adapters ``event`` was made with on (or off) ``model``; returns why it cannot be re-run, or ""."""
    wanted = (event.get("model") or {}).get("adapter")
    backbone = model.backbone
    if wanted is None:
        if getattr(backbone, "adapters", None) is not None:
            backbone.use_adapters(None)
        return ""
    if loaded is None or loaded.digest() != wanted:
        return f"made with other SAM2 adapters ({str(wanted)[:12]}): give that file with --adapters"
    if backbone.adapters is not loaded:
        backbone.use_adapters(loaded, header)
    return ""
