"""Training objectives that more than one method uses (a method's own objective lives with the method).

``window_cross_entropy`` / ``per_keypoint_window_ce``: the Gaussian-weighted cross-entropy on a window of
offsets that MARCO's coarse-to-fine loss (``methods/marco/losses.py``) and the unified benchmark's loss are
both built from. Per keypoint:

1. softmax over the whole target grid of the similarity map with temperature ``T``, ``exp(s / T)``,
   optionally plus an epsilon on every probability (MARCO adds 1e-6, the unified benchmark nothing);
2. the ground truth is a continuous ``(x, y)`` cell on the target grid (both references map pixels to cells
   with the align-corner rule ``c = x (w - 1) / (W - 1)``);
3. the probability map is sampled bilinearly (``grid_sample``, ``align_corners=True``, border padding) at
   the ``K x K`` integer offsets ``-K//2..K//2`` around that cell (the ground truth is generally between
   cells);
4. each sample is weighted by ``1 / (2 pi sigma^2) exp(-(dx^2 + dy^2) / (2 sigma^2))``: a Gaussian of the
   offset, normalised like a continuous density (its ``K x K`` values do NOT sum to 1), sigma in cells;
5. offsets whose sampling point is not STRICTLY inside ``(0, w - 1) x (0, h - 1)`` are dropped (a point
   exactly on the border row/column counts as outside);
6. loss of a keypoint = ``-sum(weight * log(prob))`` over the kept offsets; keypoints that are not valid
   (batch padding) are left out entirely. How the keypoints' losses are reduced is each objective's own.

``gaussian_smoothed_ce``: the unified benchmark's loss (Visual-AI/Semantic-Correspondence ``src/loss.py``
``GaussianCrossEntropyLoss``; ``train.py``: temperature 0.03, ``enable_l2_norm=True``), which the
``dinov2-ft`` baseline trains with: the construction above with a 7 x 7 window, sigma = 7 // 2 / 2 = 1.5
cells and no epsilon; the similarity comes from L2-normalised features (theirs: ``x / (||x|| + 1e-6)``);
reduction: mean over each pair's keypoints, then mean over the pairs of the batch.

``geosc_loss``: Geo-SC's supervised objective ("InfoNCE + l2", Junyi42/GeoAware-SC ``utils/utils_losses.py``
``calculate_loss`` with ``DENSE_OBJ=1``, ``model_utils/corr_map_model.py``), which MARCO's Table 8 trains
its architecture with (the ``geosc-objective`` preset). Per pair, on L2-normalised descriptors
(``x / (||x|| + 1e-10)``):
- keypoint cells ``c = x * w / W`` (their ``num_patches / ANNO_SIZE``), truncated to integer cells;
- InfoNCE: the CLIP symmetric cross-entropy of ``exp(logit_scale) * D_src @ D_trg^T`` between the
  keypoints' cell descriptors (``logit_scale`` learnable, initialised at ``log(1 / 0.07)``);
- l2: for each source keypoint cell, soft-argmax (temperature 0.02) of its similarity with the whole
  target map; predicted flow = expected target cell - integer source cell; target flow = continuous target
  cell - continuous source cell (+ optional Gaussian noise, their ``GAUSSIAN_AUGMENT``: std = 0.1 x half
  the bbox threshold in cells); loss = mean Euclidean (not squared) error;
- pair loss = InfoNCE + l2; batch loss = mean over pairs (``batch_loss /= args.BZ``);
- pose-aware flip augmentation (``PAIR_AUGMENT``, on in their SPair-71k and AP-10K training configs): the
  flip views of ``corrbench.train.data`` ("flip views"), passed as ``views``, add the l2 term alone (with
  ``DENSE_OBJ=1`` their ``calculate_patch_indices_and_loss`` computes no InfoNCE for a view) with weights
  ``GEOSC_FLIP_WEIGHTS`` (mirrored pair 1, mirrored source against the source 0.25); pair loss =
  ``(InfoNCE + l2 + sum_v w_v l2_v) / (1 + sum_v w_v)`` over the views that have a keypoint. Their third
  weight (``AUGMENT_FLIP = 1.0``) is never read: the mirrored-source-against-target view is gated by the
  test-time flag ``ADAPT_FLIP`` instead, which their training configs leave off.
Their code and these defaults: ``SOFT_TRAIN_WINDOW=0`` (plain soft-argmax, as here) and ``SELF_CONTRAST_WEIGHT=0``
(not implemented); ``GAUSSIAN_AUGMENT=0.1`` is on by default there (``flow_noise_std`` here, 0 unless the caller
passes the box-derived std; for PF-PASCAL their "threshold" is the 840-px image side, not converted to cells,
so their std there is 42 cells on a 60-cell grid). MARCO's paper does not say which of these its Table 8 run
used, nor the temperature and grid (Geo-SC's 60 x 60 at 840 px vs MARCO's upsampled grid).

Agreement with the reference codes: ``gaussian_smoothed_ce``: float64 relative differences below 1e-15
(values and gradients), float32 about 2e-7 (random inputs, a one-off script, not part of the suite).
``geosc_loss``: the suite compares it with GeoAware-SC's ``calculate_loss`` on crafted inputs, with and without
the flip views and the flow noise (tests/test_geosc_loss_parity.py, golden values from
``tools/golden/geoaware/make_geosc_loss_golden.py``; relative tolerance 1e-5).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..geometry import Size, cell_centres, pixels_to_cells
from ..similarity import sample_descriptors

UNIFIED_TEMPERATURE = 0.03
UNIFIED_WINDOW = 7
UNIFIED_SIGMA = 1.5

GEOSC_TEMPERATURE = 0.02
GEOSC_LOGIT_SCALE_INIT = math.log(1 / 0.07)
GEOSC_FEATURE_EPS = 1e-10


# ---------------------------------------------------------------------------------------------------------
# The shared construction: a Gaussian-weighted cross-entropy on a window of offsets around each target.


def gaussian_window(window: int, sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(window, window)`` weights ``1 / (2 pi sigma^2) exp(-(dx^2 + dy^2) / (2 sigma^2))``, ``dx, dy`` in cells.

    Rows are ``dy``, columns ``dx``, both from ``-(window // 2)`` to ``window // 2``. A window of 1 is the
    plain cross-entropy at the target (weight 1), as in both reference codes.
    """
    check_window(window)
    if sigma <= 0:
        raise ConfigError(f"gaussian_window: sigma must be > 0, got {sigma}")
    if window == 1:
        return torch.ones(1, 1, device=device, dtype=dtype)
    offsets = _window_offsets(window, device, dtype)  # (K, K, 2)
    sq_radius = (offsets**2).sum(dim=-1)
    return torch.exp(-0.5 * sq_radius / sigma**2) / (2 * math.pi * sigma**2)


