"""The training engine and its data pipeline, on a tiny trainable method and the synthetic benchmark."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from corrbench import FeatureMap, FeatureMatcher
from corrbench.backbones import IMAGENET_MEAN, IMAGENET_STD
from corrbench.data_root import resolve_data_root
from corrbench.datasets import make_adapter
from corrbench.errors import ConfigError
from corrbench.geometry import ResizePolicy, pixels_to_cells
from corrbench.localizers import build_localizer
from corrbench.similarity import sample_descriptors, similarity_maps
from corrbench.registry import BENCHMARKS, METHODS
from corrbench.train.data import (
    EpochBatches,
    TrainDataOptions,
    TrainingPairs,
    collate_training,
    nearest_resize,
    resolve_resize,
    sam_mask_path,
)
from corrbench.train.api import StepOutput, TrainerBase, TrainingError, TrainingRecipe
from corrbench.train.checkpoints import RESUME_KEYS
from corrbench.train.loop import train
from corrbench.train.options import TrainOptions
from corrbench.train.record import LOG_FIELDS, VALIDATION_FIELDS
from corrbench.train.validation import validate


class TinyTrainable(TrainerBase, FeatureMatcher):
    """A 4-layer CNN with coordinate channels, trained with cross-entropy on the GT keypoint's cell."""

    description = "test-only trainable CNN"

    @dataclasses.dataclass
    class Config:
        resolution: int = 64
        dim: int = 16

    def __init__(self, **options):
        super().__init__(**options)
        d = self.config.dim
        self.net = nn.Sequential(
            nn.Conv2d(5, d, 3, padding=1), nn.ReLU(), nn.Conv2d(d, d, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(d, d, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv2d(d, d, 3, padding=1),
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def build_localizer(self):
        return build_localizer("argmax")

    def forward(self, x):
        b, _, h, w = x.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        return self.net(torch.cat([x, xs.expand(b, 1, h, w), ys.expand(b, 1, h, w)], 1))

    def extract(self, images):
        policy = ResizePolicy("stretch", self.config.resolution, rule="scale")
        maps = []
        for image in images:
            canvas, transform = policy.apply(image)
            maps.append(FeatureMap(self((canvas[None] - self.mean) / self.std)[0], transform, cell_rule="marco"))
        return maps

    # -- Trainable
    def training_presets(self):
        recipe = TrainingRecipe(optimizer="adamw", lr=3e-3, batch_size=8, epochs=2, clip_grad_norm=1.0,
                                train_resolution=self.config.resolution)
        return {"default": recipe, "other": dataclasses.replace(recipe, optimizer="adam")}

    def configure_training(self, recipe, plan):
        self.plan = plan

    def trainable_parameters(self):
        return list(self.net.parameters())

    def student(self):
        return self

    def training_step(self, batch, step, epoch):
        b = batch.size
        features = self.student_forward(batch.images.flatten(0, 1)).unflatten(0, (b, 2))
        side, grid = batch.canvas_size[1], features.shape[-1]
        cells = pixels_to_cells(batch.keypoints[:, 0], (side, side), (grid, grid), "marco")
        scores = similarity_maps(sample_descriptors(features[:, 0], cells, "marco"), features[:, 1], normalize=True)
        target = (batch.keypoints[:, 1] * grid / side).round().long().clamp(0, grid - 1)
        ce = F.cross_entropy(scores.flatten(2).transpose(1, 2) / 0.1, target[..., 1] * grid + target[..., 0],
                             reduction="none")
        loss = (ce * batch.visible).sum() / batch.visible.sum()
        return StepOutput(loss=loss, losses={"ce": loss.detach()}, diagnostics={"points": batch.visible.sum()})

    def release_state(self):
        return {"model": {k: v.detach().clone() for k, v in self.net.state_dict().items()}}

    def load_release_state(self, state):
        self.net.load_state_dict(state["model"])


if "test-tiny-trainable" not in METHODS:
    METHODS.register("test-tiny-trainable", TinyTrainable)


def options(tmp_path, **overrides) -> TrainOptions:
    base = dict(method="test-tiny-trainable", benchmark="synthetic", out=tmp_path, progress=False)
    return TrainOptions(**{**base, **overrides})


def steps(directory) -> list[dict]:
    return [json.loads(line) for line in (directory / "log.jsonl").read_text().splitlines()]


@pytest.fixture
def pairs(synthetic_data_root):
    return make_adapter(BENCHMARKS.get("synthetic"), resolve_data_root(synthetic_data_root)).pairs("trn").pairs


# ----------------------------------------------------------------------------------------------------------
# Data


def test_stretched_item_follows_marcos_preprocessing(pairs):
    pair = pairs[0]
    item = TrainingPairs([pair], TrainDataOptions(resolution=56, resize="stretch"))[0]
    assert item["images"].shape == (2, 3, 56, 56) and item["masks"].shape == (2, 56, 56)
    (w, h), valid = pair.src_size, pair.valid
    expected = pair.src_kps[valid] * np.array([56 / w, 56 / h])
    np.testing.assert_allclose(item["keypoints"][0].numpy(), np.clip(expected, 1e-4, 55 - 1e-4), rtol=0, atol=1e-5)
    with Image.open(pair.src_image) as image:
        pixels = np.asarray(image.convert("RGB").resize((56, 56), Image.BILINEAR), dtype=np.float32) / 255
    normalised = (pixels - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    np.testing.assert_array_equal(item["images"][0].numpy(), normalised.transpose(2, 0, 1))
    label = np.asarray(Image.open(pair.src_mask)) == pair.meta["mask_label"]
    reference = F.interpolate(torch.from_numpy(label)[None, None].float(), size=(56, 56), mode="nearest")[0, 0]
    assert torch.equal(item["masks"][0], reference.bool()) and item["masks"][0].any()


def test_padded_item_and_keypoint_box(pairs):
    pair = next(p for p in pairs if p.src_size[0] != p.src_size[1])
    data = TrainingPairs([pair], TrainDataOptions(resolution=64, resize="pad", masks="keypoint-box"))
    item = data[0]
    w, h = pair.src_size
    cw, ch = round(w * 64 / max(w, h)), round(h * 64 / max(w, h))
    assert item["content_sizes"][0].tolist() == [cw, ch] and data.mask_source(pair) == "keypoint-box"
    assert (item["images"][0][:, ch:, :] == 0).all() and (item["images"][0][:, :, cw:] == 0).all()
    box = item["masks"][0]
    points = pair.src_kps[pair.src_visible] * np.array([cw / w, ch / h])
    ys, xs = torch.nonzero(box, as_tuple=True)
    assert xs.min() == np.floor(points[:, 0].min()) and xs.max() == np.ceil(points[:, 0].max())
    assert ys.min() == np.floor(points[:, 1].min()) and box.sum() == (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)


def test_nearest_resize_picks_what_interpolate_picks():
    rng = np.random.default_rng(0)
    for shape, size in [((221, 190), (630, 630)), ((500, 375), (224, 224)), ((17, 630), (630, 473)), ((40, 30), (701, 1000))]:
        mask = rng.random(shape) > 0.5
        reference = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=size[::-1], mode="nearest")[0, 0]
        assert (nearest_resize(mask, size) == reference.bool().numpy()).all()


def test_collate_pads_keypoints_and_marks_real_rows(pairs):
    data = TrainingPairs(pairs[:3], TrainDataOptions(resolution=28, resize="stretch"))
    batch = collate_training([data[i] for i in range(3)])
    counts = [int(p.valid.sum()) for p in pairs[:3]]
    assert batch.num_points.tolist() == counts and batch.keypoints.shape == (3, 2, max(counts), 2)
    assert batch.visible.sum(1).tolist() == counts and batch.images.shape == (3, 2, 3, 28, 28)
    short = counts.index(min(counts))
    assert (batch.keypoints[short, :, min(counts):] == 0).all()


def test_masks_option_errors(pairs, tmp_path):
    with pytest.raises(ConfigError, match="neither"):
        TrainingPairs(pairs, TrainDataOptions(resolution=630, resize="stretch", masks=str(tmp_path / "nowhere")))
    no_masks = [dataclasses.replace(p, src_mask=None) for p in pairs[:2]]
    with pytest.raises(ConfigError, match="no segmentation"):
        TrainingPairs(no_masks, TrainDataOptions(resolution=630, resize="stretch", masks="segmentation"))
    assert TrainingPairs(no_masks, TrainDataOptions(resolution=630, resize="stretch")).mask_source(no_masks[0]) == "keypoint-box"


def test_auto_resize_is_the_methods_choice_per_dataset():
    neutral = TrainerBase().auto_train_resize
    assert [resolve_resize("auto", d, neutral) for d in ("spair", "pf-pascal", "ap10k")] == ["stretch"] * 3
    assert resolve_resize("pad", "spair", neutral) == "pad"  # a named rule is used as is

    def pads_pf_pascal(dataset):
        return "pad" if dataset == "pf-pascal" else "stretch"

    assert (resolve_resize("auto", "pf-pascal", pads_pf_pascal), resolve_resize("auto", "spair", pads_pf_pascal)) == (
        "pad", "stretch")
    with pytest.raises(ConfigError, match="unknown training resize rule 'crop'"):
        resolve_resize("crop", "spair", neutral)
    with pytest.raises(ConfigError, match="chose 'crop' for dataset 'spair'"):
        resolve_resize("auto", "spair", lambda dataset: "crop")
    with pytest.raises(ConfigError, match="unknown training resize rule 'auto'"):  # the pipeline takes a rule
        TrainDataOptions(resolution=64, resize="auto")


def test_sam_mask_path_mirrors_the_image_folders(tmp_path):
    image = tmp_path / "SPair-71k" / "JPEGImages" / "cat" / "2009_000001.jpg"
    assert sam_mask_path(image, tmp_path / "sam") == tmp_path / "sam" / "cat" / "2009_000001_mask.png"


def test_processes_together_see_the_single_process_batch():
    single = EpochBatches(50, 8, seed=3)
    single.set_epoch(2)
    ranks = [EpochBatches(50, 8, seed=3, rank=r, world_size=4) for r in range(4)]
    for r in ranks:
        r.set_epoch(2)
    per_rank = [list(r) for r in ranks]
    for k, batch in enumerate(single):
        assert sorted(batch) == sorted(i for rank in per_rank for i in rank[k])
    assert len(list(single)) == 6 and list(single) != list(EpochBatches(50, 8, seed=3))  # epoch 0 differs
    single.set_epoch(2, start_batch=4)
    assert len(single) == 2 and list(single) == per_single_from(2, 4)
    with pytest.raises(ConfigError, match="not divisible"):
        EpochBatches(50, 6, seed=0, world_size=4)


def per_single_from(epoch, start):
    full = EpochBatches(50, 8, seed=3)
    full.set_epoch(epoch)
    return list(full)[start:]


# ----------------------------------------------------------------------------------------------------------
# The engine


def test_training_lowers_the_loss_and_raises_held_out_pck(tmp_path, data_env):
    spec = BENCHMARKS.get("synthetic")
    held_out = make_adapter(spec, data_env).pairs("test").pairs  # test images are never in trn
    torch.manual_seed(0)
    before = validate(TinyTrainable(), held_out, spec, torch.device("cpu"), "float32", 16)["pck"]["image"]["all"]
    outcome = train(options(tmp_path, epochs=3))
    trained = TinyTrainable()
    trained.load_release_state(torch.load(outcome.last_checkpoint, weights_only=True))
    after = validate(trained, held_out, spec, torch.device("cpu"), "float32", 16)["pck"]["image"]["all"]
    losses = [r["loss"] for r in steps(outcome.directory) if r["event"] == "step"]
    assert len(losses) == outcome.steps == 3 * (120 // 8)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3
    assert after["0.1"] > before["0.1"] + 1.0 and after["0.2"] > before["0.2"]


def _parameters(path):
    return torch.load(path, weights_only=True)["model"]


def test_resume_continues_bit_identically(tmp_path, data_env):
    common = dict(batch_size=24, options={"resolution": "32"})
    straight = train(options(tmp_path / "a", epochs=2, **common))
    first = train(options(tmp_path / "b", epochs=1, **common))
    resumed = train(options(tmp_path / "b", epochs=2, resume=str(first.last_checkpoint), **common))
    a, b = torch.load(straight.last_checkpoint, weights_only=True), torch.load(resumed.last_checkpoint, weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])
    assert (a["step"], a["epoch"]) == (b["step"], b["epoch"]) == (10, 1)
    def without_times(directory):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in steps(directory)]

    assert without_times(straight.directory) == without_times(resumed.directory)  # losses, grad norms, PCK
    # stopped in the middle of an epoch by --max-steps, then resumed with --resume auto
    partial = train(options(tmp_path / "c", epochs=2, max_steps=7, **common))
    assert partial.steps == 7 and partial.last_checkpoint.name == "step_0000007.pth"
    assert torch.load(partial.last_checkpoint, weights_only=True)["batch_in_epoch"] == 2
    finished = train(options(tmp_path / "c", epochs=2, resume="auto", **common))
    for key, value in _parameters(finished.last_checkpoint).items():
        assert torch.equal(value, a["model"][key]), key


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory, synthetic_data_root):
    out = tmp_path_factory.mktemp("runs")
    previous = os.environ.get("CORRBENCH_DATA")
    os.environ["CORRBENCH_DATA"] = str(synthetic_data_root)
    try:
        return train(options(out, epochs=3, batch_size=24, lr=0.01, options={"resolution": "32"}))
    finally:
        if previous is None:
            os.environ.pop("CORRBENCH_DATA")
        else:
            os.environ["CORRBENCH_DATA"] = previous


def test_checkpoints_hold_the_release_layout_and_resume_state(three_epochs):
    folder = three_epochs.directory / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pth", "epoch_001.pth", "epoch_002.pth",
                                                       "epoch_003.pth", "last.pth"]
    state = torch.load(folder / "epoch_002.pth", weights_only=True)
    assert set(state) == {"model", *RESUME_KEYS}
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (10, 1, 0)  # epoch: index of the last done
    assert set(state["model"]) == set(TinyTrainable().net.state_dict())
    assert state["config"]["identity"]["method"] == "test-tiny-trainable" and len(state["rng"]) == 1
    assert os.path.samefile(folder / "last.pth", folder / "epoch_003.pth")


