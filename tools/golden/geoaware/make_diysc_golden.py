"""Golden outputs of DIY-SC's pseudo-label generation (odunkel/DIY-SC) for tests/test_diysc_pseudo_labels.py.

Runs the authors' functions from a local checkout (imported, never copied into corrbench):

    python tools/golden/geoaware/make_diysc_golden.py --diysc PATH/TO/DIY-SC --out tests/data/diysc_pseudo_labels.npz

Environment (how tests/data/diysc_pseudo_labels.npz was made): odunkel/DIY-SC commit
e1121c072b022adcccaf1b938dcc053fb9eed930; Python 3.11, CPU torch 2.13.0, numpy 2.4.6, Pillow 12/13, pandas and
tqdm (what ``utils/utils_pseudo_gt.py`` and ``gen_pseudo_labels.py`` import); one torch thread. Imported:
``gen_pseudo_labels.PairsDataset`` (its ``__getitem__`` end to end, on files written here in their layout),
``utils.utils_pseudo_gt.sample_ordered_n_tupls`` and ``model_utils.dino_mapper.Block`` (their mapper's block).

Crafted inputs (stored in the file, so the test needs no generator):

- ``chain_*``: a 4-tuple of images of different sizes (``chain_sizes``), their object masks (the image's own
  frame, 0/255, as ``<name>_mask.png``), raw features ``(4, 16, 6, 6)`` (``_dino.pt``; a shared pattern
  rolled per image plus noise, so some matches return and some do not) and spherical points ``(4, 36, 3)``
  (``_sph.pt``). ``PairsDataset`` runs with ``img_size 84`` (6 x 6 patches of 14 px), ``bicyclic_chain``,
  ``eucl_dist`` (``rej_th_patch 2``), ``only_dino``, ``filter_sph`` (0.15) and, separately, without the
  filter; Python's ``random`` is seeded with ``chain_shuffle_seed`` before each call (it shuffles the pairs).
  Outputs: per annotation ``src``/``trg`` image index, and the flat canvas points.
- ``sampling_*``: ``sample_ordered_n_tupls`` (n 4, ``azimuth_bin``) over three categories in a row, each
  followed by main's second ``random.sample``, after ``random.seed(42)``; the third category has too few
  distinct bins and falls back to random tuples.
- ``features_*``: their DINOv2 feature path, ``preprocess_map.py --dino``: ``utils.utils_correspondence.resize``
  (LANCZOS, centred padding) of a crafted ``features_size`` image (``crafted_image``) to 84 px, then
  ``ViTExtractor.preprocess_pil`` and ``extract_descriptors(layer=last, facet="token")`` reshaped as they
  reshape it, on a tiny corrbench DINOv2 (64 channels, 2 blocks; weights drawn from ``features_seed`` in key
  order) passed to ``ViTExtractor(model=...)``. torchvision is not installable beside this torch here, so
  ``torchvision.transforms`` is replaced by ``_transforms_stand_in`` (ToTensor = uint8 HWC / 255 as CHW,
  Normalize = (x - mean) / std, the two transforms ``preprocess_pil`` uses).
- ``kps_*``: ``utils.utils_dataset.preprocess_kps_pad`` (how their trainer puts original keypoints on the
  840 px canvas) of crafted points for three image sizes at 84 px: the pair files' original pixels must map
  back onto the canvas points the labels were made at.
- ``mapper_*``: their ``sphere_mapper`` (Linear 128 -> 64, GELU, ``Block(64, 1 head)``, Linear 64 -> 3) plus
  ``post_sph_map`` on tokens ``(1, 36, 128)``, with weights drawn from ``mapper_seed`` in key order.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

GRID, CANVAS, CHANNELS = 6, 84, 16
SIZES = [(50, 40), (37, 52), (60, 60), (45, 30)]  # (W, H)


def crafted_chain(seed: int = 0) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(GRID, GRID, CHANNELS, generator=g)
    features = torch.stack([
        torch.roll(base, shifts=k % 2, dims=1) + 0.8 * torch.randn(GRID, GRID, CHANNELS, generator=g) for k in range(4)
    ]).permute(0, 3, 1, 2)  # (4, C, 6, 6)
    spheres = F.normalize(torch.randn(4, 1, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 1.0])
                          + 0.35 * torch.randn(4, GRID * GRID, 3, generator=g), dim=-1)
    masks = []
    for k, (w, h) in enumerate(SIZES):
        yy, xx = np.mgrid[0:h, 0:w]
        cx, cy = w * (0.45 + 0.05 * k), h * 0.5
        masks.append((((xx - cx) / (0.4 * w)) ** 2 + ((yy - cy) / (0.42 * h)) ** 2 <= 1).astype(np.uint8) * 255)
    out = {"chain_features": features.numpy(), "chain_spheres": spheres.numpy(),
           "chain_sizes": np.array(SIZES), "chain_shuffle_seed": np.array(7)}
    for k, mask in enumerate(masks):
        out[f"chain_mask{k}"] = mask
    return out


def run_chain(diysc: Path, case: dict[str, np.ndarray], filter_sph: bool) -> dict[str, np.ndarray]:
    from gen_pseudo_labels import PairsDataset

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k, (w, h) in enumerate(case["chain_sizes"]):
            img = Path(tmp, "JPEGImages", "cat", f"img{k}.jpg")
            feat = Path(tmp, "features", "cat")
            img.parent.mkdir(parents=True, exist_ok=True)
            feat.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (int(w), int(h)), (100, 120, 140)).save(img)
            Image.fromarray(case[f"chain_mask{k}"], mode="L").save(feat / f"img{k}_mask.png")
            torch.save(torch.from_numpy(case["chain_features"][k : k + 1]), feat / f"img{k}_dino.pt")
            torch.save(torch.from_numpy(case["chain_spheres"][k]), feat / f"img{k}_sph.pt")
            paths.append(str(img))
        dataset = PairsDataset([paths], img_size=CANVAS, num_patches=GRID, device="cpu",
                               pseudo_gt_gen_mode="bicyclic_chain", only_dino=True, cyclic_consistency_mode="eucl_dist",
                               rej_th_patch=2, use_mask=True, n_tupl=4, filter_sph=filter_sph,
                               filter_sph_threshold=0.15)
        random.seed(int(case["chain_shuffle_seed"]))
        annotations = dataset[0]
    names = [Path(p).name for p in paths]
    pairs = np.array([[names.index(a["src_imname"]), names.index(a["trg_imname"])] for a in annotations])
    counts = np.array([a["num_kps"] for a in annotations])
    src = np.concatenate([np.array(a["source_kps"]) for a in annotations])
    trg = np.concatenate([np.array(a["target_kps"]) for a in annotations])
    tag = "filtered" if filter_sph else "unfiltered"
    return {f"chain_{tag}_pairs": pairs, f"chain_{tag}_counts": counts,
            f"chain_{tag}_src": src, f"chain_{tag}_trg": trg}


def run_sampling() -> dict[str, np.ndarray]:
    from utils.utils_pseudo_gt import sample_ordered_n_tupls

    azimuths = [[0, 1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 0, 5], [3, 4, 5, 6, 2, 3, 4, 7, 0], [1, 1, 2, 2, 2, 1, 2]]
    count = 10
    random.seed(42)
    out: dict[str, np.ndarray] = {"sampling_count": np.array(count)}
    for c, bins in enumerate(azimuths):
        df = pd.DataFrame({"img_path": [f"data/JPEGImages/c{c}/{i:04d}.jpg" for i in range(len(bins))],
                           "azimuth_bin": bins})
        tuples = sample_ordered_n_tupls(df, n=4, metric="azimuth_bin", subsample=count)
        tuples = random.sample(tuples, min(count, len(tuples)))  # gen_pseudo_labels.main
        out[f"sampling_azimuths{c}"] = np.array(bins)
        out[f"sampling_tuples{c}"] = np.array([[int(Path(p).stem) for p in t] for t in tuples])
    return out


def mapper_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shapes[key], generator=g) * 0.2 for key in sorted(shapes)}


def run_mapper() -> dict[str, np.ndarray]:
    from model_utils.dino_mapper import Block

    dim, seed = 128, 3
    mapper = torch.nn.Sequential(torch.nn.Linear(dim, dim // 2), torch.nn.GELU(),
                                 Block(dim=dim // 2, num_heads=dim // 2 // 64), torch.nn.Linear(dim // 2, 3)).eval()
    mapper.load_state_dict(mapper_weights({k: tuple(v.shape) for k, v in mapper.state_dict().items()}, seed))
    tokens = torch.randn(1, GRID * GRID, dim, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        points = F.normalize(mapper(tokens), dim=-1)  # DINOMapper.post_sph_map
    return {"mapper_seed": np.array(seed), "mapper_points": points.numpy()}  # the test redraws the tokens


def crafted_image(size: tuple[int, int]) -> Image.Image:
    """A smooth colour pattern (no file needed: the test draws it the same way)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack([127 + 120 * np.sin(xx / 5.0), 127 + 120 * np.cos(yy / 7.0),
                    127 + 120 * np.sin((xx + yy) / 9.0)], -1)
    return Image.fromarray(np.round(rgb).astype(np.uint8), mode="RGB")


