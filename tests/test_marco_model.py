"""The MARCO network: names and shapes of the released checkpoint, parameter counts, initialisation, placement.

The released configuration is inspected on the meta device (no memory, no time); behaviour is checked on a
tiny configuration (ViT-S/14 with random weights, adapters in the last two blocks, small inputs).
Equality of the numerics with the authors' code is measured outside the suite (see the matcher's report).
"""

from __future__ import annotations

import copy

import pytest
import torch

from corrbench.backbones import load_dinov2
from corrbench.backbones.dinov2 import DinoVisionTransformer
from corrbench.errors import ConfigError
from corrbench.methods.marco import RELEASED, AdaptedBlock, MARCOArchitecture, MARCOModel
from corrbench.methods.marco.model import LayerNorm2d

TINY = MARCOArchitecture(backbone="vits14", adapter_blocks=(10, 12), upsampling_stages=1)


def released_keys(dim: int = 1024, bottleneck: int = 512, blocks=range(15, 24), stages: int = 2):
    """The released checkpoint's ``model`` entry, written out from the architecture rules, in file order."""
    keys: dict[str, tuple[int, ...]] = {}
    for i in blocks:
        prefix = f"dino.blocks.{i}.adapter."
        keys.update({
            prefix + "adapter_layer_norm_before.weight": (dim,),
            prefix + "adapter_layer_norm_before.bias": (dim,),
            prefix + "down_proj.weight": (bottleneck, dim),
            prefix + "down_proj.bias": (bottleneck,),
            prefix + "up_proj.weight": (dim, bottleneck),
            prefix + "up_proj.bias": (dim,),
        })
    for j in range(stages):
        prefix = f"upscale.{j}."
        keys.update({
            prefix + "conv1.weight": (dim, dim, 2, 2),  # ConvTranspose2d: (in, out, k, k)
            prefix + "conv1.bias": (dim,),
            prefix + "conv2.weight": (dim, 1, 3, 3),  # depthwise, no bias
            prefix + "norm.weight": (dim,),
            prefix + "norm.bias": (dim,),
        })
    return keys


@pytest.fixture(scope="module")
def released_meta():
    with torch.device("meta"):
        return MARCOModel(RELEASED)


def test_released_trainable_keys_and_shapes_are_the_checkpoints(released_meta):
    shapes = released_meta.trainable_shapes()
    expected = released_keys()
    assert list(shapes) == list(expected) and shapes == expected
    assert len(shapes) == 64
    # The backbone keeps the official DINOv2 names under ``dino.``, so DINOv2 files load into it as they are.
    state = released_meta.state_dict()
    assert "dino.blocks.15.norm1.weight" in state and "dino.blocks.15.block.norm1.weight" not in state
    assert "dino.register_tokens" in state and state["dino.register_tokens"].shape == (1, 4, 1024)


def test_released_parameter_counts(released_meta):
    counts = released_meta.parameter_counts()
    assert counts == {
        "backbone": 304_372_736,
        "adapters": 9_469_440,  # 9 blocks x (2 x 1024 + 1024 x 512 + 512 + 512 x 1024 + 1024)
        "head": 8_413_184,  # 2 x (1024 x 1024 x 4 + 1024 + 1024 x 9 + 2 x 1024)
        "total": 322_255_360,
        "trainable": 17_882_624,
    }


def test_released_architecture_facts():
    assert RELEASED.backbone == "vitl14_reg"
    assert list(RELEASED.adapted_blocks) == list(range(15, 24))  # [15, 24] read as range(15, 24): 9 blocks
    assert RELEASED.bottleneck == 512 and RELEASED.upsampling == 4 and RELEASED.adapter_scale == 0.1


def test_bottleneck_factor_above_ten_is_an_absolute_width():
    assert MARCOArchitecture(backbone="vits14", adapter_blocks=(0, 1), bottleneck_factor=64).bottleneck == 64
    assert MARCOArchitecture(backbone="vits14", adapter_blocks=(0, 1), bottleneck_factor=0.25).bottleneck == 96


@pytest.mark.parametrize("blocks", [(10, 13), (-1, 3), (5, 4), (1, 2, 3)])
def test_adapter_blocks_must_fit_the_backbone(blocks):
    with pytest.raises(ConfigError, match="adapter_blocks"):
        MARCOArchitecture(backbone="vits14", adapter_blocks=blocks)


def test_only_adapters_and_head_train(released_meta):
    trainable = [n for n, p in released_meta.named_parameters() if p.requires_grad]
    assert trainable == list(released_keys())
    expected = [p.shape for p in released_meta.parameters() if p.requires_grad]
    assert [p.shape for p in released_meta.trainable_parameters()] == expected


# --- behaviour on the tiny configuration -------------------------------------------------------------------


@pytest.fixture(scope="module")
def vits():
    """One random ViT-S/14 for the module (copying it is much faster than initialising another)."""
    return load_dinov2("vits14", "random", seed=3)


