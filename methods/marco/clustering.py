"""Step 3 of MARCO's pseudo-label mining: the flow's colour encoding, clustered by k-means and BIC merging.

Clustering space, as released (``util/flow.flow_to_hsv``): the 3-D RGB colour of the flow's HSV encoding (hue =
direction, value = magnitude over the 95th percentile of the non-zero magnitudes, saturation 1, quantised to 8
bits; pixels whose colour is black are dropped), k-means k = 7 then greedy BIC merging down to at least 3
clusters [paper: flow vectors, k = 15 + BIC].

k-means and BIC (own implementation of the released behaviour of ``torch_kmeans.KMeans`` + ``kmeans_bic``):
k distinct samples drawn uniformly as initial centres (``torch.multinomial`` on a CPU generator seeded with
123, the library's default seed; on CPU this draws the library's very indices), Lloyd iterations (at most 100)
until the mean centre shift < 1e-4, an empty cluster's centre becomes the zero vector (the library's
normalised-mean update), labels = nearest final centre. BIC of a cluster with ``n`` points and squared error
``sse`` in ``D = 3`` dimensions is the spherical-Gaussian log-likelihood
``-n/2 (D log(2 pi sigma^2) + 1)``, ``sigma^2 = max(sse / (n D + 1e-12), 1e-12)`` (the constant cancels in the
merge gain), and merging two clusters gains ``LL(merged) - LL(a) - LL(b) + (D + 2)/2 log N`` (one mean,
one variance and one weight fewer). Each round considers the pairs ``(i, nn(i))`` with ``nn(i) > i``, merges
the pair of largest positive gain into its count-weighted mean (``sse`` grows by the between-centre
scatter), reassigns all points to the nearest remaining centre and recounts, dropping empty clusters; it
stops when no gain is positive or 3 clusters remain; a final k-means (at most 50 iterations) starts from the
surviving centres. Own choices, equivalent up to float rounding: k-means and BIC statistics run in float64
(the released code: float32) on the distinct colours weighted by their multiplicities, distances by
``|c|^2 - 2 x.c``. On the same inputs the labels agree with the released functions on >= 99.9% of the
pixels (near-ties: the library measures ``|x - c + 1e-6|``), and the kept clusters and collected matches
were identical in every comparison made (up to 630 px, 180 cells; ``tests/test_marco_flow_parity.py`` checks
a small case against the released functions in the suite). Consequence of the released criterion: at training
scale it practically never merges (see ``cluster_flow``), so pairs keep the 7 k-means clusters.
"""

from __future__ import annotations

import math

import torch


def quantile_linear(values: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile(values, q)`` (linear interpolation) by two selections instead of a full sort."""
    position = q * (values.numel() - 1)
    low = math.floor(position)
    low_value = torch.kthvalue(values, low + 1).values
    if position == low:
        return low_value
    high_value = torch.kthvalue(values, low + 2).values
    return torch.lerp(low_value, high_value, position - low)


def flow_colour_features(flow_px: torch.Tensor, source_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The released clustering space: the RGB colour (in [0, 1], 8-bit levels) of the flow's HSV encoding.

    Hue = direction ``(atan2(v, u) + pi) / 2 pi``, saturation 1, value = magnitude over the 95th percentile of
    the image's non-zero magnitudes (all pixels, not only the mask's; clipped to 1). A pixel is valid where it
    is in ``source_mask`` (image resolution) and its 8-bit colour is not black. Returns
    ``(features (n, 3), valid (H, W))``, features in raster order of the valid pixels.
    """
    if flow_px.ndim != 3 or flow_px.shape[-1] != 2 or source_mask.shape != flow_px.shape[:2]:
        raise ValueError(
            f"flow_colour_features: flow (H, W, 2) and mask (H, W) expected, "
            f"got {tuple(flow_px.shape)}, {tuple(source_mask.shape)}"
        )
    u, v = flow_px[..., 0], flow_px[..., 1]
    magnitude = torch.sqrt(u * u + v * v)
    moving = magnitude[magnitude > 0]
    clip = quantile_linear(moving, 0.95) if moving.numel() else magnitude.new_tensor(1.0)
    ys, xs = torch.nonzero(source_mask, as_tuple=True)  # colours are needed inside the mask only
    u, v = u[ys, xs], v[ys, xs]
    value = torch.clamp(magnitude[ys, xs] / (clip + 1e-6), 0, 1)
    hue6 = (torch.atan2(v, u) + math.pi) / (2 * math.pi) * 6.0
    # HSV -> RGB with saturation 1: channel n is V * (1 - clamp(min(k, 4 - k), 0, 1)), k = (n + 6 h) mod 6
    channels = []
    for offset in (5.0, 3.0, 1.0):
        k = torch.remainder(offset + hue6, 6.0)
        channels.append(value * (1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1)))
    levels = torch.floor(torch.clamp(torch.stack(channels, dim=-1) * 255, 0, 255))  # the uint8 encoding
    coloured = levels.amax(dim=-1) > 0
    valid = torch.zeros_like(source_mask, dtype=torch.bool)
    valid[ys[coloured], xs[coloured]] = True
    return levels[coloured] / 255.0, valid


