"""MARCO's ablation presets (paper Tab. 4 and 8): recipes, the flow-anchoring variants' mining, one step each."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from corrbench.data_root import resolve_data_root
from corrbench.datasets import make_adapter
from corrbench.errors import ConfigError
from corrbench.methods.marco import flow_anchoring as fa
from corrbench.methods.marco.matcher import MARCOMatcher
from corrbench.methods.marco.mining import grid_mutual_matches, masks_to_feature_grid
from corrbench.methods.marco.training import ABLATION_PRESETS, PRESETS, MARCOTrainer, MARCOTrainingSettings
from corrbench.registry import BENCHMARKS
from corrbench.train.data import TrainDataOptions, TrainingPairs, collate_training
from corrbench.train.api import TrainingPlan
from corrbench.train.loop import train
from corrbench.train.options import TrainOptions

TINY = {"weights": "random", "checkpoint": "random", "backbone": "vits14", "adapter_blocks": (10, 12),
        "resolution": 56}
CANVAS = 56

#: Each ablation's settings that differ from the released recipe's, and nothing else.
EXPECTED_CHANGES = {
    "marco-sup": {"self_distillation": False},
    "sigma-fixed-1": {"sigma_schedule": "fixed-1"},
    "sigma-fixed-3": {"sigma_schedule": "fixed-3"},
    "flow-raw": {"flow_pseudo_labels": "nearest", "flow_keypoint_seeds": False, "flow_anchor_clusters": False},
    "flow-mnn-only": {"flow_pseudo_labels": "mutual", "flow_keypoint_seeds": False, "flow_anchor_clusters": False},
    "flow-no-gt-anchors": {"flow_keypoint_seeds": False, "flow_anchor_clusters": False},
    "geosc-objective": {"objective": "geosc", "self_distillation": False},
}
#: ... and the generic recipe fields that differ (Geo-SC's flip augmentation is a data-pipeline field).
EXPECTED_RECIPE_CHANGES = {"geosc-objective": {"flip_views": True}}


# ---------------------------------------------------------------------------------------------------------
# Presets.


def test_each_ablation_is_the_released_recipe_with_exactly_its_change():
    assert set(ABLATION_PRESETS) == set(EXPECTED_CHANGES) and set(ABLATION_PRESETS) <= set(PRESETS)
    released = PRESETS["released"].to_json()
    for name, changes in EXPECTED_CHANGES.items():
        recipe = PRESETS[name].to_json()
        generic = {k: v for k, v in released.items() if k != "method"} | EXPECTED_RECIPE_CHANGES.get(name, {})
        assert {k: v for k, v in recipe.items() if k != "method"} == generic, name
        differs = {k: v for k, v in recipe["method"].items() if released["method"][k] != v}
        assert differs == changes, name


def test_flow_variants_reach_the_mining_config():
    configs = {name: PRESETS[name].method.flow_config() for name in ("released", "flow-raw", "flow-mnn-only",
                                                                      "flow-no-gt-anchors")}
    assert (configs["released"].pseudo_labels, configs["released"].keypoint_seeds,
            configs["released"].anchor_clusters) == ("flow", True, True)
    assert configs["flow-raw"].pseudo_labels == "nearest" and configs["flow-mnn-only"].pseudo_labels == "mutual"
    no_gt = configs["flow-no-gt-anchors"]
    assert (no_gt.pseudo_labels, no_gt.keypoint_seeds, no_gt.anchor_clusters) == ("flow", False, False)


def test_inconsistent_ablation_settings_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="set both to False"):
        MARCOTrainingSettings(flow_pseudo_labels="mutual")
    with pytest.raises(ConfigError, match="pseudo_labels"):
        MARCOTrainingSettings(flow_pseudo_labels="dense", flow_keypoint_seeds=False, flow_anchor_clusters=False)
    with pytest.raises(ConfigError, match="objective"):
        MARCOTrainingSettings(objective="infonce")


# ---------------------------------------------------------------------------------------------------------
# Mining variants on a constructed pair: the target is the source translated by SHIFT px.

IMAGE, GRID, SHIFT = 64, 16, (8.0, 4.0)


def _field(points: torch.Tensor, channels: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    freqs = torch.randn(channels // 2, 2, generator=g, dtype=torch.float64) / (IMAGE / 8)
    phase = torch.rand(channels // 2, generator=g, dtype=torch.float64) * 2 * math.pi
    z = points @ freqs.T + phase
    return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)


def _translated_pair():
    ys, xs = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    cells_px = torch.stack([xs, ys], -1).reshape(-1, 2).double() * IMAGE / GRID
    shift = torch.tensor(SHIFT, dtype=torch.float64)
    feats = torch.stack([_field(cells_px), _field(cells_px - shift)]).float()  # (2, N, C)
    feats = feats.transpose(1, 2).reshape(2, -1, GRID, GRID)
    py, px = torch.meshgrid(torch.arange(IMAGE, dtype=torch.float64), torch.arange(IMAGE, dtype=torch.float64),
                            indexing="ij")
    src_mask = ((px - 28) / 18) ** 2 + ((py - 30) / 14) ** 2 <= 1
    trg_mask = ((px - 28 - SHIFT[0]) / 18) ** 2 + ((py - 30 - SHIFT[1]) / 14) ** 2 <= 1
    angle = torch.linspace(0, 2 * math.pi, 9)[:-1].double()
    kp_src = torch.stack([28 + 10 * angle.cos(), 30 + 8 * angle.sin()], -1)
    return feats, torch.stack([src_mask, trg_mask]), torch.stack([kp_src, kp_src + shift]).float()


def _config(**changes) -> fa.FlowAnchoringConfig:
    return fa.FlowAnchoringConfig(num_samples=10**6, min_matches=1, min_valid_pixels=1, **changes)


def _pairs(mined: fa.MinedMatches) -> set[tuple[float, ...]]:
    return {tuple(row) for row in torch.cat([mined.source, mined.target], 1).tolist()}


def test_mnn_only_returns_exactly_the_mutual_matches_as_pixels():
    feats, masks, keypoints = _translated_pair()
    mined = fa.mine_matches(feats, masks, keypoints, _config(pseudo_labels="mutual", keypoint_seeds=False,
                                                             anchor_clusters=False))
    grid_masks = masks_to_feature_grid(masks, (GRID, GRID))
    src, trg, _ = grid_mutual_matches(feats[0], feats[1], grid_masks[0], grid_masks[1])
    scale = IMAGE / GRID
    expected = {(sx * scale, sy * scale, tx * scale, ty * scale) for (sx, sy), (tx, ty) in zip(src.tolist(), trg.tolist())}
    assert mined.skipped is None and len(expected) > 20
    assert _pairs(mined) == expected
    assert "keypoint_seeds" not in mined.counts and "triangles" not in mined.counts
    # a pure translation by (2, 1) cells: every mutual match carries it
    assert torch.equal(mined.target - mined.source, torch.tensor([SHIFT]).expand_as(mined.source))


def test_raw_flow_pairs_every_source_cell_with_its_nearest_target_cell():
    feats, masks, keypoints = _translated_pair()
    mined = fa.mine_matches(feats, masks, keypoints, _config(pseudo_labels="nearest", keypoint_seeds=False,
                                                             anchor_clusters=False))
    grid_masks = masks_to_feature_grid(masks, (GRID, GRID))
    sy, sx = torch.nonzero(grid_masks[0], as_tuple=True)
    ty, tx = torch.nonzero(grid_masks[1], as_tuple=True)
    a = F.normalize(feats[0][:, sy, sx].T, dim=1)
    b = F.normalize(feats[1][:, ty, tx].T, dim=1)
    nearest = (a @ b.T).argmax(dim=1)
    scale = IMAGE / GRID
    expected = {(x * scale, y * scale, tx[j].item() * scale, ty[j].item() * scale)
                for x, y, j in zip(sx.tolist(), sy.tolist(), nearest.tolist())}
    assert mined.counts["nearest"] == int(grid_masks[0].sum()) == len(_pairs(mined))
    assert _pairs(mined) == expected
    # more pairs than the mutual ones: the raw flow keeps the non-mutual (unreliable) ones too
    mutual = fa.mine_matches(feats, masks, keypoints, _config(pseudo_labels="mutual", keypoint_seeds=False,
                                                              anchor_clusters=False))
    assert _pairs(mutual) < _pairs(mined)


def test_no_gt_anchors_keeps_the_clusters_that_contradicting_anchors_reject():
    feats, masks, keypoints = _translated_pair()
    mirrored = keypoints.clone()
    mirrored[1] = 2.0  # every GT target far (> 10 px) from where the flow carries its source keypoint
    anchored = fa.mine_matches(feats, masks, mirrored, _config())
    assert anchored.num_matches == 0 and "anchored matches" in anchored.skipped

    variant = _config(keypoint_seeds=False, anchor_clusters=False)
    free = fa.mine_matches(feats, masks, mirrored, variant)
    assert free.skipped is None and free.num_matches > 100
    assert free.counts["keypoint_seeds"] == 0 and "anchored_clusters" not in free.counts
    # flow pixels landing in the target mask: mostly the translation (the hull's edge blends with zero flow in
    # the released upsampling), and independent of the GT keypoints
    error = (free.target - free.source - torch.tensor(SHIFT)).abs().amax(dim=1)
    assert (error <= 1.0).float().mean() > 0.8
    assert masks[1][free.target[:, 1].long(), free.target[:, 0].long()].all()
    without_keypoints = fa.mine_matches(feats, masks, keypoints[:, :0], variant)
    assert _pairs(without_keypoints) == _pairs(free)
    # the full chain with the true GT keypoints seeds them and keeps matches
    full = fa.mine_matches(feats, masks, keypoints, _config())
    assert full.counts["keypoint_seeds"] > 0 and full.num_matches > 0


# ---------------------------------------------------------------------------------------------------------
# One training step per preset.


@pytest.fixture(scope="module")
def batch(synthetic_data_root):
    pairs = make_adapter(BENCHMARKS.get("synthetic"), resolve_data_root(synthetic_data_root)).pairs("trn").pairs
    options = TrainDataOptions(resolution=CANVAS, resize=MARCOTrainer.auto_train_resize("synthetic"))
    data = TrainingPairs(pairs[:2], options)
    return collate_training([data[i] for i in range(2)])


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES))
def test_one_training_step_per_preset(name, batch):
    trainer = MARCOTrainer(MARCOMatcher(**TINY))
    recipe = dataclasses.replace(PRESETS[name], train_resolution=CANVAS)
    trainer.configure_training(recipe, TrainingPlan(steps_per_epoch=5, epochs=1, device=torch.device("cpu"),
                                                    dtype="float32"))
    assert trainer.settings == PRESETS[name].method
    if trainer.teacher is not None:
        assert trainer.flow == PRESETS[name].method.flow_config()
    out = trainer.training_step(batch, step=0, epoch=0)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    parameters = trainer.trainable_parameters()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in parameters)
    settings = PRESETS[name].method
    assert (trainer.teacher is None) == (not settings.self_distillation)
    if settings.objective == "geosc":
        assert set(out.losses) == {"info_nce", "flow_epe", "flow_l2"} and "sigma" not in out.diagnostics
        assert trainer.logit_scale is parameters[-1] and trainer.logit_scale.grad is not None
        assert out.diagnostics["logit_scale"] == pytest.approx(math.log(1 / 0.07))
    else:
        assert set(out.losses) == {"gaussian_ce", "flow_l2"}
        expected_sigma = {"sigma-fixed-1": 1.0, "sigma-fixed-3": 3.0}.get(name, 3.5)
        assert out.diagnostics["sigma"] == expected_sigma
    if not settings.self_distillation:
        assert out.losses["flow_l2"] == 0 and "mining" not in out.seconds


def test_engine_records_the_preset_and_saves_geoscs_scale(tmp_path, data_env):
    options = {"weights": "random", "backbone": "vits14", "adapter_blocks": "10,12", "resolution": str(CANVAS),
               "train_resolution": str(CANVAS), "geosc_temperature": "0.05"}
    outcome = train(TrainOptions(method="marco", benchmark="synthetic", options=options, preset="geosc-objective",
                                 batch_size=2, max_steps=1, progress=False, val_limit=1, seed=1, out=tmp_path))
    config = json.loads((outcome.directory / "train.json").read_text())
    assert config["identity"]["preset"] == "geosc-objective"
    method = config["recipe"]["method"]
    assert (method["objective"], method["self_distillation"], method["geosc_temperature"]) == ("geosc", False, 0.05)
    assert config["recipe"]["flip_views"] is True
    checkpoint = torch.load(outcome.last_checkpoint, weights_only=True)
    assert set(checkpoint["model"]) and "ema" not in checkpoint
    assert checkpoint["trainer"]["logit_scale"].shape == ()
    step = next(json.loads(line) for line in (outcome.directory / "log.jsonl").read_text().splitlines()
                if json.loads(line)["event"] == "step")
    assert set(step["losses"]) == {"info_nce", "flow_epe", "flip_epe", "flow_l2"}
