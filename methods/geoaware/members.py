"""The registered members of the family, each a ``GeoAwareMatcher`` with its paper's evaluation defaults.

Every member evaluates as the authors' ``pck_train.py --DO_EVAL`` with their evaluation config: 840 px canvas
(``ANNO_SIZE``), 60 x 60 cells, DINOv2 ViT-B/14 last-block tokens, ``PROJ_DIM`` 768, ``SOFT_EVAL: true`` with the
default ``SOFT_EVAL_WINDOW`` 7 and ``soft_argmax``'s temperature 0.02, no test-time flip (``ADAPT_FLIP`` is off in
every supervised evaluation config; only GeoAware-SC's zero-shot config turns it on).

- ``diy-sc`` (DIY-SC, "Do It Yourself", DINOv2-only): odunkel/DIY-SC ``configs/eval_spair.yaml`` with the README's
  ``--ONLY_DINO --LOAD ckpts/0300_dino_spair/best.pth`` (``feature_dims = [768]``); the released adapter is
  downloaded on first use (``weights.DIY_SC_DINO``).
- ``diy-sc-sd`` (DIY-SC, SD + DINOv2, the paper's main row): the same config with the README's ``--LOAD
  ckpts/0280_spair/best.pth`` (``feature_dims = [640, 1280, 1280, 768]``, ``sources=sd,dino``:
  ``sd_source.py``); the released adapter is downloaded on first use (``weights.DIY_SC_SD``).
- ``geoaware-sc`` (GeoAware-SC, SD + DINOv2): Junyi42/GeoAware-SC ``configs/eval_spair.yaml`` as released, i.e.
  ``LOAD: results_spair/best_856.PTH`` (``weights.GEOAWARE_SC``, downloaded on first use), which is the model
  pre-trained on AP-10K and then trained on SPair-71k (their ``train_spair.yaml``): the published "AP-10K
  pretrain" row (85.6 PCK@0.1 on SPair-71k), not the SPair-only one, for which no file is released
  (``checkpoint=PATH`` evaluates your own).
- ``geoaware-sc-dino`` (GeoAware-SC, "Telling Left from Right", DINOv2-only variant): Junyi42/GeoAware-SC
  ``configs/eval_spair.yaml``'s matching with a DINOv2-only adapter. GeoAware-SC's code always builds the SD+DINOv2
  adapter (``feature_dims = [640, 1280, 1280, 768]``); the DINOv2-only adapter is DIY-SC's ``ONLY_DINO`` build of
  the same class. No checkpoint is released: ``checkpoint=PATH`` or ``random``.
- ``jamais-vu`` (Jamais Vu, VICO-UoE/JamaisVu ``configs/eval_spair.yaml``): the authors' adapter is SD+DINOv2
  (``feature_dims = [640, 1280, 1280, 768]``, paper Sec. 4: "bottleneck layers trained on top of frozen DINOv2
  and SD backbones"), so its default ``sources`` is ``sd,dino`` and it needs the Stable Diffusion source;
  ``sources=dino`` evaluates a DINOv2-only adapter trained with its objective. No checkpoint is released.
"""

from __future__ import annotations

import dataclasses

from corrbench.config import redefault

from .matcher import GeoAwareMatcher
from .weights import DIY_SC_DINO, DIY_SC_SD, GEOAWARE_SC, GEOAWARE_SC_DINO, JAMAIS_VU

class SDAndDINOv2Member(GeoAwareMatcher):
    """A member whose adapter reads the authors' input: SD s3, s4, s5, then DINOv2 (``sd_source.py``;
    ``feature_dims = [640, 1280, 1280, 768]``). Not registered itself."""

    @dataclasses.dataclass
    class Config(GeoAwareMatcher.Config):
        sources: tuple[str, ...] = redefault(GeoAwareMatcher.Config, "sources", ("sd", "dino"))


class DIYSC(GeoAwareMatcher):
    description = "DIY-SC: DINOv2 ViT-B/14 + released pseudo-label-trained adapter, 840 px, window soft-argmax"
    method_name = "diy-sc"
    release = DIY_SC_DINO
    trainer = "corrbench.methods.geoaware.training:DIYSCTrainer"


class DIYSCSD(SDAndDINOv2Member):
    description = "DIY-SC: SD + DINOv2 + released pseudo-label-trained adapter, 840 px, window soft-argmax"
    method_name = "diy-sc-sd"
    release = DIY_SC_SD
    trainer = "corrbench.methods.geoaware.training:DIYSCTrainer"


class GeoAwareSC(SDAndDINOv2Member):
    description = "GeoAware-SC: SD + DINOv2 + released adapter (AP-10K pretrain, SPair-71k), window soft-argmax"
    method_name = "geoaware-sc"
    release = GEOAWARE_SC
    trainer = "corrbench.methods.geoaware.training:GeoAwareTrainer"


class GeoAwareSCDino(GeoAwareMatcher):
    description = "GeoAware-SC, DINOv2-only adapter (your checkpoint), 840 px, window soft-argmax"
    method_name = "geoaware-sc-dino"
    release = GEOAWARE_SC_DINO
    trainer = "corrbench.methods.geoaware.training:GeoAwareTrainer"


class JamaisVu(SDAndDINOv2Member):
    description = "Jamais Vu: SD + DINOv2 adapter with category prototypes (your checkpoint), window soft-argmax"
    method_name = "jamais-vu"
    release = JAMAIS_VU
    trainer = "corrbench.methods.geoaware.training:JamaisVuTrainer"