def check_window(window: int) -> None:
    if not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ConfigError(f"window must be an odd positive integer (offsets -w//2..w//2 in cells), got {window!r}")


def _window_offsets(window: int, device, dtype) -> torch.Tensor:
    """``(K, K, 2)`` integer ``(dx, dy)`` offsets; ``[i, j]`` is ``(j - K//2, i - K//2)``."""
    half = window // 2
    steps = torch.arange(-half, half + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack((dx, dy), dim=-1)


def window_cross_entropy(
    probabilities: torch.Tensor, target_cells: torch.Tensor, sigma: float, window: int
) -> torch.Tensor:
    """Per-map loss ``-sum_offsets g(offset) log p(target + offset)`` over offsets strictly inside the grid.

    ``probabilities`` ``(M, h, w)`` (already normalised, epsilon included), ``target_cells`` ``(M, 2)``
    continuous ``(x, y)`` cells. Returns ``(M,)``. Offsets whose sampling point lies on or beyond the grid
    border contribute nothing (the reference codes' strict ``0 < x < w - 1`` test).
    """
    if probabilities.ndim != 3 or target_cells.shape != (probabilities.shape[0], 2):
        raise ValueError(
            f"window_cross_entropy: probabilities (M, h, w) and target_cells (M, 2) expected, "
            f"got {tuple(probabilities.shape)} and {tuple(target_cells.shape)}"
        )
    m, h, w = probabilities.shape
    if m == 0:
        return probabilities.new_zeros(0)
    weights = gaussian_window(window, sigma, probabilities.device, probabilities.dtype)
    points = target_cells.to(probabilities.dtype)[:, None, None, :] + _window_offsets(
        window, probabilities.device, probabilities.dtype
    )  # (M, K, K, 2)
    inside = (points[..., 0] > 0) & (points[..., 0] < w - 1) & (points[..., 1] > 0) & (points[..., 1] < h - 1)
    sampled = sample_descriptors(
        probabilities[:, None], points.reshape(m, -1, 2), rule="align_corners", padding_mode="border"
    ).reshape(m, window, window)
    # Border padding keeps every sample positive, so the log is finite where `inside` drops it.
    terms = torch.where(inside, weights * torch.log(sampled), torch.zeros((), dtype=sampled.dtype, device=sampled.device))
    return -terms.sum(dim=(1, 2))


def softmax_over_grid(similarity: torch.Tensor, temperature: float) -> torch.Tensor:
    """``exp((s - max) / T) / sum``: the reference codes' temperature softmax over the flattened grid."""
    flat = similarity.flatten(1)
    shifted = flat - flat.max(dim=1, keepdim=True).values
    exp = torch.exp(shifted / temperature)
    return (exp / exp.sum(dim=1, keepdim=True)).reshape(similarity.shape)


def keypoint_mask(similarity: torch.Tensor, target_cells: torch.Tensor, valid: torch.Tensor | None,
                  name: str) -> torch.Tensor:
    """The ``(B, N)`` bool mask of the keypoints to score, after checking the shapes (``name``: the caller)."""
    if similarity.ndim != 4 or target_cells.ndim != 3 or target_cells.shape != (*similarity.shape[:2], 2):
        raise ValueError(
            f"{name}: similarity (B, N, h, w) and target_cells (B, N, 2) expected, "
            f"got {tuple(similarity.shape)} and {tuple(target_cells.shape)}"
        )
    if valid is None:
        return torch.ones(similarity.shape[:2], dtype=torch.bool, device=similarity.device)
    if valid.shape != similarity.shape[:2]:
        raise ValueError(f"{name}: valid must be (B, N) = {tuple(similarity.shape[:2])}, got {tuple(valid.shape)}")
    return valid.to(device=similarity.device, dtype=torch.bool)


def per_keypoint_window_ce(
    similarity: torch.Tensor,
    target_cells: torch.Tensor,
    valid: torch.Tensor,
    sigma: float,
    temperature: float,
    window: int,
    eps: float,
) -> torch.Tensor:
    """``(B, N)`` losses (steps 1-6 of the module docstring); invalid keypoints are never computed (their maps
    get no gradient, NaN or not)."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    check_window(window)
    out = similarity.new_zeros(similarity.shape[:2])
    index = valid.nonzero(as_tuple=True)
    if index[0].numel() == 0:
        return out + 0.0 * similarity.sum()  # keeps the graph connected for an all-invalid batch (grad 0)
    probabilities = softmax_over_grid(similarity[index], temperature) + eps
    out = out.index_put(index, window_cross_entropy(probabilities, target_cells[index], sigma, window))
    return out


# ---------------------------------------------------------------------------------------------------------
# The unified benchmark's loss


def gaussian_smoothed_ce(
    similarity: torch.Tensor,
    target_cells: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    temperature: float = UNIFIED_TEMPERATURE,
    window: int = UNIFIED_WINDOW,
    sigma: float = UNIFIED_SIGMA,
) -> torch.Tensor:
    """The unified benchmark's Gaussian-smoothed cross-entropy: mean over each pair's keypoints, then over pairs.

    ``similarity`` should be cosine similarities (L2-normalised features); ``target_cells`` use the
    align-corner rule (``corrbench.geometry.pixels_to_cells(..., rule="align_corners")``). No epsilon is added
    to the probabilities. A pair without valid keypoints adds 0 but still counts in the batch mean (the
    reference divides by the batch size; it would produce NaN for such a pair, which its datasets never contain).
    """
    valid = keypoint_mask(similarity, target_cells, valid, "gaussian_smoothed_ce")
    per_keypoint = per_keypoint_window_ce(similarity, target_cells, valid, sigma, temperature, window, eps=0.0)
    per_pair = per_keypoint.sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    return per_pair.mean()


# ---------------------------------------------------------------------------------------------------------
# Geo-SC (InfoNCE + l2)


class GeoSCLoss(NamedTuple):
    total: torch.Tensor
    info_nce: torch.Tensor
    flow_epe: torch.Tensor
    flip_epe: torch.Tensor  # the flip views' weighted flow error (0 without views)


#: Weights of the flip views (Geo-SC ``pck_train.py``: ``AUGMENT_DOUBLE_FLIP, AUGMENT_SELF_FLIP = 1.0, 0.25``
#: under ``PAIR_AUGMENT``); the pair itself weighs 1. Keys: ``corrbench.train.data.FlipViews``' views.
GEOSC_FLIP_WEIGHTS = {"pair": 1.0, "self": 0.25}


class FlowView(NamedTuple):
    """Another view of each pair on which ``geosc_loss`` scores the flow term only (the flip views).

    Shapes as ``geosc_loss``'s arguments: ``(B, C, h, w)`` maps, ``(B, M, 2)`` cells, ``(B, M)`` valid.
    flow_noise_std: Geo-SC draws it from the view's target image's box (their ``img2_threshold``, or
    ``img1_threshold`` for the self view, whose target is the source).
    """

    src_features: torch.Tensor
    trg_features: torch.Tensor
    src_cells: torch.Tensor
    trg_cells: torch.Tensor
    valid: torch.Tensor
    weight: float
    flow_noise_std: float | torch.Tensor = 0.0


def geosc_loss(
    src_features: torch.Tensor,
    trg_features: torch.Tensor,
    src_cells: torch.Tensor,
    trg_cells: torch.Tensor,
    logit_scale: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    temperature: float = GEOSC_TEMPERATURE,
    flow_noise_std: float | torch.Tensor = 0.0,
    generator: torch.Generator | None = None,
    views: Sequence[FlowView] = (),
) -> GeoSCLoss:
    """Geo-SC's InfoNCE + l2 objective on ``(B, C, h, w)`` feature maps (see the module docstring).

    Args:
        src_cells, trg_cells: ``(B, N, 2)`` continuous ``(x, y)`` cells with Geo-SC's rule ``c = x * w / W``
            (``corrbench.geometry.pixels_to_cells(..., rule="marco")``); integer cells are their truncation.
        logit_scale: the learnable LOG scale (Geo-SC: ``nn.Parameter(log(1 / 0.07))``), exponentiated here.
        valid: ``(B, N)`` bool: keypoints visible in both images.
        flow_noise_std: std (cells) of the Gaussian noise on the target flow, a float or ``(B,)``;
            Geo-SC: ``0.1 * bbox_threshold_in_cells / 2``. 0 disables it.
        generator: draws the noise per pair, its own flow's then each view's (Geo-SC's order).
        views: the flip views (``FlowView``); pair ``i``'s loss is ``(info_nce + l2 + sum_v w_v l2_v) /
            (1 + sum_v w_v)`` over the views with a keypoint in that pair.
    Returns:
        ``GeoSCLoss(total, info_nce, flow_epe, flip_epe)``, each the mean over pairs.
    """
    valid = _geosc_valid(src_features, trg_features, src_cells, trg_cells, valid, temperature)
    views = _checked_views(views, src_features.shape, temperature)
    b, _, h, w = src_features.shape
    noise_std = torch.as_tensor(flow_noise_std, dtype=src_features.dtype).expand(b)
    view_noise = [torch.as_tensor(view.flow_noise_std, dtype=src_features.dtype).expand(b) for view in views]
    scale = logit_scale.exp()
    grid = cell_centres((w, h), src_features.device, src_features.dtype).reshape(-1, 2)  # row-major (x, y)

    nce_terms, epe_terms, flip_terms, totals = [], [], [], []
    for i in range(b):
        keep = valid[i].to(src_cells.device)
        nce, epe = _geosc_pair(src_features[i], trg_features[i], src_cells[i][keep], trg_cells[i][keep], scale,
                               grid, temperature, noise_std[i], generator)
        flip_sum, flip_weights = _flip_views_term(views, view_noise, i, grid, temperature, generator, epe)
        nce_terms.append(nce)
        epe_terms.append(epe)
        flip_terms.append(flip_sum / flip_weights if flip_weights else flip_sum)
        totals.append((nce + epe + flip_sum) / (1.0 + flip_weights))

    info_nce, flow_epe = torch.stack(nce_terms).mean(), torch.stack(epe_terms).mean()
    return GeoSCLoss(torch.stack(totals).mean(), info_nce, flow_epe, torch.stack(flip_terms).mean())


def geosc_batch_loss(features: torch.Tensor, flipped: torch.Tensor | None, batch, logit_scale: torch.Tensor, *,
                     temperature: float = GEOSC_TEMPERATURE, flow_noise: float = 0.0,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``geosc_loss`` on a training batch (``corrbench.train.data.TrainingBatch``): ``features`` ``(B, 2, C, h, w)``
    maps of its source and target canvases, ``flipped`` the same for the mirrored canvases (the flip views) or
    None. Keypoints are clamped into the canvas and go to cells by Geo-SC's ``x * w / W``. ``flow_noise``: Geo-SC's
    ``GAUSSIAN_AUGMENT`` (their default 0.1; 0: none): the std of the noise on a flow is ``flow_noise x`` half the
    longer box side, in cells, of that flow's target image (``batch.box_sides``; the self view's target is the
    source), drawn from ``generator``. Returns the mean over
    the batch's pairs and the logged terms (``info_nce``, ``flow_epe``, and ``flip_epe`` with views). The one
    place both MARCO's ``geosc`` objective and the GeoAware-SC family's trainer turn a batch into this loss."""
    canvas_h, canvas_w = batch.canvas_size
    h, w = features.shape[-2:]
    limit = torch.tensor([canvas_w - 1, canvas_h - 1], dtype=features.dtype, device=features.device)

    def cells(keypoints: torch.Tensor) -> torch.Tensor:
        points = torch.minimum(keypoints.to(features.dtype).clamp(min=0), limit)
        return pixels_to_cells(points, (canvas_w, canvas_h), (int(w), int(h)), rule="marco")

    src_std = trg_std = 0.0
    if flow_noise > 0:
        sides = batch.box_sides
        if sides is None or not bool(torch.isfinite(sides).all()):
            raise ConfigError("flow noise needs the object box of every training image, and this dataset gives "
                              "none for some", hint="set flow_noise=0")
        src_std, trg_std = (flow_noise * sides.to(features.dtype).cpu() * (w / canvas_w) / 2).unbind(1)
    views = []
    if flipped is not None:
        pair, own = cells(batch.flip.pair_keypoints), cells(batch.flip.self_keypoints)
        views = [
            FlowView(flipped[:, 0], flipped[:, 1], pair[:, 0], pair[:, 1], batch.flip.pair_visible,
                     GEOSC_FLIP_WEIGHTS["pair"], trg_std),
            FlowView(flipped[:, 0], features[:, 0], own[:, 0], own[:, 1], batch.flip.self_visible,
                     GEOSC_FLIP_WEIGHTS["self"], src_std),
        ]
    main = cells(batch.keypoints)
    result = geosc_loss(features[:, 0], features[:, 1], main[:, 0], main[:, 1], logit_scale, batch.visible,
                        temperature=temperature, flow_noise_std=trg_std, generator=generator, views=views)
    logged = {"info_nce": result.info_nce, "flow_epe": result.flow_epe}
    if views:
        logged["flip_epe"] = result.flip_epe
    return result.total, logged


def _checked_views(views: Sequence[FlowView], shape: torch.Size, temperature: float) -> list[FlowView]:
    """The views with their ``valid`` masks resolved, after checking their shapes against the pair's maps."""
    if any(view.src_features.shape != shape or view.trg_features.shape != shape for view in views):
        raise ValueError(f"geosc_loss: every view's feature maps must have the pair's shape {tuple(shape)}")
    return [view._replace(valid=_geosc_valid(view.src_features, view.trg_features, view.src_cells, view.trg_cells,
                                             view.valid, temperature)) for view in views]


def _flip_views_term(views: Sequence[FlowView], view_noise: Sequence[torch.Tensor], i: int, grid: torch.Tensor,
                     temperature: float, generator: torch.Generator | None,
                     like: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``(sum_v w_v l2_v, sum_v w_v)`` of pair ``i`` over the views with a keypoint in it (Geo-SC appends a view's
    loss only then), drawing each view's noise in order."""
    weighted, weights = like.new_zeros(()), 0.0
    for view, std in zip(views, view_noise):
        keep = view.valid[i].to(view.src_cells.device)
        if not bool(keep.any()):
            continue
        term = _geosc_flow_error(
            _normalise_geosc(view.src_features[i]), _normalise_geosc(view.trg_features[i]),
            view.src_cells[i][keep], view.trg_cells[i][keep], grid, temperature, std[i], generator)
        weighted, weights = weighted + view.weight * term, weights + view.weight
    return weighted, weights


def _geosc_valid(src_features: torch.Tensor, trg_features: torch.Tensor, src_cells: torch.Tensor,
                 trg_cells: torch.Tensor, valid: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """The ``(B, N)`` bool mask of the keypoints to score, after checking ``geosc_loss``'s arguments."""
    if src_features.ndim != 4 or src_features.shape != trg_features.shape:
        raise ValueError(
            f"geosc_loss: two (B, C, h, w) feature maps of equal shape expected, "
            f"got {tuple(src_features.shape)} and {tuple(trg_features.shape)}"
        )
    b = src_features.shape[0]
    for name, cells in (("src_cells", src_cells), ("trg_cells", trg_cells)):
        if cells.ndim != 3 or cells.shape[0] != b or cells.shape[-1] != 2:
            raise ValueError(f"geosc_loss: {name} must be (B, N, 2), got {tuple(cells.shape)}")
    if src_cells.shape != trg_cells.shape:
        raise ValueError(f"geosc_loss: src_cells {tuple(src_cells.shape)} and trg_cells {tuple(trg_cells.shape)} differ")
    valid = (
        torch.ones(src_cells.shape[:2], dtype=torch.bool, device=src_cells.device)
        if valid is None else valid.to(torch.bool)
    )
    if valid.shape != src_cells.shape[:2]:
        raise ValueError(f"geosc_loss: valid must be (B, N) = {tuple(src_cells.shape[:2])}, got {tuple(valid.shape)}")
    if temperature <= 0:
        raise ConfigError(f"geosc_loss: temperature must be > 0, got {temperature}")
    return valid


def _geosc_pair(src_features: torch.Tensor, trg_features: torch.Tensor, src: torch.Tensor, trg: torch.Tensor,
                scale: torch.Tensor, grid: torch.Tensor, temperature: float, noise_std: torch.Tensor,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE and flow error of one pair: ``(C, h, w)`` maps, its ``(K, 2)`` kept source and target cells."""
    if src.shape[0] == 0:  # nothing to learn from; counts as 0 in the batch mean
        zero = 0.0 * (src_features.sum() + trg_features.sum() + scale)
        return zero, zero
    c, h, w = src_features.shape
    src_normalised, trg_normalised = _normalise_geosc(src_features), _normalise_geosc(trg_features)
    src_desc = _cell_descriptors(src_normalised, src, "src_cells")  # (K, C)
    trg_desc = _cell_descriptors(trg_normalised, trg, "trg_cells")
    logits = scale * src_desc @ trg_desc.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    info_nce = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    return info_nce, _geosc_flow_error(src_normalised, trg_normalised, src, trg, grid, temperature, noise_std,
                                       generator)


def _cell_descriptors(normalised: torch.Tensor, cells: torch.Tensor, name: str) -> torch.Tensor:
    """``(K, C)`` descriptors of the integer cells (truncated ``cells``) of a ``(C, h, w)`` map."""
    c, h, w = normalised.shape
    index = _integer_cells(cells, (w, h), name)
    return normalised.reshape(c, -1)[:, index[:, 1] * w + index[:, 0]].T


def _geosc_flow_error(src_normalised: torch.Tensor, trg_normalised: torch.Tensor, src: torch.Tensor,
                      trg: torch.Tensor, grid: torch.Tensor, temperature: float, noise_std: torch.Tensor,
                      generator: torch.Generator | None) -> torch.Tensor:
    """Geo-SC's dense term (``get_corr_map_loss``): mean Euclidean error between the soft-argmax flow from each
    source keypoint's integer cell and the (noisy) continuous ground-truth flow."""
    c, h, w = src_normalised.shape
    src_int = _integer_cells(src, (w, h), "src_cells")
    _integer_cells(trg, (w, h), "trg_cells")  # the same range check as the descriptors' cells
    src_desc = _cell_descriptors(src_normalised, src, "src_cells")
    weights = softmax_over_grid(src_desc @ trg_normalised.reshape(c, -1), temperature)  # (K, h*w)
    predicted_flow = weights @ grid - src_int.to(weights.dtype)
    target_flow = (trg - src).to(weights.dtype)
    if float(noise_std) > 0:
        noise = torch.randn(target_flow.shape, generator=generator, dtype=target_flow.dtype)
        target_flow = target_flow + noise.to(target_flow.device) * noise_std.to(target_flow.device)
    return torch.linalg.norm(predicted_flow - target_flow, dim=-1).mean()


def _normalise_geosc(features: torch.Tensor) -> torch.Tensor:
    return features / (torch.linalg.norm(features, dim=0, keepdim=True) + GEOSC_FEATURE_EPS)


def _integer_cells(cells: torch.Tensor, grid_size: Size, name: str) -> torch.Tensor:
    """Truncate to integer cells as Geo-SC's ``astype(np.int32)``; outside the grid is an error, not a wrap."""
    integer = torch.trunc(cells.detach()).long()
    w, h = grid_size
    outside = (integer[:, 0] < 0) | (integer[:, 0] >= w) | (integer[:, 1] < 0) | (integer[:, 1] >= h)
    if bool(outside.any()):
        raise ValueError(
            f"geosc_loss: {name} {cells[outside][:3].tolist()} fall outside the {w} x {h} grid; "
            "clip the keypoints to the canvas before mapping them to cells"
        )
    return integer
