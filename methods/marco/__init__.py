"""MARCO (Navigating the Unseen Space of Semantic Correspondence, CVPR 2026; code: visinf/MARCO, Apache-2.0).

corrbench's own implementation, equal in behaviour and checkpoint layout to the released code:

- ``model``: the network (frozen DINOv2 + AdaptFormer adapters + 4x upsampling head);
- ``checkpoint``: the released ``marco_release.pth``, strict loading, saving in the same layout, ``build_marco_model``;
- ``matcher``: the ``marco`` method (``MARCOMatcher``), its preprocessing and matching rule.

Python use::

    from corrbench.methods.marco import MARCOMatcher, build_marco_model

    model = build_marco_model()                        # official DINOv2 ViT-L/14-reg + released checkpoint
    features = model(normalised_images)                # (B, 1024, 4 * H/14, 4 * W/14)
    matcher = MARCOMatcher(model)                      # 770 px, square stretch, the released matching rule
    points = matcher.transfer_points(src_image, trg_image, [[120, 45], [80, 200]])  # original target pixels
"""

from .checkpoint import (
    RELEASE_FILENAME,
    RELEASE_URL,
    build_marco_model,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from .matcher import MARCOMatcher, canvas_transform, predict_canvas_points
from .model import RELEASED, Adapter, AdaptedBlock, MARCOArchitecture, MARCOModel, UpsamplingStage

__all__ = [
    "RELEASED",
    "RELEASE_FILENAME",
    "RELEASE_URL",
    "Adapter",
    "AdaptedBlock",
    "MARCOArchitecture",
    "MARCOMatcher",
    "MARCOModel",
    "UpsamplingStage",
    "build_marco_model",
    "canvas_transform",
    "load_checkpoint",
    "predict_canvas_points",
    "read_checkpoint",
    "save_checkpoint",
]
