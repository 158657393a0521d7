"""Similarity primitives: descriptor sampling, similarity maps, localising a map to a point, nearest neighbours.

Localisers turn a similarity map ``(B, N, h, w)`` into continuous CELL coordinates ``(B, N, 2)`` as
``(x, y)``, where cell ``j`` has coordinate ``j``; ``corrbench.geometry.cells_to_pixels`` maps them to pixels.
Each localiser exists as a function and as a small ``torch.nn.Module`` twin that carries its settings; the twins
are registered by name in ``corrbench.localizers`` (a method's ``localizer`` option names one).

Temperatures follow the reference codes: softmax(scores / temperature). GeoAware-SC's window soft-argmax
uses 0.02 on cosine similarities; MARCO's Gaussian-suppressed soft-argmax uses 10 on raw dot products
(``softmax_temp: 10`` in its configs, ``exp(x / beta)`` in ``util/geometry.py``); the unified benchmark 0.03.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .geometry import Size, cell_centres, cells_to_sampling_grid


def _check_scores(scores: torch.Tensor, name: str) -> None:
    if scores.ndim != 4:
        raise ValueError(f"{name}: scores must be (B, N, h, w), got {tuple(scores.shape)}")


def sample_descriptors(
    features: torch.Tensor, cells: torch.Tensor, rule: str = "half_pixel", padding_mode: str = "border"
) -> torch.Tensor:
    """Bilinearly sample ``(B, C, h, w)`` features at continuous cell coordinates ``(B, N, 2)`` -> ``(B, N, C)``."""
    if features.ndim != 4 or cells.ndim != 3 or cells.shape[-1] != 2 or cells.shape[0] != features.shape[0]:
        raise ValueError(
            f"sample_descriptors: features (B, C, h, w) and cells (B, N, 2) expected, "
            f"got {tuple(features.shape)} and {tuple(cells.shape)}"
        )
    grid_size: Size = (int(features.shape[-1]), int(features.shape[-2]))
    grid, align_corners = cells_to_sampling_grid(cells.to(features.dtype), grid_size, rule)
    sampled = F.grid_sample(
        features, grid[:, :, None, :], mode="bilinear", padding_mode=padding_mode, align_corners=align_corners
    )
    return sampled[..., 0].transpose(1, 2)


def similarity_maps(descriptors: torch.Tensor, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Dot products of ``(B, N, C)`` descriptors with ``(B, C, h, w)`` maps -> ``(B, N, h, w)``.

    ``normalize=True`` L2-normalises both sides first (cosine similarity).
    """
    if descriptors.ndim != 3 or features.ndim != 4 or descriptors.shape[-1] != features.shape[1]:
        raise ValueError(
            f"similarity_maps: descriptors (B, N, C) and features (B, C, h, w) with equal C expected, "
            f"got {tuple(descriptors.shape)} and {tuple(features.shape)}"
        )
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    if normalize:
        descriptors = F.normalize(descriptors, dim=-1)
        flat = F.normalize(flat, dim=1)
    return torch.bmm(descriptors, flat).reshape(b, -1, h, w)


def argmax_cells(scores: torch.Tensor) -> torch.Tensor:
    """The cell of the maximum score (first one on ties) -> ``(B, N, 2)`` integer-valued cell coordinates."""
    _check_scores(scores, "argmax_cells")
    w = scores.shape[-1]
    index = scores.flatten(2).argmax(dim=-1)
    return torch.stack((index % w, torch.div(index, w, rounding_mode="floor")), dim=-1).to(scores.dtype)


#: What ``window_soft_argmax`` does with the cells outside the window: ``exclude`` leaves them out of the softmax;
#: ``zero`` sets their scores to 0 and keeps them in it, as GeoAware-SC's released ``get_flow`` does (each outside
#: cell then weighs ``exp(-peak / temperature)`` relative to the peak: negligible for a cosine peak near 1, a
#: pull towards the grid's centre for weak matches).
WINDOW_OUTSIDE = ("exclude", "zero")


