import dataclasses

import numpy as np
import pytest
import torch

from corrbench.batching import collate_pairs
from corrbench.config import parse_assignments
from corrbench.errors import ConfigError, MatcherContractError
from corrbench.geometry import ResizePolicy
from corrbench.matcher import FeatureMatcher, Matcher
from corrbench.localizers import build_localizer
from corrbench.types import FeatureMap, MatchOutput, Pair


def _pair(pair_id="p1", size=(40, 30), kps=((5.0, 6.0), (20.0, 10.0))):
    kps = np.array(kps)
    return Pair(pair_id, "cat", f"/x/{pair_id}-s.jpg", f"/x/{pair_id}-t.jpg", size, size, kps, kps.copy(),
                np.ones(len(kps), bool), np.ones(len(kps), bool))


def _batch(pairs):
    items = [{"pair": p, "src_image": torch.rand(3, p.src_size[1], p.src_size[0]),
              "trg_image": torch.rand(3, p.trg_size[1], p.trg_size[0])} for p in pairs]
    return collate_pairs(items)


class Echo(Matcher):
    """Returns whatever ``answer`` builds from the batch (to test the contract checks)."""

    @dataclasses.dataclass
    class Config:
        scale: float = 1.0
        mode: str = "ok"
        flip: bool = False
        sizes: tuple[int, ...] = (1, 2)

    def match(self, batch):
        pts = batch.src_kps.clone() * self.config.scale
        if self.config.mode == "nan":
            pts[0, 0, 0] = float("nan")
        if self.config.mode == "shape":
            pts = pts[:, :1]
        if self.config.mode == "int":
            pts = pts.long()
        return MatchOutput(points=pts)


def test_contract_accepts_good_output_and_names_the_class_on_errors():
    batch = _batch([_pair()])
    assert Echo().predict(batch).points.shape == (1, 2, 2)
    for mode, message in [("nan", "non-finite"), ("shape", "shape"), ("int", "floating")]:
        with pytest.raises(MatcherContractError, match=f"Echo.match.*{message}|{message}"):
            Echo(mode=mode).predict(batch)


def test_contract_catches_points_in_a_resized_frame():
    with pytest.raises(MatcherContractError, match="ORIGINAL target image"):
        Echo(scale=30.0).predict(_batch([_pair()]))


def test_padding_rows_are_not_checked():
    batch = _batch([_pair("a", kps=((1.0, 1.0),)), _pair("b", kps=((1.0, 1.0), (2.0, 2.0), (3.0, 3.0)))])
    assert batch.query_mask.tolist() == [[True, False, False], [True, True, True]]
    Echo().predict(batch)


def test_options_are_strict_and_typed():
    cfg = Echo(**parse_assignments(["scale=2.5", "flip=yes", "sizes=3,4"])).config
    assert (cfg.scale, cfg.flip, cfg.sizes) == (2.5, True, (3, 4))
    with pytest.raises(ConfigError, match="(?s)no option .scal.*did you mean scale"):
        Echo(scal="1")
    with pytest.raises(ConfigError, match="expected float"):
        Echo(scale="big")
    with pytest.raises(ConfigError, match="true or false"):
        Echo(flip="maybe")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignments(["scale"])


def test_info_reports_config_and_parameters():
    info = Echo(scale=2).info()
    assert info["config"] == {"scale": 2.0, "mode": "ok", "flip": False, "sizes": [1, 2]}
    assert info["parameters"] == {"total": 0, "trainable": 0} and info["weights"]["source"] == "none"


class CountingMatcher(FeatureMatcher):
    """Features are the image itself at 4x4 (colour descriptors); counts extraction calls."""

    matching_options = ("localizer",)

    @dataclasses.dataclass
    class Config:
        resolution: int = 8
        localizer: str = "argmax"

    def __init__(self, **options):
        super().__init__(**options)
        self.extracted = []

    def build_localizer(self):
        return build_localizer(self.config.localizer)

    def extract(self, images):
        self.extracted.append(len(images))
        policy = ResizePolicy("stretch", self.config.resolution)
        # a constant channel keeps cosine similarity from equating dim and bright cells of one colour
        return [FeatureMap(torch.cat([canvas, torch.ones_like(canvas[:1])]), t)
                for canvas, t in (policy.apply(im) for im in images)]


def test_feature_cache_extracts_each_image_once_and_hits_are_exact():
    pairs = [_pair("a"), _pair("b")]
    batch = _batch(pairs)
    # the two pairs share their images by id: make the second pair point at the first one's files
    batch = dataclasses.replace(batch, src_ids=[batch.src_ids[0]] * 2, trg_ids=[batch.trg_ids[0]] * 2,
                                src_images=[batch.src_images[0]] * 2, trg_images=[batch.trg_images[0]] * 2)
    matcher = CountingMatcher()
    first = matcher.predict(batch).points
    assert matcher.extracted == [1, 1]  # one distinct source image, one distinct target image
    second = matcher.predict(batch).points
    assert matcher.extracted == [1, 1] and torch.equal(first, second)
    assert matcher.feature_cache.stats.hits >= 2


def test_feature_key_covers_feature_options_only():
    base = CountingMatcher().feature_key()
    assert CountingMatcher(localizer="window-soft-argmax").feature_key() == base
    assert CountingMatcher(resolution=16).feature_key() != base


def test_feature_matcher_finds_a_unique_colour():
    # Source and target are the same picture, so every query must come back to (almost) itself.
    image = torch.zeros(3, 32, 32)
    image[0, 0:8, 24:32] = 1.0  # a red block in the top-right 8x8 cell
    p = _pair(size=(32, 32), kps=((27.5, 3.5),))
    items = [{"pair": p, "src_image": image, "trg_image": image}]
    out = CountingMatcher(resolution=4).predict(collate_pairs(items)).points
    torch.testing.assert_close(out, torch.tensor([[[27.5, 3.5]]]))
