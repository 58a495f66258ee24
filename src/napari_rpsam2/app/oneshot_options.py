"""The one-shot methods' settings as the dock and the command line offer them (Qt-free).

:class:`OneShotSettings` holds every setting a person can change, with the
papers' defaults; :meth:`OneShotSettings.options` turns them into one
method's constructor options, checked, so both front ends refuse the same
bad input with the same sentence before any computation.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..oneshot import WarpConfig
from ..oneshot.medprompts import ORGAN_TYPES
from ..oneshot.p2sam import NEGATIVE_RULES

__all__ = ["OneShotSettings", "parse_counts", "ORGAN_TYPES", "NEGATIVE_RULES"]


def parse_counts(text: str, what: str = "negative clicks") -> tuple[int, ...]:
    """``"1"`` → (1,); ``"2-5"`` → (2, 3, 4, 5); ``"1, 3"`` → (1, 3) (a retrieval range)."""
    text = str(text).strip()
    try:
        if "-" in text:
            lo, hi = (int(p) for p in text.split("-", 1))
            counts = tuple(range(lo, hi + 1))
        else:
            counts = tuple(int(p) for p in text.replace(";", ",").replace(" ", ",").split(",") if p)
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise ValueError(f"{what}: give a number like 3, a range like 1-5 or a list like 1,3 "
                         f"(each at least 1), not '{text}'")
    return counts


@dataclass
class OneShotSettings:
    """Every method setting, with the papers' defaults.

    Attributes
    ----------
    guided_attention, semantic_prompt : bool
        PerSAM's target-guided attention and target-semantic prompting.
    negative_rule : str
        P²SAM: ``medical`` (background clusters) or ``natural`` (one negative at the similarity minimum).
    negatives : tuple of int
        P²SAM, medical rule: negative clicks, one count or a retrieval range.
    warp_steps, rounds, retrain_epochs, refinements : int
        Med-PerSAM: first training steps, pseudo-label rounds (paper 5), epochs per round (paper 10),
        prompt refinements (paper 1).
    organ : str
        Med-PerSAM: ``single`` (5 clicks of each kind) or ``bilateral`` (10, half on each side).
    clicks : int or None
        Med-PerSAM: positive and negative clicks each (``None``: by organ type).
    kernel : int or None
        Med-PerSAM: erosion / dilation radius in pixels (``None``: 15 % of the mask's radius).
    """

    guided_attention: bool = True
    semantic_prompt: bool = True
    negative_rule: str = "medical"
    negatives: tuple[int, ...] = (1,)
    warp_steps: int = 150
    rounds: int = 5
    retrain_epochs: int = 10
    refinements: int = 1
    organ: str = "single"
    clicks: int | None = None
    kernel: int | None = None

    def check(self) -> None:
        """Raise ``ValueError`` with one sentence saying what is wrong and what to do."""
        if self.negative_rule not in NEGATIVE_RULES:
            raise ValueError(f"the negative rule must be {' or '.join(NEGATIVE_RULES)}, not '{self.negative_rule}'")
        if self.organ not in ORGAN_TYPES:
            raise ValueError(f"the organ type must be {' or '.join(ORGAN_TYPES)}, not '{self.organ}'")
        if not self.negatives or min(self.negatives) < 1:
            raise ValueError("P²SAM needs at least 1 negative click per candidate")
        if self.warp_steps < 1 or self.retrain_epochs < 1:
            raise ValueError("warping steps and retraining epochs must be at least 1")
        if self.rounds < 0 or self.refinements < 0:
            raise ValueError("retraining rounds and prompt refinements must be 0 or more")
        if (self.clicks is not None and self.clicks < 1) or (self.kernel is not None and self.kernel < 1):
            raise ValueError("clicks and the kernel radius must be at least 1 (leave them unset for the defaults)")

    def options(self, method: str) -> dict:
        """Constructor options of ``method`` (``persam``, ``p2sam``, ``medpersam``), checked."""
        self.check()
        if method == "persam":
            return {"guided_attention": self.guided_attention, "semantic_prompt": self.semantic_prompt}
        if method == "p2sam":
            return {"negative_rule": self.negative_rule, "negatives": tuple(self.negatives)}
        if method == "medpersam":
            return {"config": WarpConfig(steps=int(self.warp_steps), retrain_epochs=int(self.retrain_epochs)),
                    "rounds": int(self.rounds), "refinements": int(self.refinements), "organ": self.organ,
                    "positives": self.clicks, "negatives": self.clicks, "kernel": self.kernel,
                    "semantic_prompt": self.semantic_prompt}
        return {}
