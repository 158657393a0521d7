"""Run GeoAware-SC's or Jamais Vu's own evaluation on a crafted folder, with given predictions in place of their
network's. One process per checkout: both repositories define the modules ``pck_train`` and ``utils``.

    python tools/golden/geoaware/authors_eval.py --repo PATH/TO/GeoAware-SC --data DIR --dataset spair \
        --predictions PREDICTIONS.json --out RESULT.json [--pckd]

``--data`` holds ``SPair-71k`` or ``ap-10k`` (their loaders read ``data/...`` relative to the working directory,
so this runs in a temporary directory with a ``data`` link; nothing is written into the checkout).
``pck_train.eval(split='test')`` runs once per image (KPT_RESULT False) and once per point (True). Only their
feature extraction and matching are replaced (get_patch_descriptors, kpts_to_patch_idx,
calculate_keypoint_transformation): the last returns the predictions (original target pixels) mapped into their
ANNO_SIZE frame by their own ``preprocess_kps_pad``. Loading, keypoint mapping, thresholds, PCK and averaging are
theirs. Modules the evaluation never uses (training, models, logging services, visualisation) are stubbed so the
environment needs neither their network's dependencies nor weights.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import os
import sys
import tempfile
import types
from pathlib import Path

STUBBED_MODULES = ("wandb", "preprocess_map", "model_utils", "timm", "sklearn", "utils.utils_losses",
                   "utils.utils_visualization", "utils.utils_io")
ANNO_SIZE = 840  # their evaluation configs' --ANNO_SIZE


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves an inert module for every name in STUBBED_MODULES (and below), ahead of the real ones."""

    def find_spec(self, name, path=None, target=None):
        if any(name == stub or name.startswith(stub + ".") for stub in STUBBED_MODULES):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


class _NoNetwork:
    """Their eval switches the aggregation network between eval and train modes; there is none here."""

    def eval(self):
        pass

    def train(self):
        pass


def their_args(dataset: str, per_point: bool, pckd: bool) -> argparse.Namespace:
    """pck_train's options as their evaluation configs set them (all test pairs, box threshold, no extras)."""
    return argparse.Namespace(
        EVAL_DATASET=dataset, TRAIN_DATASET=dataset, ANNO_SIZE=ANNO_SIZE, TEST_SAMPLE=0, KPT_RESULT=per_point,
        COMPUTE_GEOAWARE_METRICS=False, ADAPT_FLIP=False, TOTAL_SAVE_RESULT=0, BBOX_THRE=True, NUM_PATCHES=60,
        ENSEMBLE=1, SOFT_EVAL=False, MUTUAL_NN=False, DUMMY_NET=False, PCKD=pckd, UNSEEN_KPS=False, KAP=False,
        SPH=False, ONLY_DINO=False, IMG_THRESHOLD=False, AP10K_EVAL_SUBSET="intra-species",
    )


def evaluate(repo: Path, dataset: str, predictions: list[dict], pckd: bool, save_dir: Path) -> dict:
    """Their PCK over the whole test set, per image and per point: {"image"|"point": {"0.01", "0.05", "0.1"}}.

    Call with the working directory holding ``data``; ``predictions`` as crafted_*.predictions_by_pair returns.
    """
    sys.dont_write_bytecode = True  # no __pycache__ in their checkout
    sys.meta_path.insert(0, _StubFinder())
    sys.path.insert(0, str(repo))
    import pck_train
    import torch
    from utils.utils_dataset import preprocess_kps_pad

    by_pair = {(p["src"], p["trg"]): p for p in predictions}
    current: dict = {}
    load_img_and_kps, compute_pck = pck_train.load_img_and_kps, pck_train.compute_pck

    def remembering_load_img_and_kps(idx, files, kps, img_size=224, edge=False):
        current.update(files=files, idx=idx, kps=kps)
        return load_img_and_kps(idx=idx, files=files, kps=kps, img_size=img_size, edge=edge)

    def predicted_keypoints(args, img1_desc, img2_desc, img1_patch_idx, num_patches):
        files, idx = current["files"], current["idx"]
        pair = by_pair[(Path(files[idx - 1]).stem, Path(files[idx]).stem)]
        raw = torch.zeros(current["kps"].shape[1], 3)
        for row, keypoint in enumerate(current["used_points"].tolist()):
            if str(keypoint) in pair["predictions"]:
                raw[row, :2] = torch.tensor(pair["predictions"][str(keypoint)], dtype=torch.float64).float()
                raw[row, 2] = 1
        mapped, *_ = preprocess_kps_pad(raw, *pair["trg_size"], args.ANNO_SIZE)
        return mapped[:, :2]

    def remembering_compute_pck(args, save_path, aggre_net, files, kps, category=None, used_points=None, **kwargs):
        current["used_points"] = used_points  # the keypoint id of each row of kps
        return compute_pck(args, save_path, aggre_net, files, kps, category, used_points, **kwargs)

    pck_train.load_img_and_kps = remembering_load_img_and_kps
    pck_train.calculate_keypoint_transformation = predicted_keypoints
    pck_train.get_patch_descriptors = lambda *args, **kwargs: (None, None, None, None)
    pck_train.kpts_to_patch_idx = lambda *args, **kwargs: None
    pck_train.compute_pck = remembering_compute_pck

    results: dict = {}
    for per_point in (False, True):
        args = their_args(dataset, per_point, pckd)
        pck_010, pck_005, pck_001, _ = pck_train.eval(args, _NoNetwork(), str(save_dir), split="test")
        results["point" if per_point else "image"] = {"0.01": float(pck_001), "0.05": float(pck_005),
                                                      "0.1": float(pck_010)}
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True,
                        help="a checkout of Junyi42/GeoAware-SC or VICO-UoE/JamaisVu")
    parser.add_argument("--data", type=Path, required=True, help="the folder holding SPair-71k or ap-10k")
    parser.add_argument("--dataset", choices=("spair", "ap10k"), required=True, help="their --EVAL_DATASET")
    parser.add_argument("--predictions", type=Path, required=True, help="JSON from crafted_*.predictions_by_pair")
    parser.add_argument("--out", type=Path, required=True, help="where to write the results (JSON)")
    parser.add_argument("--pckd", action="store_true", help="Jamais Vu's --PCKD (PCK-dagger)")
    args = parser.parse_args(argv)
    repo, data, out = args.repo.resolve(), args.data.resolve(), args.out.resolve()
    predictions = json.loads(args.predictions.read_text())
    with tempfile.TemporaryDirectory() as workdir:
        os.symlink(data, Path(workdir) / "data")
        os.chdir(workdir)
        results = evaluate(repo, args.dataset, predictions, args.pckd, Path(workdir) / "save")
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
