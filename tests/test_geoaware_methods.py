"""The GeoAware-SC family's methods: checkpoints (released, unreleased, strict loading), feature sources, and the
canvas transform's inverse. Agreement with the authors' code is tests/test_geoaware_parity.py."""

from __future__ import annotations

import pytest
import torch

from corrbench.backbones.weights import hub_checkpoint_path
from corrbench.errors import ConfigError, DataError
from corrbench.methods.geoaware import DIY_SC_DINO, AggregationNetwork, family_transform, load_adapter_state
from corrbench.methods.geoaware.weights import resolve_adapter_checkpoint
from corrbench.registry import METHODS

TINY = {"weights": "random", "resolution": 28, "backbone": "vits14", "projection_dim": 128}


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def test_unreleased_checkpoint_names_where_the_authors_file_was_expected(empty_hub):
    with pytest.raises(ConfigError, match="geoaware-sc-dino has no released checkpoint: Junyi42/GeoAware-SC"):
        METHODS.get("geoaware-sc-dino")()
    with pytest.raises(ConfigError, match="jamais-vu has no released checkpoint: .*results_spair/"):
        METHODS.get("jamais-vu")()


def test_jamais_vu_needs_the_stable_diffusion_source(empty_hub):
    with pytest.raises(ConfigError, match=r"feature source 'sd' is not available: .*corrbench\[diffusion\]"):
        METHODS.get("jamais-vu")(**{**TINY, "checkpoint": "random"})


def test_weights_random_makes_the_adapter_random_and_is_recorded(empty_hub):
    matcher = METHODS.get("diy-sc")(**TINY)
    info = matcher.info()
    assert info["weights"]["source"] == "random" and info["weights"]["sources"]["dino"]["source"] == "random"
    assert info["config"]["localizer"] == "window-soft-argmax" and info["config"]["window"] == 7
    assert matcher.config.sources == ("dino",) and matcher.adapter.feature_dims == (384,)


def test_cached_release_with_a_wrong_sha256_is_refused(empty_hub):
    path = hub_checkpoint_path(DIY_SC_DINO.filename)
    path.parent.mkdir(parents=True)
    torch.save(AggregationNetwork([768], 768).state_dict(), path)
    with pytest.raises(DataError, match="sha256 is .*expected 42e9c8a4"):
        resolve_adapter_checkpoint(None, DIY_SC_DINO, "diy-sc")


def test_loading_is_strict_except_for_fewer_mixing_weights():
    model = AggregationNetwork([32, 32], projection_dim=128)
    state = AggregationNetwork([32, 32], projection_dim=128).state_dict()
    with pytest.raises(ConfigError, match="1 unexpected: extra"):
        load_adapter_state(model, {**state, "extra": torch.zeros(1)}, "file.pth")
    with pytest.raises(ConfigError, match="never more"):
        load_adapter_state(model, {**state, "mixing_weights": torch.zeros(3)}, "file.pth")
    with pytest.raises(ConfigError, match="missing: bottleneck_layers.1.0.conv1.weight"):
        load_adapter_state(model, {k: v for k, v in state.items() if k != "bottleneck_layers.1.0.conv1.weight"},
                           "file.pth")


def test_family_transform_scales_both_axes_alike_and_inverts():
    transform = family_transform((30, 20), 28)  # content 28 x 19: the short side is rounded, the scale is not
    points = torch.tensor([[0.0, 0.0], [29.0, 19.0]], dtype=torch.float64)
    torch.testing.assert_close(transform.forward(points), torch.tensor([[0.0, 4.0], [29 * 28 / 30, 4 + 19 * 28 / 30]],
                                                                       dtype=torch.float64))
    torch.testing.assert_close(transform.inverse(transform.forward(points)), points)


def pose_batch(category: str, kp_ids: tuple[str, ...]):
    from corrbench.types import PairBatch

    generator = torch.Generator().manual_seed(0)
    target = torch.rand(3, 40, 56, generator=generator)
    source = target.flip(-1)  # the mirrored source IS the target: the flip must win
    points = torch.tensor([[[10.0, 12.0], [45.0, 30.0]]])
    return PairBatch(src_images=[source], trg_images=[target], src_kps=points,
                     query_mask=torch.ones(1, 2, dtype=torch.bool), src_sizes=[(56, 40)], trg_sizes=[(56, 40)],
                     pair_ids=["p"], categories=[category], src_ids=["s"], trg_ids=["t"], kp_ids=[kp_ids])


def test_pose_alignment_takes_the_mirrored_source_when_it_matches_better(empty_hub):
    options = {**TINY, "resolution": 56}
    plain = METHODS.get("diy-sc")(**options).predict(pose_batch("car", ("2", "3"))).points
    aligned_matcher = METHODS.get("diy-sc")(**options, pose_alignment="spair71k")
    aligned = aligned_matcher.predict(pose_batch("car", ("2", "3"))).points
    assert aligned_matcher.info()["config"]["pose_alignment"] == "spair71k"
    assert not torch.allclose(plain, aligned)
    # "2" is queried in the mirrored source (= the target) at the mirror image of its partner "3", and vice versa
    mirrored_x = torch.tensor([55.0 - 45.0, 55.0 - 10.0])
    assert (aligned[0, :, 0] - mirrored_x).abs().max() < 8  # within half a cell (14 px canvas = 10 px here)


def test_pose_alignment_refuses_categories_of_other_datasets(empty_hub):
    matcher = METHODS.get("diy-sc")(**{**TINY, "resolution": 56}, pose_alignment="spair71k")
    with pytest.raises(ConfigError, match="no spair71k flip table for category 'antelope'"):
        matcher.predict(pose_batch("antelope", ("0", "1")))


def test_flip_plans_use_the_datasets_own_keypoint_ids():
    from corrbench.methods.geoaware.pose_alignment import flip_groups, flip_plan

    # SPair's bus ids 8 and 9 have no mirror partner; 18 pairs with 19 (the authors' test-time table counts bus
    # keypoints without ids 8 and 9, where 8 and 18 would look like a pair)
    assert flip_plan(flip_groups("spair71k", "bus"), ("8", "18", "10", "20")) == ([0, 1, 3, 2], [True, False, True, True])
    assert flip_plan(flip_groups("ap10k", "zebra"), ("nose", "left_eye", "right_eye", "left_hip")) == (
        [0, 2, 1, 3], [True, True, True, False])
