"""The benchmarks in MARCO's own measuring frame, to compare with the paper's numbers.

One of them cannot reproduce the paper, frame or not: ``mp100-animal-body-marco``. MARCO's MP-100 loader
(``datasets/mp100.py``) concatenates, per image, the visible keypoints of EVERY annotation of that image (any
instance, in file order), cuts the target list to the source's length and both to the shorter one, and scores
the i-th source entry against the i-th target entry. That pairs different keypoint types whenever the two images' visibility
patterns differ or an image has more than one annotated animal; corrbench matches keypoints by index on one
instance per image (``corrbench.datasets.mp100``), so it scores other rows and its numbers there can differ from
the paper's by design. Measured on MP-100's real test annotations (a public copy of mp100_split{1..5}_test.json)
with MARCO's released lists: in animal body, 1,543 of the 2,000 pairs have at least one mismatched row and
12,614 of the 29,056 rows MARCO scores pair two different keypoint types (a lower bound: same-type rows on
different animals are not counted); 274 pairs involve an image with several annotations. In human face,
apparel, animal face and home furniture no row is mismatched (same visibility patterns, one annotation per
image), so there the ``*-marco`` variants score the rows MARCO scores.

MARCO evaluates SPair-71k, SPair-U and MP-100 in the stretched square its network sees (770 px in the released
configs): ground truth scaled per axis and clamped, the threshold from the per-axis-scaled target box
(``frame="square:770"``, see corrbench/protocol.py). corrbench's default ``original`` frame differs from it by
the unevenness of the stretch, so these variants exist beside the standard benchmarks; everything else (pairs,
threshold mode, comparison, aggregation) is the same. PF-PASCAL and AP-10K need no variant: MARCO scales them
uniformly, so the original frame matches up to the rounding of the short side. For AP-10K (read in MARCO's
datasets/ap10k.py and dataset.py) that is: longest side to 770 px, zero padding at the bottom and right (no
stretch), threshold max(w, h) x 770 / max(W, H); MARCO also clamps ground truth to the resized image, which
moves only points in its last pixel (see corrbench/datasets/ap10k.py).
"""

from dataclasses import replace

from corrbench.benchmarks.mp100 import (
    MP100_ANIMAL_BODY,
    MP100_ANIMAL_FACE,
    MP100_APPAREL,
    MP100_HOME_FURNITURE,
    MP100_HUMAN_FACE,
)
from corrbench.benchmarks.spair import SPAIR71K, SPAIR_U
from corrbench.protocol import BenchmarkSpec

MARCO_RESOLUTION = 770  # configs/dataset/*.yaml of the released code


def in_marco_frame(spec: BenchmarkSpec) -> BenchmarkSpec:
    return replace(
        spec,
        name=f"{spec.name}-marco",
        description=f"{spec.description}; measured in MARCO's {MARCO_RESOLUTION} px stretched square",
        protocol=replace(spec.protocol, frame=f"square:{MARCO_RESOLUTION}"),
    )


SPAIR71K_MARCO = in_marco_frame(SPAIR71K)
SPAIR_U_MARCO = in_marco_frame(SPAIR_U)
MP100_HUMAN_FACE_MARCO = in_marco_frame(MP100_HUMAN_FACE)
MP100_APPAREL_MARCO = in_marco_frame(MP100_APPAREL)
MP100_ANIMAL_BODY_MARCO = in_marco_frame(MP100_ANIMAL_BODY)
MP100_ANIMAL_FACE_MARCO = in_marco_frame(MP100_ANIMAL_FACE)
MP100_HOME_FURNITURE_MARCO = in_marco_frame(MP100_HOME_FURNITURE)
