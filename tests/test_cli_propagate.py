"""``rpsam2 propagate`` in-process on the sample stack (PNG folder and TIFF stack)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_rpsam2 import cli
from napari_rpsam2.sample_data import make_instrument_stack

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def stack_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("propagate")
    image, labels = make_instrument_stack(n_slices=2)
    (root / "frames").mkdir()
    for i, frame in enumerate(image):
        Image.fromarray(frame).save(root / "frames" / f"f{i}.png")
    tifffile.imwrite(root / "stack.tif", image)
    return root, image, labels


def _csv(path, text):
    path.write_text(text)
    return str(path)


def _run(capsys, args, model):
    code = cli.main(args, model=model)
    out, err = capsys.readouterr()
    return code, out, err


def test_clicks_and_boxes_from_a_folder_within_a_range(capsys, model, stack_files, tmp_path):
    root, image, labels = stack_files
    r, c = np.argwhere(labels[0] == labels[0].max())[0]
    prompts = _csv(tmp_path / "p.csv", "slice,object,row,col,label,top,left,bottom,right\n"
                                        f"0,1,{r},{c},1,,,,\n0,2,,,,90,60,170,200\n")
    out = tmp_path / "labels.tif"
    code, stdout, err = _run(capsys, ["propagate", "--images", str(root / "frames"), "--prompts", prompts,
                                      "--out", str(out), "--start", "0", "--stop", "1", "--quiet"], model)
    assert code == 0, err
    written = tifffile.imread(out)
    assert written.shape == labels.shape
    assert {1, 2} <= set(np.unique(written[0])) and not written[1].any()
    assert "through 1 of 2 slices" in stdout


def test_tiff_stack_forward_with_scores(capsys, model, stack_files, tmp_path):
    root, image, labels = stack_files
    r, c = np.argwhere(labels[0] == labels[0].max())[0]
    prompts = _csv(tmp_path / "p.csv", f"slice,object,row,col\n0,3,{r},{c}\n")
    out, scores = tmp_path / "labels.tif", tmp_path / "scores.csv"
    code, _, err = _run(capsys, ["propagate", "--images", str(root / "stack.tif"), "--prompts", prompts,
                                 "--out", str(out), "--scores", str(scores), "--direction", "forward",
                                 "--quiet"], model)
    assert code == 0, err
    written = tifffile.imread(out)
    assert (written == 3).any(axis=(1, 2)).all()
    rows = scores.read_text().splitlines()
    assert rows[0] == "slice,object_3" and len(rows) == 3


@pytest.mark.parametrize("text, words", [
    ("slice,object,x,y\n0,1,2,3\n", ["header"]),
    ("slice,object,row,col\n0,1,abc,3\n", ["line 2", "'row'"]),
    ("slice,object,row,col\n5,1,10,10\n", ["slices 0 to 1"]),
    ("slice,object,row,col,top,left,bottom,right\n0,1,,,,,,\n", ["either"]),
])
def test_bad_prompts_file_gives_one_line_and_exit_2(capsys, model, stack_files, tmp_path, text, words):
    root, _, _ = stack_files
    prompts = _csv(tmp_path / "p.csv", text)
    code, _, err = _run(capsys, ["propagate", "--images", str(root / "frames"), "--prompts", prompts,
                                 "--out", str(tmp_path / "o.tif"), "--quiet"], model)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rpsam2: error: "), err
    assert all(w in lines[0] for w in words)
    assert not (tmp_path / "o.tif").exists()


def test_slices_by_name_by_file_name_and_an_ambiguous_number_refused(tmp_path):
    from napari_rpsam2.cli.propagate import read_prompts
    from napari_rpsam2.cli.support import UsageError

    names = {"0": 0, "0.png": 0, "1": 1, "1.png": 1, "10": 2, "10.png": 2, "2": 3, "2.png": 3}  # name order
    ok = _csv(tmp_path / "ok.csv", "slice,object,row,col\n2.png,1,5,5\n10,2,5,5\n1,3,5,5\n")
    assert [p.slice for p in read_prompts(ok, names)] == [3, 2, 1]  # "10": number 10 is no slice, name is
    bad = _csv(tmp_path / "bad.csv", "slice,object,row,col\n2,1,5,5\n")
    with pytest.raises(UsageError, match="ambiguous: slice number 2, or the image named '2' \\(slice 3\\)"):
        read_prompts(bad, names)
