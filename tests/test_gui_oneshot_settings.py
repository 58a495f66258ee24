"""The one-shot dock's method settings, set as a person does (combo boxes, check boxes, typed numbers)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from gui_forms import choose, click, tick, type_into
from test_gui_oneshot_dock import run_and_wait, scene  # noqa: F401  (the fixture)


def _visible(dock) -> set[str]:
    return {w.name for w in dock.form if w.visible}


def test_each_method_shows_its_own_settings_with_the_papers_defaults(scene, qtbot):  # noqa: F811
    _viewer, _img, _lab, dock = scene
    assert {"guided_attention", "semantic_prompt"} <= _visible(dock) and "rounds" not in _visible(dock)
    assert dock.form.guided_attention.value and dock.form.semantic_prompt.value  # PerSAM: both parts on
    choose(qtbot, dock.method, "Med-PerSAM (warping)")
    assert {"rounds", "retrain_epochs", "refinements", "organ", "clicks", "kernel", "semantic_prompt"} <= _visible(dock)
    assert "guided_attention" not in _visible(dock) and "negative_rule" not in _visible(dock)
    assert (dock.form.rounds.value, dock.form.retrain_epochs.value, dock.form.refinements.value) == (5, 10, 1)
    shown = [w.native.placeholderText() for w in (dock.form.clicks, dock.form.kernel)]
    assert shown == ["by organ type", "automatic"] and dock.form.clicks.value == dock.form.kernel.value == ""
    choose(qtbot, dock.method, "P²SAM (part-aware)")
    assert {"negative_rule", "negatives"} <= _visible(dock) and "rounds" not in _visible(dock)
    choose(qtbot, dock.form.negative_rule, "Natural (minimum)")
    assert "negatives" not in _visible(dock)  # one negative by that rule


def test_settings_typed_in_the_dock_reach_the_run_and_bad_ones_are_refused(scene, qtbot):  # noqa: F811
    viewer, _img, lab, dock = scene
    before = lab.data.copy()
    # P²SAM, medical rule with a range that cannot be: refused before any work
    choose(qtbot, dock.method, "P²SAM (part-aware)")
    type_into(qtbot, dock.form.negatives, "0-2")
    click(qtbot, dock.run_button)
    assert not dock.running and "Negative clicks" in dock.status.text() and "1-5" in dock.status.text()
    assert np.array_equal(lab.data, before) and dock.last_outcome is None
    # the natural rule: one negative per object and slice, at the similarity minimum
    choose(qtbot, dock.form.negative_rule, "Natural (minimum)")
    run_and_wait(qtbot, dock)
    assert dock.last_outcome is not None, dock.status.text()
    for res in dock.last_outcome.results.values():
        for obj in res.objects:
            assert obj.info["negative_rule"] == "natural" and (obj.labels == 0).sum() == 1
    # PerSAM with both decoder parts switched off
    choose(qtbot, dock.method, "PerSAM (baseline)")
    tick(qtbot, dock.form.guided_attention)
    tick(qtbot, dock.form.semantic_prompt)
    run_and_wait(qtbot, dock)
    obj = dock.last_outcome.results[1].objects[0]
    assert dock.last_outcome.method == "persam"
    assert not obj.info["guided_attention"] and not obj.info["semantic_prompt"]
    # Med-PerSAM: a bilateral organ, 4 clicks of each kind, a 2-pixel kernel, one short retraining round
    choose(qtbot, dock.method, "Med-PerSAM (warping)")
    type_into(qtbot, dock.form.warp_steps, "2")
    type_into(qtbot, dock.form.rounds, "1")
    type_into(qtbot, dock.form.retrain_epochs, "1")
    choose(qtbot, dock.form.organ, "Bilateral (10 + 10)")
    type_into(qtbot, dock.form.clicks, "4")
    type_into(qtbot, dock.form.kernel, "2")
    stages = []
    dock._bridge.message.connect(lambda msg: stages.append(msg[0]))
    run_and_wait(qtbot, dock)
    assert dock.last_outcome.method == "medpersam", dock.status.text()
    assert "pseudo-labels 1/1" in stages  # the retraining round ran
    for res in dock.last_outcome.results.values():
        for obj in res.objects:
            first = obj.info["initial_labels"]
            assert (first == 1).sum() <= 4 and (first == 0).sum() <= 4 and (first == 1).sum() >= 1
        planes = [o.mask for o in res.objects]
        assert not (planes[0] & planes[1]).any()  # two objects never share a pixel
