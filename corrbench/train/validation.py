"""Validation during training: the benchmark's own scoring of the method's own inference on the ``val`` pairs.

It predicts and scores through ``corrbench.evaluate``'s loops (``predict_pairs``, ``score_pairs``), as
``corrbench run`` does, but in memory: no prediction store, a fresh feature cache before and after (the
weights changed since the last validation), and the matcher's train/eval mode restored afterwards.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .. import evaluate
from ..feature_cache import FeatureCache

#: The validation number that picks the best checkpoint: PCK@0.1, per image, pooled over all pairs.
SELECTION_METRIC = ("pck", "image", "all", "0.1")


def validate(matcher: nn.Module, pairs: Sequence[Any], spec: Any, device: torch.device, dtype: str,
             batch_size: int, workers: int = 0, progress: bool = False) -> dict[str, Any]:
    """Predict ``pairs`` with the matcher's own inference and score them with the benchmark's protocol.

    Returns the ``PCKAccumulator.summary()`` (every aggregation, in percent).
    """
    _reset_feature_cache(matcher)
    was_training = matcher.training
    matcher.eval()
    predictions: dict[str, Any] = {}
    for pair_ids, points in evaluate.predict_pairs(matcher, pairs, device=device, dtype=dtype, batch_size=batch_size,
                                          workers=workers, progress=progress, desc="validate"):
        predictions.update(zip(pair_ids, points))
    _reset_feature_cache(matcher)
    matcher.train(was_training)
    return evaluate.score_pairs(spec.protocol, pairs, predictions).summary()


def _reset_feature_cache(matcher: nn.Module) -> None:
    """A new, empty feature cache of the same size: the weights have changed, cached features are stale."""
    cache = getattr(matcher, "feature_cache", None)
    if isinstance(cache, FeatureCache):
        matcher.feature_cache = FeatureCache(cache.max_bytes)


def selection_value(summary: Mapping[str, Any]) -> float | None:
    metric, by, avg, alpha = SELECTION_METRIC
    try:
        return summary[metric][by][avg][alpha]
    except KeyError:
        raise ConfigError(f"the benchmark's protocol computes no PCK@{alpha}, which selects the best checkpoint") from None
