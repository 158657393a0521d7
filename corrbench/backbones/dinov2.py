"""DINOv2 vision transformers (ViT-S/B/L/g, patch 14, with or without 4 register tokens).

Our own implementation of the architecture released by Meta (facebookresearch/dinov2). Two things are held
equal to the official code, because published numbers depend on them:

- the parameter names and shapes, so the official ``*_pretrain.pth`` files load with ``strict=True`` and the
  checkpoints we save load in the official code;
- the numerics of a forward pass, including how the 37 x 37 positional grid (trained at 518 px) is resized
  for other inputs: the original release resizes by a *scale factor* of ``(n + 0.1) / 37`` without
  antialiasing, the register release to an explicit *size* with antialiasing. Both are bicubic, but they
  sample different positions and use different kernels, so swapping them changes the features.

``load_dinov2`` (below) builds a named variant and fills it with weights; see ``weights.py`` for where the
weights come from. The module API mirrors the official one (``forward_features``, ``get_intermediate_layers``,
``patch_size``, ``embed_dim``, ``num_register_tokens``, ``num_heads``, ``n_blocks``) so code written against
``torch.hub.load("facebookresearch/dinov2", ...)`` works unchanged.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, UnknownNameError

PATCH_SIZE = 14
#: Training resolution of the released weights: 518 px = 37 x 37 patches, hence 1 + 37 * 37 positions.
IMG_SIZE = 518
LAYER_NORM_EPS = 1e-6
#: The hub models use LayerScale initialised to 1.0 (matters only for random initialisation).
LAYER_SCALE_INIT = 1.0
_BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"


@dataclass(frozen=True)
class DinoV2Spec:
    """Everything that distinguishes one released DINOv2 variant from another."""

    name: str  # canonical, e.g. "dinov2_vitl14_reg"
    embed_dim: int
    depth: int
    num_heads: int
    ffn: str  # "mlp" or "swiglu" (the official SwiGLUFFNFused: one packed w12 projection, then w3)
    num_register_tokens: int
    interpolate_antialias: bool
    interpolate_offset: float

    @property
    def filename(self) -> str:
        """Official file name, which is also the name torch.hub caches it under."""
        arch = self.name.removeprefix("dinov2_").removesuffix("_reg")
        suffix = f"_reg{self.num_register_tokens}" if self.num_register_tokens else ""
        return f"dinov2_{arch}{suffix}_pretrain.pth"

    @property
    def url(self) -> str:
        arch = self.name.removeprefix("dinov2_").removesuffix("_reg")
        return f"{_BASE_URL}/dinov2_{arch}/{self.filename}"


def _specs() -> dict[str, DinoV2Spec]:
    sizes = {  # arch: (embed_dim, depth, heads, ffn)
        "vits14": (384, 12, 6, "mlp"),
        "vitb14": (768, 12, 12, "mlp"),
        "vitl14": (1024, 24, 16, "mlp"),
        "vitg14": (1536, 40, 24, "swiglu"),
    }
    specs = {}
    for arch, (dim, depth, heads, ffn) in sizes.items():
        # Flags as the official hub entry points set them: the register release changed the interpolation.
        specs[f"dinov2_{arch}"] = DinoV2Spec(f"dinov2_{arch}", dim, depth, heads, ffn, 0, False, 0.1)
        specs[f"dinov2_{arch}_reg"] = DinoV2Spec(f"dinov2_{arch}_reg", dim, depth, heads, ffn, 4, True, 0.0)
    return specs


DINOV2_SPECS: dict[str, DinoV2Spec] = _specs()


def dinov2_spec(name: str) -> DinoV2Spec:
    """Look up a variant by ``vitl14_reg``, ``dinov2_vitl14_reg`` or ``dinov2-vitl14-reg`` (any case)."""
    key = str(name).strip().lower().replace("-", "_")
    if not key.startswith("dinov2_"):
        key = f"dinov2_{key}"
    if key not in DINOV2_SPECS:
        close = difflib.get_close_matches(key, DINOV2_SPECS, n=3)
        known = ", ".join(n.removeprefix("dinov2_") for n in DINOV2_SPECS)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownNameError(f"unknown DINOv2 model {name!r}", hint=f"{hint}known: {known} (optional 'dinov2_' prefix)")
    return DINOV2_SPECS[key]


# --- layers ---------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Non-overlapping 14 x 14 patches -> tokens, ``(B, 3, H, W) -> (B, H/14 * W/14, D)`` in row-major order."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            # The official model refuses these too; silently cropping would shift every feature.
            raise ValueError(f"input size {h}x{w} (HxW) is not a multiple of the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one packed qkv projection (with bias), through PyTorch's SDPA."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # qkv output is laid out as [q | k | v], each split into heads: (B, N, 3, heads, head_dim).
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # default scale head_dim ** -0.5, as in DINOv2
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """fc1 -> GELU (exact, erf) -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    """SwiGLU feed-forward of ViT-g: ``w3(silu(a) * b)`` where ``[a | b] = w12(x)``.

    The hidden width follows the official ``SwiGLUFFNFused``: two thirds of ``4 * dim``, rounded up to a
    multiple of 8 (4096 for ViT-g), so that the parameter count matches a plain 4x MLP.
    """

    def __init__(self, dim: int, mlp_hidden: int):
        super().__init__()
        hidden = (int(mlp_hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch (parameter name ``gamma`` as in the checkpoints)."""

    def __init__(self, dim: int, init_value: float = LAYER_SCALE_INIT):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma  # not in place: the branch output may be needed by autograd or hooks


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``.

    The two residual branches are separate methods so that adapted variants (e.g. MARCO's adapters, which
    add a term next to the FFN branch) can subclass this block and reuse the same parameters.
    """

    def __init__(self, dim: int, num_heads: int, ffn: str = "mlp", mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        if ffn == "mlp":
            self.mlp: nn.Module = Mlp(dim, hidden)
        elif ffn == "swiglu":
            self.mlp = SwiGLUFFN(dim, hidden)
        else:
            raise ConfigError(f"unknown DINOv2 feed-forward type {ffn!r}", hint="use 'mlp' or 'swiglu'")
        self.ls2 = LayerScale(dim)

    def attn_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.ls1(self.attn(self.norm1(x)))

    def ffn_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.ls2(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_branch(x)
        return x + self.ffn_branch(x)


# --- the model ------------------------------------------------------------------------------------------


class DinoVisionTransformer(nn.Module):
    """A DINOv2 backbone; construct through ``load_dinov2`` or ``DinoVisionTransformer.from_spec``.

    Token order inside the network: ``[CLS, register_1..R, patch_1..N]`` with patches in row-major order.
    Inputs are ``(B, 3, H, W)`` ImageNet-normalised images with ``H`` and ``W`` multiples of 14.
    """

    def __init__(
        self,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        ffn: str = "mlp",
        num_register_tokens: int = 0,
        interpolate_antialias: bool = False,
        interpolate_offset: float = 0.1,
        img_size: int = IMG_SIZE,
        patch_size: int = PATCH_SIZE,
    ):
        super().__init__()
        self.embed_dim = self.num_features = embed_dim
        self.n_blocks = depth
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset
        self.spec: DinoV2Spec | None = None  # set by from_spec: which release this is
        grid = img_size // patch_size

        # Registration order fixes the state_dict order; it follows the official files
        # (cls_token, pos_embed, register_tokens, mask_token, patch_embed, blocks, norm).
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        # Without registers the official model has no such parameter at all (not an empty one).
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        )
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, ffn) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.head = nn.Identity()  # the hub models' head: forward() returns the normalised CLS token
        # Used only by masked-image-modelling training; kept because the checkpoints carry it.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self._weights_info: dict[str, Any] = {"source": "random", "sha256": None}
        self.init_weights()

    @classmethod
    def from_spec(cls, spec: DinoV2Spec | str) -> "DinoVisionTransformer":
        spec = dinov2_spec(spec) if isinstance(spec, str) else spec
        model = cls(spec.embed_dim, spec.depth, spec.num_heads, spec.ffn, spec.num_register_tokens,
                    spec.interpolate_antialias, spec.interpolate_offset)
        model.spec = spec
        model._weights_info = {"name": spec.name, "source": "random", "sha256": None}
        return model

    def init_weights(self) -> None:
        """The training-time initialisation (timm ViT style); what ``weights="random"`` gives."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def weights_info(self) -> dict[str, Any]:
        """Provenance of the loaded weights: ``{"name", "source", "sha256", ...}`` (a copy)."""
        return dict(self._weights_info)

    # --- tokens -----------------------------------------------------------------------------------------

    def interpolate_pos_encoding(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Positional embeddings ``(1, 1 + h*w, D)`` for an image of ``height x width`` pixels.

        ``x`` holds the tokens (CLS + patches); only its dtype is used for the resized result.
        """
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        n_trained = self.pos_embed.shape[1] - 1
        side = int(math.sqrt(n_trained))
        if (grid_h, grid_w) == (side, side):
            return self.pos_embed  # the trained grid (518 px): use it as is, no resampling
        pos = self.pos_embed.float()  # bicubic in full precision, whatever the model's dtype
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        patch_pos = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, D, rows, cols)
        if self.interpolate_offset:
            # Original release: a scale factor slightly above target/37. PyTorch then uses the scale factor
            # itself (not target/37) to place the samples, so the +0.1 changes values, not just the size.
            scale = ((grid_h + self.interpolate_offset) / side, (grid_w + self.interpolate_offset) / side)
            resize: dict[str, Any] = {"scale_factor": scale}
        else:
            resize = {"size": (grid_h, grid_w)}  # register release: exact output size
        patch_pos = F.interpolate(patch_pos, mode="bicubic", antialias=self.interpolate_antialias, **resize)
        if patch_pos.shape[-2:] != (grid_h, grid_w):  # cannot happen for offsets in (0, 1); guard anyway
            raise RuntimeError(f"positional grid resized to {tuple(patch_pos.shape[-2:])}, expected {(grid_h, grid_w)}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat((cls_pos, patch_pos), dim=1).to(x.dtype)

    def prepare_tokens_with_masks(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` -> tokens ``(B, 1 + R + N, D)``; ``masks`` ``(B, N)`` bool -> mask_token."""
        b, _, height, width = x.shape
        x = self.patch_embed(x)
        if masks is not None:
            x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        # Registers are inserted after the positional embedding is added: they carry no position.
        x = x + self.interpolate_pos_encoding(x, height, width)
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]), dim=1)
        return x

    # --- outputs ----------------------------------------------------------------------------------------

    def _split(self, x_prenorm: torch.Tensor, masks: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        x_norm = self.norm(x_prenorm)
        r = self.num_register_tokens
        return {
            "x_norm_clstoken": x_norm[:, 0],
            "x_norm_regtokens": x_norm[:, 1 : r + 1],
            "x_norm_patchtokens": x_norm[:, r + 1 :],
            "x_prenorm": x_prenorm,
            "masks": masks,
        }

    def forward_features(self, x, masks=None):
        """Run all blocks; returns ``x_norm_clstoken (B, D)``, ``x_norm_regtokens (B, R, D)``,
        ``x_norm_patchtokens (B, N, D)``, ``x_prenorm (B, 1 + R + N, D)`` and ``masks``.

        A list of images (of possibly different sizes) gives a list of such dicts.
        """
        if isinstance(x, (list, tuple)):
            masks_list = masks if masks is not None else [None] * len(x)
            return [self.forward_features(xi, mi) for xi, mi in zip(x, masks_list)]
        x = self.prepare_tokens_with_masks(x, masks)
        for block in self.blocks:
            x = block(x)
        return self._split(x, masks)

    def get_intermediate_layers(
        self,
        x: torch.Tensor,
        n: int | Sequence[int] = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        norm: bool = True,
    ) -> tuple:
        """Patch tokens after selected blocks: the last ``n`` if ``n`` is an int, else the block indices in ``n``.

        ``norm`` applies the final LayerNorm to each; ``reshape`` gives ``(B, D, h, w)`` maps instead of
        ``(B, N, D)``; ``return_class_token`` pairs each with its CLS token. Blocks after the last one asked
        for are not run.
        """
        wanted = set(range(self.n_blocks - n, self.n_blocks)) if isinstance(n, int) else {int(i) for i in n}
        if not wanted or min(wanted) < 0 or max(wanted) >= self.n_blocks:
            raise ValueError(f"block indices {sorted(wanted)} out of range for {self.n_blocks} blocks (n={n!r})")
        b, _, height, width = x.shape
        tokens = self.prepare_tokens_with_masks(x)
        outputs = []
        for i, block in enumerate(self.blocks[: max(wanted) + 1]):
            tokens = block(tokens)
            if i in wanted:
                outputs.append(tokens)
        if norm:
            outputs = [self.norm(out) for out in outputs]
        class_tokens = [out[:, 0] for out in outputs]
        outputs = [out[:, 1 + self.num_register_tokens :] for out in outputs]
        if reshape:
            h, w = height // self.patch_size, width // self.patch_size
            outputs = [out.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous() for out in outputs]
        if return_class_token:
            return tuple(zip(outputs, class_tokens))
        return tuple(outputs)

    def forward(self, *args, is_training: bool = False, **kwargs):
        """As the hub models: the normalised CLS token, or the ``forward_features`` dict if ``is_training``."""
        out = self.forward_features(*args, **kwargs)
        return out if is_training else self.head(out["x_norm_clstoken"])


# --- loading --------------------------------------------------------------------------------------------


def expected_state_dict_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official checkpoint of ``name``, from the architecture (no allocation)."""
    with torch.device("meta"):
        model = DinoVisionTransformer.from_spec(name)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Any], origin: str) -> None:
    """Raise ConfigError listing missing, unexpected and wrongly shaped keys (first few of each, with counts)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and hasattr(state_dict[k], "shape") and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or mismatched):
        return

    def listing(label: str, items: list[str], first: int = 5) -> str:
        more = f", ... ({len(items) - first} more)" if len(items) > first else ""
        return f"{len(items)} {label}: {', '.join(items[:first])}{more}"

    parts = [listing(label, items) for label, items in
             (("missing", missing), ("unexpected", unexpected), ("with a wrong shape", mismatched)) if items]
    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    raise ConfigError(
        f"{origin} does not fit {name}: " + "; ".join(parts),
        hint="check that the file is the official checkpoint of this exact variant (size, with/without "
        "registers) and is a plain state dict in the official layout",
    )


def load_dinov2(
    name: str,
    weights: str | Path | Mapping[str, torch.Tensor] | None = None,
    *,
    progress: bool = True,
    seed: int = 0,
) -> DinoVisionTransformer:
    """Build the DINOv2 variant ``name`` (``vits14``/``vitb14``/``vitl14``/``vitg14``, optional ``_reg`` suffix,
    optional ``dinov2_`` prefix) in eval mode, with weights:

    - ``None``: the official release, from the torch hub cache (``<hub dir>/checkpoints/<official name>``),
      downloaded there first if absent;
    - a path to a checkpoint file, or a state dict, in the official layout;
    - ``"random"``: the training initialisation, deterministic given ``seed``; never touches the network.

    Loading is strict (ConfigError lists missing/unexpected/mis-shaped keys). ``model.weights_info()``
    says where the weights came from and the file's sha256.
    """
    from .weights import read_checkpoint_file, resolve_weights

    spec = dinov2_spec(name)
    resolved, info = resolve_weights(spec.url, spec.filename, weights, progress=progress)
    if resolved is None:
        # Fork the RNG so a seeded build neither depends on nor disturbs the caller's random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DinoVisionTransformer.from_spec(spec)
        info = {**info, "seed": seed}
    else:
        if isinstance(resolved, Path):
            state_dict, origin = read_checkpoint_file(resolved, what="state dict"), str(resolved)
        else:
            state_dict, origin = resolved, "the given state dict"
        # Skip the (slow for ViT-g) random init: build on the meta device, check, then allocate empty
        # storage that load_state_dict fills by copying (never aliasing the caller's tensors).
        with torch.device("meta"):
            model = DinoVisionTransformer.from_spec(spec)
        check_state_dict(model, state_dict, origin)
        model.to_empty(device="cpu")
        model.load_state_dict(state_dict, strict=True)
    model._weights_info = {"name": spec.name, **info}
    return model.eval()
