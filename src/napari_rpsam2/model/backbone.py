"""A frozen SAM2 model: image encoder, prompt encoder and mask decoder.

The decoder path here is plain autograd (no ``torch.no_grad``), so training
can push gradients back to the click coordinates.  Mixed precision is used on
CUDA only, inside the calls that benefit from it.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch
from torch.nn import functional as F

from .coords import normalized_to_prompt
from .embedding import ImageEmbedding
from .weights import BackboneSpec, WeightsError, fetch_weights, read_state_dict, resolve_backbone

__all__ = ["SAM2Backbone", "pick_device"]

_PIXEL_MEAN = (0.485, 0.456, 0.406)
_PIXEL_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE_ENV = "NAPARI_RPSAM2_IMAGE_SIZE"
"""Environment variable: SAM2 input size of models built without an explicit ``image_size`` (tests, quick trials)."""


def _input_size(image_size: int | None) -> int | None:
    """The SAM2 input size asked for (argument, else :data:`IMAGE_SIZE_ENV`), ``None`` for the config's own."""
    source = "image_size"
    if image_size is None:
        text = os.environ.get(IMAGE_SIZE_ENV, "").strip()
        if not text:
            return None
        source = IMAGE_SIZE_ENV
        try:
            image_size = int(text)
        except ValueError:
            raise WeightsError(f"{IMAGE_SIZE_ENV}={text!r} is not a whole number; use e.g. 1024 or 256") from None
    if int(image_size) < 64 or int(image_size) % 32:
        raise WeightsError(f"{source} {image_size} cannot be SAM2's input size: use a multiple of 32, "
                           "at least 64 (SAM2's own is 1024)")
    return int(image_size)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` if present.

    Raises :class:`WeightsError` (one line saying what to use) for a name torch
    does not know or a device this machine lacks.
    """
    if str(device) != "auto":
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise WeightsError(f"device {str(device)!r} is not a device name; use auto, cpu, cuda, cuda:N "
                               "or mps") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise WeightsError(f"device {str(device)!r} was asked for but no CUDA GPU is available; use 'cpu'")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise WeightsError(f"device {str(device)!r} was asked for but this machine has "
                               f"{torch.cuda.device_count()} CUDA GPU(s) (cuda:0 …); pick one of them")
        if dev.type == "mps":
            mps = getattr(torch.backends, "mps", None)
            if mps is None or not mps.is_available():
                raise WeightsError(f"device {str(device)!r} (Apple GPU) is not available on this machine; "
                                   "use 'cpu' or 'auto'")
        if dev.type not in ("cpu", "cuda", "mps"):
            raise WeightsError(f"device {str(device)!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class SAM2Backbone:
    """A frozen SAM2 / SAM2.1 model resident on one device.

    Use :meth:`build` rather than the constructor.
    """

    def __init__(self, model: torch.nn.Module, spec: BackboneSpec, weights_signature: str) -> None:
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.spec = spec
        self.weights_signature = weights_signature
        self._plain_signature = weights_signature
        self.adapters = None  # SAM2Adapters hooked onto the model, if any
        self.adapter_header: dict = {}
        self.input_size = int(model.image_size)
        """Side of SAM2's square input (1024 unless built smaller)."""
        self.embed_size = self.input_size // int(model.backbone_stride)
        """Side of the image embedding's grid (64 at 1024)."""
        self.low_res_size = 4 * self.embed_size
        """Side of the decoder's low-res mask logits (256 at 1024)."""
        self.device = next(model.parameters()).device
        # Clicks decoded at once: on a CPU, large batches are memory-bound and slower per click
        # (measured on 2 cores: 41 ms/click in pairs, 76 ms/click in 32s); GPUs want big batches.
        self.click_chunk_size = 32 if self.device.type in ("cuda", "mps") else 2
        mean = torch.tensor(_PIXEL_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(_PIXEL_STD, device=self.device).view(1, 3, 1, 1)
        self._mean, self._std = mean, std

    @classmethod
    def build(
        cls,
        backbone: str = "sam2.1_hiera_tiny",
        sam2_weights: str | os.PathLike = "random",
        device: str | torch.device = "auto",
        seed: int = 0,
        image_size: int | None = None,
    ) -> "SAM2Backbone":
        """Build a SAM2 model from the ``sam2`` package configs.

        Parameters
        ----------
        backbone : str
            ``sam2.1_hiera_tiny`` / ``_small`` / ``_base_plus`` / ``_large`` (or the
            ``sam2_`` versions, or a short name such as ``tiny``).
        sam2_weights : str or path
            ``"random"``, a local ``.pt``/``.safetensors`` file, or a HF model id.
        device : str
            ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        seed : int
            Seed of the random weights (only used with ``"random"``).
        image_size : int, optional
            SAM2's input side (a multiple of 32).  ``None``: the environment
            variable :data:`IMAGE_SIZE_ENV` if set, else the config's 1024.
            Smaller is much faster on a CPU and coarser (the test suite uses 256).
        """
        from sam2.build_sam import build_sam2  # importing sam2 sets up its own hydra

        size = _input_size(image_size)
        overrides = [] if size is None else [f"++model.image_size={size}"]
        spec = resolve_backbone(backbone)
        path, signature = fetch_weights(spec, sam2_weights)
        dev = pick_device(device)
        state = read_state_dict(path) if path is not None else None
        fork = torch.random.fork_rng(devices=[]) if state is None else contextlib.nullcontext()
        with fork:
            if state is None:
                torch.manual_seed(seed)
                signature = f"random:{seed}"
            model = build_sam2(spec.config, ckpt_path=None, device="cpu", mode="eval",
                               hydra_overrides_extra=overrides)
        if state is not None:
            _load_matching_state(model, state, path, spec)
        if size is not None and size != 1024:  # embeddings at another size must never meet in a cache
            signature = f"{signature}|{size}px"
        return cls(model.to(dev), spec, f"{spec.name}|{signature}")

    def use_adapters(self, adapters, header: dict | None = None) -> None:
        """Hook ``adapters`` (a :class:`~napari_rpsam2.model.adapters.SAM2Adapters`) onto SAM2; ``None`` removes them.

        The weights signature (part of every embedding-cache key) names the adapters' digest,
        so embeddings made without them are never reused with them.
        """
        if self.adapters is not None:
            self.adapters.detach()
        self.adapters, self.adapter_header = adapters, (header or {}) if adapters is not None else {}
        self.weights_signature = self._plain_signature
        if adapters is not None:
            adapters.attach(self.model).eval()
            self.weights_signature = f"{self._plain_signature}|adapters:{adapters.digest()}"

    def load_adapters(self, path: str | os.PathLike) -> dict:
        """Load an adapter file made for this backbone and use it; returns its header."""
        from .adapters import load_adapters

        adapters, header = load_adapters(path, self.model, self.name)
        self.use_adapters(adapters, header)
        return header

    @property
    def name(self) -> str:
        """Backbone name, e.g. ``sam2.1_hiera_tiny``."""
        return self.spec.name

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA, nothing elsewhere; use around encoder/decoder calls."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def parameter_count(self) -> int:
        """Number of (frozen) backbone parameters."""
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------ encoder
    @torch.no_grad()
    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """The encoder's input (1, 3, S, S): resized to SAM2's square and normalized as SAM2 does."""
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise ValueError(f"encode expects an (H, W, 3) picture, got {rgb.shape}")
        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).to(self.device)
        x = x.permute(2, 0, 1).unsqueeze(0)
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False, antialias=True)
        return (x - self._mean) / self._std

    @torch.no_grad()
    def encode(self, rgb: np.ndarray) -> ImageEmbedding:
        """Run the image encoder on an ``(H, W, 3)`` float picture in ``[0, 1]``."""
        h, w = rgb.shape[:2]
        x = self.preprocess(rgb)
        m = self.model
        with self.autocast():
            out = m.forward_image(x)
            _, feats, _, sizes = m._prepare_backbone_features(out)
            raw = feats[-1]  # what SAM2's memory path reads (video propagation)
            if m.directly_add_no_mem_embed:
                feats[-1] = feats[-1] + m.no_mem_embed
        maps = [f.permute(1, 2, 0).reshape(1, -1, *s).float() for f, s in zip(feats, sizes)]
        image_embed = maps[-1].contiguous()
        memory = image_embed
        if raw is not feats[-1]:
            memory = raw.permute(1, 2, 0).reshape(1, -1, *sizes[-1]).float().contiguous()
        return ImageEmbedding(image_embed, [f.contiguous() for f in maps[:-1]], (h, w), memory)

    # ------------------------------------------------------------------ prompts
    def point_tokens(self, points_xy: torch.Tensor) -> torch.Tensor:
        """Prompt-encoder token ``ξ(P)`` of single positive clicks, (B, 256).

        Differentiable in ``points_xy`` (B, 2), normalized frame.
        """
        coords = normalized_to_prompt(points_xy.float(), self.input_size).unsqueeze(1)
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=coords.device)
        sparse, _ = self.model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        return sparse[:, 0]

    def decode(
        self,
        embedding: ImageEmbedding,
        points_xy: torch.Tensor,
        labels: torch.Tensor,
        multimask: bool,
        mask_input: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res mask logits from prompts on one image (differentiable).

        Parameters
        ----------
        embedding : ImageEmbedding
            The image's encoder output.
        points_xy : tensor (B, K, 2)
            ``B`` prompts of ``K`` points each, normalized frame.
        labels : tensor (B, K)
            1 positive, 0 negative, -1 padding; 2 and 3 are the top-left and
            bottom-right corners of a box (SAM2's image predictor sends boxes
            this way).
        multimask : bool
            Ask for SAM2's three masks and keep the one with the highest
            predicted IoU (SAM2's advice for a single click).
        mask_input : tensor (B, 1, L, L), optional
            Low-res mask logits (e.g. a previous output) given to SAM2's
            prompt encoder as the dense mask prompt.

        Returns
        -------
        logits : tensor (B, L, L)
            ``L`` is :attr:`low_res_size` (256 at SAM2's 1024 input).
        iou : tensor (B,)
        """
        m = self.model
        coords = normalized_to_prompt(points_xy.float(), self.input_size)
        with self.autocast():
            masks = None if mask_input is None else mask_input.float()
            sparse, dense = m.sam_prompt_encoder(points=(coords, labels.int()), boxes=None, masks=masks)
            low_res, iou, _, _ = m.sam_mask_decoder(
                image_embeddings=embedding.image_embed,
                image_pe=m.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
                repeat_image=True,
                high_res_features=embedding.high_res_feats,
            )
        low_res, iou = low_res.float(), iou.float()
        best = iou.argmax(dim=1)
        rows = torch.arange(low_res.shape[0], device=low_res.device)
        return low_res[rows, best], iou[rows, best]


def _load_matching_state(model: torch.nn.Module, state: dict, path, spec: BackboneSpec) -> None:
    """Load ``state`` into ``model`` or say plainly why the file does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    resized = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or resized:
        raise WeightsError(
            f"SAM2 weights {path} do not fit backbone {spec.name}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected and {len(resized)} differently shaped tensors "
            f"(e.g. {(missing + unexpected + resized)[:2]}). "
            "Pick the backbone size the checkpoint was made for."
        )
    model.load_state_dict(state, strict=True)


def logits_to_image(logits: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Upsample low-res logits (B, h, w) to the image size, as SAM2 does."""
    return F.interpolate(logits.unsqueeze(1), size=image_hw, mode="bilinear", align_corners=False)[:, 0]
