"""Golden outputs of the authors' MARCO training code (visinf/MARCO) for tests/test_marco_flow_parity.py:
the two training losses, their schedules, and every stage of the flow-anchoring mining.

Runs the authors' functions from a local checkout (imported, never copied into corrbench):

    python tools/golden/make_marco_flow_golden.py --marco PATH/TO/MARCO --out tests/data/marco_official_flow.npz

Environment (how tests/data/marco_official_flow.npz was made): visinf/MARCO commit
1ec16b9382d8619f0cdbb70724b7f031ba174e8e; a venv made with ``python3 -m venv --system-site-packages`` over
CPU torch 2.13.0, numpy 2.4.6 and scipy 1.17.1, plus ``pip install torch_kmeans`` (0.2.0), the one package
``util/flow.py`` imports beyond those; Python 3.11.7, one torch thread. Only ``util/flow.py``, ``util/losses.py``,
``util/geometry.py`` and ``util/ema.py`` are imported (no model, no datasets).

The inputs are the crafted cases of ``golden_cases.py`` (beside this script; the test rebuilds them), so the
file holds outputs only:

- ``c2f_*``: ``GaussianCrossEntropyLoss`` (the coarse-to-fine CE; window 15, temperature 10 as the engine passes
  it) with constant sigmas 3.5, 2 and 1 on ``marco_loss_case`` (float64): the loss of every keypoint alone and
  of the batch with its visibility mask, and the batch loss's gradient (sigma 3.5) as float32;
- ``sigma_*``: the sigma the released schedule (``train.yaml`` ``coarse_to_fine``: cosine 3.5 -> 1, warm-up
  1,000, decay 12,000) gives the optimisation step of each global iteration, built as ``engine.py`` builds it
  (``step=`` the iteration the epoch starts at, ``step()`` before each loss);
- ``ema_*``: ``get_ema_momentum`` over the released ramp (5 warm-up epochs, ratio 0.9) for 100 steps per epoch;
- ``dense_*``: ``SoftArgmaxL2Loss`` (temperature 10, grid 12 x 12, 48 px canvas) on int32 mined targets, as
  ``engine.py`` calls it, and its gradient (float32);
- ``pair_*``: ``marco_flow_pair`` through the engine's mining order: grid masks (``F.interpolate`` bilinear
  ``align_corners=True`` then ``> 0``, as ``engine.train_one_epoch`` writes it), ``scale_keypoints_to_featmap``,
  ``compute_dense_flow`` (grid flow), ``upsample_flow`` + ``flow_to_hsv`` (valid pixels and their 8-bit colours),
  ``kmeans_bic`` (k 7, min 3), ``filter_clusters_by_keypoints`` and ``collect_matches``. The engine's final
  ``np.random.choice`` sampling is not reproduced (corrbench draws with a torch generator, on purpose);
- ``ratio_<case>_flow``: ``compute_dense_flow`` (no keypoints) on ``marco_ratio_pair(case)``, where the released
  ratio test drops a mutual match (``drops_one``) or falls back to the plain mutual matches (``falls_back``);
- ``bic_labels``: ``kmeans_bic`` (k 7, min 3) on ``marco_colour_points``, few points, so BIC merges clusters;
- ``anchor_kept``: ``filter_clusters_by_keypoints`` on ``marco_anchoring_case``, where its radius and threshold
  decide.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import golden_cases as cases  # noqa: E402  (beside this script)

SIGMAS = (3.5, 2.0, 1.0)
SIGMA_ITERATIONS = (0, 1, 500, 998, 999, 1000, 1001, 5000, 11998, 11999, 12000, 20000)
EMA_STEPS_PER_EPOCH = 100
EMA_STEPS = (0, 1, 100, 449, 450, 451, 1000)
LOSS_CANVAS = 48


def released_ctf_config(schedule: str, sigma: float) -> SimpleNamespace:
    """``train.yaml``'s ``coarse_to_fine`` block (kernel 15, 3.5 -> 1 over 1,000 + 12,000 steps)."""
    return SimpleNamespace(loss_kernel_size=15, loss_kernel_std=sigma, schedule_std=schedule, end_sigma=1,
                           warmup_std=1_000, decay_std=12_000)


