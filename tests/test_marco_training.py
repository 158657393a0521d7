"""MARCO's training step and presets on a tiny model (ViT-S/14, random weights, 56 px canvas)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from corrbench.data_root import resolve_data_root
from corrbench.errors import ConfigError
from corrbench.datasets import make_adapter
from corrbench.methods.marco.checkpoint import load_checkpoint
from corrbench.methods.marco.flow_anchoring import flow_anchoring_loss, mine_matches, mined_similarity_maps
from corrbench.methods.marco.losses import CoarseToFineLoss
from corrbench.methods.marco.matcher import MARCOMatcher
from corrbench.methods.marco.model import MARCOModel
from corrbench.methods.marco.schedules import RELEASED_SIGMA
from corrbench.methods.marco.training import PRESETS, MARCOTrainer, MARCOTrainingSettings
from corrbench.registry import BENCHMARKS
from corrbench.train.data import TrainDataOptions, TrainingPairs, collate_training
from corrbench.train.api import TrainingPlan, trainer_for
from corrbench.train.checkpoints import RESUME_KEYS
from corrbench.train.loop import train
from corrbench.train.options import TrainOptions

TINY = {"weights": "random", "checkpoint": "random", "backbone": "vits14", "adapter_blocks": (10, 12),
        "resolution": 56}
CANVAS = 56


def make_trainer(settings: MARCOTrainingSettings | None = None, steps_per_epoch: int = 10) -> MARCOTrainer:
    trainer = MARCOTrainer(MARCOMatcher(**TINY))
    recipe = dataclasses.replace(PRESETS["released"], train_resolution=CANVAS, method=settings or MARCOTrainingSettings())
    trainer.configure_training(recipe, TrainingPlan(steps_per_epoch=steps_per_epoch, epochs=2,
                                                    device=torch.device("cpu"), dtype="float32"))
    return trainer


@pytest.fixture(scope="module")
def batch(synthetic_data_root):
    pairs = make_adapter(BENCHMARKS.get("synthetic"), resolve_data_root(synthetic_data_root)).pairs("trn").pairs
    options = TrainDataOptions(resolution=CANVAS, resize=MARCOTrainer.auto_train_resize("synthetic"))
    data = TrainingPairs(pairs[:3], options)
    return collate_training([data[i] for i in range(3)])


def test_presets_are_the_released_and_the_papers_recipes():
    released, paper = PRESETS["released"], PRESETS["paper"]
    assert (released.optimizer, released.lr, released.weight_decay, released.batch_size, released.epochs,
            released.clip_grad_norm, released.train_resolution) == ("adamw", 1e-4, 0.0, 12, 8, 0.1, 630)
    settings = released.method
    assert (settings.sigma_schedule, settings.flow_samples, settings.flow_weight, settings.flow_k) == ("released", 300, 1.0, 7)
    assert settings.momentum_schedule(1000).ramp_steps == 4500 and settings.momentum_schedule(1000)(0) == 0.99
    assert settings.momentum_schedule(1000)(4500) == 0.9995
    assert (paper.optimizer, paper.batch_size, paper.epochs, paper.lr) == ("adam", 16, 10, 1e-4)
    assert paper.method.sigma_schedule == "paper" and paper.method.momentum_schedule(50)(0) == 0.999
    trainer = MARCOTrainer(MARCOMatcher(**TINY))
    trainer.configure_training(paper, TrainingPlan(steps_per_epoch=10, epochs=10, device=torch.device("cpu"),
                                                   dtype="float32"))
    assert trainer.sigma(0) == 3.0 and trainer.sigma(50) == pytest.approx(2.0) and trainer.sigma(100) == 1.0


def authors_similarity(features: torch.Tensor, points: torch.Tensor, canvas: int) -> torch.Tensor:
    """The released ``sample_descriptors_w_sim``, written out: x * w / W, then x / (w - 1) * 2 - 1, align_corners."""
    source, target = features[:, 0], features[:, 1]
    h, w = source.shape[-2:]
    cells = points * torch.tensor([w / canvas, h / canvas])
    grid = torch.stack((cells[..., 0] / (w - 1) * 2 - 1, cells[..., 1] / (h - 1) * 2 - 1), dim=-1)
    descriptors = F.grid_sample(source, grid[:, :, None], mode="bilinear", padding_mode="border",
                                align_corners=True)[..., 0].transpose(1, 2)
    return torch.bmm(descriptors, target.flatten(2)).unflatten(-1, (h, w))


def test_auto_resize_pads_pf_pascal_and_ap10k_as_the_authors_loaders():
    chosen = {d: MARCOTrainer.auto_train_resize(d) for d in ("spair", "spair-u", "mp100", "pf-pascal", "ap10k", "synthetic")}
    assert chosen == {"spair": "stretch", "spair-u": "stretch", "mp100": "stretch", "pf-pascal": "pad", "ap10k": "pad",
                      "synthetic": "stretch"}
    assert all(recipe.train_resize == "auto" for recipe in PRESETS.values())
    options = PRESETS["released"].data_options("pf-pascal", MARCOTrainer.auto_train_resize)
    assert (options.resolution, options.resize, options.masks) == (630, "pad", "auto")


def test_step_follows_the_released_losses_and_normalisation(batch):
    trainer = make_trainer()
    generator_state = trainer.mining_generator.get_state()
    out = trainer.training_step(batch, step=5, epoch=0)

    images = batch.images.flatten(0, 1)
    with torch.no_grad():
        features = trainer.model(images).unflatten(0, (3, 2))
        teacher = trainer.teacher.module(images).unflatten(0, (3, 2))
    similarity = authors_similarity(features, batch.keypoints[:, 0], CANVAS)
    expected_ce = CoarseToFineLoss(RELEASED_SIGMA)(similarity, batch.keypoints[:, 1], (CANVAS, CANVAS), 5,
                                                   batch.visible, reduction="sum") / batch.num_points.sum()
    torch.testing.assert_close(out.losses["gaussian_ce"], expected_ce)

    generator = torch.Generator()
    generator.set_state(generator_state)
    mined = [mine_matches(teacher[i], batch.masks[i], batch.keypoints[i, :, : int(batch.num_points[i])],
                          trainer.flow, generator=generator) for i in range(3)]
    total = sum(m.num_matches for m in mined)
    assert total > 0 and out.diagnostics["mined_points"] == total
    expected_dense = sum(flow_anchoring_loss(mined_similarity_maps(features[i, 0], features[i, 1], m.source,
                                                                    (CANVAS, CANVAS)), m.target, (CANVAS, CANVAS))
                         * m.num_matches for i, m in enumerate(mined) if m.num_matches) / total
    torch.testing.assert_close(out.losses["flow_l2"], expected_dense)
    torch.testing.assert_close(out.loss.detach(), expected_ce + expected_dense)
    assert out.loss.requires_grad and out.diagnostics["sigma"] == RELEASED_SIGMA(6) == 3.5
    assert {"student_forward", "teacher_forward", "mining"} <= set(out.seconds)


class CountedReads(torch.Tensor):
    """A tensor that counts its reads to Python numbers (each one a device -> host sync on a GPU)."""

    reads = 0

    def tolist(self):
        CountedReads.reads += 1
        return super().tolist()

    def __int__(self):
        CountedReads.reads += 1
        return super().__int__()

    def item(self):
        CountedReads.reads += 1
        return super().item()


def test_mining_reads_the_keypoint_counts_once_per_batch(batch):
    trainer = make_trainer()
    CountedReads.reads = 0
    counted = dataclasses.replace(batch, num_points=batch.num_points.as_subclass(CountedReads))
    trainer.training_step(counted, step=0, epoch=0)
    assert batch.size == 3 and CountedReads.reads == 1


def test_teacher_follows_the_student_with_the_momentum_of_the_step():
    trainer = make_trainer(steps_per_epoch=4)  # ramp over int(5 * 4 * 0.9) = 18 steps
    before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    with torch.no_grad():
        for p in trainer.trainable_parameters():
            p.add_(torch.randn_like(p))
    student = trainer.model.trainable_state_dict()
    diagnostics = trainer.on_optimizer_step(3)
    m = trainer.momentum(3)
    assert diagnostics == {"ema_momentum": m} and 0.99 < m < 0.9995
    for key, value in trainer.teacher.state_dict().items():
        torch.testing.assert_close(value, before[key] * m + (1 - m) * student[key], rtol=0, atol=1e-7)


def test_supervised_only_ablation_has_no_teacher(batch):
    trainer = make_trainer(MARCOTrainingSettings(self_distillation=False))
    out = trainer.training_step(batch, step=0, epoch=0)
    assert trainer.teacher is None and out.losses["flow_l2"] == 0 and "mining" not in out.seconds
    assert trainer.on_optimizer_step(0) == {} and set(trainer.release_state()) == {"model"}


def test_checkpoint_round_trip_in_the_released_layout(tmp_path):
    trainer = make_trainer()
    with torch.no_grad():
        for p in trainer.trainable_parameters():
            p.normal_()
    trainer.on_optimizer_step(0)
    state = trainer.release_state()
    assert set(state) == {"model", "ema"} and set(state["model"]) == set(trainer.model.trainable_shapes())
    assert all(".adapter." in k or k.startswith("upscale.") for k in state["model"])
    torch.save(state, tmp_path / "ours.pth")

    fresh = MARCOModel(trainer.model.architecture, None)  # the checkpoint module's strict loader reads our file
    load_checkpoint(fresh, tmp_path / "ours.pth", progress=False)
    for key, value in fresh.trainable_state_dict().items():
        assert torch.equal(value, state["model"][key]), key

    other = make_trainer()
    other.load_release_state(torch.load(tmp_path / "ours.pth", weights_only=True))
    for key, value in other.teacher.state_dict().items():
        assert torch.equal(value, state["ema"][key]), key
    for key, value in other.model.trainable_state_dict().items():
        assert torch.equal(value, state["model"][key]), key


def test_trainer_for_finds_marcos_trainer():
    assert MARCOMatcher.trainer == "corrbench.methods.marco.training:MARCOTrainer"
    assert isinstance(trainer_for(MARCOMatcher(**TINY)), MARCOTrainer)


def test_engine_trains_and_resumes_marco_bit_identically(tmp_path, data_env):
    marco_method = "marco"
    # no checkpoint option: training starts from fresh adapters and head (never the released file)
    options = {"weights": "random", "backbone": "vits14", "adapter_blocks": "10,12", "resolution": str(CANVAS),
               "train_resolution": str(CANVAS)}
    common = dict(method=marco_method, benchmark="synthetic", options=options, batch_size=4, progress=False,
                  val_limit=2, seed=3)
    straight = train(TrainOptions(out=tmp_path / "a", max_steps=2, **common))
    first = train(TrainOptions(out=tmp_path / "b", max_steps=1, **common))
    resumed = train(TrainOptions(out=tmp_path / "b", max_steps=2, resume="auto", **common))
    a = torch.load(straight.last_checkpoint, weights_only=True)
    b = torch.load(resumed.last_checkpoint, weights_only=True)
    assert set(a) == {"model", "ema", *RESUME_KEYS} and a["step"] == b["step"] == 2 and first.steps == 1
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    config = json.loads((straight.directory / "train.json").read_text())
    assert config["identity"]["config"]["checkpoint"] == "random" and config["identity"]["config"]["seed"] == 3
    lines = [json.loads(line) for line in (straight.directory / "log.jsonl").read_text().splitlines()]
    step = next(r for r in lines if r["event"] == "step")
    assert step["ema_momentum"] == 0.99 and step["sigma"] == 3.5 and step["mined_points"] > 0
    assert {"data", "student_forward", "teacher_forward", "mining", "backward", "optimizer"} <= set(step["seconds"])
    assert set(step["losses"]) == {"gaussian_ce", "flow_l2"}
    assert [r["event"] for r in lines].count("validation") == 1


def test_the_authors_resume_path_accepts_our_checkpoint(tmp_path, data_env):
    # util/misc.resume_from_checkpoint in the authors' code: model.load_state_dict(ckpt["model"], strict=False),
    # then, since "epoch" is present, their optimizer -- AdamW over one group of the parameters whose names hold
    # "adapter" or "upscale", in module order -- loads ckpt["optimizer"] and training goes on from epoch + 1.
    # Re-enacted here on a fresh model: every state tensor must land on a parameter of its own shape.
    options = {"weights": "random", "backbone": "vits14", "adapter_blocks": "10,12", "resolution": str(CANVAS),
               "train_resolution": str(CANVAS)}
    outcome = train(TrainOptions(method="marco", benchmark="synthetic", options=options, batch_size=4, epochs=1,
                                 max_steps=1, validate=False, progress=False, out=tmp_path, seed=3))
    checkpoint = torch.load(outcome.last_checkpoint, weights_only=True)
    model = MARCOMatcher(**{**TINY, "seed": 7}).model
    missing, unexpected = model.load_state_dict(checkpoint["model"], strict=False)
    assert not unexpected and not [k for k in missing if "adapter" in k or "upscale" in k]
    for name, parameter in model.named_parameters():
        parameter.requires_grad = "adapter" in name or "upscale" in name
    theirs = [p for p in model.parameters() if p.requires_grad]
    # the optimiser's positions follow our trainable_parameters(), i.e. the released key order
    assert [n for n, p in model.named_parameters() if p.requires_grad] == list(checkpoint["model"])
    optimizer = torch.optim.AdamW([{"params": theirs, "initial_lr": 1e-4}], lr=1e-4, weight_decay=0.0)
    optimizer.load_state_dict(checkpoint["optimizer"])
    assert checkpoint["epoch"] + 1 == 0  # stopped inside the first epoch: they would restart it
    assert len(optimizer.state) == len(theirs)
    for parameter in theirs:
        assert optimizer.state[parameter]["exp_avg"].shape == parameter.shape
    sum(p.sum() for p in theirs).backward()
    optimizer.step()


@pytest.mark.parametrize("preset, settings, message", [
    ("relased", {}, "unknown training preset 'relased'"),
    (None, {"self_distilation": "false"}, "did you mean self_distillation"),
])
def test_wrong_preset_or_key_is_reported_before_the_model_is_built(tmp_path, data_env, monkeypatch, preset, settings,
                                                                   message):
    # Building MARCO means loading (and perhaps downloading) a ViT-L: a typo must not wait for it.
    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the options were checked")

    monkeypatch.setattr(MARCOMatcher, "__init__", refuse)
    with pytest.raises(ConfigError, match=message):
        train(TrainOptions(method="marco", benchmark="synthetic", preset=preset, options=settings, out=tmp_path,
                           device="cpu", progress=False))