def window_soft_argmax(
    scores: torch.Tensor, radius: int = 7, temperature: float = 0.02, outside: str = "exclude"
) -> torch.Tensor:
    """Soft-argmax restricted to the ``(2r+1)^2`` window around the argmax (GeoAware-SC).

    Cells of the window that fall outside the grid are not part of it. ``outside`` (``WINDOW_OUTSIDE``) says
    how the rest of the map enters the softmax.
    """
    _check_scores(scores, "window_soft_argmax")
    if radius < 0 or temperature <= 0:
        raise ConfigError(f"window_soft_argmax needs radius >= 0 and temperature > 0, got {radius}, {temperature}")
    if outside not in WINDOW_OUTSIDE:
        raise ConfigError(f"window_soft_argmax: unknown outside rule {outside!r}",
                          hint=f"use one of {', '.join(WINDOW_OUTSIDE)}")
    h, w = scores.shape[-2:]
    peak = argmax_cells(scores)  # (B, N, 2)
    grid = cell_centres((w, h), scores.device, scores.dtype)  # (h, w, 2)
    inside = ((grid[None, None] - peak[:, :, None, None, :]).abs() <= radius).all(dim=-1)
    if outside == "zero":
        logits = scores.masked_fill(~inside, 0.0) / temperature
    else:
        logits = (scores / temperature).masked_fill(~inside, float("-inf"))
    weights = torch.softmax(logits.flatten(2), dim=-1)
    return weights @ grid.reshape(-1, 2)


def gaussian_soft_argmax(scores: torch.Tensor, sigma: float = 7.0, temperature: float = 10.0) -> torch.Tensor:
    """Gaussian-suppressed soft-argmax (MARCO; "kernel soft-argmax" in the unified benchmark).

    The score map is multiplied by an unnormalised Gaussian ``exp(-d^2 / (2 sigma^2))`` (``d`` in cells)
    centred on its argmax, then ``softmax(scores / temperature)`` weights the expectation of the cell
    coordinates. Multiplying (not adding) is what the reference code does, also for negative scores.
    """
    _check_scores(scores, "gaussian_soft_argmax")
    if sigma <= 0 or temperature <= 0:
        raise ConfigError(f"gaussian_soft_argmax needs sigma > 0 and temperature > 0, got {sigma}, {temperature}")
    h, w = scores.shape[-2:]
    peak = argmax_cells(scores)
    grid = cell_centres((w, h), scores.device, scores.dtype)
    sq_dist = ((grid[None, None] - peak[:, :, None, None, :]) ** 2).sum(dim=-1)
    suppressed = scores * torch.exp(-sq_dist / (2 * sigma**2))
    weights = torch.softmax(suppressed.flatten(2) / temperature, dim=-1)
    return weights @ grid.reshape(-1, 2)


@dataclass(frozen=True)
class NearestNeighbours:
    """Nearest neighbours both ways between rows ``a`` ``(N, C)`` and ``b`` ``(M, C)`` (``nearest_neighbours``)."""

    row_scores: torch.Tensor  # (N, k) each a-row's k largest similarities, largest first
    row_index: torch.Tensor  # (N,) long: the b-row nearest to each a-row
    column_index: torch.Tensor | None  # (M,) long: the a-row nearest to each b-row (the first one on ties);
    # None when asked for with columns=False

    @property
    def mutual(self) -> torch.Tensor:
        """``(N,)`` bool: the a-rows that are their nearest b-row's nearest a-row."""
        if self.column_index is None:
            raise ValueError("NearestNeighbours.mutual needs the column side: call nearest_neighbours(columns=True)")
        return self.column_index[self.row_index] == torch.arange(self.row_index.shape[0], device=self.row_index.device)


