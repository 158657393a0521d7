"""Golden tensors of Jamais Vu's category-prototype objective, from the authors' own functions, for
tests/test_jamaisvu_objective.py (tests/data/jamaisvu_objective_golden.npz and the map folders under
tests/data/jamaisvu_maps/).

    OPENCV_IO_ENABLE_OPENEXR=1 python tools/golden/geoaware/make_jamaisvu_golden.py --jamaisvu PATH/TO/JamaisVu \
        --out tests/data

Environment (how the files were made): CPU torch 2.13.0, Python 3.11, VICO-UoE/JamaisVu d236e732 (its
``utils/`` and ``model_utils/`` are imported, never copied), a venv with --system-site-packages plus
``opencv-python-headless==4.10.0.84`` (5.x wheels have no EXR writer) and ``OpenEXR==3.5.3`` (their
``read_exr``). Modules their files import but these functions never use (torchvision, fvcore) are stubbed.

- Fixtures: two crafted images' maps written exactly as MoGe's ``infer.py --maps`` writes them
  (``cv2.imwrite(points.exr, cv2.cvtColor(points, COLOR_RGB2BGR), EXR float)``, ``depth.exr`` likewise), in
  their MoGeMaps layout, with owlv2-style ``.npy`` masks (soft scores): a bumpy object surface in front of an infinite
  background (MoGe's sky), a mask that spills onto a far wall (the depth filter's case), one landscape and
  one portrait image (both padding branches).
- Their loader steps (``read_exr``, the clips of ``load_points_and_seg``, ``get_owl_mask``) read them back; their
  ``calculate_3d_loss`` runs on a tiny ``CategoryPrototype`` (8-dim features, 48 sampled points, 8 neighbours)
  with the first farthest point drawn after ``torch.manual_seed(SEED)``; losses and gradients are stored.
- Three tiny noise EXRs written by OpenCV (ZIP blocks stored raw because they do not shrink, half floats,
  no compression) and their ``read_exr`` of each.
- Their building blocks (``kabsch``, ``masked_farthest_point_sampling``, ``closest_geodesic_neighbors``,
  ``nn_geom_loss``, ``geodesic_geom_loss``, ``postprocess_mask_with_depth``, ``gather_by_indices``) run on
  seeded random inputs; outputs are stored with the inputs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

SEED = 7
FEATURE_DIM = 8
GRID = 6  # descriptor cells per side
ANNOTATION_SIZE = 48
SAMPLED_POINTS = 48
NEIGHBOURS = 8
LOGGED_POINTS = 16
IMAGES = {  # name: (category, height, width, visible keypoint slots)
    "2008_000001": ("bottle", 16, 22, [0, 2, 3, 5, 8]),
    "2008_000002": ("cat", 22, 16, [1, 4, 6, 7, 11, 14]),
}


def stub_unused_imports() -> None:
    """Their files import these at the top; the functions run here never touch them."""
    torchvision = types.ModuleType("torchvision")
    torchvision.transforms = types.ModuleType("torchvision.transforms")
    fvcore = types.ModuleType("fvcore")
    fvcore.nn = types.ModuleType("fvcore.nn")
    fvcore.nn.weight_init = types.ModuleType("fvcore.nn.weight_init")
    sys.modules.update({"torchvision": torchvision, "torchvision.transforms": torchvision.transforms,
                        "fvcore": fvcore, "fvcore.nn": fvcore.nn, "fvcore.nn.weight_init": fvcore.nn.weight_init})


def crafted_maps(height: int, width: int, rng: np.random.Generator):
    """A bumpy surface at ~2 m in camera space, background at inf; a mask with a strip on a far wall."""
    v, u = np.mgrid[:height, :width].astype(np.float32)
    cu, cv = (width - 1) / 2, (height - 1) / 2
    radius = ((u - cu) / (0.4 * width)) ** 2 + ((v - cv) / (0.4 * height)) ** 2
    on_object = radius < 1
    depth = 2.0 - 0.3 * np.sqrt(np.clip(1 - radius, 0, None)) + 0.01 * rng.standard_normal((height, width))
    wall = np.zeros_like(on_object)
    wall[:, -2:] = True  # the mask spills onto a wall far behind the object
    depth = np.where(wall, 9.0, depth).astype(np.float32)
    focal = 1.2 * max(height, width)
    points = np.stack([(u - cu) / focal * depth, (v - cv) / focal * depth, depth], axis=-1).astype(np.float32)
    background = ~(on_object | wall)
    points[background] = np.inf
    depth = np.where(background, np.inf, depth).astype(np.float32)
    # a soft mask as a segmenter's scores: object 0.995, a rim of 0.7 that the authors' >= 0.99 test drops
    mask = np.where(on_object | wall, 0.995, 0.0).astype(np.float32)
    mask[(radius > 0.7) & on_object] = 0.7
    return points, depth, mask


def write_fixtures(root: Path, rng: np.random.Generator) -> None:
    import cv2

    for name, (category, height, width, _) in IMAGES.items():
        points, depth, mask = crafted_maps(height, width, rng)
        folder = root / "MoGeMaps" / category / name
        folder.mkdir(parents=True, exist_ok=True)
        flags = [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT]
        assert cv2.imwrite(str(folder / "depth.exr"), depth, flags)
        assert cv2.imwrite(str(folder / "points.exr"), cv2.cvtColor(points, cv2.COLOR_RGB2BGR), flags)
        (root / "owlv2_sam_masks" / category).mkdir(parents=True, exist_ok=True)
        np.save(root / "owlv2_sam_masks" / category / f"{name}.npy", mask)


def write_exr_cases(folder: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Small noise maps whose ZIP blocks do not shrink (stored raw), half floats, and an uncompressed file."""
    import cv2
    from utils.utils_io import read_exr

    folder.mkdir(parents=True, exist_ok=True)
    cases = {
        "raw_blocks": [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT],
        "half": [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_HALF],
        "uncompressed": [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT,
                         cv2.IMWRITE_EXR_COMPRESSION, cv2.IMWRITE_EXR_COMPRESSION_NO],
    }
    out = {}
    for name, flags in cases.items():
        assert cv2.imwrite(str(folder / f"{name}.exr"), rng.standard_normal((3, 5, 3)).astype(np.float32), flags)
        out[f"exr/{name}"] = read_exr(str(folder / f"{name}.exr"))[0]
    return out