def loss_outputs(losses, ema) -> dict[str, np.ndarray]:
    case = cases.marco_loss_case()
    similarity, targets, visible = case["similarity"], case["targets"], case["visible"]
    size = (LOSS_CANVAS, LOSS_CANVAS)
    out: dict[str, np.ndarray] = {}
    for sigma in SIGMAS:
        loss = losses.GaussianCrossEntropyLoss(released_ctf_config("constant", sigma), softmax_temp=10.0)
        each = [[float(loss(similarity[b:b + 1, n:n + 1], targets[b:b + 1, n:n + 1], size)) for n in range(5)]
                for b in range(2)]
        maps = similarity.clone().requires_grad_(True)
        total = loss(maps, targets, size, visible_kps=visible)
        total.backward()
        tag = f"c2f_sigma{sigma:g}"
        out[f"{tag}_per_keypoint"] = np.asarray(each)
        out[f"{tag}_batch"] = np.asarray(float(total.detach()))
        if sigma == SIGMAS[0]:
            out[f"{tag}_grad"] = maps.grad.float().numpy()
    sigmas = []
    for iteration in SIGMA_ITERATIONS:
        scheduled = losses.GaussianCrossEntropyLoss(released_ctf_config("cosine", 3.5), softmax_temp=10.0,
                                                    step=iteration)
        scheduled.step()  # the engine steps before computing the loss of the iteration
        sigmas.append(scheduled.sigma)
    out["sigma_iterations"] = np.asarray(SIGMA_ITERATIONS)
    out["sigma_values"] = np.asarray(sigmas, dtype=np.float64)
    total_steps = 5 * EMA_STEPS_PER_EPOCH
    out["ema_steps"] = np.asarray(EMA_STEPS)
    out["ema_values"] = np.asarray([ema.get_ema_momentum(s, total_steps, 0.99, 0.9995, 0.9) for s in EMA_STEPS])

    dense = losses.SoftArgmaxL2Loss(H=12, W=12, tau=10.0)
    scores = case["mined_scores"][None].clone().requires_grad_(True)
    value = dense(scores, case["mined_targets"].clone(), trg_imgsize=size)
    value.backward()
    out["dense_loss"] = np.asarray(float(value.detach()))
    out["dense_grad"] = scores.grad[0].float().numpy()
    return out


def pair_outputs(flow) -> dict[str, np.ndarray]:
    from util.geometry import scale_keypoints_to_featmap

    pair = cases.marco_flow_pair()
    features, masks, keypoints = pair["features"], pair["masks"], pair["keypoints"]
    grid = features.shape[-1]
    canvas = masks.shape[-1]
    grid_masks = F.interpolate(masks[None].float(), (grid, grid), mode="bilinear", align_corners=True)[0].bool()
    kps_scaled = scale_keypoints_to_featmap(keypoints[None], img_size=(canvas, canvas), featmap_size=(grid, grid))
    flow_grid = flow.compute_dense_flow(features, masks=grid_masks, keypoints=kps_scaled[0])
    flow_img = flow.upsample_flow(flow_grid, (canvas, canvas))
    colours = flow.flow_to_hsv(flow_img, masks[0])
    valid = colours.to(torch.float32).norm(dim=-1) > 0
    labels = flow.kmeans_bic(colours[valid] / 255.0, k_init=7, k_min=3)
    kept = flow.filter_clusters_by_keypoints(flow_img, valid, labels, keypoints)
    matches = flow.collect_matches(flow_img, valid, labels, valid_cluster_ids=kept, object_masks=masks)
    return {
        "pair_grid_masks": grid_masks.numpy(),
        "pair_flow_grid": flow_grid.numpy(),
        "pair_valid": valid.numpy(),
        "pair_colours": colours[valid].numpy(),
        "pair_labels": labels.to(torch.int8).numpy(),
        "pair_kept": np.asarray(kept, dtype=np.int64),
        "pair_matches": matches.to(torch.int16).numpy(),
    }


def stage_outputs(flow) -> dict[str, np.ndarray]:
    out = {}
    for case in cases.RATIO_CASES:
        inputs = cases.marco_ratio_pair(case)
        out[f"ratio_{case}_flow"] = flow.compute_dense_flow(inputs["features"], masks=inputs["masks"]).numpy()
    out["bic_labels"] = flow.kmeans_bic(cases.marco_colour_points(), k_init=7, k_min=3).to(torch.int8).numpy()
    anchoring = cases.marco_anchoring_case()
    out["anchor_kept"] = np.asarray(flow.filter_clusters_by_keypoints(
        anchoring["flow"], anchoring["valid"], anchoring["labels"], anchoring["keypoints"]), dtype=np.int64)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--marco", type=Path, required=True, help="a checkout of visinf/MARCO")
    parser.add_argument("--out", type=Path, default=Path("tests/data/marco_official_flow.npz"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.marco))
    from util import ema, flow, losses

    torch.set_num_threads(1)
    out = {**loss_outputs(losses, ema), **pair_outputs(flow), **stage_outputs(flow)}
    np.savez_compressed(args.out, **out)
    commit = subprocess.check_output(["git", "-C", str(args.marco), "rev-parse", "HEAD"], text=True).strip()
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); MARCO {commit}, torch {torch.__version__}")
    print(f"pair: {int(out['pair_valid'].sum())} valid pixels, {len(np.unique(out['pair_labels']))} clusters, "
          f"kept {out['pair_kept'].tolist()}, {out['pair_matches'].shape[1]} matches; "
          f"BIC case: {len(np.unique(out['bic_labels']))} clusters")


if __name__ == "__main__":
    main()
