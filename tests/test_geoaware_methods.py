"""The GeoAware-SC family's methods: checkpoints (released, unreleased, strict loading), feature sources, and the
canvas transform's inverse. Agreement with the authors' code is tests/test_geoaware_parity.py."""

from __future__ import annotations

import dataclasses
import sys

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


@pytest.mark.parametrize(("name", "options"), [("jamais-vu", {"checkpoint": "random"}), ("geoaware-sc", {}),
                                               ("diy-sc-sd", {})])
def test_sd_members_without_the_extra_stop_first_with_one_line_naming_it(empty_hub, monkeypatch, name, options):
    """Before the released adapter is downloaded (here: no network, an empty cache, which would be a DataError)
    or any backbone is read. (jamais-vu has no release: without a checkpoint it says so first.)"""
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` raises ImportError
    assert METHODS.get(name).Config().sources == ("sd", "dino")
    with pytest.raises(ConfigError) as caught:
        METHODS.get(name)(**options)
    assert "Stable Diffusion features need the optional 'diffusion' extra" in str(caught.value)
    assert "pip install 'corrbench[diffusion]'" in str(caught.value) and "\n" not in str(caught.value)


def test_the_sd_canvas_is_16_px_per_cell_and_must_fit_the_unet(empty_hub):
    from corrbench.methods.geoaware.sd_source import sd_canvas_size

    assert sd_canvas_size(840) == 960  # the authors' preprocess_map.py real_size for 60 x 60 cells
    with pytest.raises(ConfigError, match="resolution 28 gives a 32 px SD canvas"):
        METHODS.get("geoaware-sc")(**TINY)  # 2 x 2 cells: the UNet needs a multiple of 64


def test_sd_members_pin_the_released_sd_and_dino_adapters():
    from corrbench.methods.geoaware import DIY_SC_SD, GEOAWARE_SC

    assert METHODS.get("diy-sc-sd").release is DIY_SC_SD and METHODS.get("geoaware-sc").release is GEOAWARE_SC
    assert DIY_SC_SD.url == ("https://raw.githubusercontent.com/odunkel/DIY-SC/e1121c072b022adcccaf1b938dcc053fb9eed930/"
                             "ckpts/0280_spair/best.pth")
    assert DIY_SC_SD.git_blob == "0ee664f62b7bfe9c6080ba6d24e9a98d34fcee85"
    assert GEOAWARE_SC.url == ("https://raw.githubusercontent.com/Junyi42/GeoAware-SC/"
                               "99fd6b6a37d22aa2fabe75e7f48a3eaba51cfb72/results_spair/best_856.PTH")
    assert GEOAWARE_SC.git_blob == "1f97f5dcc9b4f6399ba1f0a539fed53a65e70aa4"


def test_a_release_pinned_by_git_blob_is_checked_after_download(empty_hub):
    import dataclasses

    from corrbench.backbones.weights import git_blob_id
    from corrbench.methods.geoaware import GEOAWARE_SC

    path = hub_checkpoint_path(GEOAWARE_SC.filename)
    path.parent.mkdir(parents=True)
    torch.save(AggregationNetwork([32, 32], 128).state_dict(), path)
    with pytest.raises(DataError, match="is not Junyi42/GeoAware-SC@99fd6b6a .*git blob 1f97f5dc"):
        resolve_adapter_checkpoint(None, GEOAWARE_SC, "geoaware-sc")
    genuine = dataclasses.replace(GEOAWARE_SC, git_blob=git_blob_id(path))
    state, info = resolve_adapter_checkpoint(None, genuine, "geoaware-sc")
    assert set(state) == set(AggregationNetwork([32, 32], 128).state_dict()) and info["source"] == GEOAWARE_SC.url
    assert len(info["sha256"]) == 64  # recorded in the result as for every file


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
    aligned_matcher = METHODS.get("diy-sc")(**options, pose_alignment="spair71k",
                                                pose_criterion="mutual-nn")  # the batch has no masks
    aligned = aligned_matcher.predict(pose_batch("car", ("2", "3"))).points
    assert aligned_matcher.info()["config"]["pose_alignment"] == "spair71k"
    assert not torch.allclose(plain, aligned)
    # "2" is queried in the mirrored source (= the target) at the mirror image of its partner "3", and vice versa
    mirrored_x = torch.tensor([55.0 - 45.0, 55.0 - 10.0])
    assert (aligned[0, :, 0] - mirrored_x).abs().max() < 8  # within half a cell (14 px canvas = 10 px here)


def test_pose_alignment_refuses_categories_of_other_datasets(empty_hub):
    matcher = METHODS.get("diy-sc")(**{**TINY, "resolution": 56}, pose_alignment="spair71k",
                                         pose_criterion="mutual-nn")
    with pytest.raises(ConfigError, match="no spair71k flip table for category 'antelope'"):
        matcher.predict(pose_batch("antelope", ("0", "1")))


def test_flip_plans_use_the_datasets_own_keypoint_ids():
    from corrbench.methods.geoaware.pose_alignment import flip_groups, flip_plan

    # SPair's bus ids 8 and 9 have no mirror partner; 18 pairs with 19 (the authors' test-time table counts bus
    # keypoints without ids 8 and 9, where 8 and 18 would look like a pair)
    assert flip_plan(flip_groups("spair71k", "bus"), ("8", "18", "10", "20")) == ([0, 1, 3, 2], [True, False, True, True])
    assert flip_plan(flip_groups("ap10k", "zebra"), ("nose", "left_eye", "right_eye", "left_hip")) == (
        [0, 2, 1, 3], [True, True, True, False])


# --- the "sd" source on a tiny UNet (where the diffusion extra is installed) -----------------------------------

# SD 1.5's layout at toy widths, every width a multiple of the adapter's 32 GroupNorm groups: the taps (8, 5, 2)
# carry 32, 64, 64 channels (SD's 640, 1280, 1280).
TINY_SD = dict(
    unet=dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 32, 64, 64),
              down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
              up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=16,
              attention_head_dim=2, norm_num_groups=8),
    vae=dict(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
             block_out_channels=(4, 4, 4, 4), layers_per_block=1, latent_channels=4, norm_num_groups=2),
    text=dict(vocab_size=64, hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
              max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1),
    clip=dict(image_size=28, patch_size=14, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
              num_attention_heads=2, projection_dim=6))


@pytest.fixture
def tiny_sd_source(monkeypatch):
    """The registered "sd" builder, with toy architectures for weights=random."""
    import functools

    pytest.importorskip("diffusers")
    pytest.importorskip("transformers").logging.set_verbosity_error()
    from corrbench.methods.geoaware import features, sd_source

    monkeypatch.setitem(features.FEATURE_SOURCES, "sd", functools.partial(sd_source.build_sd_source,
                                                                          architectures=TINY_SD))


def authors_canvas(image: torch.Tensor, side: int) -> torch.Tensor:
    """Their ``resize(img, side)``: PIL LANCZOS of the 8-bit image, longest side to ``side``, centred on black."""
    import numpy as np
    from PIL import Image

    pixels = Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy())
    w, h = pixels.size
    size = (side, int(np.around(side * h / w))) if h <= w else (int(np.around(side * w / h)), side)
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    top, left = (side - size[1]) // 2, (side - size[0]) // 2
    canvas[top:top + size[1], left:left + size[0]] = np.asarray(pixels.resize(size, Image.Resampling.LANCZOS))
    return torch.from_numpy(canvas).permute(2, 0, 1).float() / 255


def test_sd_source_feeds_the_adapter_s3_s4_s5_then_dinov2(empty_hub, tiny_sd_source):
    from corrbench.methods.geoaware.diffusion import StableDiffusionFeatures
    from corrbench.methods.geoaware.features import concatenated_features

    matcher = METHODS.get("geoaware-sc")(**{**TINY, "resolution": 56})  # 4 x 4 cells, a 64 px SD canvas
    sd, dino = matcher.sources
    assert matcher.adapter.feature_dims == (32, 64, 64, 384)  # the authors' [640, 1280, 1280, 768], scaled down
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 40, 60, generator=generator), torch.rand(3, 50, 30, generator=generator)]
    with torch.no_grad():
        joined = concatenated_features(matcher.sources, images)
        maps = sd.model(torch.stack([authors_canvas(image, 64) for image in images]))
        expected_sd = StableDiffusionFeatures.on_grid(maps, 4)
        expected_dino = dino(images)
    assert [tuple(m.shape[1:]) for m in maps] == [(32, 4, 4), (64, 2, 2), (64, 1, 1)]
    torch.testing.assert_close(joined, torch.cat([expected_sd, expected_dino], dim=1))
    info = matcher.info()["weights"]["sources"]
    assert info["sd"]["source"] == "random" and info["sd"]["spec"]["image_size"] == 64
    assert info["dino"]["source"] == "random"


def test_sd_member_answers_pairs_with_pose_alignment(empty_hub, tiny_sd_source):
    matcher = METHODS.get("diy-sc-sd")(**{**TINY, "resolution": 56}, pose_alignment="spair71k",
                                            pose_criterion="mutual-nn")
    points = matcher.predict(pose_batch("car", ("2", "3"))).points  # Matcher.predict checks the contract
    assert points.shape == (1, 2, 2) and torch.isfinite(points).all()


def test_pose_alignment_mask_criterion_asks_for_masks_and_names_the_option(empty_hub):
    matcher = METHODS.get("diy-sc")(**{**TINY, "resolution": 56}, pose_alignment="spair71k")
    assert matcher.config.pose_criterion == "mask" and "masks" in matcher.requires  # the authors' default
    with pytest.raises(ConfigError, match="pose_criterion=mask needs the pairs' foreground masks"):
        matcher.predict(pose_batch("car", ("2", "3")))


def test_pose_alignment_mask_criterion_reads_the_batch_masks(empty_hub):
    options = {**TINY, "resolution": 56, "pose_alignment": "spair71k"}
    by_mutual_nn = METHODS.get("diy-sc")(**options, pose_criterion="mutual-nn").predict(pose_batch("car", ("2", "3")))
    full = torch.ones(40, 56, dtype=torch.bool)  # the mirrored source (= the target) on the same foreground wins
    batch = dataclasses.replace(pose_batch("car", ("2", "3")), src_masks=[full], trg_masks=[full])
    matcher = METHODS.get("diy-sc")(**options)
    assert matcher.info()["config"]["pose_criterion"] == "mask"
    torch.testing.assert_close(matcher.predict(batch).points, by_mutual_nn.points)
    # no source foreground: the mean over no cell is NaN in the authors' code too, and the source as is is kept
    plain = METHODS.get("diy-sc")(**{**TINY, "resolution": 56}).predict(pose_batch("car", ("2", "3")))
    empty = dataclasses.replace(batch, src_masks=[torch.zeros_like(full)])
    torch.testing.assert_close(matcher.predict(empty).points, plain.points)


def test_canvas_mask_places_the_mask_like_the_image():
    from corrbench.methods.geoaware.matcher import canvas_mask

    mask = torch.zeros(10, 20, dtype=torch.bool)
    mask[:, 10:] = True  # the right half
    canvas = canvas_mask(mask, family_transform((20, 10), 56))  # 56 x 28 content, 14 rows of padding above
    assert canvas.shape == (56, 56) and canvas[:14].sum() == 0 and canvas[42:].sum() == 0
    assert canvas[14:42, 28:].all() and canvas[14:42, :28].sum() == 0
