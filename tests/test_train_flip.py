"""The training data's flip views (GeoAware-SC's pose-aware flip augmentation; corrbench.train.data)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from corrbench.backbones import IMAGENET_MEAN, IMAGENET_STD
from corrbench.data_root import resolve_data_root
from corrbench.datasets import make_adapter
from corrbench.datasets.synthetic.layout import flip_pairs
from corrbench.errors import ConfigError
from corrbench.methods.marco.training import PRESETS, MARCOTrainer
from corrbench.registry import BENCHMARKS
from corrbench.train.api import TrainingRecipe, check_flip_views
from corrbench.train.data import TrainDataOptions, TrainingPairs, collate_training, flip_partners
from corrbench.train.loop import train
from corrbench.train.options import TrainOptions

from test_training import TinyTrainable  # noqa: F401  (registers the method test-tiny-trainable)

RECIPE = dict(optimizer="adam", lr=1e-3, batch_size=2, epochs=1, train_resolution=56)


@pytest.fixture(scope="module")
def pairs(synthetic_data_root):
    return make_adapter(BENCHMARKS.get("synthetic"), resolve_data_root(synthetic_data_root)).pairs("trn").pairs


def test_flip_views_are_off_by_default_and_absent_from_the_recipe_json(pairs):
    item = TrainingPairs(pairs[:1], TrainDataOptions(resolution=28, resize="stretch"))[0]
    assert "flip" not in item and collate_training([item]).flip is None
    assert "flip_views" not in TrainingRecipe(**RECIPE).to_json()
    on = TrainingRecipe(**RECIPE, flip_views=True)
    assert on.to_json()["flip_views"] is True
    assert on.data_options("synthetic", lambda dataset: "stretch").flip_dataset == "synthetic"


def test_a_dataset_without_a_left_right_table_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="flip_views") as error:
        TrainingRecipe(**RECIPE, flip_views=True).data_options("pf-pascal", lambda dataset: "stretch")
    assert "flip_views=false" in error.value.hint


def test_partner_tables_are_involutions():
    for dataset, category in (("spair", "bus"), ("ap10k", "cat"), ("synthetic", "biped")):
        partners = flip_partners(dataset, category)
        assert partners and all(partners[partners[k]] == k and partners[k] != k for k in partners)
    assert flip_partners("synthetic", "quadruped") == {"2": "3", "3": "2", "8": "9", "9": "8", "11": "12", "12": "11"}
    assert flip_partners("synthetic", "lamp") == {} and flip_pairs("vehicle") == ()


def test_mirrored_canvases_and_left_right_keypoints(pairs):
    """The mirrored canvas is the mirrored image resized and padded (GeoAware-SC mirrors before resizing);
    keypoint k of the mirrored pair is its partner's mirror."""
    def mutual(p):
        return [k for k, v in zip(p.kp_ids, p.valid) if v]

    partners = flip_partners("synthetic", "quadruped")
    pair = next(p for p in pairs if p.category == "quadruped" and {"2", "3"} <= set(mutual(p))
                and all(partners.get(k, k) in mutual(p) for k in mutual(p)))
    item = TrainingPairs([pair], TrainDataOptions(resolution=56, resize="pad", flip_dataset="synthetic"))[0]
    flip = item["flip"]
    for side, path in enumerate((pair.src_image, pair.trg_image)):
        cw, ch = item["content_sizes"][side].tolist()
        with Image.open(path) as image:
            resized = image.convert("RGB").transpose(Image.FLIP_LEFT_RIGHT).resize((cw, ch), Image.BILINEAR)
        pixels = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
        expected = (pixels - np.float32(IMAGENET_MEAN)[:, None, None]) / np.float32(IMAGENET_STD)[:, None, None]
        np.testing.assert_allclose(flip["images"][side, :, :ch, :cw].numpy(), expected, rtol=0, atol=1e-6)
        assert not flip["images"][side, :, ch:].any() and not flip["images"][side, :, :, cw:].any()
    ids = mutual(pair)  # every partner is mutually visible too, so the pair view keeps every row, in this order
    assert flip["pair_keypoints"].shape[1] == len(ids)
    right_ear = pair.kp_ids.index("3")
    for side, points in enumerate((pair.src_kps, pair.trg_kps)):
        (w, h), (cw, ch) = (pair.src_size, pair.trg_size)[side], item["content_sizes"][side].tolist()
        expected = np.array([w - 1 - points[right_ear, 0], points[right_ear, 1]]) * np.array([cw / w, ch / h])
        np.testing.assert_allclose(flip["pair_keypoints"][side, ids.index("2")].numpy(), expected, atol=1e-4)
    # the self view pairs the mirrored source with the source: the left ear there is the source's left ear
    np.testing.assert_allclose(flip["self_keypoints"][1], item["keypoints"][0][: flip["self_keypoints"].shape[1]])


