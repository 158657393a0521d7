"""MARCO's supervised loss, the coarse-to-fine Gaussian cross-entropy.

``coarse_to_fine_ce``: MARCO's supervised loss exactly as released (``util/losses.py``
``GaussianCrossEntropyLoss`` called from ``engine.py`` ``train_one_epoch``). Per annotated keypoint:

1. softmax over the whole target grid of the RAW dot-product similarity map (no L2 normalisation) with
   temperature 10, ``exp(s / 10)``: the model config's ``softmax_temp: 10``, which the engine passes
   (``softmax_temp=model.softmax_temp``); the class's own default 0.04 is never used in training;
2. add 1e-6 to every probability (keeps the log finite);
3. the ground-truth point, in target-canvas pixels, is mapped to continuous cell coordinates with the
   align-corner rule ``c = x (w - 1) / (W - 1)`` (``scaling_coordinates`` default mode). The source
   descriptors are sampled with another rule, ``c = x w / W`` (cell rule ``marco``); the target rule is the
   inverse of the one inference maps predictions back with, so training and inference agree on targets;
4. the probability map is sampled bilinearly (``grid_sample``, ``align_corners=True``, border padding) at
   the 15 x 15 integer offsets ``-7..7`` around that point (the GT itself is generally between cells);
5. each sample is weighted by ``1 / (2 pi sigma^2) exp(-(dx^2 + dy^2) / (2 sigma^2))``: a Gaussian of the
   offset, normalised like a continuous density (its 15 x 15 values do NOT sum to 1), sigma in cells
   (the schedule in ``schedules.py``);
6. offsets whose sampling point is not STRICTLY inside ``(0, w - 1) x (0, h - 1)`` are dropped (a point
   exactly on the border row/column counts as outside);
7. loss of a keypoint = ``-sum(weight * log(prob))`` over the kept offsets; keypoints that are not valid
   (padding in the released collate, which fills the ``visibility_mask``) are left out entirely;
8. reduction, as ``engine.py`` does it: the sum over all pairs and valid keypoints divided by the number of
   valid keypoints in the batch (``loss_sup / batch['n_pts'].sum()``). ``reduction="sum"`` gives the
   loss class's own (undivided) return value.

Paper (Eq. 7-8) differs: the sum runs over the whole upsampled grid, the Gaussian is only "proportional
to" and the mean is per pair (1/K). The released window, weights and reduction are what is implemented.

The window construction (steps 1-7) is shared with the unified benchmark's loss and lives in
``corrbench.train.losses`` (``per_keypoint_window_ce``), as does Geo-SC's objective (``geosc_loss``), which
the ``geosc-objective`` ablation trains MARCO's architecture with.

Agreement with the reference code is checked in the suite: ``tests/test_marco_flow_parity.py`` compares
``coarse_to_fine_ce`` (per keypoint, per batch, and its gradient) with golden outputs of the authors' ``util/losses.py``
(visinf/MARCO 1ec16b93; ``tools/golden/make_marco_flow_golden.py``): values within 1e-6 relative, gradients 1e-6.
"""

from __future__ import annotations

import torch

from corrbench.errors import ConfigError
from corrbench.geometry import Size, pixels_to_cells
from corrbench.train.losses import check_window, keypoint_mask, per_keypoint_window_ce

from .schedules import RELEASED_SIGMA, SigmaSchedule

#: MARCO's softmax temperature (``configs/model/marco.yaml`` ``softmax_temp``), in training and inference.
MARCO_TEMPERATURE = 10.0
#: Side of the window of offsets the Gaussian target is evaluated on (``loss_kernel_size``).
MARCO_WINDOW = 15
#: Added to the probabilities before the log (``util/losses.py``).
MARCO_EPS = 1e-6
#: Rule mapping ground-truth pixels to target cells in the loss (``scaling_coordinates(..., 'align_corner')``).
MARCO_TARGET_CELL_RULE = "align_corners"

#: ``coarse_to_fine_ce``'s reductions; ``mean`` (per valid keypoint) is what ``engine.py`` trains with.
REDUCTIONS = ("mean", "sum", "none")


def marco_target_cells(points: torch.Tensor, canvas_size: Size, grid_size: Size) -> torch.Tensor:
    """Ground-truth pixels on the target canvas ``(W, H)`` -> the loss's cells on a ``(w, h)`` grid."""
    return pixels_to_cells(points, canvas_size, grid_size, rule=MARCO_TARGET_CELL_RULE)


def coarse_to_fine_ce(
    similarity: torch.Tensor,
    target_cells: torch.Tensor,
    sigma: float,
    valid: torch.Tensor | None = None,
    *,
    temperature: float = MARCO_TEMPERATURE,
    window: int = MARCO_WINDOW,
    eps: float = MARCO_EPS,
    reduction: str = "mean",
) -> torch.Tensor:
    """MARCO's supervised loss (see the module docstring for every step).

    Args:
        similarity: ``(B, N, h, w)`` raw dot products of each source keypoint's descriptor with the target map.
        target_cells: ``(B, N, 2)`` ground truth as continuous ``(x, y)`` cells (``marco_target_cells``).
        sigma: Gaussian width in cells (``SigmaSchedule.for_iteration``).
        valid: ``(B, N)`` bool; False rows are ignored (padding). None: all valid.
        reduction: ``mean`` (per valid keypoint, as trained), ``sum``, or ``none`` (``(B, N)``, 0 where invalid).
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduction!r}", hint=f"use one of {', '.join(REDUCTIONS)}")
    valid = keypoint_mask(similarity, target_cells, valid, "coarse_to_fine_ce")
    per_keypoint = per_keypoint_window_ce(similarity, target_cells, valid, sigma, temperature, window, eps)
    return _reduce(per_keypoint, valid, reduction)


def _reduce(per_keypoint: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_keypoint
    total = per_keypoint.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp(min=1)


class CoarseToFineLoss:
    """``coarse_to_fine_ce`` with its sigma schedule and the released pixel-to-cell rule, for a training loop.

    ``loss(similarity, target_points, canvas_size, iteration, valid)``: ``target_points`` ``(B, N, 2)`` pixels
    on the target canvas of size ``(W, H)``; ``iteration`` the global 0-based optimisation step.
    """

    def __init__(
        self,
        schedule: SigmaSchedule = RELEASED_SIGMA,
        temperature: float = MARCO_TEMPERATURE,
        window: int = MARCO_WINDOW,
        eps: float = MARCO_EPS,
    ):
        check_window(window)
        self.schedule, self.temperature, self.window, self.eps = schedule, temperature, window, eps

    def sigma(self, iteration: int) -> float:
        return self.schedule.for_iteration(iteration)

    def __call__(
        self,
        similarity: torch.Tensor,
        target_points: torch.Tensor,
        canvas_size: Size,
        iteration: int,
        valid: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        grid_size = (int(similarity.shape[-1]), int(similarity.shape[-2]))
        cells = marco_target_cells(target_points.to(similarity.dtype), canvas_size, grid_size)
        return coarse_to_fine_ce(
            similarity, cells, self.sigma(iteration), valid,
            temperature=self.temperature, window=self.window, eps=self.eps, reduction=reduction,
        )

    def __repr__(self) -> str:
        return f"CoarseToFineLoss(schedule={self.schedule}, temperature={self.temperature}, window={self.window})"
