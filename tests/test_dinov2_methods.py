"""The frozen DINOv2 methods: every size registered, options, feature cache keys, and runs end to end."""

import pytest
import torch

from corrbench.errors import ConfigError
from corrbench.evaluate import RunOptions, run
from corrbench.similarity import GaussianSoftArgmax, WindowSoftArgmax
from corrbench.registry import METHODS

from result_checks import assert_summary_matches_pair_scores

SIZES = {"vits14": 384, "vitb14": 768, "vitl14": 1024, "vitg14": 1536}


def test_every_size_is_registered_with_its_backbone():
    for size in SIZES:
        for suffix in ("", "-reg"):
            cls = METHODS.get(f"dinov2-{size}{suffix}")
            assert cls.backbone == size + ("_reg" if suffix else "")
            assert ("registers" in cls.description) == bool(suffix)
    assert METHODS.get("dinov2") is METHODS.get("dinov2-vitb14")


@pytest.fixture(scope="module")
def small():
    return METHODS.get("dinov2-vits14")(weights="random", resolution=112)


def test_features_come_from_the_last_block_on_the_patch_grid(small):
    image = torch.rand(3, 50, 80)
    (fmap,) = small.extract([image])
    assert fmap.features.shape == (384, 8, 8)  # 112 / 14 = 8 tokens per side, longest side + pad
    assert fmap.transform.resized_size == (112, 70) and fmap.transform.offset == (0, 21)
    torch.manual_seed(0)
    batch = (torch.nn.functional.pad(
        torch.nn.functional.interpolate(image[None], size=(70, 112), mode="bilinear", antialias=True,
                                        align_corners=False), (0, 0, 21, 21)) - small.mean) / small.std
    (expected,) = small.model.get_intermediate_layers(batch, n=1, reshape=True, norm=True)
    torch.testing.assert_close(fmap.features, expected[0])


def test_result_records_random_weights(small):
    info = small.info()
    assert info["weights"]["source"] == "random" and info["parameters"]["total"] == 22_056_576
    assert small.normalize_features is True


def test_localiser_options_follow_their_sources():
    cls = METHODS.get("dinov2-vits14")
    window = cls(weights="random", resolution=28, localizer="window-soft-argmax").localizer
    assert isinstance(window, WindowSoftArgmax) and (window.radius, window.temperature) == (7, 0.02)
    gauss = cls(weights="random", resolution=28, localizer="gaussian-soft-argmax", temperature="0.05").localizer
    assert isinstance(gauss, GaussianSoftArgmax) and (gauss.sigma, gauss.temperature) == (7.0, 0.05)
    assert cls(weights="random", resolution=28, localizer="gaussian-soft-argmax").localizer.temperature == 0.03


def test_cache_key_covers_resolution_and_layer_not_the_localiser():
    cls = METHODS.get("dinov2-vits14")
    base = cls(weights="random", resolution=28).feature_key()
    assert cls(weights="random", resolution=28, localizer="window-soft-argmax").feature_key() == base
    assert cls(weights="random", resolution=42).feature_key() != base
    assert cls(weights="random", resolution=28, layer=5).feature_key() != base
    assert cls(weights="random", resolution=28, resize="stretch").feature_key() != base


@pytest.mark.parametrize("options, message", [
    ({"resolution": "100"}, "option 'resolution' .* must be >= 14, multiple of 14, got 100"),
    ({"layer": "12"}, "layer 12 does not exist"),
    ({"resize": "squash"}, "option 'resize' .* must be one of stretch, longest_side_pad"),
])
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        METHODS.get("dinov2-vits14")(weights="random", **options)


def test_runs_end_to_end_on_the_synthetic_benchmark(tmp_path, data_env):
    opts = RunOptions(method="dinov2-vits14-reg", benchmark="synthetic", options={"weights": "random",
                      "resolution": "56", "localizer": "window-soft-argmax"}, limit=8, batch_size=4,
                      out=tmp_path, progress=False)
    outcome = run(opts)
    result = outcome.result
    assert result["counts"]["pairs"] == 8 and result["method"]["weights"]["source"] == "random"
    assert result["method"]["config"]["localizer"] == "window-soft-argmax"
    assert_summary_matches_pair_scores(result, outcome.directory)
