"""SPair-71k and SPair-U: the test pairs of SPair-71k's ``Layout/large``, scored against the target object box.

Both use corrbench's default protocol: ``bbox`` threshold (the larger side of the target ``trg_bndbox``),
``<=`` (hpf, DIFT, MARCO; GeoAware-SC and Jamais Vu use ``<``), the original image frame, per-image PCK pooled
over all pairs (MARCO, GeoAware-SC, Jamais Vu, the unified benchmark). All pairs are scored (no per-category
subsample, unlike GeoAware-SC's default ``--TEST_SAMPLE 20``).
"""

from corrbench.protocol import BenchmarkSpec, Protocol

_DEFAULT_PROTOCOL = Protocol(threshold="bbox", comparison="<=", frame="original", pck_by="image", average="all")

SPAIR71K = BenchmarkSpec(
    name="spair71k",
    version=1,
    description="SPair-71k test split (Layout/large, 12,234 pairs, 18 categories), bbox threshold",
    dataset="spair",
    data_dir="SPair-71k",
    split="test",
    protocol=_DEFAULT_PROTOCOL,
    adapter_options={"pair_dir": "PairAnnotation", "layout": "large"},
    source="Min, Lee, Ponce, Cho. SPair-71k: A Large-scale Benchmark for Semantic Correspondence. "
    "arXiv:1908.10543, 2019. https://cvlab.postech.ac.kr/research/SPair-71k/",
)

# Only SPair-U's new keypoints are scored; PCK-dagger's candidates are those keypoints (see
# corrbench.datasets.spair_u for the assumption and the "new+original" variant).
SPAIR_U = BenchmarkSpec(
    name="spair-u",
    version=1,
    description="SPair-U: SPair-71k test pairs relabelled with 85 unseen keypoint types (8,254 pairs), bbox threshold",
    dataset="spair-u",
    data_dir="SPair-U",
    split="test",
    protocol=_DEFAULT_PROTOCOL,
    adapter_options={"annotation_layout": "auto", "spair_dir": "SPair-71k", "dagger_candidates": "new"},
    source="Mariotti, Du, Bhalgat, Mac Aodha, Bilen. Jamais Vu: Exposing the Generalization Gap in Supervised "
    "Semantic Correspondence. NeurIPS 2025, arXiv:2506.08220. "
    "https://groups.inf.ed.ac.uk/hbilen-data/data/JamaisVuData/SPair-U.zip",
)
