"""The family's FeatureMatcher: frozen features -> adapter -> GeoAware-SC's released matching rule.

The rule (Junyi42/GeoAware-SC ``utils/utils_correspondence.py``: ``kpts_to_patch_idx``,
``calculate_keypoint_transformation`` with ``SOFT_EVAL``, ``get_flow``, ``soft_argmax``; the same in DIY-SC and
Jamais Vu), on the family canvas (``features.family_transform``, 840 px, 60 x 60 cells of ``stride = 14`` px):

- descriptors: the adapter's output divided by its L2 norm + 1e-10 (``normalize_feats``); similarity = dot
  product (cosine);
- source point -> cell: the cell that CONTAINS it, ``floor(x * g / S)`` (no bilinear sampling), as
  ``kpts_to_patch_idx`` (clamped to the grid here; never active for a point inside the image);
- localisation (``localizer=window-soft-argmax``, their evaluation configs' ``SOFT_EVAL: true``): the target map's
  argmax, a window of radius ``window`` cells around it (7: ``SOFT_EVAL_WINDOW``, 15 x 15 cells), scores OUTSIDE
  the window set to 0 (not removed) and a softmax over all cells at ``temperature`` 0.02 (``soft_argmax``'s
  ``beta``), the expectation of the cell coordinates, clamped to ``[0, g - 1]``. corrbench's
  ``window_soft_argmax`` does this with ``outside="zero"``: its default leaves the outside cells out of the softmax,
  which differs from the authors' when the peak is weak, so the authors' variant is the family's default;
  ``localizer=argmax`` is their ``SOFT_EVAL: false``;
- cell -> point: ``x = c * stride + stride // 2`` (14 c + 7 at 840 px: the floor of the half stride, not the
  patch centre 14 c + 6.5), then the inverse of the canvas transform to original pixels.

``pose_alignment=spair71k`` / ``ap10k`` adds GeoAware-SC's test-time adaptive pose alignment
(``pose_alignment.py``), deciding by ``pose_criterion`` (``mask``: the authors' default, on the pairs' foreground
masks; ``mutual-nn``: their ``--MUTUAL_NN``); off by default, as in every supervised evaluation config. The zero-shot evaluation
(``DUMMY_NET``: no adapter, per-source normalisation) is not a member here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import torch

from corrbench.backbones.weights import RANDOM
from corrbench.config import Rule, option
from corrbench.errors import ConfigError
from corrbench.geometry import ResizeTransform, resize_image
from corrbench.localizers import build_localizer
from corrbench.matcher import FeatureMatcher
from corrbench.similarity import Localizer
from corrbench.types import FeatureMap, MatchOutput, PairBatch

from .adapter import AggregationNetwork, load_adapter_state
from .pose_alignment import CRITERIA, TABLES, flip_groups, flip_plan, masked_nn_distance, mutual_nn_distance
from .features import (FAMILY_BACKBONE, FAMILY_RESOLUTION, INTERPOLATIONS, PATCH, build_sources, check_sources,
                       concatenated_features)
from .weights import ReleasedCheckpoint, UnreleasedCheckpoint, check_adapter_checkpoint, resolve_adapter_checkpoint

#: ``normalize_feats``'s epsilon: descriptors are ``f / (|f| + NORM_EPS)``.
NORM_EPS = 1e-10
LOCALIZERS = ("window-soft-argmax", "argmax")
#: A window radius no grid reaches: the soft-argmax of ``window=0``.
WHOLE_MAP = 1 << 20


def normalize_descriptors(features: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The authors' ``normalize_feats``: divide by the L2 norm plus ``NORM_EPS`` (not ``F.normalize``'s max)."""
    return features / (torch.linalg.vector_norm(features, dim=dim, keepdim=True) + NORM_EPS)


def containing_cells(canvas_points: torch.Tensor, canvas: int, grid: int) -> torch.Tensor:
    """``(N, 2)`` canvas pixels -> ``(N, 2)`` long cells containing them, ``floor(x * grid / canvas)`` computed as
    the authors do (``grid / canvas`` in float64 times the float32 point), clamped to the grid."""
    scaled = canvas_points.to(torch.float64) * (grid / canvas)
    return scaled.floor().long().clamp(0, grid - 1)