def test_validation_keeps_the_best_checkpoint(three_epochs):
    history = three_epochs.history
    assert [h["epoch"] for h in history] == [1, 2, 3]
    best = max(history, key=lambda h: h["selection"])
    assert three_epochs.best["epoch"] == best["epoch"]
    folder = three_epochs.directory / "checkpoints"
    assert os.path.samefile(folder / "best.pth", folder / f"epoch_{best['epoch']:03d}.pth")
    summary = json.loads((three_epochs.directory / "summary.json").read_text())
    assert summary["best"]["epoch"] == best["epoch"] and summary["steps"] == 15
    assert summary["selection"] == {"metric": "pck", "pck_by": "image", "average": "all", "alpha": "0.1"}


def test_log_has_the_documented_fields(three_epochs):
    records = steps(three_epochs.directory)
    step_lines = [r for r in records if r["event"] == "step"]
    assert [r["step"] for r in step_lines] == list(range(15))
    for r in step_lines:
        assert set(LOG_FIELDS) <= set(r) and r["points"] > 0 and r["lr"] == 0.01
        assert set(r["seconds"]) == {"data", "forward", "backward", "optimizer", "total"}
        assert r["losses"]["ce"] == r["loss"] and r["grad_norm"] > 0
    validations = [r for r in records if r["event"] == "validation"]
    assert len(validations) == 3 and all(set(VALIDATION_FIELDS) <= set(r) for r in validations)
    assert all(r["pairs"] == 10 and "0.1" in r["pck"] for r in validations)
    config = json.loads((three_epochs.directory / "train.json").read_text())
    assert config["data"]["train_pairs"] == 120 and config["recipe"]["batch_size"] == 24


