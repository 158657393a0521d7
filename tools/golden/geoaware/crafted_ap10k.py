"""The crafted AP-10K-layout pairs of tests/data/geoaware_ap10k_golden.json and their predictions.

One pair per species (so the authors' per-category output is per pair), drawn from ``random.Random(SEED)``: random
image sizes and integer or half-pixel boxes, visibility v in {0, 2} only, and 17 predictions per pair at alpha x T
(or within 1e-6 of it) from the target keypoints, T = the target box's longer side. In each pair a keypoint
visible only in the target is moved 1 px from the prediction of a mutually visible one: it competes under a
PCK-dagger over target-visible candidates, not under Jamais Vu's (mutually visible candidates).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image

SEED = 5
N_KEYPOINTS = 17
THEIR_DATA_DIR = "data/ap-10k"  # their pair files hold paths relative to the working directory, under this folder


def draw_pairs(n_pairs: int, seed: int = SEED) -> list[dict]:
    """Per pair: family, species, source and target image records, and the 17 predictions (target pixels)."""
    rng = random.Random(seed)
    out = []
    for i in range(n_pairs):
        family, species = f"f{i % 7}", f"s{i:03d}"
        records = []
        for k in range(2):
            w, h = rng.randint(100, 1000), rng.randint(100, 1000)
            bw, bh = rng.randint(20, w - 1), rng.randint(20, h - 1)
            bx = rng.randint(0, w - bw) + rng.choice([0, 0.5])
            by = rng.randint(0, h - bh) + rng.choice([0, 0.25])
            kps = []
            for _ in range(N_KEYPOINTS):
                v = rng.choice([0, 2, 2, 2])
                kps += [rng.randint(0, w - 1), rng.randint(0, h - 1), v] if v else [0, 0, 0]
            records.append(dict(id=10000 + 2 * i + k, w=w, h=h, bbox=[bx, by, bw, bh], kps=kps))
        src, trg = records
        mutual = [j for j in range(N_KEYPOINTS) if src["kps"][3 * j + 2] and trg["kps"][3 * j + 2]]
        only_in_target = [j for j in range(N_KEYPOINTS) if not src["kps"][3 * j + 2]]
        side = max(trg["bbox"][2], trg["bbox"][3])
        predictions = []
        for j in range(N_KEYPOINTS):
            x, y = trg["kps"][3 * j], trg["kps"][3 * j + 1]
            d = rng.choice([0.01, 0.05, 0.1]) * side
            kind = rng.random()  # along x, along (0.6, 0.8), or along x within 1e-6 of the tie
            if kind < 0.4:
                offset = [d, 0]
            elif kind < 0.7:
                offset = [0.6 * d, 0.8 * d]
            else:
                offset = [d * (1 + rng.uniform(-1e-6, 1e-6)), 0]
            predictions.append([round(x + offset[0], 4), round(y + offset[1], 4)])
        if mutual and only_in_target:
            j, o = mutual[0], only_in_target[0]
            trg["kps"][3 * o: 3 * o + 3] = [round(predictions[j][0] + 1), round(predictions[j][1]), 2]
        out.append(dict(family=family, species=species, src=src, trg=trg, predictions=predictions))
    return out


def pair_stem(pair: dict) -> str:
    return f"{pair['src']['id']}-{pair['trg']['id']}:{pair['species']}"


def annotation(pair: dict, record: dict) -> dict:
    """An image record as GeoAware-SC's prepared AP-10K folder stores it (ImageAnnotation/FAMILY/SPECIES/ID.json)."""
    return {"keypoints": record["kps"], "bbox": record["bbox"], "width": record["w"], "height": record["h"],
            "name": pair["species"], "supercategory": pair["family"]}


def write_ap10k_folder(root: Path, drawn: list[dict]) -> None:
    """GeoAware-SC's prepared AP-10K layout; ``root`` must be THEIR_DATA_DIR under their working directory."""
    for pair in drawn:
        folder = Path(pair["family"]) / pair["species"]
        (root / "ImageAnnotation" / folder).mkdir(parents=True, exist_ok=True)
        (root / "JPEGImages" / folder).mkdir(parents=True, exist_ok=True)
        for record in (pair["src"], pair["trg"]):
            (root / "ImageAnnotation" / folder / f"{record['id']}.json").write_text(
                json.dumps(annotation(pair, record)))
            Image.new("RGB", (record["w"], record["h"])).save(root / "JPEGImages" / folder / f"{record['id']}.jpg")
        (root / "PairAnnotation" / "test").mkdir(parents=True, exist_ok=True)
        their_path = {end: f"{THEIR_DATA_DIR}/ImageAnnotation/{folder}/{pair[end]['id']}.json"
                      for end in ("src", "trg")}
        (root / "PairAnnotation" / "test" / f"{pair_stem(pair)}.json").write_text(
            json.dumps({"src_json_path": their_path["src"], "trg_json_path": their_path["trg"]}))


def predictions_by_pair(drawn: list[dict]) -> list[dict]:
    """The predictions in the form authors_eval.py reads: per pair, keyed by keypoint index."""
    return [{"src": str(p["src"]["id"]), "trg": str(p["trg"]["id"]), "trg_size": [p["trg"]["w"], p["trg"]["h"]],
             "predictions": {str(j): point for j, point in enumerate(p["predictions"])}} for p in drawn]


def golden_images(drawn: list[dict]) -> dict:
    """Image id: family, species and the stored record, in the order of the sorted annotation paths."""
    images = {}
    for pair in sorted(drawn, key=lambda p: (p["family"], p["species"])):
        for record in sorted((pair["src"], pair["trg"]), key=lambda r: str(r["id"])):
            images[str(record["id"])] = {"family": pair["family"], "species": pair["species"],
                                         **annotation(pair, record)}
    return images


def golden_pairs(drawn: list[dict]) -> list[dict]:
    return [{"stem": pair_stem(p), "src": str(p["src"]["id"]), "trg": str(p["trg"]["id"]),
             "predictions": p["predictions"]} for p in sorted(drawn, key=pair_stem)]
