"""The GeoAware-SC family (GeoAware-SC "Telling Left from Right", DIY-SC, Jamais Vu): frozen foundation features
refined by GeoAware-SC's aggregation adapter and matched with its window soft-argmax. corrbench's own
implementation, equal in behaviour and checkpoint layout to the authors' released code. One concern per file:

- ``features``: DINOv2 ViT-B/14 tokens on the family's 840 px canvas, and the hook for other feature sources;
- ``diffusion`` and ``sd_source``: Stable Diffusion features (the optional ``diffusion`` extra) and the ``sd``
  source built on them;
- ``adapter``: the ``AggregationNetwork`` and loading the authors' checkpoints;
- ``matcher``: ``GeoAwareMatcher``, the released matching rule;
- ``pose_alignment``: GeoAware-SC's test-time adaptive pose alignment (flip tables, criterion, replacement rule);
- ``weights``: the released checkpoints (DIY-SC's two adapters, GeoAware-SC's) and where unreleased ones were
  expected;
- ``members``: the registered methods ``diy-sc``, ``diy-sc-sd``, ``geoaware-sc``, ``geoaware-sc-dino``,
  ``jamais-vu``.

Python use::

    from corrbench.methods.geoaware import DIYSC

    matcher = DIYSC()                                   # official DINOv2 ViT-B/14 + the released DIY-SC adapter
    src, trg = matcher.extract([src_image, trg_image])  # (3, H, W) images in [0, 1], original size
    points = matcher.match_maps(src, trg, torch.tensor([[120.0, 45.0]]))  # original target pixels
"""

from .adapter import AggregationNetwork, BottleneckStage, load_adapter_state
from .features import (FAMILY_RESOLUTION, DINOv2Source, family_canvas, family_transform, register_feature_source)
from .matcher import GeoAwareMatcher, transfer_canvas_points
from .members import DIYSC, DIYSCSD, GeoAwareSC, GeoAwareSCDino, JamaisVu
from .sd_source import StableDiffusionSource  # registers the "sd" feature source
from .weights import (DIY_SC_DINO, DIY_SC_SD, GEOAWARE_SC, ReleasedCheckpoint, UnreleasedCheckpoint,
                      resolve_adapter_checkpoint)

__all__ = [
    "DIYSC",
    "DIYSCSD",
    "DIY_SC_DINO",
    "DIY_SC_SD",
    "FAMILY_RESOLUTION",
    "GEOAWARE_SC",
    "AggregationNetwork",
    "BottleneckStage",
    "DINOv2Source",
    "GeoAwareMatcher",
    "GeoAwareSC",
    "GeoAwareSCDino",
    "JamaisVu",
    "ReleasedCheckpoint",
    "StableDiffusionSource",
    "UnreleasedCheckpoint",
    "family_canvas",
    "family_transform",
    "load_adapter_state",
    "register_feature_source",
    "resolve_adapter_checkpoint",
    "transfer_canvas_points",
]
