"""Golden outputs of GeoAware-SC's training objective and keypoint flip for tests/test_geosc_loss_parity.py.

Runs the authors' functions from a local checkout (imported, never copied into corrbench):

    python tools/golden/geoaware/make_geosc_loss_golden.py --geoaware PATH/TO/GeoAware-SC \\
        --out tests/data/geoaware_geosc_golden.json

Environment (how tests/data/geoaware_geosc_golden.json was made): Junyi42/GeoAware-SC commit
99fd6b6 (recorded in the file); a venv made with ``python3 -m venv --system-site-packages`` over CPU torch
2.13.0 and numpy 2.4.6 (nothing else: ``utils/utils_losses.py``, ``utils/utils_geoware.py`` and
``model_utils/corr_map_model.py`` import only torch, numpy and PIL; ``utils/utils_dataset.py`` also imports
pandas and scipy, which the system site packages provide). Inputs: ``geosc_cases.py`` beside this script.

What is recorded:

- ``loss``: ``utils_losses.calculate_loss`` (``DENSE_OBJ=1``; InfoNCE with ``logit_scale = log(1 / 0.07)`` + the
  soft-argmax flow error of ``Correlation2Displacement(setting=1, window_size=0)``) on ``normalize_feats`` of the
  crafted maps, for: ``plain`` (no flip views, no noise), ``flip`` (``PAIR_AUGMENT``'s weights: double flip 1,
  self flip 0.25; ``ADAPT_FLIP`` off as in their training configs; permutation ``SPAIR_FLIP_TRN["cat"]``), and
  ``flip_noise`` (the same with ``GAUSSIAN_AUGMENT=0.1``, global seed ``NOISE_SEED`` set just before the call);
- ``flip_tables``: ``SPAIR_FLIP_TRN`` and ``AP10K_FLIP`` as they are;
- ``flip_case``: ``load_spair_data`` (trn split, 840 px) on the crafted annotation files, then ``flip_keypoints``
  of the source with ``permute_indices(SPAIR_FLIP_TRN["cat"])``, mapped back to the source image's pixels
  (their centred padding and scale undone): ``[x, y, visible]`` per keypoint id 0-14.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import geosc_cases as cases  # noqa: E402


def their_loss(repo: Path, flip: bool, noise: float) -> float:
    from model_utils.corr_map_model import Correlation2Displacement
    from utils import utils_losses
    from utils.utils_geoware import SPAIR_FLIP_TRN

    maps = cases.feature_maps()
    # their descriptors: (1, h*w, C), L2-normalised per cell (pck_train.normalize_feats)
    desc = {k: v.reshape(1, cases.CHANNELS, -1).permute(0, 2, 1) for k, v in maps.items()}
    desc = {k: v / (torch.linalg.norm(v, dim=-1)[:, :, None] + 1e-10) for k, v in desc.items()}
    kps = torch.from_numpy(cases.keypoints())
    args = Namespace(DENSE_OBJ=1, ANNO_SIZE=cases.CANVAS, GAUSSIAN_AUGMENT=noise, ADAPT_FLIP=False,
                     AUGMENT_DOUBLE_FLIP=1.0 if flip else 0, AUGMENT_SELF_FLIP=0.25 if flip else 0,
                     SELF_CONTRAST_WEIGHT=0, PROJ_DIM=cases.CHANNELS)
    net = Namespace(logit_scale=torch.nn.Parameter(torch.tensor(math.log(1 / 0.07))),
                    self_logit_scale=torch.nn.Parameter(torch.tensor(math.log(1 / 0.07))))
    corr = Correlation2Displacement(setting=1, window_size=0)
    torch.manual_seed(cases.NOISE_SEED)
    loss = utils_losses.calculate_loss(
        args, net, kps[0], kps[1], desc["src"], desc["trg"], cases.THRESHOLDS[0], cases.THRESHOLDS[1], None, None,
        cases.GRID, "cpu", SPAIR_FLIP_TRN[cases.CATEGORY] if flip else None, desc["src_flip"], desc["trg_flip"], corr)
    return float(loss)


def their_flip(repo: Path) -> list[list[float]]:
    from utils.utils_dataset import load_spair_data
    from utils.utils_geoware import SPAIR_FLIP_TRN, flip_keypoints, permute_indices

    with tempfile.TemporaryDirectory() as tmp:
        for rel, content in cases.flip_files().items():
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content))
        files, kps, _, used = load_spair_data(tmp, size=cases.CANVAS, category=cases.CATEGORY, split="trn")
    assert used.tolist() == list(range(cases.NUM_IDS)), used  # every id used: their rows are SPair's ids
    flipped = flip_keypoints(kps[0], cases.CANVAS, permute_indices(SPAIR_FLIP_TRN[cases.CATEGORY]))
    (w, h), _ = cases.FLIP_IMAGES[cases.FLIP_PAIR[0]]
    scale = cases.CANVAS / max(w, h)
    offset_y = int((cases.CANVAS - int(np.around(cases.CANVAS * h / w))) / 2) if h < w else 0
    offset_x = int((cases.CANVAS - int(np.around(cases.CANVAS * w / h))) / 2) if w < h else 0
    rows = []
    for x, y, v in flipped.tolist():
        rows.append([(x - offset_x) / scale, (y - offset_y) / scale, v] if v > 0 else [0.0, 0.0, 0.0])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geoaware", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    repo = args.geoaware.resolve()
    sys.path.insert(0, str(repo))
    torch.set_num_threads(1)
    from utils.utils_geoware import AP10K_FLIP, SPAIR_FLIP_TRN

    golden = {
        "geoaware_commit": subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                          text=True, check=True).stdout.strip(),
        "torch": torch.__version__,
        "loss": {"plain": their_loss(repo, flip=False, noise=0.0), "flip": their_loss(repo, flip=True, noise=0.0),
                 "flip_noise": their_loss(repo, flip=True, noise=0.1)},
        "flip_tables": {"spair": SPAIR_FLIP_TRN, "ap10k": AP10K_FLIP},
        "flip_case": their_flip(repo),
    }
    args.out.write_text(json.dumps(golden, indent=1) + "\n")
    print(json.dumps(golden["loss"]))


if __name__ == "__main__":
    main()
