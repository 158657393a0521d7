"""The Matcher contract every method implements, and FeatureMatcher for descriptor-based methods.

A subclass writes ``match(batch) -> MatchOutput``; callers use ``predict(batch)``, which runs ``match``
without gradients and checks the answer (one finite point per query, ``(B, N, 2)``, in the original
target-image frame), so a wrong subclass fails loudly with its name in the message.

Options: a subclass declares ``Config``, a dataclass of defaults whose fields may declare their meaning and
valid values with ``corrbench.config.option``. ``Matcher(**options)`` (or ``--set key=value`` on the command
line) overrides them strictly: unknown keys, unparsable or out-of-range values and unused options are errors.
``info()`` returns what goes into a result: class, merged config, weights source and hash, parameter counts.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from .config import build_config, config_to_json
from .errors import MatcherContractError
from .feature_cache import FeatureCache
from .files import json_identity_hash
from .geometry import cells_to_pixels, pixels_to_cells
from .similarity import Localizer, sample_descriptors, similarity_maps
from .types import FeatureMap, MatchOutput, PairBatch

#: How far outside the target image a prediction may fall before it is taken for a frame mix-up (a point
#: in a resized frame, or (y, x) order), as a fraction of the image side.
_FRAME_MARGIN = 0.5


class Matcher(nn.Module, metaclass=abc.ABCMeta):
    """Base class of every method. Subclasses set ``Config`` and implement ``match``."""

    @dataclasses.dataclass
    class Config:
        pass

    #: One line for ``corrbench ls methods``.
    description: ClassVar[str] = ""
    #: Test-only: the harness adds the target keypoints to the batch (``batch.ground_truth``); results say so.
    uses_ground_truth: ClassVar[bool] = False
    #: Inputs beyond images and keypoints that the method needs, e.g. ``{"masks"}``.
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options: Any):
        super().__init__()
        self.config = build_config(type(self).Config, options, type(self).__name__)

    # -- the contract -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def match(self, batch: PairBatch) -> MatchOutput:
        """Predict target points for every source keypoint of every pair in the batch."""

    def predict(self, batch: PairBatch) -> MatchOutput:
        """Run ``match`` without gradients and validate its output against the contract."""
        with torch.inference_mode():
            output = self.match(batch)
        self._validate(batch, output)
        return output

    def _validate(self, batch: PairBatch, output: Any) -> None:
        name = type(self).__name__
        if not isinstance(output, MatchOutput):
            raise MatcherContractError(f"{name}.match returned {type(output).__name__}, expected MatchOutput")
        points = output.points
        expected = (batch.size, batch.max_keypoints, 2)
        if not isinstance(points, torch.Tensor) or tuple(points.shape) != expected:
            got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
            raise MatcherContractError(f"{name}.match returned points of shape {got}, expected {expected} (B, N, 2)")
        if not points.is_floating_point():
            raise MatcherContractError(f"{name}.match returned {points.dtype} points; use a floating dtype")
        mask = batch.query_mask.to(points.device)
        queried = points[mask]
        if not torch.isfinite(queried).all():
            raise MatcherContractError(f"{name}.match returned non-finite points for queried keypoints")
        if output.scores is not None and tuple(output.scores.shape) != expected[:2]:
            raise MatcherContractError(
                f"{name}.match returned scores of shape {tuple(output.scores.shape)}, expected {expected[:2]}"
            )
        sizes = torch.tensor(batch.trg_sizes, dtype=points.dtype, device=points.device)[:, None, :]
        low, high = -0.5 - _FRAME_MARGIN * sizes, sizes - 0.5 + _FRAME_MARGIN * sizes
        outside = ((points < low) | (points > high)).any(dim=-1) & mask
        if outside.any():
            b, n = (int(i) for i in outside.nonzero()[0])
            raise MatcherContractError(
                f"{name}.match returned {points[b, n].tolist()} for pair {batch.pair_ids[b]!r}, far outside the "
                f"target image of size (W, H) = {tuple(batch.trg_sizes[b])}",
                hint="answer in pixels of the ORIGINAL target image as (x, y); map resized-frame points back "
                "with the ResizeTransform's inverse",
            )

    # -- description ----------------------------------------------------------------------------------------
    def weights_info(self) -> dict[str, Any]:
        """Where the weights came from: ``{"source": ..., "sha256": ...}``; "none" for weight-free methods."""
        return {"source": "none", "sha256": None}

    def parameter_counts(self) -> dict[str, int]:
        params = list(self.parameters())
        return {
            "total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
        }

    def info(self) -> dict[str, Any]:
        cls = type(self)
        return {
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "config": config_to_json(self.config),
            "weights": self.weights_info(),
            "parameters": self.parameter_counts(),
            "uses_ground_truth": cls.uses_ground_truth,
        }

    @property
    def device(self) -> torch.device:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")


class FeatureMatcher(Matcher):
    """A Matcher that describes each image independently and matches descriptors.

    Subclasses implement ``extract(images) -> list[FeatureMap]`` and ``build_localizer()``; this class
    caches each image's features (``feature_cache``), samples source descriptors at the query points,
    compares them with the target map and localises the best match, mapping cells back to original pixels
    through each FeatureMap's transform and cell rule.

    Options named in ``matching_options`` only change matching, not features, and stay out of the cache key.
    """

    matching_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.feature_cache = FeatureCache()
        self.localizer: Localizer = self.build_localizer()

    @abc.abstractmethod
    def extract(self, images: Sequence[torch.Tensor]) -> list[FeatureMap]:
        """One FeatureMap per ``(3, H, W)`` image in [0, 1], in order."""

    @abc.abstractmethod
    def build_localizer(self) -> Localizer:
        """The localiser this method uses (see ``corrbench.localizers.build_localizer``)."""

    @property
    def normalize_features(self) -> bool:
        """Cosine (True) or raw dot-product (False) similarity; the localiser's convention by default."""
        return self.localizer.normalize_features

    def feature_key(self) -> str:
        """A hash of everything that changes this method's features."""
        config = config_to_json(self.config)
        for name in self.matching_options:
            config.pop(name, None)
        identity = {
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "config": config,
            "weights": self.weights_info().get("sha256") or self.weights_info().get("source"),
        }
        return json_identity_hash(identity)[:16]

    def features(self, images: Sequence[torch.Tensor], image_ids: Sequence[str]) -> list[FeatureMap]:
        """FeatureMaps for ``images``, extracting each distinct uncached image once, in one batch."""
        key = self.feature_key()
        found: dict[str, FeatureMap] = {}
        todo: dict[str, torch.Tensor] = {}
        for image, image_id in zip(images, image_ids):
            if image_id in found or image_id in todo:
                continue
            cached = self.feature_cache.get(key, image_id)
            if cached is not None:
                found[image_id] = cached
            else:
                todo[image_id] = image
        if todo:
            maps = self._extract_checked(list(todo.values()), list(todo))
            for image_id, fmap in zip(todo, maps):
                self.feature_cache.put(key, image_id, fmap)
                found[image_id] = fmap
        return [found[i] for i in image_ids]

    def _extract_checked(self, images: list[torch.Tensor], image_ids: list[str]) -> list[FeatureMap]:
        """``extract``, with contract errors naming this class: one finite ``FeatureMap`` per image.

        Non-finite descriptors are an error, not a warning: a NaN similarity map still yields an argmax, so the
        run would score confident garbage (with ``--dtype float16`` an overflow is the usual cause).
        """
        name = type(self).__name__
        try:
            maps = self.extract(images)
        except MatcherContractError as exc:
            raise MatcherContractError(f"{name}.extract: {exc.message}", hint=exc.hint) from None
        if not isinstance(maps, (list, tuple)) or len(maps) != len(images):
            got = f"{len(maps)} items" if isinstance(maps, (list, tuple)) else type(maps).__name__
            raise MatcherContractError(f"{name}.extract returned {got} for {len(images)} images",
                                       hint="return a list with one FeatureMap per image, in order")
        for image_id, fmap in zip(image_ids, maps):
            if not isinstance(fmap, FeatureMap):
                raise MatcherContractError(f"{name}.extract returned a {type(fmap).__name__}, expected FeatureMap",
                                           hint="wrap each image's (C, h, w) tensor: FeatureMap(features, transform)")
            finite = torch.isfinite(fmap.features)
            if not bool(finite.all()):
                bad = int(finite.numel() - finite.sum())
                raise MatcherContractError(
                    f"{name}.extract returned {bad} of {finite.numel()} non-finite descriptor values for image "
                    f"{image_id!r}",
                    hint="check the feature computation (with --dtype float16, try bfloat16 or float32)",
                )
        return list(maps)

    def match(self, batch: PairBatch) -> MatchOutput:
        src_maps = self.features(batch.src_images, batch.src_ids)
        trg_maps = self.features(batch.trg_images, batch.trg_ids)
        points = [
            self.match_maps(src, trg, batch.src_kps[b]) for b, (src, trg) in enumerate(zip(src_maps, trg_maps))
        ]
        return MatchOutput(points=torch.stack(points))

    def match_maps(self, src: FeatureMap, trg: FeatureMap, src_points: torch.Tensor) -> torch.Tensor:
        """Predict target points (original pixels) for ``(N, 2)`` source points (original pixels)."""
        canvas = src.transform.forward(src_points.to(src.features.dtype))
        cells = pixels_to_cells(canvas, src.transform.out_size, src.grid_size, src.cell_rule)
        descriptors = sample_descriptors(src.features[None], cells[None], src.cell_rule)
        scores = similarity_maps(descriptors, trg.features[None], normalize=self.normalize_features)
        target_cells = self.localizer(scores)[0]
        target_canvas = cells_to_pixels(target_cells, trg.transform.out_size, trg.grid_size, trg.cell_rule)
        return trg.transform.inverse(target_canvas).to(src_points.dtype)
