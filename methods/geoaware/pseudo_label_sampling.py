"""Which images DIY-SC chains: n-tuples of one category whose azimuth bins step by one bin per link.

From the released code (odunkel/DIY-SC e1121c07): ``utils/utils_pseudo_gt.py:sample_ordered_n_tupls`` and the
per-category loop of ``gen_pseudo_labels.py:main`` (``--pseudo_gt_gen_mode bicyclic_chain``, ``--n_tupl 4``,
``--metric_chaining azimuth_bin``). Their script seeds Python's ``random`` with 42 and draws from it only here,
category after category in sorted order; ``sample_chains`` draws from a ``random.Random`` in the same order
and with the same calls, so given the same images it picks the same tuples (checked by golden outputs).

A tuple ``(j, k1, ..., k_{n-1})`` starts at image ``j`` and steps one of SPair's 8 azimuth bins (45 degrees)
per link, all in one direction (both directions are enumerated). With fewer than ``n`` distinct bins in a
category, or with ``metric="random"``, tuples are random draws of ``n`` distinct images instead.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Sequence

import numpy as np

AZIMUTH_BINS = 8  # SPair-71k's azimuth_id
CHAINING_METRICS = ("azimuth_bin", "random")


def tuples_to_draw(pairs_per_category: int, chain_length: int) -> int:
    """How many tuples their script samples for a ``--subsample`` of pairs: twice ``pairs // P + 1``, with
    ``P = n! / (n-2)!`` ordered pairs per tuple ("to have enough pairs")."""
    per_tuple = math.factorial(chain_length) // math.factorial(chain_length - 2)
    return 2 * (pairs_per_category // per_tuple + 1)


def sample_chains(azimuths: Sequence[int], chain_length: int, count: int, rng: random.Random,
                  metric: str = "azimuth_bin") -> list[tuple[int, ...]]:
    """Tuples of image indices (into ``azimuths``, the category's images sorted by file name) for one category.

    Consumes ``rng`` as their script does for one category (the enumeration's sample, then main's second
    ``random.sample`` over the result, which only reorders it).
    """
    if metric not in CHAINING_METRICS:
        raise ValueError(f"unknown chaining metric {metric!r}; use one of {', '.join(CHAINING_METRICS)}")
    n_images = len(azimuths)
    if n_images < chain_length:
        return []  # their random.sample would fail; a category this small gives no tuple
    bins = np.asarray(azimuths)
    if metric == "random" or len(np.unique(bins)) < chain_length:
        tuples = [tuple(rng.sample(range(n_images), chain_length)) for _ in range(count)]
    else:
        tuples = []
        for direction in (1, -1):
            # (a_k - a_j) modulo +-8: with -8, numpy's result lies in (-8, 0], so -i means "i bins back"
            steps = (bins[None, :] - bins[:, None]) % (direction * AZIMUTH_BINS)
            options = [[[j]] + [np.where(steps[j] == direction * i)[0] for i in range(1, chain_length)]
                       for j in range(n_images)]
            for row in options:
                tuples += list(itertools.product(*row))
    if count > 0:
        tuples = rng.sample(tuples, min(count, len(tuples)))
    tuples = rng.sample(tuples, min(count, len(tuples)))  # gen_pseudo_labels.main samples once more
    return [tuple(int(i) for i in t) for t in tuples]
