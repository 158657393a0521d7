"""The MARCO network: a frozen DINOv2 with AdaptFormer adapters in its late blocks and a 4x upsampling head.

Released configuration (``configs/model/marco.yaml`` of visinf/MARCO; the paper differs where noted):

- backbone ``dinov2_vitl14_reg`` (ViT-L/14 with 4 registers), frozen;
- adapters in blocks 15..23: the config's ``adaptformer_stages: [15, 24]`` is used as ``range(15, 24)``, so
  9 blocks (the paper's text says "the last 12 layers", its Table 7 "15-24");
- adapter width ``int(0.5 * 1024) = 512``; adapter = LayerNorm (PyTorch's default eps 1e-5) -> Linear(D, d) ->
  ReLU -> Linear(d, D), times 0.1 (the paper writes GELU and no scale). Up-projection weight and both biases
  start at zero, the down-projection weight is Kaiming-uniform (``a = sqrt(5)``), the LayerNorm is (1, 0), so
  at initialisation every adapter outputs exactly zero and the network equals DINOv2;
- the adapter runs in parallel with the feed-forward branch and sees the output of the attention residual:
  ``x = x + ls1(attn(norm1(x)))``, then ``x = x + adapter(x) + ls2(mlp(norm2(x)))``;
- head: 2 stages of ConvTranspose2d(D, D, 2, stride 2) -> GELU -> depthwise 3x3 Conv2d (no bias) ->
  LayerNorm over channels (eps 1e-6, as timm's ``LayerNorm2d``), each with PyTorch's default initialisation;
  applied to the last block's patch tokens after DINOv2's final norm, so a 770 px input (55 x 55 tokens)
  gives 220 x 220 feature cells (one per 3.5 px).

Parameter names equal the authors' (``dino.blocks.15.adapter.down_proj.weight``, ``upscale.0.conv1.weight``,
...), so the trainable part of the state dict is exactly the released checkpoint's ``model`` entry. The
backbone's own names stay those of the official DINOv2 files (``dino.blocks.15.norm1.weight``); the authors'
wrapper renames them (``dino.blocks.15.block.norm1.weight``), but those never appear in a MARCO checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from corrbench.backbones.dinov2 import Block, DinoVisionTransformer, dinov2_spec
from corrbench.errors import ConfigError

ADAPTER_SCALE = 0.1
#: timm's LayerNorm2d default, which the released head uses.
HEAD_NORM_EPS = 1e-6


@dataclass(frozen=True)
class MARCOArchitecture:
    """Everything that decides the shapes of a MARCO network.

    backbone: a DINOv2 variant name (``vitl14_reg`` released; ``vits14`` makes a tiny test model).
    adapter_blocks: ``(start, stop)``: adapters in blocks ``start .. stop - 1`` (the released config's
        ``adaptformer_stages``, read as Python's ``range``).
    bottleneck_factor: adapter width as a fraction of the embedding width; values above 10 are taken as an
        absolute width, as the authors' ``inject_adapters`` does.
    upsampling_stages: number of 2x head stages (0: the head is the identity).
    adapter_scale: the factor the adapter output is multiplied by.
    """

    backbone: str = "vitl14_reg"
    adapter_blocks: tuple[int, int] = (15, 24)
    bottleneck_factor: float = 0.5
    upsampling_stages: int = 2
    adapter_scale: float = ADAPTER_SCALE

    def __post_init__(self) -> None:
        spec = dinov2_spec(self.backbone)  # raises on unknown names
        object.__setattr__(self, "adapter_blocks", tuple(int(b) for b in self.adapter_blocks))
        if len(self.adapter_blocks) != 2:
            raise ConfigError(f"adapter_blocks must be (start, stop), got {self.adapter_blocks}")
        start, stop = self.adapter_blocks
        if not 0 <= start <= stop <= spec.depth:
            raise ConfigError(
                f"adapter_blocks {start}:{stop} does not fit {spec.name}, which has blocks 0..{spec.depth - 1}",
                hint="give (start, stop) with 0 <= start <= stop <= depth; the release uses 15, 24 on ViT-L",
            )
        if self.bottleneck_factor <= 0 or self.upsampling_stages < 0:
            raise ConfigError("bottleneck_factor must be positive and upsampling_stages >= 0")

    @property
    def embed_dim(self) -> int:
        return dinov2_spec(self.backbone).embed_dim

    @property
    def adapted_blocks(self) -> range:
        return range(*self.adapter_blocks)

    @property
    def bottleneck(self) -> int:
        factor = self.bottleneck_factor
        return int(self.embed_dim * factor) if factor <= 10 else int(factor)

    @property
    def upsampling(self) -> int:
        """How many feature cells per patch, per side."""
        return 2**self.upsampling_stages


#: The configuration of the released checkpoint (``marco_release.pth``).
RELEASED = MARCOArchitecture()


class Adapter(nn.Module):
    """AdaptFormer bottleneck: ``up(relu(down(layer_norm(x)))) * scale``; outputs zero at initialisation."""

    def __init__(self, dim: int, bottleneck: int, scale: float = ADAPTER_SCALE):
        super().__init__()
        self.adapter_layer_norm_before = nn.LayerNorm(dim)  # eps 1e-5: nn.LayerNorm's default, as released
        self.down_proj = nn.Linear(dim, bottleneck)
        self.act = nn.ReLU()
        self.up_proj = nn.Linear(bottleneck, dim)
        self.scale = scale
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.down_proj.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down_proj.bias)
            # Zero up-projection: the adapted block starts as the pretrained one.
            nn.init.zeros_(self.up_proj.weight)
            nn.init.zeros_(self.up_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up_proj(self.act(self.down_proj(self.adapter_layer_norm_before(x)))) * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class AdaptedBlock(Block):
    """A DINOv2 block that takes over an existing block's layers and adds an adapter next to its FFN branch.

    The pretrained layers keep their names (``norm1``, ``attn``, ...), so the backbone part of the state dict
    is unchanged; the adapter adds ``adapter.*``.
    """

    def __init__(self, block: Block, bottleneck: int, scale: float = ADAPTER_SCALE):
        nn.Module.__init__(self)  # adopt the given layers instead of building new ones
        for name, layer in block.named_children():
            self.add_module(name, layer)
        dim = block.norm1.normalized_shape[0]
        self.adapter = Adapter(dim, bottleneck, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_branch(x)
        # The adapter sees the same x as the FFN branch; the sum is taken in the released order.
        return x + self.adapter(x) + self.ffn_branch(x)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of ``(B, C, H, W)`` maps (timm's ``LayerNorm2d``: permute, norm, permute)."""

    def __init__(self, channels: int, eps: float = HEAD_NORM_EPS):
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class UpsamplingStage(nn.Module):
    """2x: transposed convolution -> GELU -> depthwise 3x3 convolution (no bias) -> channel LayerNorm."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=False)
        self.norm = LayerNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv2(self.act(self.conv1(x))))


def _is_trainable_key(name: str) -> bool:
    """Adapters and head: the parameters MARCO trains and its checkpoints hold."""
    return name.startswith("upscale.") or ".adapter." in name


class MARCOModel(nn.Module):
    """DINOv2 + adapters (``dino``) and the upsampling head (``upscale``).

    ``forward(images)`` takes ImageNet-normalised ``(B, 3, H, W)`` images (sides multiples of 14) and returns
    ``(B, D, u * H/14, u * W/14)`` feature maps, ``u = 2 ** upsampling_stages``.

    Build it with ``build_marco_model`` (backbone weights + checkpoint) or directly around a DINOv2 you
    already have: ``MARCOModel(architecture, backbone)``. Without a backbone, a randomly initialised one of
    the architecture's variant is created (use ``torch.device("meta")`` to inspect shapes for free).
    """

    def __init__(self, architecture: MARCOArchitecture = RELEASED, backbone: DinoVisionTransformer | None = None):
        super().__init__()
        self.architecture = architecture
        if backbone is None:
            backbone = DinoVisionTransformer.from_spec(architecture.backbone)
        expected = dinov2_spec(architecture.backbone)
        if (backbone.embed_dim, backbone.n_blocks, backbone.num_register_tokens) != (
            expected.embed_dim, expected.depth, expected.num_register_tokens
        ):
            raise ConfigError(
                f"the backbone given ({backbone.embed_dim} wide, {backbone.n_blocks} blocks, "
                f"{backbone.num_register_tokens} registers) is not {expected.name}"
            )
        for index in architecture.adapted_blocks:
            block = backbone.blocks[index]
            if isinstance(block, AdaptedBlock):
                raise ConfigError(f"block {index} of the backbone already has an adapter")
            backbone.blocks[index] = AdaptedBlock(block, architecture.bottleneck, architecture.adapter_scale)
        self.dino = backbone
        dim = architecture.embed_dim
        self.upscale = nn.Sequential(*(UpsamplingStage(dim) for _ in range(architecture.upsampling_stages)))
        self.freeze_backbone()
        #: Where the weights came from; ``build_marco_model`` and ``load_checkpoint`` fill it in.
        self.provenance: dict[str, Any] = {"source": "random", "sha256": None, "backbone": backbone.weights_info()}

    def weights_info(self) -> dict[str, Any]:
        """Provenance: the checkpoint's ``source`` and ``sha256``, and the backbone's under ``backbone``."""
        return {**self.provenance, "backbone": dict(self.provenance.get("backbone", {}))}

    # -- parameters ------------------------------------------------------------------------------------------
    def freeze_backbone(self) -> None:
        """Only adapters and head train, as in the released training script."""
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(_is_trainable_key(name))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Adapters then head, in module order (the order the authors' optimiser sees them)."""
        return [p for name, p in self.named_parameters() if _is_trainable_key(name)]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Exactly what a MARCO checkpoint's ``model`` entry holds (detached; same device as the model)."""
        return {k: v.detach() for k, v in self.state_dict().items() if _is_trainable_key(k)}

    def trainable_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.trainable_state_dict().items()}

    def parameter_counts(self) -> dict[str, int]:
        """``backbone`` (DINOv2), ``adapters``, ``head``, ``total`` and ``trainable``."""
        counts = {"backbone": 0, "adapters": 0, "head": 0}
        for name, parameter in self.named_parameters():
            part = "head" if name.startswith("upscale.") else "adapters" if ".adapter." in name else "backbone"
            counts[part] += parameter.numel()
        counts["total"] = sum(counts.values())
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    # -- features --------------------------------------------------------------------------------------------
    @property
    def patch_size(self) -> int:
        return self.dino.patch_size

    def feature_grid(self, height: int, width: int) -> tuple[int, int]:
        """``(w, h)`` of the feature map for an input of ``height x width`` pixels."""
        u = self.architecture.upsampling
        return width // self.patch_size * u, height // self.patch_size * u

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        (tokens,) = self.dino.get_intermediate_layers(images, n=1, reshape=True, norm=True)
        return self.upscale(tokens)
