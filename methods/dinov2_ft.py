"""The unified benchmark's strong baseline ``dinov2-ft``: DINOv2 ViT-B/14 with its last two blocks fine-tuned.

Source: the unified semantic-correspondence benchmark (Visual-AI/Semantic-Correspondence; METHODS.md
"Unified-benchmark strong baseline"; reported SPair-71k PCK@0.05/0.10/0.15 73.3/85.1/89.3).

Method (``DINOv2FineTuned``, a ``DINOv2Matcher``):

- DINOv2 ViT-B/14, images stretched to 840 x 840 (their ``T.Resize((S, S))``; ``resize="stretch"``), features
  of the last block after the final LayerNorm (their HF ``Dinov2Backbone`` stage12 feature map), L2-normalised
  (their ``enable_l2_norm``);
- cells follow the align-corner rule both ways, ``c = x (w - 1) / (W - 1)`` (their ``scaling_coordinates``
  and ``normalise_coordinates`` + ``grid_sample(align_corners=True)``), unlike the frozen ``dinov2`` methods'
  half-pixel rule;
- inference: kernel (Gaussian-suppressed) soft-argmax, sigma 7 cells, temperature 0.03 (their
  ``evaluate`` passes ``softmax_temp=cfg.TEMPERATURE`` = 0.03 and ``kernelsoftargmax`` sigma 7);
- ``checkpoint``: None keeps the DINOv2 weights (untrained baseline), or a file with ``{"model": {...}}``
  holding the trainable blocks' parameters under the backbone's own key names (``blocks.10.attn.qkv.weight``
  ...), as ``corrbench train --method dinov2-ft`` writes (engine checkpoints carry extra resume keys, ignored
  here); ``trainable_blocks`` (2: their ``DINO.FINETUNE_FROM = "stage11"``, i.e. blocks 11-12 = indices 10, 11)
  must match the checkpoint's blocks.

Trainer (``DINOv2FineTunedTrainer``, recipe ``unified``): AdamW lr 1e-4, weight decay 0.05 (their
``create_optimizer_and_scheduler``), 1 epoch, batch 4 (``train.sh``), no gradient clipping (their loop has
none), training canvas 840 stretched; loss ``gaussian_smoothed_ce`` (7 x 7 window, sigma 1.5, temperature
0.03, mean per pair then per batch; ``src/loss.py``). Only the configured blocks train; the final LayerNorm
stays frozen (theirs has ``requires_grad`` but is not in the optimiser, so it never changes).

Deliberate differences:

- precision: the authors train with fp16 autocast + gradient scaling (``accelerate`` ``mixed_precision='fp16'``);
  corrbench's engine offers float32 or ``--dtype bfloat16`` (no scaler needed); the loss itself is computed in
  float32 from the (possibly bf16) similarities, since a 0.03 temperature amplifies rounding;
- validation: the authors validate every 25% of the epoch after 60% of it on the val split and keep the best
  weights; the engine validates once per epoch (and at ``--max-steps``) on ``val`` and keeps ``best.pth``;
- their ``MultiStepLR(milestones=[1, 2])`` stepped per epoch never acts within the single epoch: constant lr;
- their backbone is HuggingFace's ``Dinov2Backbone``; corrbench's DINOv2 matches the official
  facebookresearch/dinov2 code within the tolerance tests/test_dinov2_parity.py checks against golden outputs
  (HF's positional-embedding interpolation may differ in the last digits).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from corrbench.config import option, redefault
from corrbench.errors import ConfigError
from corrbench.files import file_sha256
from corrbench.geometry import pixels_to_cells
from corrbench.runtime import StageTimer
from corrbench.similarity import sample_descriptors, similarity_maps
from corrbench.train.api import StepOutput, TrainerBase, TrainingPlan, TrainingRecipe
from corrbench.train.losses import UNIFIED_SIGMA, UNIFIED_TEMPERATURE, UNIFIED_WINDOW, gaussian_smoothed_ce
from corrbench.types import FeatureMap

from .dinov2 import PATCH, DINOv2Matcher

#: The reference maps pixels to cells (and back) with the align-corner rule, in training and inference.
CELL_RULE = "align_corners"
CHECKPOINT_KEY = "model"


class DINOv2FineTuned(DINOv2Matcher):
    """DINOv2 with its last ``trainable_blocks`` blocks fine-tuned by the unified benchmark's recipe."""

    description = "DINOv2 ViT-B/14, last two blocks fine-tuned (unified benchmark), 840 px stretch, kernel soft-argmax"
    trainer = "corrbench.methods.dinov2_ft:DINOv2FineTunedTrainer"

    @dataclasses.dataclass
    class Config(DINOv2Matcher.Config):
        resize: str = redefault(DINOv2Matcher.Config, "resize", "stretch")
        localizer: str = redefault(DINOv2Matcher.Config, "localizer", "gaussian-soft-argmax")
        sigma: float = redefault(DINOv2Matcher.Config, "sigma", 7.0)
        temperature: float | None = redefault(DINOv2Matcher.Config, "temperature", UNIFIED_TEMPERATURE)
        backbone: str = option("vitb14", "DINOv2 variant (vits14, vitb14, vitl14, vitg14, optional _reg); smaller "
                               "ones for experiments and tests")
        checkpoint: str | None = option(None, "none = DINOv2 weights only (untrained); else a trained checkpoint "
                                        "file (checkpoints/best.pth of `corrbench train --method dinov2-ft`)")
        trainable_blocks: int = option(2, "last blocks fine-tuned (must match the checkpoint's)", ge=1)

    @property
    def backbone(self) -> str:  # DINOv2Matcher reads the backbone name from here; an option for this method
        return self.config.backbone

    def __init__(self, **options: Any):
        super().__init__(**options)
        cfg = self.config
        depth = self.model.n_blocks
        if not 1 <= cfg.trainable_blocks <= depth:
            raise ConfigError(f"trainable_blocks must be in 1..{depth} for {cfg.backbone}, got {cfg.trainable_blocks}")
        self.trainable_indices = tuple(range(depth - cfg.trainable_blocks, depth))
        for i in self.trainable_indices:  # parameter_counts() then reports what fine-tuning changes
            self.model.blocks[i].requires_grad_(True)
        self._checkpoint_info: dict[str, Any] | None = None
        if cfg.checkpoint is not None:
            self.load_checkpoint(cfg.checkpoint)

    # -- parameters and checkpoints ----------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for i in self.trainable_indices for p in self.model.blocks[i].parameters()]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable blocks' tensors under the backbone's key names (``blocks.10.norm1.weight`` ...)."""
        prefixes = tuple(f"blocks.{i}." for i in self.trainable_indices)
        return {k: v for k, v in self.model.state_dict().items() if k.startswith(prefixes)}

    def load_trainable_state(self, weights: Mapping[str, torch.Tensor], origin: str) -> None:
        expected = set(self.trainable_state_dict())
        missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
        if missing or unexpected:
            blocks = sorted({int(k.split(".")[1]) for k in weights if k.startswith("blocks.")})
            raise ConfigError(
                f"{origin} does not hold exactly the trainable blocks {list(self.trainable_indices)} of "
                f"{self.config.backbone}: {len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} "
                f"unexpected (e.g. {unexpected[:2]}); it holds blocks {blocks}",
                hint="set backbone and trainable_blocks to those the checkpoint was trained with",
            )
        self.model.load_state_dict(dict(weights), strict=False)  # the complement stays the DINOv2 weights

    def load_checkpoint(self, path: str | Path) -> None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"dinov2-ft checkpoint not found: {path}",
                              hint="pass checkpoints/best.pth of a `corrbench train --method dinov2-ft` run")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(f"cannot read dinov2-ft checkpoint {path}: {exc}") from None
        if not isinstance(state, Mapping) or CHECKPOINT_KEY not in state:
            raise ConfigError(f"{path} has no {CHECKPOINT_KEY!r} entry",
                              hint="a dinov2-ft checkpoint is {'model': {trainable block tensors}}")
        self.load_trainable_state(state[CHECKPOINT_KEY], str(path))
        self._checkpoint_info = {"path": str(path), "sha256": file_sha256(path)}

    def weights_info(self) -> dict:
        info = self.model.weights_info()
        info["checkpoint"] = self._checkpoint_info
        if self._checkpoint_info is not None:  # the feature cache key and results must see the trained weights
            info["sha256"] = hashlib.sha256(
                f"{info.get('sha256') or info.get('source')}+{self._checkpoint_info['sha256']}".encode()).hexdigest()
        return info

    # -- features ------------------------------------------------------------------------------------------------
    def dense_features(self, normalised: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` L2-normalised last-block features of ImageNet-normalised ``(B, 3, H, W)`` canvases."""
        (features,) = self.model.get_intermediate_layers(normalised, n=[self.block], reshape=True, norm=True)
        return F.normalize(features, dim=1)

    def extract(self, images: Sequence[torch.Tensor]) -> list[FeatureMap]:
        return [FeatureMap(F.normalize(m.features, dim=0), m.transform, CELL_RULE) for m in super().extract(images)]


class _Student(nn.Module):
    """What the engine trains (and DDP wraps): the backbone, mapping normalised canvases to dense features.

    Kept out of the matcher's modules so the backbone's tensors are not listed twice in its state dict.
    """

    def __init__(self, matcher: DINOv2FineTuned):
        super().__init__()
        self.model = matcher.model
        object.__setattr__(self, "_matcher", matcher)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._matcher.dense_features(images)


@dataclasses.dataclass(frozen=True)
class UnifiedLossSettings:
    """The loss's settings (``--set`` keys; the matcher's ``sigma`` / ``temperature`` are inference's)."""

    loss_temperature: float = UNIFIED_TEMPERATURE
    loss_sigma: float = UNIFIED_SIGMA
    loss_window: int = UNIFIED_WINDOW

    def __post_init__(self) -> None:
        if self.loss_temperature <= 0 or self.loss_sigma <= 0 or self.loss_window < 1 or self.loss_window % 2 == 0:
            raise ConfigError("loss_temperature > 0, loss_sigma > 0 and an odd loss_window >= 1 are required")


UNIFIED_RECIPE = TrainingRecipe(
    optimizer="adamw", lr=1e-4, weight_decay=0.05, batch_size=4, epochs=1, clip_grad_norm=None,
    train_resolution=840, train_resize="stretch", masks="keypoint-box", method=UnifiedLossSettings(),
)
PRESETS: dict[str, TrainingRecipe] = {"unified": UNIFIED_RECIPE}


class DINOv2FineTunedTrainer(TrainerBase):
    """``corrbench.train.api.Trainable`` for ``DINOv2FineTuned`` (see the module docstring)."""

    def __init__(self, matcher: nn.Module):
        if not isinstance(matcher, DINOv2FineTuned):
            raise ConfigError(f"DINOv2FineTunedTrainer needs a DINOv2FineTuned matcher, got {type(matcher).__name__}")
        self.matcher = matcher
        self.module = _Student(matcher)
        self.settings = UnifiedLossSettings()
        self.plan: TrainingPlan | None = None

    @staticmethod
    def training_presets() -> Mapping[str, TrainingRecipe]:
        return PRESETS

    def configure_training(self, recipe: TrainingRecipe, plan: TrainingPlan) -> None:
        if recipe.train_resolution % PATCH:
            raise ConfigError(f"train_resolution {recipe.train_resolution} must be a multiple of the patch size {PATCH}")
        self.settings = recipe.method if recipe.method is not None else UnifiedLossSettings()
        self.plan = plan
        self.matcher.model.requires_grad_(False)
        for p in self.matcher.trainable_parameters():
            p.requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.matcher.trainable_parameters()

    def student(self) -> nn.Module:
        return self.module

    def training_step(self, batch, step: int, epoch: int) -> StepOutput:
        timer = StageTimer(batch.images.device)
        b = batch.size
        canvas_h, canvas_w = batch.canvas_size
        with timer("student_forward"):
            features = self.student_forward(batch.images.flatten(0, 1)).unflatten(0, (b, 2))
        with timer("losses"):
            grid = (int(features.shape[-1]), int(features.shape[-2]))
            canvas = (canvas_w, canvas_h)
            src_cells = pixels_to_cells(batch.keypoints[:, 0].to(features.dtype), canvas, grid, rule=CELL_RULE)
            trg_cells = pixels_to_cells(batch.keypoints[:, 1].float(), canvas, grid, rule=CELL_RULE)
            descriptors = sample_descriptors(features[:, 0], src_cells, CELL_RULE)
            similarity = similarity_maps(descriptors, features[:, 1], normalize=True).float()
            s = self.settings
            loss = gaussian_smoothed_ce(similarity, trg_cells, batch.visible, temperature=s.loss_temperature,
                                        window=s.loss_window, sigma=s.loss_sigma)
        return StepOutput(loss=loss, losses={"gaussian_ce": loss.detach()}, seconds=dict(timer.seconds))

    def release_state(self) -> dict[str, Any]:
        return {CHECKPOINT_KEY: {k: v.detach().to("cpu", copy=True).contiguous()
                                 for k, v in self.matcher.trainable_state_dict().items()}}

    def load_release_state(self, state: Mapping[str, Any]) -> None:
        if CHECKPOINT_KEY not in state:
            raise ConfigError(f"the checkpoint has no {CHECKPOINT_KEY!r} entry")
        self.matcher.load_trainable_state(state[CHECKPOINT_KEY], "the checkpoint")