@pytest.fixture(scope="module")
def tiny(vits):
    torch.manual_seed(0)
    return MARCOModel(TINY, copy.deepcopy(vits)).eval(), vits


def test_initialisation_follows_the_release(tiny):
    model, _ = tiny
    for i in (10, 11):
        adapter = model.dino.blocks[i].adapter
        assert isinstance(model.dino.blocks[i], AdaptedBlock)
        assert torch.count_nonzero(adapter.up_proj.weight) == 0 and torch.count_nonzero(adapter.up_proj.bias) == 0
        assert torch.count_nonzero(adapter.down_proj.bias) == 0
        bound = 1 / 384**0.5  # kaiming_uniform(a=sqrt(5)) on a 384-wide input
        assert 0 < adapter.down_proj.weight.abs().max() <= bound
        assert adapter.adapter_layer_norm_before.eps == 1e-5  # nn.LayerNorm's default, as released
        assert torch.equal(adapter.adapter_layer_norm_before.weight, torch.ones(384))
    assert not isinstance(model.dino.blocks[9], AdaptedBlock)
    stage = model.upscale[0]
    assert stage.conv2.bias is None and stage.conv2.groups == 384 and stage.norm.eps == 1e-6


def test_zero_adapters_give_plain_dinov2_then_trained_ones_do_not(tiny):
    model, plain = tiny
    x = torch.randn(2, 3, 56, 42)
    with torch.no_grad():
        (adapted,) = model.dino.get_intermediate_layers(x, n=1, reshape=True)
        (reference,) = plain.get_intermediate_layers(x, n=1, reshape=True)
        assert torch.equal(adapted, reference)
        trained = copy.deepcopy(model)
        trained.dino.blocks[11].adapter.up_proj.weight.normal_()
        (changed,) = trained.dino.get_intermediate_layers(x, n=1, reshape=True)
    assert (changed - reference).abs().max() > 1e-3


def test_adapter_runs_beside_the_ffn_on_the_attention_output(tiny):
    model, _ = tiny
    block = copy.deepcopy(model.dino.blocks[10])
    with torch.no_grad():
        for p in block.adapter.parameters():
            p.normal_()
        x = torch.randn(1, 5, 384)
        after_attention = x + block.ls1(block.attn(block.norm1(x)))
        adapter = block.adapter.up_proj(torch.relu(block.adapter.down_proj(
            block.adapter.adapter_layer_norm_before(after_attention)))) * 0.1
        expected = after_attention + adapter + block.ls2(block.mlp(block.norm2(after_attention)))
        torch.testing.assert_close(block(x), expected)


def test_features_are_the_upsampled_last_layer_after_the_final_norm(tiny):
    model, _ = tiny
    x = torch.randn(1, 3, 56, 70)
    with torch.no_grad():
        features = model(x)
        (tokens,) = model.dino.get_intermediate_layers(x, n=1, reshape=True, norm=True)
        stage = model.upscale[0]
        expected = stage.norm(stage.conv2(torch.nn.functional.gelu(stage.conv1(tokens))))
    assert features.shape == (1, 384, 8, 10) == (1, 384, *reversed(model.feature_grid(56, 70)))
    torch.testing.assert_close(features, expected)


def test_channel_layer_norm_normalises_each_pixel_over_channels():
    norm = LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x = torch.randn(2, 6, 3, 4)
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), norm.weight, norm.bias, 1e-6)
    torch.testing.assert_close(norm(x), expected.permute(0, 3, 1, 2))


def test_two_stages_upsample_four_times(vits):
    arch = MARCOArchitecture(backbone="vits14", adapter_blocks=(11, 12), upsampling_stages=2)
    model = MARCOModel(arch, copy.deepcopy(vits)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 28, 42)).shape == (1, 384, 8, 12)
    assert list(model.trainable_shapes())[-1] == "upscale.1.norm.bias"


def test_zero_stages_is_the_identity_head(vits):
    arch = MARCOArchitecture(backbone="vits14", adapter_blocks=(11, 12), upsampling_stages=0)
    model = MARCOModel(arch, copy.deepcopy(vits)).eval()
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.dino.get_intermediate_layers(x, n=1, reshape=True)[0])
    assert model.parameter_counts()["head"] == 0


def test_a_backbone_of_another_variant_is_refused():
    with torch.device("meta"), pytest.raises(ConfigError, match="is not dinov2_vits14_reg"):
        arch = MARCOArchitecture(backbone="vits14_reg", adapter_blocks=(0, 1))
        MARCOModel(arch, DinoVisionTransformer.from_spec("vits14"))


def test_adapters_cannot_be_injected_twice(vits):
    model = MARCOModel(TINY, copy.deepcopy(vits))
    with pytest.raises(ConfigError, match="already has an adapter"):
        MARCOModel(TINY, model.dino)
