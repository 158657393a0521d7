"""PF-PASCAL and PF-WILLOW (Proposal Flow), test pairs, original image frame, per-image PCK pooled over pairs.

PF-PASCAL is scored against the target image size (``img``); PF-WILLOW against the box of its target keypoints
(``bbox-kp``, ``pf-willow``) and, for comparison with the DHPF / CATs / CHM line of papers, against their
padded-keypoint "bbox" (``pf-willow-bbox``); ``corrbench.datasets.pf_willow`` explains the difference.
"""

from dataclasses import replace

from corrbench.protocol import BenchmarkSpec, Protocol

_PROTOCOL = dict(comparison="<=", frame="original", pck_by="image", average="all")
_PROPOSAL_FLOW = "Ham, Cho, Schmid, Ponce. Proposal Flow: Semantic Correspondences from Object Proposals. TPAMI 2018."

PF_PASCAL = BenchmarkSpec(
    name="pf-pascal",
    version=1,
    description="PF-PASCAL test split (SCNet split, 299 pairs, 20 categories), image-size threshold",
    dataset="pf-pascal",
    data_dir="pf-pascal",
    split="test",
    protocol=Protocol(threshold="img", **_PROTOCOL),
    adapter_options={"floor_keypoints": False},
    source=f"{_PROPOSAL_FLOW} Split: Han et al., SCNet, ICCV 2017; pair lists as released by SD4Match "
    "(https://www.robots.ox.ac.uk/~xinghui/sd4match/pf-pascal_image_pairs.zip).",
)

PF_WILLOW = BenchmarkSpec(
    name="pf-willow",
    version=1,
    description="PF-WILLOW (900 pairs, 10 keypoints), threshold = box of the target keypoints (bbox-kp)",
    dataset="pf-willow",
    data_dir="pf-willow",
    split="test",
    protocol=Protocol(threshold="bbox-kp", **_PROTOCOL),
    adapter_options={"object_box": "keypoints", "floor_keypoints": False},
    source=f"{_PROPOSAL_FLOW} Pair list: CNNGeometric (Rocco et al., CVPR 2017) as released by SD4Match "
    "(https://www.robots.ox.ac.uk/~xinghui/sd4match/test_pairs.csv).",
)

PF_WILLOW_BBOX = replace(
    PF_WILLOW,
    name="pf-willow-bbox",
    description="PF-WILLOW (900 pairs) with the DHPF/CATs/CHM 'bbox' threshold: keypoint box padded to (-1, -1)",
    protocol=Protocol(threshold="bbox", **_PROTOCOL),
    adapter_options={"object_box": "padded-keypoints", "floor_keypoints": False},
)
