"""MARCO's MP-100 generalisation benchmark: five domains of 2,000 same-category pairs (MARCO, Supp. G).

Unseen keypoints: human face (68 landmarks), apparel items (12 DeepFashion2 categories). Unseen categories:
animal body (32), animal face (26), home furniture (4); categories overlapping SPair-71k's training classes
are removed. The pairs are MARCO's released lists (``adapter_options["pairs"] = "official"``), installed by
``corrbench build-mp100 --official``; lists rebuilt by ``corrbench build-mp100`` are another pair set, read
with ``pairs="rebuilt"`` in a spec of your own.

Protocol, checked against MARCO's code: threshold = max side of the target object box (MARCO's
``datasets/mp100.py``: ``max(w, h)`` of the COCO box), comparison ``<=`` (``util/evaluator.py``), per-image
PCK pooled over all pairs (``configs/dataset/mp-100.yaml``: ``pck_by: image``; the evaluator averages over
all pairs). MARCO computes alphas 0.01 to 0.2 and the paper reports 0.05, 0.10 and 0.15 (Table 14; 0.10 in
Table 2); corrbench computes all five. Differences, by design: PCK is measured in the original image
(MARCO measures in its 770 x 770 stretched square; ``frame="square:770"`` reproduces that) and keypoints
are matched by index with mutual visibility instead of MARCO's truncation of the concatenated visible
keypoints (``corrbench.datasets.mp100.adapter`` explains the difference; in animal body it changes the rows of 1,543 of
the 2,000 released pairs, see ``benchmarks/marco_frame.py``).
"""

from dataclasses import replace

from corrbench.protocol import BenchmarkSpec, Protocol

_SOURCE = (
    "MARCO (Supp. G, Tables 2 and 14); MP-100 (Xu et al., ECCV 2022); pair lists "
    "https://github.com/visinf/visinf.github.io/raw/main/MARCO/annotations/mp100_pairs.zip"
)

# v2: the release's face record lists no keypoint names ("keypoints": []); v1 rejected every annotation for
# it and scored none of the 2,000 pairs on the real files, v2 reads the 68 keypoints of each annotation.
MP100_HUMAN_FACE = BenchmarkSpec(
    name="mp100-human-face",
    version=2,
    description="MP-100 human face (MARCO): 2,000 pairs, 68 unseen facial landmarks, target-box threshold",
    dataset="mp100",
    data_dir="MP-100",
    split="test",
    protocol=Protocol(threshold="bbox", comparison="<=", frame="original", pck_by="image", average="all"),
    adapter_options={"domain": "human_face", "pairs": "official"},
    source=_SOURCE,
)

MP100_APPAREL = replace(
    MP100_HUMAN_FACE,
    name="mp100-apparel",
    description="MP-100 apparel items (MARCO): 2,000 pairs over 12 DeepFashion2 categories, unseen keypoints",
    adapter_options={"domain": "clothing", "pairs": "official"},
)

MP100_ANIMAL_BODY = replace(
    MP100_HUMAN_FACE,
    name="mp100-animal-body",
    description="MP-100 animal body (MARCO): 2,000 pairs over 32 species unseen in SPair-71k",
    adapter_options={"domain": "animal_body_unseen", "pairs": "official"},
)

MP100_ANIMAL_FACE = replace(
    MP100_HUMAN_FACE,
    name="mp100-animal-face",
    description="MP-100 animal face (MARCO): 2,000 pairs over 26 AnimalWeb species unseen in SPair-71k",
    adapter_options={"domain": "animal_face", "pairs": "official"},
)

MP100_HOME_FURNITURE = replace(
    MP100_HUMAN_FACE,
    name="mp100-home-furniture",
    description="MP-100 home furniture (MARCO): 2,000 pairs of sofa, table, bed, swivel chair",
    adapter_options={"domain": "furniture", "pairs": "official"},
)