def cells_to_canvas(cells: torch.Tensor, canvas: int, grid: int) -> torch.Tensor:
    """Continuous cells -> canvas pixels ``c * stride + stride // 2`` (``calculate_keypoint_transformation``)."""
    stride = canvas / grid
    return cells * stride + stride // 2


def family_localizer(name: str = "window-soft-argmax", window: int = 7, temperature: float = 0.02) -> Localizer:
    """The authors' localiser: ``argmax`` (``SOFT_EVAL: false``) or their window soft-argmax (module docstring)."""
    if name == "argmax":
        return build_localizer("argmax")
    # window 0 is the authors' plain soft-argmax over the whole map (get_flow skips the window), not one cell
    radius = window if window > 0 else WHOLE_MAP
    return build_localizer("window-soft-argmax", radius=radius, temperature=temperature, outside="zero")


def transfer_canvas_points(src_features: torch.Tensor, trg_features: torch.Tensor, canvas_points: torch.Tensor,
                           canvas: int, localizer: Localizer) -> torch.Tensor:
    """The released rule on one pair: ``(C, g, g)`` normalised descriptor maps, ``(N, 2)`` source canvas pixels ->
    ``(N, 2)`` target canvas pixels (float64)."""
    grid = int(src_features.shape[-1])
    cells = containing_cells(canvas_points, canvas, grid)
    descriptors = src_features[:, cells[:, 1], cells[:, 0]].T  # (N, C)
    scores = (descriptors @ trg_features.flatten(1)).view(1, -1, *trg_features.shape[-2:])
    # Localised in float64: at temperature 0.02 a weak peak spreads weight over the ~3600 zeroed outside cells, and
    # a float32 expectation over them drifts by ~0.007 px at 840 px (the authors' float32 code stays within 1e-4).
    target = localizer(scores.double())[0].clamp(0, grid - 1)
    return cells_to_canvas(target, canvas, grid)


