"""The sweep: every registered method, built with random weights at a small resolution, answers two synthetic
pairs through ``Matcher.predict``, whose contract check (shape, dtype, finite points, original target frame)
must pass.

The methods are those of ``METHODS.names()`` when this file is collected, so a newly registered method is
swept without editing this file. How each is built:

- with its entry in ``TEST_OPTIONS`` (random weights, a small canvas), or with its defaults when it has none:
  a new method whose defaults need official weights or a large model fails here, loudly, until it gets an
  entry. ``TORCH_HOME`` points at an empty folder, so no cached official file is ever read, and the suite
  refuses the network (conftest.py);
- DINOv2 variants above ``PARAMETER_BUDGET`` (ViT-B, -L and the 1.1B-parameter ViT-g, with and without
  registers) would take seconds and gigabytes each to initialise on a CPU. Here they keep their width, heads,
  feed-forward type, registers and positional interpolation, but get ``REDUCED_DEPTH`` blocks; the method's
  own code runs unchanged on that backbone. The full-size method is then built on the meta device (no memory,
  no time), and its backbone's keys and shapes are checked against the official checkpoint's manifest
  (``OFFICIAL_DINOV2_MANIFESTS``), and the reduced one against the full one's first blocks.
- the GeoAware-SC family's SD + DINOv2 members (``diy-sc-sd``, ``geoaware-sc``, ``jamais-vu``) are swept with
  ``sources=dino``: Stable Diffusion needs the optional ``diffusion`` extra and its UNet alone is ~860M
  parameters; their ``sd`` source is tested on a tiny UNet in test_geoaware_methods.py;
- a method that declares ``uses_ground_truth`` (the test-only oracle) gets the target keypoints in its batch,
  as the harness gives them; ``requires = {"masks"}`` gets masks. Both through the harness's own batching.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math

import pytest
import torch

from corrbench.backbones import DINOV2_SPECS, DinoVisionTransformer
from corrbench.batching import make_batch
from corrbench.datasets import make_adapter
from corrbench.errors import MatcherContractError
from corrbench.matcher import Matcher
from corrbench.registry import BENCHMARKS, METHODS
from corrbench.types import MatchOutput, PairBatch

#: Most parameters a method may have as the sweep builds it (ViT-S/14 has 22M; one ViT-g block with its
#: embeddings 31M). Above it, building with random weights costs seconds of the suite's CPU time.
PARAMETER_BUDGET = 40_000_000
#: Blocks kept of a DINOv2 backbone above the budget.
REDUCED_DEPTH = 1

_DINOV2 = {"weights": "random", "resolution": 28}  # 2 x 2 patches
#: How the sweep builds each method: random weights, small canvases. A method without an entry is built with
#: its defaults (tiny-vit's are its test size; oracle and random have no weights).
TEST_OPTIONS: dict[str, dict] = {
    **{name: _DINOV2 for name in ("dinov2", "dinov2-vits14", "dinov2-vits14-reg", "dinov2-vitb14",
                                  "dinov2-vitb14-reg", "dinov2-vitl14", "dinov2-vitl14-reg", "dinov2-vitg14",
                                  "dinov2-vitg14-reg")},
    # its declared test-size backbone: with a depth-reduced ViT-B its two trainable blocks would not exist
    "dinov2-ft": {**_DINOV2, "backbone": "vits14"},
    # ViT-S backbone: the released adapter blocks 15..23 need ViT-L's depth, which the sweep cannot afford
    "marco": {**_DINOV2, "checkpoint": "random", "backbone": "vits14", "adapter_blocks": (10, 12),
              "upsampling_stages": 1},
    # the GeoAware-SC family: weights=random also makes the adapter random; a ViT-S backbone, a narrow adapter
    **{name: {**_DINOV2, "backbone": "vits14", "projection_dim": 128}
       for name in ("diy-sc", "geoaware-sc-dino")},
    # Exceptions: the SD + DINOv2 members are swept on their DINOv2 source alone. Their own sources need the
    # diffusion extra, which the suite does not install, and SD 1.5's UNet alone has 860M parameters (far above
    # PARAMETER_BUDGET); the "sd" source is tested on a tiny UNet in test_geoaware_methods.py where diffusers is.
    **{name: {**_DINOV2, "backbone": "vits14", "projection_dim": 128, "sources": ("dino",)}
       for name in ("diy-sc-sd", "geoaware-sc", "jamais-vu")},
}

#: The official DINOv2 checkpoints (facebookresearch/dinov2 ``*_pretrain.pth``), summarised from their key
#: manifests: number of keys, number of parameters, and the first 16 hex digits of the sha256 of
#: ``json.dumps([[key, list(shape)], ...])`` in file order (the manifests themselves are not in the repository).
OFFICIAL_DINOV2_MANIFESTS = {
    "dinov2_vits14": (175, 22_056_576, "1b4396171d107c8b"),
    "dinov2_vits14_reg": (176, 22_058_112, "f836bca321b4a8d9"),
    "dinov2_vitb14": (175, 86_580_480, "7cbf4afd70e97bca"),
    "dinov2_vitb14_reg": (176, 86_583_552, "786c04970b38ceb1"),
    "dinov2_vitl14": (343, 304_368_640, "a40b346980ad7813"),
    "dinov2_vitl14_reg": (344, 304_372_736, "b9e7daebe53ca471"),
    "dinov2_vitg14": (567, 1_136_480_768, "c48c69c0ef99ce88"),
    "dinov2_vitg14_reg": (568, 1_136_486_912, "7c5699babd923777"),
}


def manifest_of(state_dict) -> tuple[int, int, str]:
    """``(keys, parameters, digest)`` of a state dict, as ``OFFICIAL_DINOV2_MANIFESTS`` records them."""
    layout = [[key, list(tensor.shape)] for key, tensor in state_dict.items()]
    digest = hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:16]
    return len(layout), sum(math.prod(shape) for _, shape in layout), digest


@functools.lru_cache(maxsize=None)
def oversized_dinov2_variants() -> frozenset[str]:
    """The DINOv2 variants whose full backbone exceeds the budget (sized on the meta device: no memory)."""
    oversized = set()
    for key, spec in DINOV2_SPECS.items():
        with torch.device("meta"):
            size = sum(p.numel() for p in DinoVisionTransformer.from_spec(spec).parameters())
        if size > PARAMETER_BUDGET:
            oversized.add(key)
    return frozenset(oversized)


def dinov2_backbone(matcher: Matcher) -> DinoVisionTransformer | None:
    return next((m for m in matcher.modules() if isinstance(m, DinoVisionTransformer)), None)


def build(name: str, cls: type[Matcher], options: dict) -> Matcher:
    """The method as the harness builds it (``cls(**options).eval()``), with a message saying what to do."""
    try:
        return cls(**options).eval()
    except Exception as exc:
        declared = "its TEST_OPTIONS entry" if name in TEST_OPTIONS else "its defaults (no TEST_OPTIONS entry)"
        pytest.fail(f"method {name!r} cannot be built offline with {declared} {options}: {type(exc).__name__}: "
                    f"{exc}\nGive it an entry in TEST_OPTIONS in {__file__} with random weights and a small "
                    "canvas.", pytrace=False)


def predict_on(matcher: Matcher, pairs) -> tuple[PairBatch, MatchOutput]:
    """``Matcher.predict`` (which checks the contract) on a batch built as the harness builds it."""
    cls = type(matcher)
    batch = make_batch(pairs, with_masks="masks" in cls.requires, with_ground_truth=cls.uses_ground_truth)
    return batch, matcher.predict(batch)


@pytest.fixture(scope="module")
def two_pairs(synthetic_data_root):
    """Two synthetic pairs of different categories, target sizes and keypoint counts (so one is padded)."""
    spec = BENCHMARKS.get("synthetic")
    pairs = make_adapter(spec, synthetic_data_root).pairs(spec.split, spec.subset).pairs
    first = pairs[0]
    second = next(p for p in pairs if p.category != first.category and p.trg_size != first.trg_size
                  and p.num_keypoints != first.num_keypoints)
    return [first, second]


# The registry at collection time: every installed method (entry points). A test module that registers a
# helper method at import (test_training.py) adds it when collected before this one; such methods pass too.
@pytest.mark.parametrize("name", METHODS.names())
def test_registered_method_meets_the_contract_on_two_synthetic_pairs(name, two_pairs, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # empty: official weights are never read
    options = TEST_OPTIONS.get(name, {})
    cls = METHODS.get(name)  # imported before the patch below: MARCO builds its released architecture at import
    oversized = oversized_dinov2_variants()
    with monkeypatch.context() as patch:
        for key in oversized:
            patch.setitem(DINOV2_SPECS, key, dataclasses.replace(DINOV2_SPECS[key], depth=REDUCED_DEPTH))
        matcher = build(name, cls, options)

    size = matcher.parameter_counts()["total"]
    assert size <= PARAMETER_BUDGET, (
        f"{name} has {size:,} parameters as the sweep builds it; give it a smaller TEST_OPTIONS entry")
    batch, _ = predict_on(matcher, two_pairs)  # raises MatcherContractError on a broken answer
    assert batch.query_mask.any(dim=1).all()  # both pairs have points the contract check looks at
    json.dumps(matcher.info())  # what every result records about the method

    backbone = dinov2_backbone(matcher)
    if backbone is not None and backbone.spec is not None and backbone.spec.name in oversized:
        check_full_size_against_the_official_manifest(name, cls, options, backbone)


def check_full_size_against_the_official_manifest(name: str, cls: type[Matcher], options: dict,
                                                  reduced: DinoVisionTransformer) -> None:
    """The method at full size, built on the meta device, has the official backbone; the swept one is its cut."""
    with torch.device("meta"):
        full = dinov2_backbone(cls(**options))
    assert full is not None and full.spec is not None and full.n_blocks > REDUCED_DEPTH
    official = OFFICIAL_DINOV2_MANIFESTS.get(full.spec.name)
    assert official is not None, f"record the official checkpoint manifest of {full.spec.name}"
    assert manifest_of(full.state_dict()) == official, f"{name}: backbone (keys, parameters, digest) differs"
    first_blocks = {key: tuple(t.shape) for key, t in full.state_dict().items()
                    if not key.startswith("blocks.") or int(key.split(".")[1]) < REDUCED_DEPTH}
    assert {key: tuple(t.shape) for key, t in reduced.state_dict().items()} == first_blocks


def test_test_options_name_registered_methods():
    """A stale entry (a renamed method) would leave the new name built with its defaults; this also keeps the
    sweep from being empty (pytest would only skip an empty parametrisation)."""
    assert set(TEST_OPTIONS) <= set(METHODS.names()), "TEST_OPTIONS names a method that is not registered"


class _PointsInACanvas(Matcher):
    """Answers in a 4x-enlarged frame: the frame mix-up the contract check exists for."""

    @dataclasses.dataclass
    class Config:
        """No options."""

    def match(self, batch: PairBatch) -> MatchOutput:
        sizes = torch.tensor(batch.trg_sizes, dtype=torch.float32)[:, None, :]
        return MatchOutput(points=(sizes - 1).expand(-1, batch.max_keypoints, -1) * 4)


def test_the_sweeps_path_catches_a_contract_violation(two_pairs):
    with pytest.raises(MatcherContractError, match="_PointsInACanvas.match.*far outside the target image"):
        predict_on(_PointsInACanvas(), two_pairs)
