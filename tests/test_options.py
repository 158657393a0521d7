"""Options are checked where they are declared (ranges, rules, when they are used), and a broken plug-in or
option fails with one message that names the option or class, never a traceback or a silent default."""

import dataclasses
from typing import ClassVar

import pytest

from corrbench.config import Rule, build_config, describe_options, describe_rules, option, redefault
from corrbench.errors import ConfigError
from corrbench.registry import METHODS


def _one_clean_error(result, code, *needles):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) <= 2, result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.mark.parametrize("setting, needles", [
    ("dim=0", ("option 'dim'", "must be >= 1, got 0", "hint:")),
    ("heads=3", ("dim 64 must be divisible by heads 3",)),
    ("depth=-1", ("option 'depth'", "must be >= 1, got -1")),
    ("patch_size=0", ("option 'patch_size'", "must be >= 1, got 0")),
    ("resolution=-8", ("option 'resolution'", "must be >= 1, got -8")),
    ("resolution=100", ("resolution 100 must be a multiple of patch_size 8",)),
    ("localizer=nearest", ("option 'localizer'", "one of argmax")),
])
def test_out_of_range_tiny_vit_options_name_the_option(invoke, setting, needles):
    result = invoke("run", "-m", "tiny-vit", "-b", "synthetic", "--set", setting, "-q", "--limit", "1")
    _one_clean_error(result, 2, *needles)


def test_an_explicit_temperature_is_used_or_refused_never_replaced():
    cls = METHODS.get("dinov2-vits14")
    with pytest.raises(ConfigError, match="option 'temperature' .* must be > 0, got 0.0"):
        cls(weights="random", resolution=28, localizer="window-soft-argmax", temperature="0")
    matcher = cls(weights="random", resolution=28, localizer="window-soft-argmax", temperature="0.5")
    assert matcher.localizer.temperature == 0.5
    default = cls(weights="random", resolution=28, localizer="window-soft-argmax")
    assert default.localizer.temperature == 0.02 and default.config.temperature is None


@pytest.mark.parametrize("options, message", [
    ({"window": "3"}, "option 'window' of DINOv2ViTS14 has no effect with localizer='argmax'"),
    ({"temperature": "0.1"}, "option 'temperature' of DINOv2ViTS14 has no effect with localizer='argmax'"),
    ({"sigma": "3", "localizer": "window-soft-argmax"}, "option 'sigma' .* no effect with localizer='window"),
])
def test_options_the_localiser_does_not_use_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        METHODS.get("dinov2-vits14")(weights="random", resolution=28, **options)


def test_a_subclass_default_keeps_the_options_meaning_and_checks():
    ft = describe_options(METHODS.get("dinov2-ft").Config)
    resize = next(row for row in ft if row["name"] == "resize")
    assert resize["default"] == "stretch" and "one of stretch" in resize["range"] and resize["help"]


def test_generic_declarations_on_any_config():
    @dataclasses.dataclass
    class Config:
        size: int = option(4, "side", ge=2, multiple_of=2)
        mode: str = option("a", "mode", choices=("a", "b"))
        scale: float | None = option(None, "only for b", gt=0, used_when={"mode": ("b",)})
        rules: ClassVar[tuple] = (Rule(lambda c: c.size <= 8 or c.mode == "b", "size {size} needs mode b"),)

    assert build_config(Config, {"size": "6", "mode": "b", "scale": "2"}, "X").scale == 2.0
    for options, message in (({"size": "5"}, "option 'size' of X must be >= 2, multiple of 2, got 5"),
                             ({"size": "10"}, "X: size 10 needs mode b"),
                             ({"scale": "1"}, "option 'scale' of X has no effect with mode='a'"),
                             ({"mode": "c"}, "option 'mode' of X must be one of a, b")):
        with pytest.raises(ConfigError, match=message):
            build_config(Config, options, "X")

    @dataclasses.dataclass
    class Child(Config):
        mode: str = redefault(Config, "mode", "b")

    assert build_config(Child, {"scale": "1"}, "Y").scale == 1.0
    with pytest.raises(ConfigError, match="option 'mode' of Y must be one of a, b"):
        build_config(Child, {"mode": "z"}, "Y")


