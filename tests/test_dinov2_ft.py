"""The unified benchmark's fine-tuned DINOv2 baseline on a tiny model (ViT-S/14, random weights, 56 px)."""

from __future__ import annotations

import json

import pytest
import torch

from corrbench.errors import ConfigError
from corrbench.evaluate import RunOptions, run
from corrbench.methods.dinov2_ft import PRESETS, DINOv2FineTuned, DINOv2FineTunedTrainer
from corrbench.train.api import trainer_for
from corrbench.train.checkpoints import RESUME_KEYS
from corrbench.train.loop import train
from corrbench.train.options import TrainOptions

from result_checks import assert_summary_matches_pair_scores

TINY = {"weights": "random", "backbone": "vits14", "resolution": 56}
OPTIONS = {"weights": "random", "backbone": "vits14", "resolution": "56", "train_resolution": "56"}


def trainable_names(matcher: DINOv2FineTuned) -> set[str]:
    return {n for n, p in matcher.model.named_parameters() if p.requires_grad}


def test_defaults_are_the_unified_benchmarks():
    cfg = DINOv2FineTuned.Config()
    assert (cfg.backbone, cfg.resolution, cfg.resize, cfg.trainable_blocks, cfg.checkpoint) == ("vitb14", 840, "stretch", 2, None)
    assert (cfg.localizer, cfg.sigma, cfg.temperature) == ("gaussian-soft-argmax", 7.0, 0.03)
    recipe = PRESETS["unified"]
    assert (recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.epochs, recipe.batch_size) == ("adamw", 1e-4, 0.05, 1, 4)
    assert (recipe.clip_grad_norm, recipe.train_resolution, recipe.train_resize) == (None, 840, "stretch")
    loss = recipe.method
    assert (loss.loss_temperature, loss.loss_sigma, loss.loss_window) == (0.03, 1.5, 7)


def test_the_unified_recipe_stretches_every_dataset():
    # the recipe names its rule, so no per-dataset choice (here one that pads everything) applies
    for dataset in ("spair", "pf-pascal", "ap10k", "mp100"):
        assert PRESETS["unified"].data_options(dataset, lambda name: "pad").resize == "stretch"


@pytest.mark.parametrize("blocks", [1, 2])
def test_only_the_configured_last_blocks_train(blocks):
    matcher = DINOv2FineTuned(**TINY, trainable_blocks=blocks)
    depth = matcher.model.n_blocks
    expected = {f"blocks.{i}." for i in range(depth - blocks, depth)}
    names = trainable_names(matcher)
    assert names and all(any(n.startswith(p) for p in expected) for n in names)
    assert {n.split(".")[0] + "." + n.split(".")[1] + "." for n in names} == expected
    assert set(matcher.trainable_state_dict()) == {k for k in matcher.model.state_dict() if k.startswith(tuple(expected))}
    trainer = trainer_for(matcher)
    assert isinstance(trainer, DINOv2FineTunedTrainer)
    assert {id(p) for p in trainer.trainable_parameters()} == {
        id(p) for n, p in matcher.model.named_parameters() if n in names}
    assert "norm.weight" not in names  # the final LayerNorm stays frozen, as in the reference


def test_inference_uses_align_corner_cells_and_unit_features():
    matcher = DINOv2FineTuned(**TINY)
    (fmap,) = matcher.extract([torch.rand(3, 40, 70)])
    assert fmap.cell_rule == "align_corners" and fmap.features.shape[-2:] == (4, 4)
    assert torch.allclose(fmap.features.norm(dim=0), torch.ones(4, 4), atol=1e-5)


def test_bad_options_and_foreign_checkpoints(tmp_path):
    with pytest.raises(ConfigError, match="trainable_blocks"):
        DINOv2FineTuned(**TINY, trainable_blocks=0)
    with pytest.raises(ConfigError, match="not found"):
        DINOv2FineTuned(**TINY, checkpoint=str(tmp_path / "none.pth"))
    two = DINOv2FineTuned(**TINY)
    torch.save({"model": two.trainable_state_dict()}, tmp_path / "two.pth")
    with pytest.raises(ConfigError, match="trainable_blocks"):
        DINOv2FineTuned(**TINY, trainable_blocks=1, checkpoint=str(tmp_path / "two.pth"))


def test_engine_training_lowers_the_loss_and_the_checkpoint_round_trips(tmp_path, data_env):
    method = "dinov2-ft"
    common = dict(method=method, benchmark="synthetic", options=OPTIONS, batch_size=4, lr=1e-3, progress=False,
                  val_limit=2, seed=0)
    outcome = train(TrainOptions(out=tmp_path / "runs", max_steps=12, **common))
    assert outcome.steps == 12 and outcome.last_checkpoint is not None
    lines = [json.loads(line) for line in outcome.log_path.read_text().splitlines()]
    losses = [r["loss"] for r in lines if r["event"] == "step"]
    assert len(losses) == 12 and set(lines[0]["losses"]) == {"gaussian_ce"}
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses

    state = torch.load(outcome.last_checkpoint, weights_only=True)
    assert set(state) == {"model", *RESUME_KEYS} and state["config"]["recipe"]["weight_decay"] == 0.05
    untrained = DINOv2FineTuned(**TINY)
    assert set(state["model"]) == set(untrained.trainable_state_dict())
    assert any(not torch.equal(state["model"][k], v) for k, v in untrained.trainable_state_dict().items())

    loaded = DINOv2FineTuned(**TINY, checkpoint=str(outcome.last_checkpoint))
    for key, value in loaded.model.state_dict().items():  # trained blocks from the file, the rest from DINOv2
        assert torch.equal(value, state["model"].get(key, untrained.model.state_dict()[key])), key
    info = loaded.weights_info()
    assert info["checkpoint"]["path"] == str(outcome.last_checkpoint)
    assert info["sha256"] != untrained.weights_info()["sha256"] and loaded.feature_key() != untrained.feature_key()

    opts = RunOptions(method=method, benchmark="synthetic", limit=8, batch_size=4, out=tmp_path / "results",
                      progress=False, options={**TINY, "resolution": "56", "checkpoint": str(outcome.last_checkpoint)})
    run_outcome = run(opts)
    result = run_outcome.result
    assert result["counts"]["pairs"] == 8
    assert result["method"]["weights"]["checkpoint"]["sha256"] == info["checkpoint"]["sha256"]
    assert_summary_matches_pair_scores(result, run_outcome.directory)