def test_batches_pad_each_view_to_its_own_largest_count(pairs):
    data = TrainingPairs(pairs[:3], TrainDataOptions(resolution=28, resize="pad", flip_dataset="synthetic"))
    items = [data[i] for i in range(3)]
    batch = collate_training(items)
    assert batch.flip.images.shape == (3, 2, 3, 28, 28)
    assert batch.flip.pair_visible.sum(1).tolist() == [i["flip"]["pair_keypoints"].shape[1] for i in items]
    assert batch.flip.self_visible.sum(1).tolist() == [i["flip"]["self_keypoints"].shape[1] for i in items]
    moved = batch.to("cpu")
    assert torch.equal(moved.flip.self_keypoints, batch.flip.self_keypoints)


def test_a_trainer_that_ignores_flip_views_refuses_them(tmp_path, data_env):
    with pytest.raises(ConfigError, match="does not use flip views"):
        train(TrainOptions(method="test-tiny-trainable", benchmark="synthetic", out=tmp_path, progress=False,
                           options={"flip_views": "true"}))
    # MARCO reads them with Geo-SC's objective only (its geosc-objective preset turns them on)
    check_flip_views(MARCOTrainer, PRESETS["geosc-objective"], "marco")
    with pytest.raises(ConfigError, match="does not use flip views"):
        check_flip_views(MARCOTrainer, dataclasses.replace(PRESETS["released"], flip_views=True), "marco")


def test_flip_views_on_the_centred_canvas_are_the_family_canvas_of_the_mirrored_images(pairs):
    """pad-centre (GeoAware-SC's canvas): the mirror of a centred canvas is the centred canvas of the mirrored image,
    also where the padding is odd (so mirroring the whole canvas would move the content by a pixel)."""
    from corrbench.methods.geoaware.features import family_canvas

    def mutual(p):
        return [k for k, v in zip(p.kp_ids, p.valid) if v]

    partners = flip_partners("synthetic", "quadruped")
    def odd_padding(size, side):  # left and right padding differ by a pixel
        return (side - round(size[0] * side / max(size))) % 2

    pair, canvas = next((p, s) for p in pairs for s in range(40, 60) if p.category == "quadruped"
                        and {"2", "3"} <= set(mutual(p)) and (odd_padding(p.src_size, s) or odd_padding(p.trg_size, s)))
    item = TrainingPairs([pair], TrainDataOptions(resolution=canvas, resize="pad-centre", flip_dataset="synthetic"))[0]
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    ids = [k for k in pair.kp_ids if partners.get(k, k) in mutual(pair)]  # the pair view's rows, in order
    for side, (path, points) in enumerate(((pair.src_image, pair.src_kps), (pair.trg_image, pair.trg_kps))):
        with Image.open(path) as image:
            mirrored = np.asarray(image.convert("RGB").transpose(Image.FLIP_LEFT_RIGHT))
        expected, transform = family_canvas(torch.from_numpy(mirrored.copy()).permute(2, 0, 1) / 255.0, canvas)
        torch.testing.assert_close(item["flip"]["images"][side], (expected - mean) / std, rtol=0, atol=1e-5)
        # the mirrored left ear is the original right ear, mirrored, placed by the family's keypoint rule
        w = pair.src_size[0] if side == 0 else pair.trg_size[0]
        right_ear = points[pair.kp_ids.index("3")]
        np.testing.assert_allclose(item["flip"]["pair_keypoints"][side, ids.index("2")].numpy(),
                                   transform.forward(np.array([w - 1 - right_ear[0], right_ear[1]])), atol=1e-4)