_PLUGIN_HEAD = """
import dataclasses
import torch
from corrbench import FeatureMatcher, Matcher, MatchOutput
from corrbench.geometry import ResizePolicy
from corrbench.localizers import build_localizer
from corrbench.types import FeatureMap
"""

_PLUGINS = {
    "NoMatch": "class NoMatch(Matcher):\n    pass\n",
    "PlainConfig": (
        "class PlainConfig(Matcher):\n"
        "    class Config:\n        seed = 0\n"
        "    def match(self, batch):\n        return MatchOutput(points=batch.src_kps.clone())\n"
    ),
    "Batched": (
        "class Batched(FeatureMatcher):\n"
        "    def build_localizer(self):\n        return build_localizer('argmax')\n"
        "    def extract(self, images):\n"
        "        policy = ResizePolicy('stretch', 32)\n"
        "        return [FeatureMap(torch.rand(1, 8, 4, 4), policy.transform((i.shape[-1], i.shape[-2])))\n"
        "                for i in images]\n"
    ),
    "AllNaN": (
        "class AllNaN(FeatureMatcher):\n"
        "    def build_localizer(self):\n        return build_localizer('argmax')\n"
        "    def extract(self, images):\n"
        "        policy = ResizePolicy('stretch', 32)\n"
        "        return [FeatureMap(torch.full((8, 4, 4), float('nan')), policy.transform((i.shape[-1], i.shape[-2])))\n"
        "                for i in images]\n"
    ),
}


@pytest.mark.parametrize("name, code, needles", [
    ("NoMatch", 2, ("class NoMatch does not define match", "hint: a Matcher defines match(self, batch)")),
    ("PlainConfig", 2, ("PlainConfig.Config is not a dataclass", "@dataclasses.dataclass")),
    ("Batched", 3, ("Batched.extract: FeatureMap.features must be one image's (C, h, w) tensor, got (1, 8, 4, 4)",
                    "FeatureMap(features[i], transform)")),
    ("AllNaN", 3, ("AllNaN.extract returned 128 of 128 non-finite descriptor values",)),
])
def test_broken_plugins_fail_with_one_message_naming_the_class(invoke, tmp_path, name, code, needles):
    (tmp_path / "plugin.py").write_text(_PLUGIN_HEAD + _PLUGINS[name])
    result = invoke("run", "-m", f"plugin.py:{name}", "-b", "synthetic", "-q", "--limit", "1")
    _one_clean_error(result, code, *needles)


def test_options_of_a_plugin_whose_config_is_not_a_dataclass_are_a_clean_error(invoke, tmp_path):
    (tmp_path / "plugin.py").write_text(_PLUGIN_HEAD + _PLUGINS["PlainConfig"])
    for command in (("ls", "options", "plugin.py:PlainConfig"), ("describe", "plugin.py:PlainConfig")):
        _one_clean_error(invoke(*command), 2, "PlainConfig.Config is not a dataclass")


def test_match_refuses_a_picture_name_it_cannot_write(invoke, tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    result = invoke("match", "-m", "random", "--src", "a.png", "--trg", "a.png", "--points", "1,1", "--out", "x.txt")
    _one_clean_error(result, 2, "--out x.txt: cannot write a picture as a '.txt' file", "--out x.png")
    assert not (tmp_path / "x.txt").exists()


def test_a_zero_validation_batch_is_refused_not_replaced():
    from corrbench.train.loop import train
    from corrbench.train.options import TrainOptions

    with pytest.raises(ConfigError, match="val_batch_size must be a positive integer"):
        train(TrainOptions(method="tiny-vit", benchmark="synthetic", val_batch_size=0, device="cpu"))


def test_rules_read_as_sentences_about_the_options():
    @dataclasses.dataclass
    class Config:
        dim: int = option(64, "width", ge=1)
        heads: int = option(4, "heads", ge=1)
        rules: ClassVar[tuple] = (Rule(lambda c: c.dim % c.heads == 0, "dim {dim} must be divisible by heads {heads}"),
                                  Rule(lambda c: c.dim <= 1024, "at most 1024 wide, got {dim}"))

    assert describe_rules(Config) == ["dim must be divisible by heads", "at most 1024 wide, got <dim>"]
