"""Golden PCK of GeoAware-SC's and Jamais Vu's own evaluation code for the geoaware tests of
tests/test_named_protocols.py (tests/data/geoaware_pck_golden.json and tests/data/geoaware_ap10k_golden.json).

Runs the authors' code from local checkouts (it is imported, never copied into corrbench):

    python tools/golden/geoaware/make_geoaware_goldens.py --geoaware PATH/TO/GeoAware-SC --jamaisvu PATH/TO/JamaisVu \
        --spair-out tests/data/geoaware_pck_golden.json --ap10k-out tests/data/geoaware_ap10k_golden.json

Environment (how both files were made, on CPU torch 2.13.0, Python 3.11, Junyi42/GeoAware-SC 99fd6b6a,
VICO-UoE/JamaisVu d236e732): a venv with --system-site-packages over the CPU torch with numpy, pandas, scipy,
pillow, pyyaml and tqdm, plus loguru. Only ``pck_train.py`` and ``utils/`` of each checkout are read.

- The crafted data (crafted_spair.py: five SPair-71k-layout pairs, predictions mostly exactly at alpha x T;
  crafted_ap10k.py: six seeded AP-10K-layout pairs with keypoints visible only in the target 1 px from a
  prediction) is written to a temporary folder in the layout their loaders read.
- authors_eval.py runs their ``pck_train.eval(split='test')`` on it, per image and per point, in one process per
  checkout (GeoAware-SC; Jamais Vu without and with --PCKD for SPair-71k, with --PCKD for AP-10K). Only their
  network is replaced, by the crafted predictions; the files hold the data, predictions and their results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import crafted_ap10k
import crafted_spair

AUTHORS_EVAL = Path(__file__).with_name("authors_eval.py")
AP10K_GOLDEN_PAIRS = 6


def git_head(repo: Path) -> str:
    return subprocess.check_output(["git", "-C", str(repo), "rev-parse", "HEAD"], text=True).strip()


def run_authors_eval(repo: Path, data: Path, dataset: str, predictions: list[dict], pckd: bool,
                     scratch: Path) -> dict:
    """Their evaluation in its own process (both checkouts define ``pck_train`` and ``utils``)."""
    name = f"{repo.name}-{dataset}{'-pckd' if pckd else ''}"
    predictions_path, out = scratch / f"{name}-predictions.json", scratch / f"{name}-result.json"
    predictions_path.write_text(json.dumps(predictions))
    command = [sys.executable, str(AUTHORS_EVAL), "--repo", str(repo), "--data", str(data), "--dataset", dataset,
               "--predictions", str(predictions_path), "--out", str(out), *(["--pckd"] if pckd else [])]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{finished.stderr[-3000:]}")
    return json.loads(out.read_text())


def spair_golden(geoaware: Path, jamaisvu: Path, scratch: Path, torch_version: str) -> dict:
    data = scratch / "spair-data"
    crafted_spair.write_spair_folder(data / "SPair-71k")
    predictions = crafted_spair.predictions_by_pair()
    geo = run_authors_eval(geoaware, data, "spair", predictions, False, scratch)
    jv = run_authors_eval(jamaisvu, data, "spair", predictions, False, scratch)
    jv_dagger = run_authors_eval(jamaisvu, data, "spair", predictions, True, scratch)
    note = (
        "Reference PCK (fractions, as their code returns them) computed by the authors' own evaluation code on the "
        "crafted SPair-71k-layout pairs below: GeoAware-SC (github.com/Junyi42/GeoAware-SC at "
        f"{git_head(geoaware)}) and Jamais Vu (github.com/VICO-UoE/JamaisVu at {git_head(jamaisvu)}, "
        "with and without --PCKD), pck_train.eval(split='test') with ANNO_SIZE 840, TEST_SAMPLE 0, per image "
        f"(KPT_RESULT False) and per point (True), torch {torch_version} CPU. Their loaders read the folder; only "
        "feature extraction and matching were replaced: calculate_keypoint_transformation returned the predictions "
        "below (original target pixels) mapped into their 840 px frame by their own preprocess_kps_pad. Written "
        "by tools/golden/geoaware/make_geoaware_goldens.py. Predictions sit exactly at alpha x T (ties) in most rows."
    )
    return {"note": note, "images": crafted_spair.golden_images(), "pairs": crafted_spair.golden_pairs(),
            "geoaware_sc": {"pck": geo}, "jamais_vu": {"pck": jv, "pck_dagger": jv_dagger}}


def ap10k_golden(geoaware: Path, jamaisvu: Path, scratch: Path, torch_version: str) -> dict:
    data = scratch / "ap10k-data"
    drawn = crafted_ap10k.draw_pairs(AP10K_GOLDEN_PAIRS)
    crafted_ap10k.write_ap10k_folder(data / Path(crafted_ap10k.THEIR_DATA_DIR).name, drawn)
    predictions = crafted_ap10k.predictions_by_pair(drawn)
    geo = run_authors_eval(geoaware, data, "ap10k", predictions, False, scratch)
    jv_dagger = run_authors_eval(jamaisvu, data, "ap10k", predictions, True, scratch)
    note = (
        "Reference PCK (fractions) computed by the authors' own evaluation code on crafted AP-10K-layout pairs "
        "(GeoAware-SC's prepared-folder layout; v in {0, 2} only, integer or half-pixel boxes) with predictions "
        "at alpha x T and keypoints visible only in the target placed 1 px from predictions: GeoAware-SC "
        f"(github.com/Junyi42/GeoAware-SC at {git_head(geoaware)}) PCK and Jamais Vu "
        f"(github.com/VICO-UoE/JamaisVu at {git_head(jamaisvu)}) --PCKD PCK-dagger, pck_train.eval(split="
        "'test'), EVAL_DATASET ap10k, AP10K_EVAL_SUBSET intra-species, ANNO_SIZE 840, TEST_SAMPLE 0, per image and "
        f"per point, torch {torch_version} CPU. Their loaders read the folder; only feature extraction and matching "
        "were replaced by the predictions below (17 rows, original target pixels) mapped into their frame by their "
        "own preprocess_kps_pad. Written by tools/golden/geoaware/make_geoaware_goldens.py."
    )
    return {"note": note, "images": crafted_ap10k.golden_images(drawn), "pairs": crafted_ap10k.golden_pairs(drawn),
            "geoaware_sc": {"pck": geo}, "jamais_vu": {"pck_dagger": jv_dagger}}


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(path, path.stat().st_size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--geoaware", type=Path, required=True, help="a checkout of Junyi42/GeoAware-SC")
    parser.add_argument("--jamaisvu", type=Path, required=True, help="a checkout of VICO-UoE/JamaisVu")
    parser.add_argument("--spair-out", type=Path, default=Path("tests/data/geoaware_pck_golden.json"))
    parser.add_argument("--ap10k-out", type=Path, default=Path("tests/data/geoaware_ap10k_golden.json"))
    args = parser.parse_args(argv)
    geoaware, jamaisvu = args.geoaware.resolve(), args.jamaisvu.resolve()
    torch_version = torch.__version__.split("+")[0]
    with tempfile.TemporaryDirectory() as scratch:
        write_json(args.spair_out, spair_golden(geoaware, jamaisvu, Path(scratch), torch_version))
        write_json(args.ap10k_out, ap10k_golden(geoaware, jamaisvu, Path(scratch), torch_version))


if __name__ == "__main__":
    main()