def their_geometry(root: Path, category: str, name: str):
    """What their load_points_and_seg does, step by step, with their read_exr and get_owl_mask."""
    from utils.utils_io import get_owl_mask, read_exr

    points, _ = read_exr(str(root / "MoGeMaps" / category / name / "points.exr"))
    points = torch.tensor(points).clip(min=-1e3, max=1e3)
    points = points.view(1, points.size(0), points.size(1), 3).permute(0, 3, 1, 2)
    depths, _ = read_exr(str(root / "MoGeMaps" / category / name / "depth.exr"))
    depths = torch.tensor(depths).clip(max=1e3)
    depths = depths.view(1, depths.size(0), depths.size(1), 1).permute(0, 3, 1, 2)
    mask = get_owl_mask(str(root / "owlv2_sam_masks" / category / f"{name}.npy"))
    return points, depths, mask


def objective_goldens(root: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    import utils.utils_losses as their_losses
    from model_utils.category_prototype import CategoryPrototype

    out: dict[str, np.ndarray] = {}
    for name, (category, height, width, visible) in IMAGES.items():
        torch.manual_seed(SEED)
        prototype = CategoryPrototype(feature_dims=FEATURE_DIM, n_logged_points=LOGGED_POINTS,
                                      n_sample_points=SAMPLED_POINTS)
        with torch.no_grad():  # a prototype some way into training: spread keypoints, a non-zero temperature
            prototype.kps.copy_(torch.from_numpy(rng.standard_normal(prototype.kps.shape).astype(np.float32)) * 0.3)
            prototype.geom_temp.fill_(0.7)
        keypoints = np.zeros((30, 3), dtype=np.float32)
        longest = max(height, width)
        scale = ANNOTATION_SIZE / longest  # the image as Geo-SC's loader resizes and centre-pads it
        pad_x = (ANNOTATION_SIZE - width * scale) / 2
        pad_y = (ANNOTATION_SIZE - height * scale) / 2
        for slot in visible:
            u, v = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
            keypoints[slot] = (u * scale + pad_x, v * scale + pad_y, 1)
        descriptors = torch.from_numpy(rng.standard_normal((1, GRID * GRID, FEATURE_DIM)).astype(np.float32))
        descriptors = torch.nn.functional.normalize(descriptors, dim=-1).requires_grad_(True)
        points, depths, mask = their_geometry(root, category, name)
        args = argparse.Namespace(ANNO_SIZE=ANNOTATION_SIZE, NOTE="golden")
        state = {k: v.detach().clone() for k, v in prototype.state_dict().items()}
        torch.manual_seed(SEED)  # the first farthest point is their only draw before the losses
        total, location, feature, geometry = their_losses.calculate_3d_loss(
            args, None, prototype, torch.from_numpy(keypoints), None, descriptors, None, points, None, depths, None,
            mask, None, None, None, category, GRID, "cpu", n_neighbors=NEIGHBOURS)
        total.backward()
        # only the image's category takes part: its rows are stored, the others must get no gradient
        row = prototype.cat_dict[category]
        others = [i for i in range(prototype.n_cats) if i != row]
        assert not prototype.kps.grad[others].any() and not prototype.kps_feats.grad[others].any()
        out["state_dict_layout"] = np.array([f"{k}:{tuple(v.shape)}" for k, v in state.items()])
        prefix = f"{name}/"
        out.update({
            prefix + "keypoints": keypoints, prefix + "descriptors": descriptors.detach().numpy(),
            prefix + "kps": state["kps"][row].numpy(), prefix + "kps_feats": state["kps_feats"][row].numpy(),
            prefix + "geom_temp": state["geom_temp"].numpy(),
            prefix + "points": points[0].numpy(), prefix + "depth": depths[0].numpy(), prefix + "mask": mask[0].numpy(),
            prefix + "total": np.float32(total.item()), prefix + "keypoint_alignment": np.float32(location),
            prefix + "keypoint_features": np.float32(feature), prefix + "geometry": np.float32(geometry),
            prefix + "grad_descriptors": descriptors.grad.numpy(), prefix + "grad_kps": prototype.kps.grad[row].numpy(),
            prefix + "grad_kps_feats": prototype.kps_feats.grad[row].numpy(),
            prefix + "grad_geom_temp": prototype.geom_temp.grad.numpy(),
        })
    return out


def building_block_goldens(rng: np.random.Generator) -> dict[str, np.ndarray]:
    from model_utils.category_prototype import CategoryPrototype, masked_farthest_point_sampling
    import utils.utils_losses as their_losses
    from utils.utils_geoware import closest_geodesic_neighbors, kabsch

    def randn(*shape):
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

    out: dict[str, np.ndarray] = {}
    source, target = randn(3, 7, 3), randn(3, 7, 3) * 2.5
    mask = torch.from_numpy(rng.random((3, 7, 1)) < 0.7).expand(-1, -1, 3)
    out.update({"kabsch/source": source.numpy(), "kabsch/target": target.numpy(), "kabsch/mask": mask.numpy(),
                "kabsch/plain": kabsch(source, target, estimate_scale=True, min_scale=1.0).numpy(),
                "kabsch/masked": kabsch(source, target, mask=mask, estimate_scale=True, min_scale=1.0).numpy()})
    cloud = randn(2, 40, 3)
    fps_mask = torch.from_numpy(rng.random((2, 40, 1)) < 0.6)
    torch.manual_seed(SEED)
    fps_points, fps_indices = masked_farthest_point_sampling(cloud, fps_mask, n_samples=12)
    posed, canonical = randn(1, 30, 3), randn(1, 30, 3) * 0.5
    out.update({
        "fps/points": cloud.numpy(), "fps/mask": fps_mask.numpy(), "fps/sampled": fps_points.numpy(),
        "fps/indices": fps_indices.numpy(),
        "neighbours/points": posed.numpy(), "neighbours/canonical": canonical.numpy(),
        "neighbours/geodesic": closest_geodesic_neighbors(posed, K=6)[1].numpy(),
        "loss/nn_geom": their_losses.nn_geom_loss(posed, canonical, n_neighbors=6).numpy(),
        "loss/geodesic_geom": their_losses.geodesic_geom_loss(canonical, posed, n_neighbors=6).numpy(),
        "loss/kps_alignment": their_losses.kps_alignment_loss(posed[:, :9], canonical[:, :9])[0].numpy(),
    })
    depth = torch.from_numpy(np.concatenate([rng.normal(2, 0.05, (1, 50, 1)), rng.normal(2.4, 0.05, (1, 6, 1))],
                                            axis=1).astype(np.float32))
    object_mask = torch.from_numpy(rng.random((1, 56, 1)) < 0.8)
    prototype = CategoryPrototype(feature_dims=4, n_logged_points=2, n_sample_points=4)
    feature_map = randn(1, 5, 9, 9)
    cells = torch.from_numpy(rng.uniform(-1, 9.9, (1, 6, 2)).astype(np.float32))
    valid = torch.from_numpy(rng.random((1, 6)) < 0.8)
    out.update({
        "depth_filter/depth": depth.numpy(), "depth_filter/mask": object_mask.numpy(),
        "depth_filter/kept": prototype.postprocess_mask_with_depth(object_mask, depth, n_mad=5).numpy(),
        "gather/map": feature_map.numpy(), "gather/cells": cells.numpy(), "gather/valid": valid.numpy(),
        "gather/values": their_losses.gather_by_indices(feature_map, cells.long(), valid_mask=valid).numpy(),
    })
    # farthest points among ties, with fewer masked points than samples and an empty mask (their guard)
    tied = torch.round(randn(2, 30, 3) * 2) / 2
    few = torch.zeros(2, 30, 1, dtype=torch.bool)
    few[0, [3, 11, 17, 25]] = True
    torch.manual_seed(SEED)
    tied_points, tied_indices = masked_farthest_point_sampling(tied, few, n_samples=7)
    out.update({"fps_edge/points": tied.numpy(), "fps_edge/mask": few.numpy(), "fps_edge/sampled": tied_points.numpy(),
                "fps_edge/indices": tied_indices.numpy()})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jamaisvu", type=Path, required=True, help="checkout of VICO-UoE/JamaisVu")
    parser.add_argument("--out", type=Path, required=True, help="tests/data")
    args = parser.parse_args()
    if os.environ.get("OPENCV_IO_ENABLE_OPENEXR") != "1":
        sys.exit("set OPENCV_IO_ENABLE_OPENEXR=1 (OpenCV writes EXR only then)")
    stub_unused_imports()
    sys.path.insert(0, str(args.jamaisvu))
    commit = subprocess.check_output(["git", "-C", str(args.jamaisvu), "rev-parse", "HEAD"], text=True).strip()
    rng = np.random.default_rng(SEED)
    maps_root = args.out / "jamaisvu_maps"
    write_fixtures(maps_root, rng)
    goldens = {"jamaisvu_commit": np.array(commit), **objective_goldens(maps_root, rng), **building_block_goldens(rng),
               **write_exr_cases(maps_root / "exr_cases", rng)}
    np.savez_compressed(args.out / "jamaisvu_objective_golden.npz", **goldens)
    print(f"wrote {args.out / 'jamaisvu_objective_golden.npz'} ({len(goldens)} arrays) and {maps_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
