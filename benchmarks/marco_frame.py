"""The ``*-marco`` benchmark names: aliases of a base benchmark under the ``marco`` protocol.

``corrbench run --benchmark spair71k-marco`` is ``--benchmark spair71k --protocol marco`` (the same spec, name,
runs and results; see ``corrbench.protocols`` for what the protocol changes and why). MARCO evaluates
SPair-71k, SPair-U and MP-100 in the stretched square its network sees (770 px in the released configs):
ground truth scaled per axis and clamped, the threshold from the per-axis-scaled target box. With it,
SPair-71k and SPair-U are measured as MARCO measures them. MP-100's pairs are MARCO's released lists, but its
animal-body numbers cannot be reproduced: MARCO's loader truncates the concatenated visible keypoints, which
pairs the wrong rows whenever the two images' visibility differs (most animal-body pairs), and corrbench
deliberately pairs keypoints by index (``corrbench.datasets.mp100``).
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