def test_options_route_to_method_recipe_or_error(tmp_path, data_env):
    with pytest.raises(ConfigError, match="no option or training setting 'bogus'"):
        train(options(tmp_path, options={"bogus": "1"}))
    outcome = train(options(tmp_path, max_steps=1, preset="other", options={"dim": "8", "masks": "keypoint-box"},
                            validate=False))
    config = json.loads((outcome.directory / "train.json").read_text())
    assert config["identity"]["config"]["dim"] == 8 and config["recipe"]["masks"] == "keypoint-box"
    assert config["recipe"]["optimizer"] == "adam" and outcome.best is None


def test_errors(tmp_path, data_env):
    with pytest.raises(ConfigError, match="'random' cannot be trained"):
        train(options(tmp_path, method="random"))
    with pytest.raises(ConfigError, match="(?s)unknown training preset 'nope'.*default, other"):
        train(options(tmp_path, preset="nope"))
    first = train(options(tmp_path, max_steps=1, validate=False))
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(options(tmp_path, max_steps=1, validate=False))
    with pytest.raises(ConfigError, match="(?s)another configuration.*lr"):
        train(options(tmp_path, max_steps=2, lr=0.5, validate=False, resume=str(first.last_checkpoint)))
    weights_only = tmp_path / "weights.pth"
    torch.save({"model": {}}, weights_only)
    with pytest.raises(TrainingError, match="no resume state"):
        train(options(tmp_path, max_steps=1, resume=str(weights_only)))