def tiny_dinov2(seed: int):
    from corrbench.backbones.dinov2 import DinoV2Spec, DinoVisionTransformer

    model = DinoVisionTransformer.from_spec(DinoV2Spec("dinov2_tiny", 64, 2, 2, "mlp", 0, False, 0.1)).eval()
    model.load_state_dict(mapper_weights({k: tuple(v.shape) for k, v in model.state_dict().items()}, seed))
    return model


def _transforms_stand_in():
    import types

    class ToTensor:
        def __call__(self, pic):
            return torch.from_numpy(np.array(pic, dtype=np.uint8)).permute(2, 0, 1).float().div(255)

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

        def __call__(self, x):
            return (x - self.mean) / self.std

    class Compose:
        def __init__(self, steps):
            self.steps = steps

        def __call__(self, x):
            for step in self.steps:
                x = step(x)
            return x

    transforms = types.ModuleType("torchvision.transforms")
    transforms.ToTensor, transforms.Normalize, transforms.Compose = ToTensor, Normalize, Compose
    package = types.ModuleType("torchvision")
    package.transforms = transforms
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = package, transforms


def run_features() -> dict[str, np.ndarray]:
    _transforms_stand_in()
    from model_utils.extractor_dino import ViTExtractor
    from utils.utils_correspondence import resize

    seed, size = 5, (50, 37)
    model = tiny_dinov2(seed)
    extractor = ViTExtractor("dinov2_vitb14", 14, model=model, device="cpu")
    image = resize(crafted_image(size), CANVAS, resize=True, to_pil=True)
    with torch.no_grad():
        desc = extractor.extract_descriptors(extractor.preprocess_pil(image), len(model.blocks) - 1, "token")
    features = desc.permute(0, 1, 3, 2).reshape(1, -1, GRID, GRID)
    return {"features_seed": np.array(seed), "features_size": np.array(size), "features_out": features.numpy()}


def run_kps_pad() -> dict[str, np.ndarray]:
    from utils.utils_dataset import preprocess_kps_pad

    points = torch.tensor([[0.0, 0.0], [10.5, 3.25], [36.0, 29.0]], dtype=torch.float64)
    out = {"kps_points": points.numpy(), "kps_sizes": np.array(SIZES[:3])}
    for k, (w, h) in enumerate(SIZES[:3]):
        out[f"kps_canvas{k}"] = preprocess_kps_pad(points, w, h, CANVAS)[0].numpy()  # (kps, offsets, scale)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diysc", type=Path, required=True, help="a checkout of odunkel/DIY-SC")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(args.diysc.resolve()))
    os.chdir(args.diysc)
    case = crafted_chain()
    out = {**case, **run_chain(args.diysc, case, True), **run_chain(args.diysc, case, False), **run_sampling(),
           **run_mapper(), **run_features(), **run_kps_pad()}
    np.savez_compressed(args.out.resolve() if args.out.is_absolute() else Path(os.environ["PWD"]) / args.out, **out)
    for key in sorted(k for k in out if k.endswith("counts")):
        print(key, out[key].tolist())


if __name__ == "__main__":
    main()
