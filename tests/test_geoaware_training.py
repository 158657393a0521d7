"""The GeoAware-SC family's trainer (methods/geoaware/training.py) on a tiny model: ViT-S/14 with random weights,
56 px canvases, a 128-wide adapter; the synthetic benchmark, with tiny point maps for Jamais Vu's objective."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from corrbench.data_root import resolve_data_root
from corrbench.datasets import make_adapter
from corrbench.datasets.images import load_mask
from corrbench.errors import ConfigError
from corrbench.methods.geoaware import DIYSC, GeoAwareSCDino, JamaisVu
from corrbench.methods.geoaware.adapter import AggregationNetwork
from corrbench.methods.geoaware.training import PRESETS, GeoAwareTrainer, GeoAwareTrainingSettings, HeldOneCycleLR
from corrbench.registry import BENCHMARKS
from corrbench.train.api import TrainingPlan, class_presets, trainer_for
from corrbench.train.checkpoints import LR_SCHEDULER_KEY, RESUME_KEYS
from corrbench.train.data import TrainingPairs, collate_training
from corrbench.train.loop import train
from corrbench.train.losses import FlowView, geosc_batch_loss, geosc_loss
from corrbench.train.options import TrainOptions

CANVAS = 56
TINY = {"weights": "random", "backbone": "vits14", "resolution": CANVAS, "projection_dim": 128, "sources": "dino"}
#: The prototype settings of a tiny Jamais Vu run: the synthetic categories, few sampled and logged points.
TINY_PROTOTYPES = {"prototype_table": "synthetic", "prototype_sampled_points": 80, "prototype_logged_points": 4}


def test_each_member_trains_with_its_authors_recipe_first():
    assert [next(iter(class_presets(m))) for m in (GeoAwareSCDino, DIYSC, JamaisVu)] == ["geoaware-sc", "diy-sc",
                                                                                       "jamais-vu"]
    geosc, diy, jv = PRESETS["geoaware-sc"], PRESETS["diy-sc"], PRESETS["jamais-vu"]
    ap10k = PRESETS["geoaware-sc-ap10k"]
    # GeoAware-SC configs/train_spair.yaml + pck_train.py defaults
    assert (geosc.optimizer, geosc.lr, geosc.weight_decay, geosc.batch_size, geosc.epochs, geosc.train_resolution,
            geosc.flip_views) == ("adamw", 1.25e-3, 1e-3, 1, 2, 840, True)
    assert (geosc.method.lr_schedule, geosc.method.one_cycle_rise, geosc.method.feature_dropout,
            geosc.method.loss_temperature, geosc.method.objective) == ("one-cycle", 0.3, 0.2, 0.02, "geosc")
    assert (ap10k.epochs, ap10k.method.lr_schedule) == (1, "constant")  # train_ap10k.yaml: no SCHEDULER
    # DIY-SC configs/train_spair.yaml: LR 5e-3, no pair augmentation
    assert (diy.lr, diy.weight_decay, diy.flip_views, diy.method.lr_schedule) == (5e-3, 1e-3, False, "one-cycle")
    assert diy.method.one_cycle_steps == 200_001  # their OneCycleLR(total_steps=MAX_STEPS)
    # Jamais Vu: GeoAware-SC's recipe with --CAT_PROTO
    assert dataclasses.replace(jv, method=geosc.method) == geosc and jv.method.objective == "jamais-vu"


def test_one_cycle_is_torchs_and_holds_its_last_rate_past_its_length():
    parameter = torch.nn.Parameter(torch.zeros(()))
    ours, theirs = (torch.optim.AdamW([parameter], lr=5e-3) for _ in range(2))
    held = HeldOneCycleLR(ours, max_lr=5e-3, total_steps=4, pct_start=0.3)
    plain = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=5e-3, total_steps=4, pct_start=0.3)
    for _ in range(4):
        ours.step(), theirs.step(), held.step(), plain.step()
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
        assert ours.param_groups[0]["betas"] == theirs.param_groups[0]["betas"]  # beta1 cycles too
    last = ours.param_groups[0]["lr"]
    ours.step(), held.step()  # torch's would raise here
    assert ours.param_groups[0]["lr"] == last


@pytest.fixture(scope="module")
def pairs(synthetic_data_root):
    return make_adapter(BENCHMARKS.get("synthetic"), resolve_data_root(synthetic_data_root)).pairs("trn").pairs


@pytest.fixture(scope="module")
def point_maps(pairs, tmp_path_factory):
    """Point maps, depth and object masks of the training images in Jamais Vu's folder layout (``.npy`` maps): a
    tilted plane per image, the object from the synthetic segmentation."""
    root = tmp_path_factory.mktemp("maps")
    for pair in pairs:
        for image, size, mask_file in ((pair.src_image, pair.src_size, pair.src_mask),
                                       (pair.trg_image, pair.trg_size, pair.trg_mask)):
            folder = root / "MoGeMaps" / pair.category / image.stem
            if folder.exists():
                continue
            folder.mkdir(parents=True)
            (root / "masks" / pair.category).mkdir(parents=True, exist_ok=True)
            w, h = size
            v, u = np.mgrid[0:h, 0:w].astype(np.float32) / max(w, h)
            depth = 2 + 0.5 * u + 0.25 * v
            np.save(folder / "points.npy", np.stack([u * depth, v * depth, depth], axis=-1))
            np.save(folder / "depth.npy", depth)
            np.save(root / "masks" / pair.category / f"{image.stem}.npy",
                    load_mask(mask_file, size, pair.meta.get("mask_label")).numpy())
    return root


def configured(method_cls, settings: GeoAwareTrainingSettings, flip: bool):
    trainer = trainer_for(method_cls(**TINY, checkpoint="random"))
    recipe = dataclasses.replace(PRESETS["geoaware-sc"], train_resolution=CANVAS, flip_views=flip, method=settings)
    trainer.configure_training(recipe, TrainingPlan(steps_per_epoch=10, epochs=1, device=torch.device("cpu"),
                                                    dtype="float32"))
    return trainer, recipe


@pytest.mark.parametrize("objective", ["geosc", "jamais-vu"])
def test_each_objective_lowers_its_loss(objective, pairs, point_maps):
    maps = {"point_maps": str(point_maps / "MoGeMaps"), "object_masks": str(point_maps / "masks"), **TINY_PROTOTYPES}
    settings = GeoAwareTrainingSettings(objective=objective, feature_dropout=0.0,
                                        **(maps if objective == "jamais-vu" else {}))
    trainer, recipe = configured(JamaisVu if objective == "jamais-vu" else GeoAwareSCDino, settings, flip=True)
    data = TrainingPairs(pairs[:2], recipe.data_options("synthetic", trainer.auto_train_resize))
    batch = collate_training([data[0], data[1]])
    assert batch.kp_ids[0] == tuple(k for k, v in zip(pairs[0].kp_ids, pairs[0].valid) if v)  # the rows' ids
    assert batch.image_paths[1] == (str(pairs[1].src_image), str(pairs[1].trg_image))
    optimizer = torch.optim.AdamW(trainer.trainable_parameters(), lr=5e-3)
    losses = []
    for step in range(6):
        out = trainer.training_step(batch, step, 0)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0] - 0.2, losses
    expected = {"info_nce", "flow_epe", "flip_epe"} | (
        {"keypoint_alignment", "keypoint_features", "object_to_prototype", "prototype_to_object"}
        if objective == "jamais-vu" else set())
    assert set(out.losses) == expected


def test_flow_noise_scales_with_each_flows_target_box(pairs):
    # Geo-SC: std = GAUSSIAN_AUGMENT * threshold / 2, threshold = the target's longer box side in cells; the self
    # view's target is the source (img1_threshold)
    trainer, recipe = configured(GeoAwareSCDino, GeoAwareTrainingSettings(), flip=True)
    data = TrainingPairs(pairs[:2], recipe.data_options("synthetic", trainer.auto_train_resize))
    batch = collate_training([data[0], data[1]])
    features, flipped = torch.randn(2, 2, 2, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    scale = torch.tensor(2.6)
    content = batch.content_sizes.tolist()  # (W', H') of the padded canvases' content

    def std(box, size, content):  # flow_noise (here 1, ten times theirs, to weigh) x half the longer box side on
        side = max((box[2] - box[0]) * content[0] / size[0], (box[3] - box[1]) * content[1] / size[1])
        return 1.0 * side * 4 / CANVAS / 2  # the canvas, in cells (4 a side)

    src_std = torch.tensor([std(p.src_bbox, p.src_size, content[i][0]) for i, p in enumerate(pairs[:2])])
    trg_std = torch.tensor([std(p.trg_bbox, p.trg_size, content[i][1]) for i, p in enumerate(pairs[:2])])
    cells = lambda k: k * 4 / CANVAS  # noqa: E731 (keypoints inside the canvas: the clamp does nothing)
    views = [FlowView(flipped[:, 0], flipped[:, 1], cells(batch.flip.pair_keypoints[:, 0]),
                      cells(batch.flip.pair_keypoints[:, 1]), batch.flip.pair_visible, 1.0, trg_std),
             FlowView(flipped[:, 0], features[:, 0], cells(batch.flip.self_keypoints[:, 0]),
                      cells(batch.flip.self_keypoints[:, 1]), batch.flip.self_visible, 0.25, src_std)]
    expected = geosc_loss(features[:, 0], features[:, 1], cells(batch.keypoints[:, 0]), cells(batch.keypoints[:, 1]),
                          scale, batch.visible, flow_noise_std=trg_std, generator=torch.Generator().manual_seed(1),
                          views=views).total
    total, _ = geosc_batch_loss(features, flipped, batch, scale, flow_noise=1.0,
                                generator=torch.Generator().manual_seed(1))
    without, _ = geosc_batch_loss(features, flipped, batch, scale)
    assert torch.allclose(total, expected, rtol=1e-6) and not torch.allclose(total, without, rtol=1e-2)
    with pytest.raises(ConfigError, match="flow_noise=0"):
        geosc_batch_loss(features, flipped, dataclasses.replace(batch, box_sides=torch.full((2, 2), float("nan"))),
                         scale, flow_noise=0.1)


def run(tmp_path, method, preset, settings, **kwargs):
    options = {**{k: str(v) for k, v in TINY.items()}, "train_resolution": str(CANVAS), **settings}
    return train(TrainOptions(method=method, benchmark="synthetic", preset=preset, options=options, batch_size=2,
                              epochs=1, validate=False, progress=False, out=tmp_path, seed=5, **kwargs))


# jamais-vu's preset is geoaware-sc's (flip views, one-cycle over the run) + the prototypes; diy-sc's has no flip
# views and a one-cycle longer than the run
@pytest.mark.parametrize("method, preset, jamais_vu", [("diy-sc", "diy-sc", False), ("jamais-vu", "jamais-vu", True)])
def test_engine_resumes_bit_identically_in_the_authors_layout(tmp_path, data_env, point_maps, method, preset,
                                                              jamais_vu):
    settings = {"point_maps": str(point_maps / "MoGeMaps"), "object_masks": str(point_maps / "masks"),
                **{k: str(v) for k, v in TINY_PROTOTYPES.items()}} if jamais_vu else {}
    straight = run(tmp_path / "a", method, preset, settings, max_steps=2)
    run(tmp_path / "b", method, preset, settings, max_steps=1)
    resumed = run(tmp_path / "b", method, preset, settings, max_steps=2, resume="auto")
    a = torch.load(straight.last_checkpoint, weights_only=True)
    b = torch.load(resumed.last_checkpoint, weights_only=True)
    adapter = AggregationNetwork([384], 128).state_dict()
    # their best.pth: aggre_net.state_dict() at the top level (logit_scale included), beside the resume keys
    extra = {"category_prototype"} if jamais_vu else set()
    assert set(a) == {*adapter, *RESUME_KEYS, LR_SCHEDULER_KEY, *extra}
    assert all(a[k].shape == v.shape for k, v in adapter.items())
    for key in (*adapter, *extra):
        if key == "category_prototype":
            assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
        else:
            assert torch.equal(a[key], b[key]), key
    assert a[LR_SCHEDULER_KEY] == b[LR_SCHEDULER_KEY] and a["step"] == b["step"] == 2
    assert not torch.equal(a["logit_scale"], AggregationNetwork([384], 128).state_dict()["logit_scale"])
    # the authors' load_pretrained_weights: the model's own keys, non-strictly; corrbench's checkpoint= option too
    theirs = AggregationNetwork([384], 128)
    theirs.load_state_dict({k: v for k, v in a.items() if k in theirs.state_dict()}, strict=True)
    ours = GeoAwareSCDino(**TINY, checkpoint=str(straight.last_checkpoint))
    assert all(torch.equal(v, a[k]) for k, v in ours.adapter.state_dict().items())


def test_refusals_name_the_setting(tmp_path, data_env):
    with pytest.raises(ConfigError, match="point maps and the object masks"):
        run(tmp_path, "jamais-vu", "jamais-vu", {}, max_steps=1)
    with pytest.raises(ConfigError, match="cannot encode the engine's training canvases"):
        GeoAwareTrainer(type("Fake", (), {"adapter": AggregationNetwork([384], 128), "sources": [object()]})()
                        ).configure_training(PRESETS["diy-sc"], TrainingPlan(1, 1, torch.device("cpu"), "float32"))


def test_the_family_trains_on_its_inference_canvas(pairs):
    """The engine's pad-centre canvas is family_canvas (LANCZOS, centred black padding, preprocess_kps_pad), for the
    image, its keypoints and its mask; every family preset (and auto) trains on it."""
    from corrbench.backbones import IMAGENET_MEAN, IMAGENET_STD
    from corrbench.methods.geoaware.features import family_canvas, family_transform
    from corrbench.train.data import TrainDataOptions

    trainer, _ = configured(GeoAwareSCDino, GeoAwareTrainingSettings(), flip=False)
    assert {recipe.data_options("synthetic", trainer.auto_train_resize).resize for recipe in PRESETS.values()} == {
        "pad-centre"}
    assert trainer.auto_train_resize("spair") == "pad-centre"
    pair = next(p for p in pairs if min(max(family_transform(size, CANVAS).offset) for size in (p.src_size, p.trg_size))
                >= 4)  # padding wide enough to tell a centred mask from one at the top left
    item = TrainingPairs([pair], TrainDataOptions(resolution=CANVAS, resize="pad-centre", masks="segmentation"))[0]
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    for side in range(2):
        path, size = (pair.src_image, pair.src_size) if side == 0 else (pair.trg_image, pair.trg_size)
        with Image.open(path) as image:
            pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1) / 255.0
        canvas, transform = family_canvas(pixels, CANVAS)
        torch.testing.assert_close(item["images"][side], (canvas - mean) / std, rtol=0, atol=1e-5)
        points = (pair.src_kps if side == 0 else pair.trg_kps)[pair.valid]
        np.testing.assert_allclose(item["keypoints"][side].numpy(), transform.forward(points), atol=1e-4)
        # the mask lies where the image does: its box is the original mask's box carried by the same transform
        original = load_mask(pair.src_mask if side == 0 else pair.trg_mask, size, pair.meta.get("mask_label"))
        rows, cols = torch.nonzero(original, as_tuple=True)
        corners = transform.forward(np.array([[cols.min(), rows.min()], [cols.max() + 1, rows.max() + 1]], float))
        on_canvas_rows, on_canvas_cols = torch.nonzero(item["masks"][side], as_tuple=True)
        placed = np.array([[on_canvas_cols.min(), on_canvas_rows.min()],
                           [on_canvas_cols.max() + 1, on_canvas_rows.max() + 1]], float)
        # nearest-neighbour resizing moves a border by up to ~1.6 canvas pixels; the padding moves it by 4
        assert np.abs(placed - corners).max() < 2


def test_jamais_vu_refuses_a_canvas_its_point_maps_are_not_padded_like(point_maps):
    settings = GeoAwareTrainingSettings(objective="jamais-vu", point_maps=str(point_maps / "MoGeMaps"),
                                        object_masks=str(point_maps / "masks"), **TINY_PROTOTYPES)
    trainer = trainer_for(JamaisVu(**TINY, checkpoint="random"))
    plan = TrainingPlan(steps_per_epoch=1, epochs=1, device=torch.device("cpu"), dtype="float32")
    for rule in ("pad", "stretch"):
        recipe = dataclasses.replace(PRESETS["jamais-vu"], train_resize=rule, method=settings)
        with pytest.raises(ConfigError, match="centred canvas") as error:
            trainer.configure_training(recipe, plan)
        assert f"drop --set train_resize={rule}" in error.value.hint