def test_cli_prints_errors_without_traceback(tmp_path, data_env):
    from click.testing import CliRunner

    from corrbench.cli import _Group
    from corrbench.cli import train_command

    group = _Group(commands={"train": train_command})
    result = CliRunner().invoke(group, ["train", "-m", "random", "-b", "synthetic", "--out", str(tmp_path), "-q"],
                                obj={})
    assert result.exit_code == 2 and "cannot be trained" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(group, ["train", "-m", "test-tiny-trainable", "-b", "synthetic", "--max-steps", "2",
                                        "--batch-size", "8", "--out", str(tmp_path), "--no-validate", "-q"], obj={})
    assert result.exit_code == 0, result.output
    assert "trained 2 steps" in result.output and "last checkpoint:" in result.output


def test_a_key_known_to_the_method_and_its_trainer_is_ambiguous():
    from corrbench.train.options import split_options

    @dataclasses.dataclass(frozen=True)
    class Settings:
        dim: int = 1
        depth: int = 2

    recipe = TrainingRecipe(optimizer="adamw", lr=1e-4, batch_size=12, epochs=8, train_resolution=630, method=Settings())
    with pytest.raises(ConfigError, match="ambiguous.*method option and a training setting"):
        split_options(TinyTrainable, recipe, {"dim": "2"})
    assert split_options(TinyTrainable, recipe, {"depth": "3", "resolution": "32", "masks": "keypoint-box"}) == (
        {"resolution": "32"}, {"depth": "3"}, {"masks": "keypoint-box"})


