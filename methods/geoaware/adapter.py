"""GeoAware-SC's feature adapter (``AggregationNetwork``), state-dict compatible with the authors' checkpoints.

Architecture (Junyi42/GeoAware-SC ``model_utils/projection_network.py`` + ``model_utils/resnet.py``, identical in
odunkel/DIY-SC and VICO-UoE/JamaisVu): the input ``(B, sum(feature_dims), h, w)`` is the channel concatenation of
the per-layer feature maps (SD s3, s4, s5 then DINOv2 in GeoAware-SC; DINOv2 alone in DIY-SC's ``ONLY_DINO``).
Each layer's slice goes through its own bottleneck stage (one detectron2-style ``BottleneckBlock``: 1x1 conv ->
GN -> ReLU, 3x3 conv -> GN -> ReLU, 1x1 conv -> GN, plus a shortcut that is a 1x1 conv + GN when the widths
differ and the identity otherwise, then ReLU; every conv without bias, bottleneck width ``projection_dim // 4``,
32 GroupNorm groups); the stage outputs, each ``projection_dim`` wide, are summed with softmax-normalised mixing
weights. That weighted sum is the refined feature map (the "projection"). Convolution weights start from
``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` (detectron2's ``c2_msra_fill``), mixing weights from ones.

Differences from the authors' class, none of which changes outputs or checkpoint keys:

- their ``save_timestep`` loop (one bottleneck shared by several SD timesteps) is fixed at their only setting, one
  timestep, so there is one mixing weight per layer; their unused ``last_layer``/``pos_embedding`` hooks are gone;
- ``logit_scale`` (``log(1/0.07)``) and ``self_logit_scale`` (``log(contrastive_temp)``, 10) are kept as
  parameters: the authors' training losses read them and their checkpoints hold them;
- ``feature_dropout`` is their ``feat_map_dropout`` (dropout on the input maps while training; 0.2 in their
  training scripts' ``FEAT_MAP_DROPOUT``).

Loading (``load_adapter_state``): the authors' ``load_pretrained_weights`` copies the checkpoint's first four
mixing weights into the model and, when the sizes differ, sets the model's fifth to zero (it exists so a
4-layer SD+DINOv2 checkpoint starts a 5-layer model), and loads every other key non-strictly. corrbench does the
same for the mixing weights — a checkpoint with fewer mixing weights than the model fills the first ones and
the model's extra ones become 0 (their code handles only 4 -> 5; with more extra weights it zeroes the fifth and keeps the others' initial ones, which corrbench does not copy) — but is strict about every other key (a missing, unexpected or mis-shaped key
is a ConfigError naming the file) except the stages of the layers beyond the checkpoint's mixing weights, which
keep their initialisation as in the authors' non-strict load, and refuses a checkpoint with MORE mixing weights than the model (their code
fails there too).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from corrbench.errors import ConfigError

#: GroupNorm groups of every norm layer (their ``num_norm_groups``).
NORM_GROUPS = 32
#: Initial ``self_logit_scale`` is ``log(CONTRASTIVE_TEMPERATURE)`` (their ``contrastive_temp``).
CONTRASTIVE_TEMPERATURE = 10.0
#: Initial ``logit_scale`` is ``log(1 / CLIP_TEMPERATURE)`` (their CLIP-style scale).
CLIP_TEMPERATURE = 0.07
MIXING_KEY = "mixing_weights"


class ConvGN(nn.Conv2d):
    """A bias-free convolution followed by GroupNorm; the norm is a child named ``norm`` (checkpoint keys
    ``<conv>.weight``, ``<conv>.norm.weight``, ``<conv>.norm.bias``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int):
        super().__init__(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.norm = nn.GroupNorm(groups, out_channels)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class BottleneckStage(nn.Module):
    """One residual bottleneck block: ``in_channels`` -> ``out_channels`` through ``bottleneck`` channels."""

    def __init__(self, in_channels: int, out_channels: int, bottleneck: int, groups: int = NORM_GROUPS,
                 kernel_sizes: Sequence[int] = (1, 3, 1)):
        super().__init__()
        self.conv1 = ConvGN(in_channels, bottleneck, kernel_sizes[0], groups)
        self.conv2 = ConvGN(bottleneck, bottleneck, kernel_sizes[1], groups)
        self.conv3 = ConvGN(bottleneck, out_channels, kernel_sizes[2], groups)
        self.shortcut = ConvGN(in_channels, out_channels, 1, groups) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class AggregationNetwork(nn.Module):
    """Per-layer bottleneck stages mixed by softmax weights (see the module docstring)."""

    def __init__(self, feature_dims: Sequence[int], projection_dim: int = 768, *, norm_groups: int = NORM_GROUPS,
                 feature_dropout: float = 0.0):
        super().__init__()
        self.feature_dims = tuple(int(d) for d in feature_dims)
        if not self.feature_dims or min(self.feature_dims) < 1:
            raise ConfigError(f"AggregationNetwork needs positive feature widths, got {self.feature_dims}")
        bottleneck = projection_dim // 4
        for width in (*self.feature_dims, projection_dim, bottleneck):
            if width % norm_groups:
                raise ConfigError(
                    f"AggregationNetwork: width {width} is not divisible by the {norm_groups} GroupNorm groups",
                    hint=f"feature widths {self.feature_dims} and projection_dim {projection_dim} (and its quarter) "
                    f"must be multiples of {norm_groups}")
        self.projection_dim = projection_dim
        self.feature_dropout = feature_dropout
        # Each stage is wrapped in a Sequential, as in the authors' code: keys read bottleneck_layers.<l>.0.<conv>.
        self.bottleneck_layers = nn.ModuleList(
            nn.Sequential(BottleneckStage(width, projection_dim, bottleneck, norm_groups)) for width in self.feature_dims
        )
        self.mixing_weights = nn.Parameter(torch.ones(len(self.feature_dims)))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / CLIP_TEMPERATURE)))
        self.self_logit_scale = nn.Parameter(torch.tensor(math.log(CONTRASTIVE_TEMPERATURE)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, sum(feature_dims), h, w)`` -> ``(B, projection_dim, h, w)``."""
        if features.ndim != 4 or features.shape[1] != sum(self.feature_dims):
            raise ValueError(f"AggregationNetwork expects (B, {sum(self.feature_dims)}, h, w) maps (layers "
                             f"{self.feature_dims}), got {tuple(features.shape)}")
        if self.feature_dropout > 0 and self.training:
            features = F.dropout(features, p=self.feature_dropout)
        weights = torch.softmax(self.mixing_weights, dim=0)
        slices = torch.split(features, self.feature_dims, dim=1)
        out = None
        for weight, stage, layer in zip(weights, self.bottleneck_layers, slices):
            term = weight * stage(layer)
            out = term if out is None else out + term
        return out


def load_adapter_state(model: AggregationNetwork, state: Mapping[str, torch.Tensor], origin: str) -> None:
    """Load an authors' (or corrbench's) adapter state dict into ``model`` (rules in the module docstring)."""
    own = model.state_dict()
    mixing = state.get(MIXING_KEY)
    # The stages of layers the checkpoint has no mixing weight for keep their initialisation (the authors' 4 -> 5).
    known_layers = mixing.numel() if mixing is not None and mixing.ndim == 1 else len(model.feature_dims)
    extra_stages = tuple(f"bottleneck_layers.{layer}." for layer in range(known_layers, len(model.feature_dims)))
    missing = [k for k in own if k not in state and not k.startswith(extra_stages)]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and k != MIXING_KEY and tuple(state[k].shape) != tuple(own[k].shape)]
    if mixing is not None and (mixing.ndim != 1 or mixing.numel() > own[MIXING_KEY].numel()):
        mismatched.append(f"{MIXING_KEY}: file {tuple(mixing.shape)} vs model {tuple(own[MIXING_KEY].shape)} "
                          "(a checkpoint may have fewer mixing weights than the model, never more)")
    if missing or unexpected or mismatched:
        parts = [f"{len(items)} {label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected),
                                      ("with a wrong shape", mismatched)) if items]
        raise ConfigError(
            f"{origin} does not fit the adapter (layers {model.feature_dims} -> {model.projection_dim}): "
            + "; ".join(parts),
            hint="the adapter's layer widths come from the feature sources (DINOv2 ViT-B/14: 768; SD+DINOv2: "
            "640,1280,1280,768) and projection_dim from the option; they must be the checkpoint's")
    merged = {**own, **state}
    filled = own[MIXING_KEY].clone().zero_()  # the authors zero the model's extra (fifth) mixing weight
    filled[: mixing.numel()] = mixing
    merged[MIXING_KEY] = filled
    model.load_state_dict(merged, strict=True)
