"""The ``*-marco`` benchmark names: aliases of a base benchmark under the ``marco`` protocol.

``corrbench run --benchmark spair71k-marco`` is ``--benchmark spair71k --protocol marco`` (the same spec, name,
runs and results; see ``corrbench.protocols`` for what the protocol changes and why). MARCO evaluates
SPair-71k, SPair-U and MP-100 in the stretched square its network sees (770 px in the released configs):
ground truth scaled per axis and clamped, the threshold from the per-axis-scaled target box. With it,
SPair-71k, SPair-U and four of MP-100's five domains are scored as MARCO scores them.

One of them cannot reproduce the paper, frame or not: ``mp100-animal-body-marco``. MARCO's MP-100 loader
(``datasets/mp100.py``) concatenates, per image, the visible keypoints of EVERY annotation of that image (any
instance, in file order), cuts the target list to the source's length and both to the shorter one, and scores
the i-th source entry against the i-th target entry. That pairs different keypoint types whenever the two
images' visibility patterns differ or an image has more than one annotated animal; corrbench matches keypoints
by index on one instance per image (``corrbench.datasets.mp100.adapter``), so it scores other rows and its numbers there
can differ from the paper's by design. Measured on MP-100's real test annotations (a public copy of
mp100_split{1..5}_test.json) with MARCO's released lists (``tools/marco_mp100_rows.py``): in animal body, 1,543
of the 2,000 pairs have at least one mismatched row and 12,614 of the 29,056 rows MARCO scores pair two different
keypoint types (a lower bound: same-type rows on different animals are not counted); 274 pairs involve an image
with several annotations. In human face, apparel, animal face and home furniture no row is mismatched (same
visibility patterns, one annotation per image), so there the ``*-marco`` variants score the rows MARCO scores.

PF-PASCAL and AP-10K need no variant: MARCO scales them uniformly, so the original frame matches up to the
rounding of the short side. For AP-10K (read in MARCO's datasets/ap10k.py and dataset.py) that is: longest side
to 770 px, zero padding at the bottom and right (no stretch), threshold max(w, h) x 770 / max(W, H); MARCO also
clamps ground truth to the resized image, which moves only points in its last pixel (see
corrbench/datasets/ap10k.py).
"""

from corrbench.benchmarks.mp100 import (
    MP100_ANIMAL_BODY,
    MP100_ANIMAL_FACE,
    MP100_APPAREL,
    MP100_HOME_FURNITURE,
    MP100_HUMAN_FACE,
)
from corrbench.benchmarks.spair import SPAIR71K, SPAIR_U
from corrbench.protocols import PRESETS

_MARCO = PRESETS["marco"]

SPAIR71K_MARCO = _MARCO.apply(SPAIR71K)
SPAIR_U_MARCO = _MARCO.apply(SPAIR_U)
MP100_HUMAN_FACE_MARCO = _MARCO.apply(MP100_HUMAN_FACE)
MP100_APPAREL_MARCO = _MARCO.apply(MP100_APPAREL)
MP100_ANIMAL_BODY_MARCO = _MARCO.apply(MP100_ANIMAL_BODY)
MP100_ANIMAL_FACE_MARCO = _MARCO.apply(MP100_ANIMAL_FACE)
MP100_HOME_FURNITURE_MARCO = _MARCO.apply(MP100_HOME_FURNITURE)
