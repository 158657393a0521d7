"""DIY-SC's spherical-prototype filter: a pseudo-label survives only if both of its points map to nearby
points of a canonical sphere (Mariotti et al.'s spherical mapper, "SphericalMaps", CVPR 2024).

From the released code (odunkel/DIY-SC e1121c07): ``model_utils/dino_mapper.py`` (``DINOMapper.sphere_mapper``
and ``post_sph_map``), ``preprocess_sph_feats.py`` (the mapper runs on the same raw DINOv2 tokens the
pseudo-labels match: last block, before the final LayerNorm) and ``utils/utils_pseudo_gt.py``
(``filter_out_with_sph``, called with ``--filter_sph_threshold 0.15``). The checkpoint is theirs,
``ckpts/sph_map/spair71k/ckpts/200.pth`` (a SphericalMaps model trained on SPair-71k); only its
``sphere_mapper.*`` tensors are used (the conditional prototypes in it are not, as in their script).

Paper vs code: the paper writes the rejection as ``sim(psi_s, psi_t) < theta_th`` with ``theta_th < 0.15 pi``;
the code keeps a pair when the ANGLE between the two unit points is ``<= 0.15 * pi`` (27 degrees). We follow
the code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from corrbench.backbones.weights import RANDOM, git_blob_id, read_checkpoint_file, resolve_weights
from corrbench.errors import ConfigError, DataError

#: ``--filter_sph_threshold``: the largest kept angle, as a fraction of pi.
SPHERE_THRESHOLD = 0.15
#: The released checkpoint, at the commit read; verified by its git blob id (the repository's own hash of
#: the file), since that is what the commit pins.
SPHERE_MAPPER_URL = ("https://raw.githubusercontent.com/odunkel/DIY-SC/e1121c072b022adcccaf1b938dcc053fb9eed930/"
                     "ckpts/sph_map/spair71k/ckpts/200.pth")
SPHERE_MAPPER_FILE = "diy-sc_sph_map_spair71k_200.pth"
SPHERE_MAPPER_GIT_BLOB = "c5dea00cf6a1a96983c2d290ed98cdf67dc876fb"
#: Their attention heads are 64 channels wide (``num_heads = embed_dim // 2 // 64``).
HEAD_WIDTH = 64


class _Attention(nn.Module):
    """Multi-head self-attention without qkv bias (their timm-derived ``Attention``)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-5, MLP ratio 4, no layer scale)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), _Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), _Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SphericalMapper(nn.Module):
    """DINOv2 tokens ``(B, N, D)`` -> unit points ``(B, N, 3)`` on the sphere.

    Linear ``D -> D/2``, GELU, one transformer block over all tokens of an image, linear ``D/2 -> 3``,
    normalised. Its ``state_dict`` keys are those of their ``sphere_mapper`` (``0.*``, ``2.*``, ``3.*``).
    """

    def __init__(self, dim: int = 768):
        super().__init__()
        hidden = dim // 2
        if hidden < HEAD_WIDTH:
            raise ConfigError(f"the spherical mapper needs features of at least {2 * HEAD_WIDTH} channels, got {dim}")
        self.layers = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), _Block(hidden, hidden // HEAD_WIDTH),
                                    nn.Linear(hidden, 3))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.layers(tokens), dim=-1)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # their key names
        return {k.removeprefix("layers."): v for k, v in super().state_dict(*args, **kwargs).items()}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):
        return self.layers.load_state_dict(state_dict, strict=strict, assign=assign)


def sphere_agreement(first: torch.Tensor, second: torch.Tensor, threshold: float = SPHERE_THRESHOLD) -> torch.Tensor:
    """Bool per row: the angle between the points ``(M, 3)`` is at most ``threshold * pi`` (``filter_out_with_sph``)."""
    angle = torch.acos(F.cosine_similarity(first, second, dim=-1).clamp(-1, 1))
    return angle <= math.pi * threshold


def load_spherical_mapper(weights: str | Path | None = None, *, dim: int = 768, seed: int = 0,
                          progress: bool = True) -> tuple[SphericalMapper, dict[str, Any]]:
    """The mapper with ``weights``: None for the released file (downloaded to the torch hub cache on first
    use and checked against its git blob id), a path to a checkpoint of theirs, or ``random`` (seeded; tests).
    Returns the model in eval mode and the provenance to record."""
    resolved, info = resolve_weights(SPHERE_MAPPER_URL, SPHERE_MAPPER_FILE, weights, progress=progress)
    if resolved is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mapper = SphericalMapper(dim)
        return mapper.eval(), {**info, "seed": seed}
    if weights is None and git_blob_id(resolved) != SPHERE_MAPPER_GIT_BLOB:
        raise DataError(f"{resolved} is not the released spherical mapper (git blob {SPHERE_MAPPER_GIT_BLOB})",
                        hint=f"delete it and run again to download {SPHERE_MAPPER_URL}")
    content = read_checkpoint_file(resolved, what="spherical-mapper checkpoint")
    # their checkpoints hold the whole DINOMapper less DINOv2; the mapper's tensors are under sphere_mapper.
    prefix = "sphere_mapper."
    state = {k[len(prefix):]: v for k, v in content.items() if k.startswith(prefix)} or content
    mapper = SphericalMapper(dim)
    try:
        mapper.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"{resolved} does not fit the spherical mapper for {dim}-channel features: "
                          f"{str(exc).splitlines()[0]}",
                          hint="pass DIY-SC's ckpts/sph_map/spair71k/ckpts/200.pth or a SphericalMaps checkpoint "
                          "of the same backbone") from None
    return mapper.eval(), info


__all__ = ["RANDOM", "SPHERE_THRESHOLD", "SphericalMapper", "load_spherical_mapper", "sphere_agreement"]