def test_float16_training_scales_the_loss_and_resumes_the_scaler(tmp_path, data_env, monkeypatch):
    with pytest.raises(ConfigError, match="CUDA autocast only"):
        train(options(tmp_path, dtype="float16", max_steps=1))
    # The fp16 path is the CUDA one; CPU autocast exercises the same engine code here.
    monkeypatch.setattr("corrbench.train.options.REDUCED_PRECISION_DEVICES", ("cuda", "cpu"))
    common = dict(batch_size=24, dtype="float16", validate=False, options={"resolution": "32"})
    first = train(options(tmp_path, max_steps=2, **common))
    records = [r for r in steps(first.directory) if r["event"] == "step"]
    assert all(r["loss_scale"] == 65536.0 and r["skipped"] == 0.0 and np.isfinite(r["loss"]) for r in records)
    state = torch.load(first.last_checkpoint, weights_only=True)
    assert state["grad_scaler"]["scale"] == 65536.0
    resumed = train(options(tmp_path, max_steps=3, resume="auto", **common))
    assert resumed.steps == 3 and "grad_scaler" in torch.load(resumed.last_checkpoint, weights_only=True)


class FixedCanvasTrainable(TinyTrainable):
    """TinyTrainable whose preset trains at a fixed 64 px, whatever its (inference) ``resolution`` is, as MARCO's."""

    def training_presets(self):
        return {"default": TrainingRecipe(optimizer="adamw", lr=3e-3, batch_size=8, epochs=1, clip_grad_norm=0.1,
                                          train_resolution=64)}


