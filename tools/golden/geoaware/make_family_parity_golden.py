"""Golden outputs of the authors' own adapter, canvas and matching code for tests/test_geoaware_parity.py
(tests/data/geoaware_family_golden.npz and, when the released checkpoint is given, geoaware_diy_sc_release_golden.npz).

Runs the authors' code from local checkouts (imported, never copied into corrbench):

    python tools/golden/geoaware/make_family_parity_golden.py --geoaware PATH/TO/GeoAware-SC --diysc PATH/TO/DIY-SC \\
        --out tests/data/geoaware_family_golden.npz \\
        --release PATH/TO/DIY-SC/ckpts/0300_dino_spair/best.pth --release-out tests/data/geoaware_diy_sc_release_golden.npz

Environment (how the files were made): CPU torch 2.x, Python 3.11, numpy, pillow (the project's own venv; the
authors' modules need nothing else), Junyi42/GeoAware-SC 99fd6b6a, odunkel/DIY-SC e1121c07. Only
``model_utils/projection_network.py`` + ``model_utils/resnet.py`` of DIY-SC (GeoAware-SC's identical class imports
fvcore only for ``c2_msra_fill``, which DIY-SC's copy defines itself) and ``utils/utils_correspondence.py`` +
``utils/utils_dataset.py::preprocess_kps_pad`` of GeoAware-SC are used.

Cases (inputs from ``numpy.random.RandomState``, whose streams numpy keeps stable, so the test rebuilds them):

- adapter: ``AggregationNetwork(feature_dims=[32, 64], projection_dim=64, num_norm_groups=8)`` with every parameter
  drawn at random (so GroupNorm affines and the softmax mixing matter), on a ``(1, 96, 4, 4)`` input;
- mixing-weight tolerance: a 4-layer checkpoint loaded by ``load_pretrained_weights`` into a 5-layer model: the
  mixing weights they end with;
- canvas: ``resize(img, 28)`` of a 30 x 20 and a 20 x 30 image, and ``preprocess_kps_pad`` of points in them;
- matching: ``calculate_keypoint_transformation`` on 60 x 60 maps of 16-channel descriptors (their ``get_flow``
  needs 60 x 60) for ``SOFT_EVAL`` with windows 7, 5 and 0 and without ``SOFT_EVAL``, at 14 keypoints, some on
  cell borders, with strong matches and weak ones (cosine peaks near 0.05, where the authors' zeroed-outside
  window and a window that leaves the outside out disagree);
- pose alignment: ``compute_pck``'s ``ADAPT_FLIP`` + ``MUTUAL_NN`` steps (``permute_indices``,
  ``flip_keypoints``, ``get_distance_mutual_nn``, ``optimized_kps_1_to_2``) on a 'car' pair whose visibility
  breaks some flip groups, once with the mirrored source winning and once losing; and their default criterion
  (``get_distance`` on foreground masks) on the winning case with crafted box masks under which the source as is
  wins instead (the criterion decides);
- release (optional): the released DIY-SC adapter on a ``(1, 768, 2, 2)`` input.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ADAPTER_SEED, MATCH_SEED, CANVAS_SEED, RELEASE_SEED, PARAMETER_SEED, POSE_SEED = 0, 1, 2, 3, 4, 5
GRID, CHANNELS, ANNO, CANVAS = 60, 16, 840, 28


def git_head(repo: Path) -> str:
    return subprocess.check_output(["git", "-C", str(repo), "rev-parse", "HEAD"], text=True).strip()


# --- inputs, rebuilt the same way by the test ---------------------------------------------------------------
def adapter_input() -> np.ndarray:
    return np.random.RandomState(ADAPTER_SEED).standard_normal((1, 96, 4, 4)).astype(np.float32)


def adapter_parameters(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Every parameter of the adapter, drawn in sorted key order (scalars at half the scale)."""
    rng = np.random.RandomState(PARAMETER_SEED)
    return {k: np.asarray(rng.standard_normal(shapes[k]) * (1.0 if shapes[k] else 0.5), dtype=np.float32)
            for k in sorted(shapes)}


