"""Building SAM2 from the sam2 configs; weights from a file, the HF cache or random."""

import numpy as np
import pytest
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.model import BACKBONES, SAM2Backbone, WeightsError, pick_device
from napari_rpsam2.model.weights import fetch_weights, read_state_dict, resolve_backbone


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, model):
    """The session model's weights in the official ``{"model": state_dict}`` layout."""
    path = tmp_path_factory.mktemp("weights") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.backbone.model.state_dict()}, path)
    return path


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_every_size_has_a_config_in_the_sam2_package():
    import importlib.resources

    root = importlib.resources.files("sam2")
    for spec in BACKBONES.values():
        assert (root / spec.config).is_file(), spec.config
    assert resolve_backbone("tiny").name == "sam2.1_hiera_tiny"
    assert resolve_backbone("facebook/sam2.1-hiera-large").name == "sam2.1_hiera_large"
    with pytest.raises(WeightsError, match="unknown backbone 'huge'"):
        resolve_backbone("huge")


def test_local_checkpoint_loads_the_exact_weights(tiny_checkpoint, model):
    other = SAM2Backbone.build("sam2.1_hiera_tiny", tiny_checkpoint, device="cpu")
    assert _same_weights(other.model, model.backbone.model)
    assert other.weights_signature.startswith("sam2.1_hiera_tiny|file:sam2.1_hiera_tiny.pt:")
    assert not any(p.requires_grad for p in other.model.parameters())
    assert not other.model.training


def test_random_weights_are_seeded(model):
    again = SAM2Backbone.build("sam2.1_hiera_tiny", "random", device="cpu", seed=0)
    assert _same_weights(again.model, model.backbone.model)
    assert again.weights_signature.startswith("sam2.1_hiera_tiny|random:0")  # then "|256px" at a smaller input
    state = torch.random.get_rng_state()
    SAM2Backbone.build("sam2.1_hiera_tiny", "random", device="cpu", seed=5)
    assert torch.equal(state, torch.random.get_rng_state()), "building must not disturb the global RNG"


def test_hugging_face_id_is_read_from_the_hub_cache(tmp_path, tiny_checkpoint, model, monkeypatch):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--facebook--sam2.1-hiera-tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "sam2.1_hiera_tiny.pt").write_bytes(tiny_checkpoint.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    path, signature = fetch_weights(resolve_backbone("sam2.1_hiera_tiny"), "facebook/sam2.1-hiera-tiny")
    assert path.name == "sam2.1_hiera_tiny.pt" and commit in signature
    loaded = read_state_dict(path)
    ref = model.backbone.model.state_dict()
    assert all(torch.equal(loaded[k], ref[k]) for k in ref)


def test_offline_without_the_file_names_what_to_download(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError) as err:
        RPSAM2.load("sam2.1_hiera_small", "facebook/sam2.1-hiera-small", device="cpu")
    text = str(err.value)
    assert "sam2.1_hiera_small.pt" in text and "huggingface.co/facebook/sam2.1-hiera-small" in text


def test_missing_local_file_and_wrong_size_checkpoint(tmp_path, tiny_checkpoint):
    with pytest.raises(WeightsError, match="does not exist"):
        SAM2Backbone.build("tiny", tmp_path / "nope.pt", device="cpu")
    with pytest.raises(WeightsError, match="do not fit backbone sam2.1_hiera_small"):
        SAM2Backbone.build("small", tiny_checkpoint, device="cpu")


def test_auto_device_is_cpu_without_a_gpu():
    if torch.cuda.is_available():
        assert pick_device("auto").type == "cuda"
    else:
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(WeightsError, match="no CUDA GPU"):
            pick_device("cuda")


def test_model_stays_resident_between_clicks(model, frame0):
    image, labels, _ = frame0
    before = [p.data_ptr() for p in model.backbone.model.parameters()]
    rows, cols = np.nonzero(labels == 1)
    model.segment(image, [[rows[0], cols[0]]])
    model.segment(image, [[rows[-1], cols[-1]]])
    assert before == [p.data_ptr() for p in model.backbone.model.parameters()]


def test_no_network_fails_fast_with_the_download_address(tmp_path, monkeypatch):
    import socket
    import time

    from huggingface_hub import constants

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="no network.*sam2.1-hiera-tiny/resolve/main/sam2.1_hiera_tiny.pt"):
        fetch_weights(resolve_backbone("tiny"), "facebook/sam2.1-hiera-tiny")
    assert time.perf_counter() - start < 5, "an offline machine must not wait for hub retries"