if "test-fixed-canvas" not in METHODS:
    METHODS.register("test-fixed-canvas", FixedCanvasTrainable)


def test_setting_resolution_alone_says_which_canvas_training_uses(tmp_path, data_env, capsys):
    outcome = train(options(tmp_path, method="test-fixed-canvas", options={"resolution": "32"}, max_steps=1,
                            validate=False))
    notice = ("resolution=32 is test-fixed-canvas's inference and validation canvas; training uses "
              "train_resolution=64 (preset 'default'); add --set train_resolution=32 to train at 32 px")
    assert f"notice: {notice}" in capsys.readouterr().err
    config = json.loads((outcome.directory / "train.json").read_text())
    assert config["notices"] == [notice] and config["recipe"]["train_resolution"] == 64
    both = train(options(tmp_path, method="test-fixed-canvas", options={"resolution": "32", "train_resolution": "32"},
                         max_steps=1, validate=False))
    assert "notice" not in capsys.readouterr().err
    assert json.loads((both.directory / "train.json").read_text())["recipe"]["train_resolution"] == 32


class PaddingTrainable(TinyTrainable):
    """TinyTrainable whose trainer pads every dataset when its recipe says ``train_resize="auto"``."""

    def auto_train_resize(self, dataset):
        return "pad"


if "test-padding" not in METHODS:
    METHODS.register("test-padding", PaddingTrainable)


def test_auto_resize_follows_the_trainers_choice(tmp_path, data_env):
    def recorded(**overrides):
        outcome = train(options(tmp_path, max_steps=1, validate=False, **overrides))
        config = json.loads((outcome.directory / "train.json").read_text())
        return config["recipe"]["train_resize"], config["data"]["resize"]

    assert recorded(method="test-padding") == ("auto", "pad")
    assert recorded() == ("auto", "stretch")  # TrainerBase's neutral choice
    assert recorded(method="test-padding", options={"train_resize": "stretch"}) == ("stretch", "stretch")


# ----------------------------------------------------------------------------------------------------------
# The engine's layout (issue 12): neutral recipe, registered trainers, one predict and score loop, typed record


def test_the_recipe_has_no_methods_numbers_and_neutral_defaults():
    # The optimiser, learning rate, batch, epochs and canvas are a method's choice: each preset states them.
    with pytest.raises(TypeError, match="optimizer.*lr.*batch_size.*epochs.*train_resolution"):
        TrainingRecipe()
    recipe = TrainingRecipe(optimizer="adam", lr=1e-3, batch_size=2, epochs=1, train_resolution=64)
    assert (recipe.weight_decay, recipe.clip_grad_norm, recipe.train_resize, recipe.masks, recipe.method) == (
        0.0, None, "auto", "auto", None)
    assert list(recipe.to_json()) == ["optimizer", "lr", "weight_decay", "batch_size", "epochs", "clip_grad_norm",
                                      "train_resolution", "train_resize", "masks", "method"]


