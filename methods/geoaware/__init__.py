"""The GeoAware-SC family (GeoAware-SC "Telling Left from Right", DIY-SC, Jamais Vu): frozen foundation features
refined by GeoAware-SC's aggregation adapter and matched with its window soft-argmax. corrbench's own
implementation, equal in behaviour and checkpoint layout to the authors' released code. One concern per file:

- ``features``: DINOv2 ViT-B/14 tokens on the family's 840 px canvas, and the hook for other feature sources;
- ``adapter``: the ``AggregationNetwork`` and loading the authors' checkpoints;
- ``matcher``: ``GeoAwareMatcher``, the released matching rule;
- ``pose_alignment``: GeoAware-SC's test-time adaptive pose alignment (flip tables, criterion, replacement rule);
- ``weights``: the released checkpoints (DIY-SC's DINOv2 adapter) and where unreleased ones were expected;
- ``members``: the registered methods ``diy-sc``, ``geoaware-sc-dino``, ``jamais-vu``.

Python use::

    from corrbench.methods.geoaware import DIYSC

    matcher = DIYSC()                                   # official DINOv2 ViT-B/14 + the released DIY-SC adapter
    src, trg = matcher.extract([src_image, trg_image])  # (3, H, W) images in [0, 1], original size
    points = matcher.match_maps(src, trg, torch.tensor([[120.0, 45.0]]))  # original target pixels
"""

from .adapter import AggregationNetwork, BottleneckStage, load_adapter_state
from .features import (FAMILY_RESOLUTION, DINOv2Source, family_canvas, family_transform, register_feature_source)
from .matcher import GeoAwareMatcher, transfer_canvas_points
from .members import DIYSC, GeoAwareSCDino, JamaisVu
from .weights import DIY_SC_DINO, ReleasedCheckpoint, UnreleasedCheckpoint, resolve_adapter_checkpoint

__all__ = [
    "DIYSC",
    "DIY_SC_DINO",
    "FAMILY_RESOLUTION",
    "AggregationNetwork",
    "BottleneckStage",
    "DINOv2Source",
    "GeoAwareMatcher",
    "GeoAwareSCDino",
    "JamaisVu",
    "ReleasedCheckpoint",
    "UnreleasedCheckpoint",
    "family_canvas",
    "family_transform",
    "load_adapter_state",
    "register_feature_source",
    "resolve_adapter_checkpoint",
    "transfer_canvas_points",
]
