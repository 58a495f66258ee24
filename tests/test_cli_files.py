"""Files nobody loses: permissions, unwritable or used output locations, bad options, prompt files, warnings.

Every refusal here must come at once (before any model work), as one line
``rpsam2: error: …`` with exit status 2.  Tests run as root in CI, which
ignores a folder's write bits, so a read-only folder is tried with the
effective user switched to ``nobody`` for the duration of the command.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import napari_rpsam2
from napari_rpsam2 import cli
from napari_rpsam2._atomic import OutputError, atomic_folder, atomic_write

NOBODY = 65534


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@contextlib.contextmanager
def _as_user_without_rights():
    """Run as ``nobody`` when root (root writes into read-only folders); as is otherwise.

    ``nobody`` may not read the Python installation, so the modules the
    commands import on their way are imported first.
    """
    if os.geteuid() != 0:
        yield
        return
    import importlib

    for name in ("napari_rpsam2.app.evaluate", "napari_rpsam2.app.train", "napari_rpsam2.app.heatmap",
                 "napari_rpsam2.oneshot", "napari_rpsam2.oneshot.protocol", "napari_rpsam2.oneshot.report",
                 "napari_rpsam2.training.data", "napari_rpsam2.training.ddp", "napari_rpsam2.training.trainer",
                 "napari_rpsam2.evaluation.report", "napari_rpsam2.evaluation.sensitivity", "scipy.ndimage",
                 "tifffile", "tqdm.auto"):
        importlib.import_module(name)
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture(scope="module")
def root(instrument_stack):
    """Inputs in a world-readable folder (``nobody`` must read them), plus a writable and a read-only folder.

    The session's sample stack, so that the shared model's cache already holds most embeddings.
    """
    base = Path(tempfile.mkdtemp(prefix="rpsam2-cli-files-"))
    os.chmod(base, 0o755)
    image, labels = instrument_stack
    for sub in ("images", "labels", "targets", "writable", "readonly"):
        (base / sub).mkdir()
    for i in range(2):
        Image.fromarray(image[i]).save(base / "images" / f"f{i}.png")
        Image.fromarray((labels[i] == 1).astype(np.uint8)).save(base / "labels" / f"f{i}.png")
    Image.fromarray(image[1]).save(base / "targets" / "f1.png")
    (base / "prompts.csv").write_text("slice,object,row,col\n0,1,100,100\n")
    for path in base.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    os.chmod(base / "writable", 0o777)
    os.chmod(base / "readonly", 0o555)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _run(capsys, args, model):
    start = time.monotonic()
    code = cli.main(args, model=model)
    seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    return code, out, err, seconds


def _one_line_error(code, err, *words):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("rpsam2: error: ") and "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- permissions
def test_atomic_files_and_folders_get_the_umask_permissions(tmp_path):
    with _umask(0o022):
        path = atomic_write(tmp_path / "a.json", lambda tmp: Path(tmp).write_text("{}"))
        assert _mode(path) == 0o644
        with atomic_folder(tmp_path / "run") as folder:
            atomic_write(folder / "r.txt", lambda tmp: Path(tmp).write_text("x"))
        assert _mode(tmp_path / "run") == 0o755 and _mode(tmp_path / "run" / "r.txt") == 0o644
    with _umask(0o027):
        assert _mode(atomic_write(tmp_path / "b.json", lambda tmp: Path(tmp).write_text("{}"))) == 0o640
        # replacing a file keeps the permissions it has (a 0644 report stays readable by colleagues)
        atomic_write(tmp_path / "a.json", lambda tmp: Path(tmp).write_text("[]"))
        assert _mode(tmp_path / "a.json") == 0o644 and (tmp_path / "a.json").read_text() == "[]"


def test_a_failed_run_leaves_the_old_folder_and_no_temporary_one(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.tif").write_text("earlier run")
    with pytest.raises(OutputError, match="already holds files"):
        with atomic_folder(out):
            pass
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_folder(out, overwrite=True) as tmp:
            (tmp / "new.tif").write_text("half")
            raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and (out / "old.tif").read_text() == "earlier run"
    with atomic_folder(out, overwrite=True) as tmp:
        (tmp / "new.tif").write_text("whole")
    assert sorted(p.name for p in out.iterdir()) == ["new.tif"] and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_oneshot_output_folder_holds_one_run_with_readable_files(capsys, root, model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels").mkdir()
    (out / "labels" / "old_slice.tif").write_text("an earlier run")
    args = ["oneshot", "--reference-image", str(root / "images" / "f0.png"), "--reference-labels",
            str(root / "labels" / "f0.png"), "--images", str(root / "targets"), "--method", "persam",
            "--out", str(out), "--sam2-weights", "random", "--quiet"]
    code, _, err, seconds = _run(capsys, args, model)
    _one_line_error(code, err, str(out), "--overwrite")
    assert seconds < 5 and (out / "labels" / "old_slice.tif").exists()
    with _umask(0o022):
        code, stdout, err, _ = _run(capsys, [*args, "--overwrite"], model)
    assert code == 0, err
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["f1.tif"]  # the old run's file is gone
    assert json.loads((out / "report.json").read_text())["slices"][0]["slice"] == "f1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left beside it
    assert _mode(out) == _mode(out / "labels") == 0o755
    assert {_mode(p) for p in out.rglob("*") if p.is_file()} == {0o644}


# ---------------------------------------------------------------- output locations
def _commands(root: Path, where: Path) -> dict[str, list[str]]:
    ok = root / "writable"
    images, labels = str(root / "images"), str(root / "labels")
    evaluate = ["evaluate", "--images", images, "--labels", labels]
    oneshot = ["oneshot", "--reference-image", str(root / "images" / "f0.png"), "--reference-labels",
               str(root / "labels" / "f0.png"), "--images", str(root / "targets"), "--method", "persam"]
    propagate = ["propagate", "--images", images, "--prompts", str(root / "prompts.csv")]
    return {
        "evaluate --out": [*evaluate, "--out", str(where / "r.json")],
        "evaluate --cache": [*evaluate, "--out", str(ok / "r.json"), "--cache", str(where / "cache")],
        "heatmap --out": ["heatmap", "--image", str(root / "images" / "f0.png"), "--labels",
                          str(root / "labels" / "f0.png"), "--object", "1", "--out", str(where / "m.npy")],
        "propagate --out": [*propagate, "--out", str(where / "l.tif")],
        "propagate --scores": [*propagate, "--out", str(ok / "l.tif"), "--scores", str(where / "s.csv")],
        "oneshot --out": [*oneshot, "--out", str(where / "out")],
        "oneshot-eval --out": ["oneshot-eval", "--images", images, "--labels", labels, "--out",
                               str(where / "e.json")],
        "embed --cache": ["embed", "--images", images, "--cache", str(where / "cache")],
        "train --out": ["train", "--images", images, "--labels", labels, "--out", str(where / "b.safetensors")],
    }


@pytest.mark.parametrize("command", list(_commands(Path("r"), Path("w"))))
def test_read_only_output_location_is_refused_at_once(capsys, root, model, command):
    args = _commands(root, root / "readonly")[command]
    with _as_user_without_rights():
        code, _, err, seconds = _run(capsys, [*args, "--sam2-weights", "random", "--quiet"], model)
    line = _one_line_error(code, err, "readonly", command.split()[1])
    assert "Permission denied" in line or "not writable" in line or "cannot write" in line
    assert seconds < 5, seconds
    assert list((root / "readonly").iterdir()) == [] and list((root / "writable").iterdir()) == []


@pytest.mark.parametrize("command", ["evaluate --out", "evaluate --cache", "oneshot --out", "embed --cache",
                                     "propagate --out"])
def test_missing_output_location_is_refused_at_once(capsys, root, model, command):
    args = _commands(root, root / "no" / "such")[command]
    code, _, err, seconds = _run(capsys, [*args, "--sam2-weights", "random", "--quiet"], model)
    _one_line_error(code, err, "does not exist", str(root / "no"))
    assert seconds < 5 and not (root / "no").exists()


# ---------------------------------------------------------------- bad options
@pytest.mark.parametrize("extra, words", [
    (["--device", "gpu0"], ["--device", "'gpu0'", "cuda:N"]),
    (["--device", ""], ["--device", "''"]),
    (["--device", "mps"], ["--device", "'mps'", "not available"]),
    (["--start", "1", "--stop", "0"], ["--start 1 --stop 0", "selects no slice", "2 ≤ --stop ≤ 2"]),
    (["--start", "2"], ["--start 2", "slices 0 to 1"]),
    (["--stop", "9"], ["--stop 9", "the stack has 2 slices", "--stop 2 at most"]),
    (["--start", "-1"], ["--start -1"]),
    (["--stop-threshold", "nan"], ["--stop-threshold", "finite"]),
])
def test_bad_option_gives_one_line(capsys, root, model, tmp_path, extra, words):
    import torch

    if "mps" in extra and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    args = ["propagate", "--images", str(root / "images"), "--prompts", str(root / "prompts.csv"),
            "--out", str(tmp_path / "l.tif"), *extra, "--quiet"]
    code, _, err, seconds = _run(capsys, args, model)
    line = _one_line_error(code, err, *words)
    assert "–-1" not in line and seconds < 5 and not (tmp_path / "l.tif").exists()


@pytest.mark.parametrize("extra, words", [
    (["--method", "persam", "--objects", "7"], ["--reference-labels", "object id(s) [7]", "its ids are [1]"]),
    (["--method", "medpersam", "--warp-steps", "0"], ["warping steps", "at least 1"]),
])
def test_bad_oneshot_option_refused_before_the_model_loads(capsys, root, tmp_path, monkeypatch, extra, words):
    import napari_rpsam2.cli.oneshot as oneshot

    monkeypatch.setattr(oneshot, "make_model", lambda *a, **k: pytest.fail("the model was loaded"))
    args = ["oneshot", "--reference-image", str(root / "images" / "f0.png"), "--reference-labels",
            str(root / "labels" / "f0.png"), "--images", str(root / "targets"), "--out", str(tmp_path / "o"),
            *extra, "--quiet"]
    code, _, err, seconds = _run(capsys, args, None)
    _one_line_error(code, err, *words)
    assert seconds < 5 and not (tmp_path / "o").exists()


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"rpsam2 {napari_rpsam2.__version__} (sam2 ") and "torch" in out


# ---------------------------------------------------------------- prompt files
@pytest.mark.parametrize("rows, words", [
    ("slice,object,top,left,bottom,right\n0,1,200,10,150,300\n",
     ["line 2", "box (top 200, left 10, bottom 150, right 300)", "bottom above top"]),
    ("slice,object,top,left,bottom,right\n0,1,10,10,150,900\n", ["line 2", "right 900", "256×320"]),
    ("slice,object,row,col\n0,1,50,50\n0,1,300.5,10\n", ["line 3", "(row 300.5, col 10)", "outside"]),
    ("slice,object,row,col,label\n0,1,50,50,1\n1,2,60,60,0\n", ["line 3", "object 2 on slice 1",
                                                                  "only negative clicks"]),
    ("slice,object,row,col,label\n0,1,50,50,0\n0,1,70,70,0\n", ["lines 2, 3", "only negative clicks"]),
    ("slice,object,row,col,label\n0,1,50,50,2\n", ["line 2", "label must be 1", "got 2"]),
    ("slice,object,row,col\n0,0,50,50\n", ["line 2", "object ids are 1, 2"]),
    ("slice,object,row,col\n0,1,nan,50\n", ["line 2", "'row'", "finite"]),
    ("slice,object,top,left,bottom,right\n0,1,1,1,9,9\n0,1,2,2,8,8\n", ["lines 2, 3", "2 boxes"]),
    ("slice,object,row,col\n0,1,50,50\n1,1,50,50\n", ["line 3", "slice 1", "--start 0 --stop 1"]),
])
def test_prompt_file_is_checked_before_any_model_work(capsys, root, tmp_path, monkeypatch, rows, words):
    import napari_rpsam2.cli.propagate as propagate

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the prompts were checked")

    monkeypatch.setattr(propagate, "make_model", no_model)
    prompts = tmp_path / "p.csv"
    prompts.write_text(rows)
    args = ["propagate", "--images", str(root / "images"), "--prompts", str(prompts), "--out",
            str(tmp_path / "l.tif"), "--sam2-weights", "random", "--quiet"]
    if "--start 0 --stop 1" in words:
        args += ["--start", "0", "--stop", "1"]
    code, _, err, seconds = _run(capsys, args, None)
    line = _one_line_error(code, err, *words)
    assert "np.float64" not in line and seconds < 5


def test_docks_negative_only_object_refused_before_encoding(model, instrument_stack):
    """The engine rule the docks go through: a negative-only object on an untracked slice is refused."""
    from napari_rpsam2.model import FramePrompt, PromptError

    image, _ = instrument_stack
    encodes = model.cache.stats.misses
    with pytest.raises(PromptError, match="object 2 on slice 1 has only negative clicks"):
        model.propagate(image[:2], [FramePrompt(0, 1, points=np.array([[50.0, 50.0]])),
                                    FramePrompt(1, 2, points=np.array([[60.0, 60.0]]), labels=np.array([0]))])
    assert model.cache.stats.misses == encodes  # nothing was encoded
    with pytest.raises(PromptError, match=r"box \(top 200, left 10, bottom 150, right 300\)"):
        model.propagate(image[:2], [FramePrompt(0, 1, box=(200.0, 10.0, 150.0, 300.0))])


# ---------------------------------------------------------------- heatmap grid
def test_default_heatmap_grid_holds_about_12_by_12_points():
    from skimage.draw import disk, ellipse

    from napari_rpsam2.evaluation.grid_dice import default_stride, grid_points

    counts = {}
    for shape in [("disk", r) for r in (7, 9, 10, 12, 13, 14, 16, 20, 30, 45, 60, 120)] + [("bar", w) for w in
                                                                                          (2, 3, 5, 9)]:
        mask = np.zeros((400, 400), bool)
        if shape[0] == "disk":
            mask[disk((200, 200), shape[1])] = True
        else:
            mask[20:380, 100:100 + shape[1]] = True
        counts[shape] = (int(mask.sum()), len(grid_points(mask)))
        assert default_stride(mask) >= 1
    for area, n in counts.values():
        assert 72 <= n <= 288, counts  # stride 1 or 2: within a factor of 2 of 144
        if area >= 900:
            assert 0.65 * 144 <= n <= 1.35 * 144, counts
    # the instrument-sized object that gave 575 clicks before (stride floor(sqrt(575 / 144)) = 1)
    forceps = np.zeros((256, 320), bool)
    forceps[ellipse(128, 160, 10, 18)] = True
    assert 500 < forceps.sum() < 600 and 100 <= len(grid_points(forceps)) <= 200


# ---------------------------------------------------------------- classes and Dice scale
def test_ids_missing_from_the_class_map_are_named_and_left_out_of_the_class_average(capsys, model, tmp_path,
                                                                                    instrument_stack):
    image, labels = instrument_stack  # the session's frame 0: its embedding is cached
    ids = labels[0].astype(np.uint8)
    assert set(np.unique(ids)) == {0, 1, 2} and not ids[:20, :20].any()
    ids[:20, :20] = 7
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.fromarray(image[0]).save(tmp_path / "images" / "f.png")
    Image.fromarray(ids).save(tmp_path / "labels" / "f.png")
    (tmp_path / "classes.json").write_text('{"1": "forceps", "2": "knife"}')
    out = tmp_path / "r.json"
    code, stdout, err, _ = _run(capsys, ["evaluate", "--images", str(tmp_path / "images"), "--labels",
                                         str(tmp_path / "labels"), "--class-map", str(tmp_path / "classes.json"),
                                         "--clicks", "1", "--out", str(out), "--sam2-weights", "random",
                                         "--quiet"], model)
    assert code == 0, err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "label id(s) 7" in warning[0] and "class average" in warning[0]
    report = json.loads(out.read_text())["sam2"]
    assert set(report["per_class"]) == {"forceps", "knife", "unlisted"}
    named = [report["per_class"][c]["mDSC"]["mean"] for c in ("forceps", "knife")]
    assert report["class_average"]["classes"] == 2
    assert report["class_average"]["mDSC"]["mean"] == pytest.approx(np.mean(named))
    assert "unlisted" in stdout


# ---------------------------------------------------------------- warnings
def test_third_party_warnings_hidden_and_others_shown_once_on_one_line(capsys, monkeypatch):
    import napari_rpsam2.cli.embed as embed_cli

    def noisy_info(args, base=None):
        import torch
        from sam2.utils.misc import fill_holes_in_mask_scores

        for _ in range(2):
            fill_holes_in_mask_scores(torch.zeros(1, 1, 8, 8), 4)  # SAM2 without its '_C' extension warns
            warnings.warn("monai.networks.blocks.Warp: Using PyTorch native grid_sample.")
            warnings.warn("the image is large;\n  it was downscaled", UserWarning)
            warnings.filterwarnings("always", category=ResourceWarning)  # as scipy does on a lazy import
        return 0

    monkeypatch.setattr(embed_cli, "cmd_info", noisy_info)
    assert cli.main(["info"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == ["rpsam2: warning: the image is large; it was downscaled"], err


def test_a_real_propagation_prints_no_warning_and_writes_0644(capsys, root, model, tmp_path):
    out = tmp_path / "labels.tif"
    with _umask(0o022):
        code, stdout, err, _ = _run(capsys, ["propagate", "--images", str(root / "images"), "--prompts",
                                             str(root / "prompts.csv"), "--out", str(out), "--no-refine",
                                             "--start", "0", "--stop", "1", "--quiet"], model)
    assert code == 0 and err == "", err  # SAM2's '_C' notice came twice per run before
    assert _mode(out) == 0o644 and tifffile.imread(out).shape == (2, 256, 320)
    assert "wrote" in stdout