def random_initial_centres(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """``k`` distinct rows of ``x`` drawn uniformly with a CPU generator (device-independent)."""
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.full((1, x.shape[0]), 1.0 / x.shape[0])
    index = torch.multinomial(uniform, k, replacement=False, generator=generator)[0]
    return x[index.to(x.device)].clone()


def _nearest_centre(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centre by ``|c|^2 - 2 x.c`` (one matmul); callers pass float64 for exactness."""
    centres = centres.to(x.dtype)
    return torch.addmm(centres.square().sum(1)[None], x, centres.T, alpha=-2).argmin(dim=1)


def kmeans(
    x: torch.Tensor,
    initial_centres: torch.Tensor,
    max_iter: int = 100,
    tol: float = 1e-4,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from given centres -> ``(labels (N,), centres (K, D))``, computed in float64.

    Stops when the mean Euclidean centre shift is below ``tol``; an empty cluster's centre becomes the zero
    vector (as in ``torch_kmeans``); the labels are the nearest final centres. ``weights`` (N,) count each
    row that many times (k-means of the distinct rows of a data set with their multiplicities).
    """
    k = initial_centres.shape[0]
    x64 = x.to(torch.float64)
    w64 = torch.ones(x.shape[0], dtype=torch.float64, device=x.device) if weights is None else weights.to(torch.float64)
    weighted = torch.cat((x64 * w64[:, None], w64[:, None]), dim=1)  # weighted sums and masses in one pass
    centres = initial_centres.to(torch.float64)
    for _ in range(max_iter):
        labels = _nearest_centre(x64, centres)
        totals = torch.zeros(k, weighted.shape[1], dtype=torch.float64, device=x.device).index_add_(0, labels, weighted)
        new_centres = totals[:, :-1] / totals[:, -1:].clamp(min=1e-12)
        shift = (new_centres - centres).norm(dim=1).mean()
        centres = new_centres
        if shift < tol:
            break
    return _nearest_centre(x64, centres), centres.to(x.dtype)


def _cluster_statistics(
    x: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted counts and squared errors (float64) of each cluster around the given centres."""
    k = centres.shape[0]
    w64 = weights.to(torch.float64)
    counts = torch.zeros(k, dtype=torch.float64, device=x.device).index_add_(0, labels, w64)
    squared = ((x - centres[labels]) ** 2).sum(dim=1).to(torch.float64) * w64
    sse = torch.zeros(k, dtype=torch.float64, device=x.device).index_add_(0, labels, squared)
    return counts, sse


def _drop_empty(labels: torch.Tensor, centres: torch.Tensor, counts: torch.Tensor, sse: torch.Tensor):
    nonempty = counts > 0
    remap = torch.cumsum(nonempty.long(), dim=0) - 1
    return remap[labels], centres[nonempty], counts[nonempty], sse[nonempty]


def spherical_log_likelihood(counts: torch.Tensor, sse: torch.Tensor, dims: int) -> torch.Tensor:
    """Maximum log-likelihood of spherical Gaussian clusters, in the released form."""
    variance = torch.clamp(sse / (counts * dims + 1e-12), min=1e-12)
    return -0.5 * counts * (dims * torch.log(2 * math.pi * variance) + 1.0)


def bic_merge_gain(
    counts_a: torch.Tensor,
    centres_a: torch.Tensor,
    sse_a: torch.Tensor,
    counts_b: torch.Tensor,
    centres_b: torch.Tensor,
    sse_b: torch.Tensor,
    num_points: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """BIC gain of merging cluster pairs ``a[i] + b[i]`` -> ``(gain, counts, centre, sse)`` of the merged ones.

    ``gain = LL(merged) - LL(a) - LL(b) + (D + 2)/2 log N``: positive when the data do not justify two
    clusters. The merged centre is the count-weighted mean; its sse adds the between-centre scatter.
    """
    dims = centres_a.shape[-1]
    counts = counts_a + counts_b
    weights_a, weights_b = counts_a[:, None], counts_b[:, None]
    centres64_a, centres64_b = centres_a.to(torch.float64), centres_b.to(torch.float64)
    merged = (weights_a * centres64_a + weights_b * centres64_b) / counts.clamp(min=1e-12)[:, None]
    scatter = counts_a * (centres64_a - merged).square().sum(-1) + counts_b * (centres64_b - merged).square().sum(-1)
    sse = sse_a + sse_b + scatter
    gain = (
        spherical_log_likelihood(counts, sse, dims)
        - spherical_log_likelihood(counts_a, sse_a, dims)
        - spherical_log_likelihood(counts_b, sse_b, dims)
        + 0.5 * (dims + 2) * math.log(num_points)
    )
    return gain, counts, merged, sse


def merge_clusters_by_bic(
    points: torch.Tensor, weights: torch.Tensor, centres: torch.Tensor, k_min: int, num_points: int | None = None
) -> torch.Tensor:
    """Greedy BIC merging of k-means centres -> the surviving centres ``(K', D)``, ``K' >= min(k_min, K)``.

    Each round looks at the pairs ``(i, nn(i))`` with ``nn(i) > i`` (nearest centre), merges the pair with
    the largest positive ``bic_merge_gain`` into its weighted mean, reassigns every point to the nearest
    remaining centre and drops empty clusters; it stops when no gain is positive or ``k_min`` remain.
    ``weights`` are the multiplicities of ``points``; ``num_points`` (the ``N`` of the penalty) defaults to
    their sum.
    """
    n = int(round(float(weights.sum()))) if num_points is None else num_points
    labels = _nearest_centre(points.to(torch.float64), centres)
    labels, centres, counts, sse = _drop_empty(labels, centres, *_cluster_statistics(points, weights, labels, centres))
    while centres.shape[0] > k_min:
        k = centres.shape[0]
        distances = torch.cdist(centres.to(torch.float64), centres.to(torch.float64)).square()
        distances.fill_diagonal_(math.inf)
        partner = distances.argmin(dim=1)
        gain, _, merged_centres, _ = bic_merge_gain(
            counts, centres, sse, counts[partner], centres[partner], sse[partner], n
        )
        candidate = partner > torch.arange(k, device=partner.device)  # each pair once, from its lower index
        gain = torch.where(candidate, gain, torch.full_like(gain, -math.inf))
        best = int(gain.argmax())
        if not gain[best] > 0:
            break
        centres = centres.clone()
        centres[best] = merged_centres[best].to(centres.dtype)
        centres = centres[torch.arange(k, device=centres.device) != partner[best]]
        labels = _nearest_centre(points.to(torch.float64), centres)  # reassign to the merged centres, recount
        labels, centres, counts, sse = _drop_empty(
            labels, centres, *_cluster_statistics(points, weights, labels, centres)
        )
    return centres


def cluster_flow(
    features: torch.Tensor,
    k_init: int = 7,
    k_min: int = 3,
    seed: int = 123,
    max_iter: int = 100,
    refine_max_iter: int = 50,
    tol: float = 1e-4,
) -> torch.Tensor:
    """k-means with ``k_init`` clusters, then greedy BIC merging down to ``k_min`` at least -> labels ``(N,)``.

    The work is done on the distinct rows with their multiplicities as weights (8-bit colours of a smooth
    flow repeat: ~119k pixels had ~55k distinct colours at 630 px); the assignments are those of all rows.
    Labels are contiguous ``0 .. K-1`` (some may end up empty after the final k-means, as released).
    Note: with the released criterion, merging the two halves of a compact (Gaussian) cluster of ``n``
    points costs about ``0.36 n`` in log-likelihood (one axis' variance grows by ``1 / (1 - 2/pi)``) while
    the penalty saved is ``2.5 log N``, so clusters of more than ~100 points are practically never merged:
    at training scale (~10^5 pixels) the 7 k-means clusters are kept as they are.
    """
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"cluster_flow: features must be (N >= 2, D), got {tuple(features.shape)}")
    n = features.shape[0]
    k0 = min(max(k_init, k_min), max(2, n - 1))  # k-means needs k < N
    initial = random_initial_centres(features, k0, seed)  # drawn from all N rows, as released
    points, inverse, multiplicity = torch.unique(features, dim=0, return_inverse=True, return_counts=True)
    weights = multiplicity.to(points.dtype)

    labels, centres = kmeans(points, initial, max_iter, tol, weights)
    nonempty = torch.bincount(labels, minlength=centres.shape[0]) > 0
    if int(nonempty.sum()) <= k_min:
        return (torch.cumsum(nonempty.long(), 0) - 1)[labels][inverse]
    centres = merge_clusters_by_bic(points, weights, centres, k_min, n)
    if centres.shape[0] > 1:
        labels, _ = kmeans(points, centres, refine_max_iter, tol, weights)
    else:
        labels = torch.zeros_like(labels)
    return labels[inverse]
