"""kill -9 in the middle of a real propagation: the work folder opens and holds every commit made before it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import tifffile
from small_sam2 import drifting_discs

from napari_rpsam2.app import workfolder as wf

SRC = str(Path(__file__).resolve().parents[1] / "src")

_ANNOTATOR = """
import sys
import numpy as np
import tifffile
from napari_rpsam2 import RPSAM2
from napari_rpsam2.app import workfolder as wf
from napari_rpsam2.app.click_session import ClickSession
from napari_rpsam2.app.propagation import PropagationOptions, PropagationRun, write_new_labels
from napari_rpsam2.model import FramePrompt

path = sys.argv[1]
stack = tifffile.imread(path)
model = RPSAM2.load("sam2.1_hiera_tiny", sam2_weights="random", device="cpu", seed=0)
labels = np.zeros(stack.shape[:3], np.int32)
folder = wf.open_for_image(stack, labels.shape, image_path=path)
session = ClickSession(labels.shape)
session.target = labels
for row, col in ((21, 13), (43, 48)):
    session.add_click((0,), row, col)
    preview = session.segment(model, stack[0], (0,))
    record = session.commit()
    wf.record_commit(folder, record.label_id, record.change, preview.result, labels, model=model, refine=True)
    print("committed", record.label_id, flush=True)
prompts = [FramePrompt(0, 3, points=np.array([[32.0, 32.0]]), labels=np.array([1]))]
run = PropagationRun(model, stack)
result = run.propagate(prompts, PropagationOptions("forward"),
                       progress=lambda stage, done, total: print("frame", done, total, flush=True))
change = write_new_labels(labels, result).change
wf.record_propagation(folder, prompts, result, change, labels, model=model, refine=True,
                      options={"direction": "forward"})
print("recorded", flush=True)
"""


def test_kill_9_mid_propagation_leaves_the_folder_readable_with_both_commits(tmp_path, model):
    path = tmp_path / "discs.tif"
    tifffile.imwrite(path, drifting_discs(40), photometric="rgb")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_ANNOTATOR), str(path)],
                            stdout=subprocess.PIPE, text=True, env=env)
    seen, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.split())
        if seen[-1][:1] == ["frame"] and int(seen[-1][1]) >= 3:
            break
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: SAM2 has tracked a few of the 40 frames
    proc.wait()
    assert [s[:2] for s in seen[:2]] == [["committed", "1"], ["committed", "2"]], seen
    assert seen[-1][0] == "frame" and int(seen[-1][1]) < int(seen[-1][2]), "the run ended before the kill"

    folder = wf.WorkFolder.open(path.with_suffix(wf.SUFFIX))
    back = wf.restore(folder)
    assert [e["kind"] for e in back.events] == ["commit", "commit"] and back.skipped == 0
    for event in back.events:  # each commit's pixels are in the saved labels, as many as it wrote
        (oid,) = event["objects"]
        assert int((back.labels[0] == oid).sum()) == event["written_pixels"] > 0
    assert not back.labels[1:].any()  # nothing of the killed propagation
    image = tifffile.imread(path)
    assert [o.reproduced for o in wf.rerun(folder, model, image)] == [True, True]
