"""Training sets of DIY-SC's pseudo-labels (``corrbench pseudo-labels``): the source benchmark's folder with
trn/val replaced by pseudo-labels, read from ``<data root>/<source folder>-DIY-SC``.

``corrbench train --method M --benchmark spair71k-diy-sc`` trains on them (validating on the pseudo-labelled
val split, as DIY-SC selects its checkpoint by the val loss on pseudo-labels); the test split, and so
``corrbench run`` on these specs, is the source's. The generation settings are in the folder's
``pseudo_labels_manifest.json``; the specs only locate the folder.
"""

from dataclasses import replace

from corrbench.protocol import BenchmarkSpec

from .spair import SPAIR71K
from .synthetic import SYNTHETIC

_SOURCE = ("Duenkel, Wimmer, Theobalt, Rupprecht, Kortylewski. Do It Yourself: Learning Semantic Correspondence "
           "from Pseudo-Labels. arXiv:2506.05312, 2025 (pseudo-labels made by `corrbench pseudo-labels`)")


def _pseudo_labelled(source: BenchmarkSpec, description: str) -> BenchmarkSpec:
    return replace(source, name=f"{source.name}-diy-sc", version=1, description=description, dataset="pseudo-labels",
                   data_dir=f"{source.data_dir}-DIY-SC",
                   adapter_options={"pair_dir": "PairAnnotation", "layout": "large"}, source=_SOURCE)


SPAIR71K_DIY_SC = _pseudo_labelled(SPAIR71K, "SPair-71k with DIY-SC pseudo-labels as trn/val (corrbench pseudo-labels)")
SYNTHETIC_DIY_SC = _pseudo_labelled(SYNTHETIC, "Synthetic benchmark with DIY-SC pseudo-labels as trn/val")
