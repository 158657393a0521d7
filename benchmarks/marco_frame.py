"""The benchmarks in MARCO's own measuring frame, to reproduce the paper's numbers exactly.

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