def match_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source and target ``(3600, 16)`` descriptors and ``(14, 2)`` canvas keypoints (float32)."""
    rng = np.random.RandomState(MATCH_SEED)
    trg = rng.standard_normal((GRID, GRID, CHANNELS)).astype(np.float32)
    trg[..., CHANNELS // 2:] = 0  # targets span half the channels ...
    src = np.roll(trg, shift=(3, -2), axis=(0, 1)) + 0.6 * rng.standard_normal(trg.shape).astype(np.float32)
    weak = rng.rand(GRID, GRID) < 0.35  # a third of the cells match nothing: weak peaks
    noise = rng.standard_normal((int(weak.sum()), CHANNELS)).astype(np.float32)
    noise[:, : CHANNELS // 2] *= 0.02  # ... weak sources lie almost in the other half: cosine peaks ~0.05
    src[weak] = noise
    points = rng.uniform(0, ANNO, size=(14, 2)).astype(np.float32)
    points[:4] = np.array([[14 * 7, 14 * 30], [14 * 59, 0.0], [0.0, 14 * 12], [839.0, 839.0]], dtype=np.float32)
    return src.reshape(-1, CHANNELS), trg.reshape(-1, CHANNELS), points


def pose_inputs() -> dict[str, np.ndarray]:
    """A 'car' pair (30 keypoints): source, mirrored-source and target ``(3600, 16)`` descriptors, canvas keypoints
    of both images and their visibility. The mirrored source resembles the target more (its flip wins)."""
    rng = np.random.RandomState(POSE_SEED)
    trg = rng.standard_normal((GRID, GRID, CHANNELS)).astype(np.float32)
    mirrored = np.roll(trg, shift=(1, 2), axis=(0, 1)) + 0.3 * rng.standard_normal(trg.shape).astype(np.float32)
    src = np.roll(trg, shift=(1, 2), axis=(0, 1)) + 1.5 * rng.standard_normal(trg.shape).astype(np.float32)
    src_kps = rng.uniform(20, 820, size=(30, 2)).astype(np.float32)
    trg_kps = rng.uniform(20, 820, size=(30, 2)).astype(np.float32)
    # mutually visible: both wheels of groups (10, 20), (11, 21); 0 without its partner 1; 2 and 3; 16 alone
    src_vis = np.zeros(30, dtype=np.float32)
    trg_vis = np.zeros(30, dtype=np.float32)
    src_vis[[0, 2, 3, 4, 10, 11, 16, 20, 21, 28]] = 1
    trg_vis[[0, 1, 2, 3, 4, 10, 11, 16, 20, 21, 29]] = 1
    return {"src": src.reshape(-1, CHANNELS), "mirrored": mirrored.reshape(-1, CHANNELS), "trg": trg.reshape(-1, CHANNELS),
            "src_kps": src_kps, "trg_kps": trg_kps, "src_vis": src_vis, "trg_vis": trg_vis}


def pose_masks() -> dict[str, np.ndarray]:
    """840 x 840 canvas masks (boxes, in pixels) for the mask criterion: the target's, a source mask on the cells
    that match it (the descriptors are rolled by one row and two columns), a mirrored-source mask away from them."""
    boxes = {"trg": (280, 560, 280, 560), "src": (294, 574, 308, 588), "mirrored": (0, 280, 560, 840)}
    masks = {}
    for name, (y0, y1, x0, x1) in boxes.items():
        masks[name] = np.zeros((ANNO, ANNO), dtype=np.float32)
        masks[name][y0:y1, x0:x1] = 1
    return masks


def canvas_inputs() -> list[np.ndarray]:
    rng = np.random.RandomState(CANVAS_SEED)
    return [rng.randint(0, 256, size=(20, 30, 3), dtype=np.uint8), rng.randint(0, 256, size=(30, 20, 3), dtype=np.uint8)]


def release_input() -> np.ndarray:
    return np.random.RandomState(RELEASE_SEED).standard_normal((1, 768, 2, 2)).astype(np.float32)


# --- the authors' code ------------------------------------------------------------------------------------
def adapter_cases(diysc: Path) -> dict[str, np.ndarray]:
    sys.path.insert(0, str(diysc))
    from model_utils.projection_network import AggregationNetwork

    net = AggregationNetwork(feature_dims=[32, 64], projection_dim=64, num_norm_groups=8, device="cpu")
    values = adapter_parameters({k: tuple(v.shape) for k, v in net.state_dict().items()})
    net.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()})
    net.eval()
    with torch.no_grad():
        out = net(torch.from_numpy(adapter_input()))
    golden = {"adapter_output": out.numpy()}

    torch.manual_seed(ADAPTER_SEED + 10)
    four = AggregationNetwork(feature_dims=[32] * 4, projection_dim=64, num_norm_groups=8, device="cpu")
    with torch.no_grad():
        four.mixing_weights.copy_(torch.tensor([0.3, -1.2, 2.0, 0.7]))
    five = AggregationNetwork(feature_dims=[32] * 5, projection_dim=64, num_norm_groups=8, device="cpu")
    five.load_pretrained_weights(four.state_dict())
    golden["tolerance_checkpoint_mixing"] = four.mixing_weights.detach().numpy()
    golden["tolerance_loaded_mixing"] = five.mixing_weights.detach().numpy()
    return golden


def canvas_cases(geoaware: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    sys.path.insert(0, str(geoaware))
    from utils.utils_correspondence import resize
    from utils.utils_dataset import preprocess_kps_pad

    golden = {}
    for i, pixels in enumerate(canvas_inputs()):
        h, w = pixels.shape[:2]
        golden[f"canvas_{i}"] = np.asarray(resize(Image.fromarray(pixels), CANVAS, resize=True, to_pil=True))
        kps = torch.tensor([[0.0, 0.0, 1.0], [w - 1.0, h - 1.0, 1.0], [w / 3, h / 2, 1.0]])
        golden[f"canvas_points_{i}"] = kps[:, :2].numpy()
        golden[f"canvas_points_out_{i}"] = preprocess_kps_pad(kps, w, h, CANVAS)[0][:, :2].numpy()
    return golden


def matching_cases(geoaware: Path) -> dict[str, np.ndarray]:
    sys.path.insert(0, str(geoaware))
    from utils.utils_correspondence import calculate_keypoint_transformation, kpts_to_patch_idx

    src, trg, points = match_inputs()
    normalise = lambda f: f / (torch.linalg.norm(f, dim=-1)[:, :, None] + 1e-10)  # pck_train.normalize_feats
    src_desc, trg_desc = normalise(torch.from_numpy(src)[None]), normalise(torch.from_numpy(trg)[None])
    kps = torch.cat([torch.from_numpy(points), torch.ones(len(points), 1)], dim=1)
    golden = {"match_points": points}
    for name, soft, window in (("window7", True, 7), ("window5", True, 5), ("window0", True, 0), ("argmax", False, 7)):
        args = SimpleNamespace(ANNO_SIZE=ANNO, SOFT_EVAL=soft, SOFT_EVAL_WINDOW=window)
        patch_idx = kpts_to_patch_idx(args, kps, GRID)
        golden[f"match_{name}"] = calculate_keypoint_transformation(args, src_desc, trg_desc, patch_idx, GRID).numpy()
    return golden


def pose_alignment_cases(geoaware: Path) -> dict[str, np.ndarray]:
    """``compute_pck``'s ADAPT_FLIP + MUTUAL_NN steps for one pair, with the source as is and mirrored swapped."""
    sys.path.insert(0, str(geoaware))
    from utils.utils_correspondence import (calculate_keypoint_transformation, get_distance, get_distance_mutual_nn,
                                            kpts_to_patch_idx)
    from utils.utils_geoware import SPAIR_FLIP, flip_keypoints, optimized_kps_1_to_2, permute_indices

    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # their helpers move tensors to the GPU; CPU here
    data = pose_inputs()
    normalise = lambda f: f / (torch.linalg.norm(f, dim=-1)[:, :, None] + 1e-10)
    trg = normalise(torch.from_numpy(data["trg"])[None])
    img1_kps = torch.cat([torch.from_numpy(data["src_kps"]), torch.from_numpy(data["src_vis"])[:, None]], 1)
    img2_kps = torch.cat([torch.from_numpy(data["trg_kps"]), torch.from_numpy(data["trg_vis"])[:, None]], 1)
    img1_kps[:, :2] *= img1_kps[:, 2:]  # their loader zeroes invisible keypoints
    img2_kps[:, :2] *= img2_kps[:, 2:]
    vis = img1_kps[:, 2] * img2_kps[:, 2] > 0
    permute_list = SPAIR_FLIP["car"]
    args = SimpleNamespace(ANNO_SIZE=ANNO, SOFT_EVAL=True, SOFT_EVAL_WINDOW=7)
    golden = {}
    for name, (plain, mirrored) in {"flip_wins": ("src", "mirrored"), "flip_loses": ("mirrored", "src")}.items():
        d1, d1f = normalise(torch.from_numpy(data[plain])[None]), normalise(torch.from_numpy(data[mirrored])[None])
        kps = calculate_keypoint_transformation(args, d1, trg, kpts_to_patch_idx(args, img1_kps, GRID), GRID)
        img1_kps_flip = flip_keypoints(img1_kps, ANNO, permute_indices(permute_list, vis))
        kps_flip = calculate_keypoint_transformation(args, d1f, trg, kpts_to_patch_idx(args, img1_kps_flip, GRID), GRID)
        original, flipped = get_distance_mutual_nn(d1, trg), get_distance_mutual_nn(d1f, trg)
        final = optimized_kps_1_to_2(args, kps.clone(), kps_flip, img1_kps, img2_kps, flipped, original, vis,
                                     permute_list)
        golden[f"pose_{name}"] = final[vis].numpy()
        golden[f"pose_{name}_distances"] = np.array([original.item(), flipped.item()])
        if name == "flip_wins":  # the same pair under their default criterion: the source as is wins
            masks = {key: torch.from_numpy(value) for key, value in pose_masks().items()}
            original = get_distance(d1, trg, masks["src"], masks["trg"])
            flipped = get_distance(d1f, trg, masks["mirrored"], masks["trg"])
            final = optimized_kps_1_to_2(args, kps.clone(), kps_flip, img1_kps, img2_kps, flipped, original, vis,
                                         permute_list)
            golden["pose_mask_keeps"] = final[vis].numpy()
            golden["pose_mask_keeps_distances"] = np.array([original.item(), flipped.item()])
    golden["pose_visible"] = np.nonzero(vis.numpy())[0]
    return golden


def release_case(diysc: Path, checkpoint: Path) -> dict[str, np.ndarray]:
    sys.path.insert(0, str(diysc))
    from model_utils.projection_network import AggregationNetwork

    net = AggregationNetwork(feature_dims=[768], projection_dim=768, device="cpu")
    net.load_pretrained_weights(torch.load(checkpoint, map_location="cpu", weights_only=True))
    net.eval()
    with torch.no_grad():
        return {"release_output": net(torch.from_numpy(release_input())).numpy()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--geoaware", type=Path, required=True)
    parser.add_argument("--diysc", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--release", type=Path)
    parser.add_argument("--release-out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    golden = {**adapter_cases(args.diysc), **canvas_cases(args.geoaware), **matching_cases(args.geoaware),
              **pose_alignment_cases(args.geoaware)}
    golden["commits"] = np.array([git_head(args.geoaware), git_head(args.diysc)])
    np.savez_compressed(args.out, **golden)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    if args.release is not None:
        np.savez_compressed(args.release_out, **release_case(args.diysc, args.release))
        print(f"wrote {args.release_out} ({args.release_out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
