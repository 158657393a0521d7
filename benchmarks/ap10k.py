"""AP-10K as a correspondence benchmark (Zhang et al., "Telling Left from Right", CVPR 2024; GeoAware-SC).

Pairs of AP-10K animal images (Yu et al., NeurIPS 2021 Datasets and Benchmarks) with 17 keypoints, in three
settings of growing difficulty: two animals of one species, of two species of one family, of two families.
The pairs are built from the raw download by ``corrbench build-ap10k`` (see
``corrbench.datasets.ap10k.build`` for the protocol and where corrbench's deterministic build differs from the
reference scripts); folders built by GeoAware-SC or MARCO are read as well, and every result records the hash
of the pair list it scored and the crowd rule its folder was built with (the papers': GeoAware-SC's list).

Protocol: threshold = max(w, h) of the target's COCO box, keypoints visible (v > 0) in both images,
``<=`` (GeoAware-SC itself uses ``<``), the original image frame, per-image PCK pooled over all pairs (MARCO
and GeoAware-SC report per image).
"""

from dataclasses import replace

from corrbench.protocol import BenchmarkSpec, Protocol

_SOURCE = (
    "Zhang et al. 2024, Telling Left from Right (GeoAware-SC), benchmark on AP-10K (Yu et al. 2021); "
    "pairs built by `corrbench build-ap10k`"
)

AP10K_INTRA_SPECIES = BenchmarkSpec(
    name="ap10k-intra-species",
    # 2: `corrbench build-ap10k` drops the images of GeoAware-SC's published crowd list by default (v1 folders
    # were built with the derived "more than one annotation" rule, which selects other test images)
    version=2,
    description="AP-10K animal pairs of one species (test split, bbox threshold, v > 0)",
    dataset="ap10k",
    data_dir="AP-10K",
    split="test",
    protocol=Protocol(threshold="bbox", comparison="<=", frame="original", pck_by="image", average="all"),
    adapter_options={"setting": "intra-species", "visibility": "v>0"},
    source=_SOURCE,
)

AP10K_CROSS_SPECIES = replace(
    AP10K_INTRA_SPECIES,
    name="ap10k-cross-species",
    description="AP-10K animal pairs of two species of one family (test split, bbox threshold, v > 0)",
    adapter_options={"setting": "cross-species", "visibility": "v>0"},
)

AP10K_CROSS_FAMILY = replace(
    AP10K_INTRA_SPECIES,
    name="ap10k-cross-family",
    description="AP-10K animal pairs of two families (test split, bbox threshold, v > 0)",
    adapter_options={"setting": "cross-family", "visibility": "v>0"},
)