def pose_aligned_canvas_points(src_features: torch.Tensor, mirrored_features: torch.Tensor,
                               trg_features: torch.Tensor, canvas_points: torch.Tensor, query: Sequence[int],
                               replace: Sequence[bool], canvas: int, localizer: Localizer,
                               masks: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """GeoAware-SC's adaptive pose alignment on one pair (``pose_alignment.py``): ``(N, 2)`` source canvas points
    of mutually visible keypoints -> ``(N, 2)`` target canvas points (float64). ``query`` and ``replace`` come from
    ``flip_plan``; the mirrored source is queried at ``canvas - x`` of each row's ``query`` row. ``masks`` (the
    source's, the mirrored source's and the target's canvas masks) select the ``mask`` criterion, else
    ``mutual-nn``."""
    predicted = transfer_canvas_points(src_features, trg_features, canvas_points, canvas, localizer)
    if masks is None:
        original, mirrored = (mutual_nn_distance(f, trg_features) for f in (src_features, mirrored_features))
    else:
        src_mask, mirrored_mask, trg_mask = masks
        original = masked_nn_distance(src_features, trg_features, src_mask, trg_mask)
        mirrored = masked_nn_distance(mirrored_features, trg_features, mirrored_mask, trg_mask)
    if mirrored < original:
        queried = canvas_points[list(query)]
        mirrored_points = torch.stack((canvas - queried[:, 0], queried[:, 1]), dim=-1)
        aligned = transfer_canvas_points(mirrored_features, trg_features, mirrored_points, canvas, localizer)
        take = torch.tensor(list(replace), dtype=torch.bool, device=predicted.device)
        predicted[take] = aligned[take]
    return predicted


def canvas_mask(mask: torch.Tensor, transform: ResizeTransform) -> torch.Tensor:
    """An ``(H, W)`` foreground mask of the original image -> ``(S, S)`` float mask on its canvas (nearest
    resizing, background padding), where the authors' SAM masks live."""
    content = resize_image(mask[None].float(), transform.resized_size, "nearest")[0]
    canvas = content.new_zeros((transform.out_size[1], transform.out_size[0]))
    ox, oy = transform.offset
    canvas[oy : oy + content.shape[0], ox : ox + content.shape[1]] = content
    return canvas


class GeoAwareMatcher(FeatureMatcher):
    """Frozen features (``sources``) refined by GeoAware-SC's adapter, matched by the released rule.

    Members (``members.py``) set ``release`` (their checkpoint) and their paper's defaults.
    """

    description = "GeoAware-SC family: frozen features + aggregation adapter, window soft-argmax"
    matching_options = ("localizer", "window", "temperature", "pose_alignment")
    #: The adapter file ``checkpoint=none`` means.
    release: ClassVar[ReleasedCheckpoint | UnreleasedCheckpoint] = UnreleasedCheckpoint(
        "the family's base class has no checkpoint of its own")

    @dataclasses.dataclass
    class Config:
        weights: str | None = option(None, "backbones: none = the official files (DINOv2: torch hub cache, SD: "
                                     "Hugging Face cache; else download), a path (DINOv2's), or random (every "
                                     "source)")
        checkpoint: str | None = option(None, "adapter: none = the method's released file (downloaded on first "
                                        "use; random when weights=random), a path (the authors' or corrbench's "
                                        "best.pth), or random")
        sources: tuple[str, ...] = option(("dino",), "feature sources, in the adapter's channel order (the "
                                          "authors': sd,dino)")
        projection_dim: int = option(768, "adapter output width (the authors' PROJ_DIM; its quarter, the bottleneck, "
                                     "needs 32 GroupNorm groups)", ge=128, multiple_of=128)
        backbone: str = option(FAMILY_BACKBONE, "DINOv2 variant (the releases: vitb14); smaller ones for tests")
        resolution: int = option(FAMILY_RESOLUTION, "canvas side in pixels: longest side + centred padding "
                                 "(the authors' ANNO_SIZE, 840 = 60 x 60 cells)", ge=PATCH, multiple_of=PATCH)
        interpolation: str = option("pil", "pil: PIL LANCZOS on 8-bit images, as the authors; torch: bilinear on "
                                    "the device", choices=INTERPOLATIONS)
        localizer: str = option("window-soft-argmax", "window-soft-argmax (the authors' SOFT_EVAL) or argmax",
                                choices=LOCALIZERS)
        window: int = option(7, "soft-argmax window radius in cells (SOFT_EVAL_WINDOW; 7 = 15 x 15; 0 = the whole map, as theirs)", ge=0,
                             used_when={"localizer": ("window-soft-argmax",)})
        temperature: float = option(0.02, "soft-argmax temperature on cosine similarities (soft_argmax's beta)",
                                    gt=0, used_when={"localizer": ("window-soft-argmax",)})
        pose_alignment: str = option("off", "GeoAware-SC's test-time adaptive pose alignment (ADAPT_FLIP; the choice "
                                     "by pose_criterion) with the flip table of spair71k or ap10k; off as in "
                                     "every supervised evaluation config", choices=("off", *TABLES))
        pose_criterion: str = option(CRITERIA[0], "pose alignment's choice between the source as is and mirrored: "
                                     "mask (the authors' default: nearest-neighbour distance of foreground cells, "
                                     "on the dataset's masks, the object box where it ships none) or mutual-nn "
                                     "(their MUTUAL_NN)", choices=CRITERIA,
                                     used_when={"pose_alignment": TABLES})
        seed: int = option(0, "initialisation of checkpoint=random and weights=random")

        rules = (Rule(lambda c: len(c.sources) == len(set(c.sources)), "sources {sources} lists a source twice"),)

    def __init__(self, **options: Any):
        super().__init__(**options)
        cfg = self.config
        # weights=random is the offline smoke-test setting: a released adapter on a random backbone means nothing,
        # so the adapter is random too unless a checkpoint is named.
        checkpoint = RANDOM if cfg.checkpoint is None and cfg.weights == RANDOM else cfg.checkpoint
        # Checks that read nothing first: a missing or unreleased checkpoint, then an unusable source (a missing
        # optional extra), fail before the released adapter is downloaded or any backbone read.
        check_adapter_checkpoint(checkpoint, self.release, self.registered_name())
        check_sources(cfg.sources, cfg)
        state, info = resolve_adapter_checkpoint(checkpoint, self.release, self.registered_name())
        self.sources = build_sources(cfg.sources, cfg)
        feature_dims = [d for source in self.sources for d in source.layer_dims]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.adapter = AggregationNetwork(feature_dims, cfg.projection_dim)
        if state is not None:
            load_adapter_state(self.adapter, state, info.get("origin", "the checkpoint"))
        else:
            info = {**info, "seed": cfg.seed}
        self.adapter.requires_grad_(False).eval()
        self._adapter_info = info
        if cfg.pose_alignment != "off" and cfg.pose_criterion == "mask":
            self.requires = frozenset({"masks"})  # the evaluation then loads the pairs' masks

    @classmethod
    def registered_name(cls) -> str:
        return getattr(cls, "method_name", cls.__name__)

    def build_localizer(self) -> Localizer:
        cfg = self.config
        return family_localizer(cfg.localizer, cfg.window, cfg.temperature)

    @property
    def normalize_features(self) -> bool:
        return True  # extract() stores the authors' normalised descriptors

    def weights_info(self) -> dict[str, Any]:
        backbones = {getattr(s, "name", type(s).__name__): s.model.weights_info()
                     for s in self.sources if hasattr(getattr(s, "model", None), "weights_info")}
        return {**self._adapter_info, "sources": backbones}

    def refined_features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(B, projection_dim, g, g)`` adapter outputs (before normalisation) for a list of images."""
        features = concatenated_features(self.sources, images)
        return self.adapter(features.to(next(self.adapter.parameters()).dtype))

    def extract(self, images: Sequence[torch.Tensor]) -> list[FeatureMap]:
        from .features import family_transform

        refined = normalize_descriptors(self.refined_features(images), dim=1)
        size = self.config.resolution
        return [FeatureMap(f, family_transform((int(im.shape[-1]), int(im.shape[-2])), size))
                for f, im in zip(refined, images)]

    def match(self, batch: PairBatch) -> MatchOutput:
        if self.config.pose_alignment == "off":
            return super().match(batch)
        if batch.kp_ids is None:
            raise ConfigError("pose_alignment needs the pairs' keypoint ids, and this batch has none",
                              hint="use pose_alignment=off")
        table = self.config.pose_alignment
        by_mask = self.config.pose_criterion == "mask"
        if by_mask and (batch.src_masks is None or batch.trg_masks is None):
            raise ConfigError("pose_criterion=mask needs the pairs' foreground masks, and this batch has none",
                              hint="use pose_criterion=mutual-nn")
        src_maps = self.features(batch.src_images, batch.src_ids)
        trg_maps = self.features(batch.trg_images, batch.trg_ids)
        mirrored = self.features([image.flip(-1) for image in batch.src_images],
                                 [f"{image_id}#mirrored" for image_id in batch.src_ids])
        points = []
        for b, (src, trg, flipped) in enumerate(zip(src_maps, trg_maps, mirrored)):
            predicted = self.match_maps(src, trg, batch.src_kps[b])  # padding rows too
            rows = len(batch.kp_ids[b])
            if rows:
                query, replace = flip_plan(flip_groups(table, batch.categories[b]), batch.kp_ids[b])
                canvas = src.transform.forward(batch.src_kps[b][:rows].float())
                masks = None
                if by_mask:
                    src_mask = canvas_mask(batch.src_masks[b], src.transform)
                    masks = (src_mask, canvas_mask(batch.src_masks[b].flip(-1), flipped.transform),
                             canvas_mask(batch.trg_masks[b], trg.transform))
                aligned = pose_aligned_canvas_points(src.features.float(), flipped.features.float(),
                                                     trg.features.float(), canvas, query, replace,
                                                     src.transform.out_size[0], self.localizer, masks)
                predicted[:rows] = trg.transform.inverse(aligned).to(predicted.dtype)
            points.append(predicted)
        return MatchOutput(points=torch.stack(points))

    def match_maps(self, src: FeatureMap, trg: FeatureMap, src_points: torch.Tensor) -> torch.Tensor:
        if src.grid_size[0] != src.grid_size[1] or src.transform.out_size[0] != src.transform.out_size[1]:
            raise ConfigError("the GeoAware-SC matching rule needs square canvases and grids")
        canvas = src.transform.forward(src_points.float())
        target = transfer_canvas_points(src.features.float(), trg.features.float(), canvas,
                                        src.transform.out_size[0], self.localizer)
        return trg.transform.inverse(target).to(src_points.dtype)
