"""What the Propagate dock sends: committed objects as masks, the click dock's clicks, drawn rectangles."""

from __future__ import annotations

import numpy as np

from napari_rpsam2._widgets._propagate_prompts import box_prompts, click_prompt, mask_prompts, rectangle_box
from napari_rpsam2.app.click_session import Click


def test_each_committed_object_is_one_mask_prompt_with_its_id():
    plane = np.zeros((6, 8), np.int32)
    plane[1:3, 1:3], plane[4:, 5:] = 3, 7
    prompts = mask_prompts(plane, 2)
    assert [(p.slice, p.object) for p in prompts] == [(2, 3), (2, 7)]
    assert prompts[1].mask.sum() == 6 and prompts[0].box is None


def test_clicks_become_one_object_only_with_a_positive_click():
    assert click_prompt([Click(4.0, 5.0, False)], 0, 9) is None
    p = click_prompt([Click(4.0, 5.0, True), Click(1.0, 2.0, False)], 1, 9)
    assert (p.slice, p.object) == (1, 9)
    assert p.points.tolist() == [[4.0, 5.0], [1.0, 2.0]] and p.labels.tolist() == [1, 0]


def test_a_rectangle_dragged_past_the_border_is_clipped_and_keeps_its_slice():
    vertices = np.array([[2, -5.0, 10.0], [2, -5.0, 400.0], [2, 30.0, 400.0], [2, 30.0, 10.0]])
    assert rectangle_box(vertices, (256, 320)) == (2, (0.0, 10.0, 30.0, 319.0))
    (p,) = box_prompts([vertices], (256, 320), first_id=4)
    assert (p.slice, p.object, p.box) == (2, 4, (0.0, 10.0, 30.0, 319.0))


def test_the_click_docks_box_joins_its_clicks_and_stands_alone_without_them():
    p = click_prompt([Click(4.0, 5.0, False)], 3, 9, box=(1.0, 2.0, 8.0, 9.0))
    assert (p.slice, p.object, p.box) == (3, 9, (1.0, 2.0, 8.0, 9.0)) and p.labels.tolist() == [0]
    alone = click_prompt([], 3, 9, box=(1.0, 2.0, 8.0, 9.0))
    assert alone.points is None and alone.box == (1.0, 2.0, 8.0, 9.0)