def nearest_neighbours(
    a: torch.Tensor, b: torch.Tensor, top: int = 1, chunk_size: int = 4096, columns: bool = True
) -> NearestNeighbours:
    """Nearest neighbours both ways under the dot product ``a @ b.T``, in one pass over chunks of ``a``'s rows.

    The ``N x M`` similarity matrix never exists at once: each chunk of ``chunk_size`` rows updates the rows'
    ``top`` best scores and the running best row of every column (strict ``>``, so the first row wins ties, as
    a full argmax would). Normalise ``a`` and ``b`` first for cosine similarity. A row's nearest column is
    ``argmax``'s (the first one on ties) when ``top == 1`` and ``topk``'s first when ``top > 1`` (MARCO's
    mining reads its ratio test from the top two as its released code does; ``topk`` leaves the order of tied
    scores open). ``b`` needs at least one row; ``k = min(top, M)``. ``columns=False`` skips the column side
    (``column_index`` is None): a caller that needs only each row's nearest column saves the per-chunk
    column maximum, about a third of the time at 3000 x 3000 x 256.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"nearest_neighbours: (N, C) and (M, C) expected, got {tuple(a.shape)}, {tuple(b.shape)}")
    n, m = a.shape[0], b.shape[0]
    if m == 0 or top < 1:
        raise ValueError(f"nearest_neighbours: b needs at least one row and top must be >= 1, got M={m}, top={top}")
    k = min(top, m)
    row_scores = torch.empty(n, k, dtype=a.dtype, device=a.device)
    row_index = torch.empty(n, dtype=torch.long, device=a.device)
    column_best = torch.full((m,), float("-inf"), dtype=a.dtype, device=a.device)
    column_index = torch.zeros(m, dtype=torch.long, device=a.device)
    for start in range(0, n, chunk_size):
        rows = slice(start, start + chunk_size)
        sim = a[rows] @ b.T
        if top == 1:
            row_index[rows] = sim.argmax(dim=1)
            row_scores[rows] = sim.gather(1, row_index[rows, None])
        else:
            best = sim.topk(k, dim=1)
            row_scores[rows], row_index[rows] = best.values, best.indices[:, 0]
        if not columns:
            continue
        # per-column best row; on CPU a reduction over dim 0 is 2-3x slower than over a contiguous transpose
        chunk_best, chunk_arg = sim.max(dim=0) if sim.is_cuda else sim.T.contiguous().max(dim=1)
        better = chunk_best > column_best
        column_best = torch.where(better, chunk_best, column_best)
        column_index = torch.where(better, chunk_arg + start, column_index)
    return NearestNeighbours(row_scores, row_index, column_index if columns else None)


def mutual_nearest_neighbours(
    a: torch.Tensor, b: torch.Tensor, normalize: bool = True, chunk_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs ``(i, j)`` such that ``b[j]`` is ``a[i]``'s nearest neighbour and vice versa.

    ``a`` is ``(N, C)``, ``b`` is ``(M, C)``; similarity is the dot product (cosine when ``normalize``).
    Rows of ``a`` are processed in chunks so the ``N x M`` matrix never has to exist at once.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"mutual_nearest_neighbours: (N, C) and (M, C) expected, got {tuple(a.shape)}, {tuple(b.shape)}")
    if a.shape[0] == 0 or b.shape[0] == 0:
        empty = torch.empty(0, dtype=torch.long, device=a.device)
        return empty, empty.clone()
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    found = nearest_neighbours(a, b, chunk_size=chunk_size)
    mutual = found.mutual
    return torch.arange(a.shape[0], device=a.device)[mutual], found.row_index[mutual]


class Localizer(nn.Module):
    """Base of the module twins: ``forward(scores (B, N, h, w)) -> cells (B, N, 2)``."""

    #: Whether the similarity should be cosine (L2-normalised features), as the localiser's source uses it.
    normalize_features: bool = False

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")


class Argmax(Localizer):
    normalize_features = True

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return argmax_cells(scores)


class WindowSoftArgmax(Localizer):
    normalize_features = True

    def __init__(self, radius: int = 7, temperature: float = 0.02, outside: str = "exclude"):
        super().__init__()
        self.radius, self.temperature, self.outside = radius, temperature, outside

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return window_soft_argmax(scores, self.radius, self.temperature, self.outside)


class GaussianSoftArgmax(Localizer):
    normalize_features = False

    def __init__(self, sigma: float = 7.0, temperature: float = 10.0):
        super().__init__()
        self.sigma, self.temperature = sigma, temperature

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return gaussian_soft_argmax(scores, self.sigma, self.temperature)