def test_presets_keep_their_recipes_and_so_their_run_ids():
    from corrbench.files import json_identity_hash
    from corrbench.methods.dinov2_ft import PRESETS as UNIFIED
    from corrbench.methods.marco.training import PRESETS as MARCO

    # hashes of each preset's recipe JSON as written before the engine's defaults became neutral; geosc-objective's
    # changed (69c64156dc1f before) when it gained Geo-SC's flip views (recipe field flip_views)
    assert {name: json_identity_hash(r.to_json())[:12] for name, r in {**MARCO, **UNIFIED}.items()} == {
        "released": "ff29bbd27dc0", "paper": "abdcb0e39b49", "marco-sup": "cd3aafe7cf51",
        "sigma-fixed-1": "c19290306f1f", "sigma-fixed-3": "4cf4a3baa9fb", "flow-raw": "3a1d390e8a97",
        "flow-mnn-only": "21bdfd5d9cfd", "flow-no-gt-anchors": "b1c072a31d4a", "geosc-objective": "62f2e135ba76",
        "unified": "c10afb418dc1"}


class DelegatingTrainer(TrainerBase):
    """A trainer apart from its method (as MARCO's is): every Trainable call goes to a TinyTrainable."""

    def __init__(self, matcher):
        self.matcher, self.inner = matcher, TinyTrainable()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_method_names_its_trainer_through_the_trainer_registry():
    from corrbench.methods.random_points import RandomMatcher
    from corrbench.train.api import TRAINERS, trainer_for

    if "test-delegating-trainer" not in TRAINERS:
        TRAINERS.register("test-delegating-trainer", DelegatingTrainer)

    class NamesItsTrainer(RandomMatcher):
        trainer = "test-delegating-trainer"

    class MisspellsItsTrainer(RandomMatcher):
        trainer = "test-delegating-traner"

    class GivesAnImportPath(RandomMatcher):
        trainer = f"{__name__}:DelegatingTrainer"

    assert isinstance(trainer_for(NamesItsTrainer()), DelegatingTrainer)
    assert isinstance(trainer_for(GivesAnImportPath()), DelegatingTrainer)
    with pytest.raises(ConfigError, match="unknown trainer 'test-delegating-traner'") as error:
        trainer_for(MisspellsItsTrainer())
    assert "did you mean 'test-delegating-trainer'?" in error.value.hint


def test_run_and_validation_predict_and_score_through_the_same_loops(tmp_path, data_env, monkeypatch):
    import corrbench.evaluate as evaluate
    from corrbench.evaluate import RunOptions, run

    calls = []

    def counted(name, function):
        def call(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(evaluate, "predict_pairs", counted("predict", evaluate.predict_pairs))
    monkeypatch.setattr(evaluate, "score_pairs", counted("score", evaluate.score_pairs))
    result = run(RunOptions(method="test-tiny-trainable", benchmark="synthetic", limit=12, batch_size=4,
                            out=tmp_path, progress=False)).result
    spec = BENCHMARKS.get("synthetic")
    pairs = make_adapter(spec, data_env).pairs(spec.split, spec.subset).pairs[:12]
    torch.manual_seed(0)  # as `run` seeds (seed 0) before it builds the method
    summary = validate(TinyTrainable(), pairs, spec, torch.device("cpu"), "float32", 4)
    assert calls == ["predict", "score", "predict", "score"]
    assert summary["pck"] == result["metrics"]["pck"] and summary["counts"]["pairs"] == 12


def test_train_json_is_the_typed_versioned_record(three_epochs):
    from corrbench.train.record import TRAIN_SCHEMA_VERSION, TrainRecord

    config = json.loads((three_epochs.directory / "train.json").read_text())
    assert list(config) == [f.name for f in dataclasses.fields(TrainRecord)] == [
        "schema_version", "command", "created_at", "identity", "recipe", "max_steps", "world_size", "method",
        "benchmark", "data", "env", "notices", "resumed_from"]
    assert config["schema_version"] == TRAIN_SCHEMA_VERSION == 1
    assert list(config["data"]) == ["train_split", "train_pairs", "dropped", "resize", "masks", "val_split",
                                    "val_pairs"]


def test_no_function_of_the_training_engine_is_longer_than_a_screen():
    import ast
    from pathlib import Path

    sources = sorted((Path(__file__).resolve().parents[1] / "corrbench" / "train").glob("*.py"))
    assert sources
    long = [f"{source.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for source in sources for node in ast.walk(ast.parse(source.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50]
    assert not long
