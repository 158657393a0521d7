"""Stable Diffusion features of the GeoAware-SC family (methods/geoaware/diffusion.py).

Without the ``diffusion`` extra every use fails with one line naming it (always tested). With diffusers and
transformers installed, the extraction path runs end to end on a tiny random UNet / VAE / CLIP built from
configs (no download) and is checked against diffusers' own UNet forward, observed through hooks: the taps,
the timestep, the shared noise, FreeU's channel rule and the sliding windows. CI installs ``.[dev]`` only, where
those tests are skipped (the extra is ~320 MB; see the README).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys

import pytest
import torch
from click.testing import CliRunner

from corrbench.cli import cli
from corrbench.errors import ConfigError, DataError
from corrbench.methods.geoaware import diffusion as sd
from corrbench.methods.geoaware.diffusion import (ImplicitCaptioner, StableDiffusionFeatures, StableDiffusionSpec,
                                                  window_origins)

EXTRA = "pip install 'corrbench[diffusion]'"


# --- without the extra ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("missing", ["diffusers", "transformers"])
def test_missing_extra_is_one_line_naming_it(monkeypatch, missing):
    other = {"diffusers": "transformers", "transformers": "diffusers"}[missing]
    with contextlib.suppress(ImportError):  # imported whole first where installed: no half-imported module stays
        importlib.import_module(other)
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` raise ImportError
    with pytest.raises(ConfigError) as caught:
        StableDiffusionFeatures.from_pretrained()
    message = str(caught.value)
    assert EXTRA in message and missing in message and "\n" not in message


PROBE = '''
from corrbench.matcher import FeatureMatcher
from corrbench.methods.geoaware.diffusion import StableDiffusionFeatures

class Probe(FeatureMatcher):
    def __init__(self, **options):
        StableDiffusionFeatures.from_pretrained()

    def extract(self, images):
        return []

    def build_localizer(self):
        return None
'''


def test_cli_shows_the_missing_extra_without_traceback(tmp_path, monkeypatch):
    (tmp_path / "probe.py").write_text(PROBE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "diffusers", None)
    result = CliRunner().invoke(cli, ["run", "--method", "probe.py:Probe", "--benchmark", "synthetic",
                                      "--data-root", str(tmp_path / "data"), "-q"])
    assert result.exit_code == 2 and EXTRA in result.output
    assert "Traceback" not in result.output


# --- pieces that need no extra -------------------------------------------------------------------------------

def test_spec_defaults_are_the_authors_and_bad_values_are_refused():
    spec = StableDiffusionSpec()
    assert (spec.image_size, spec.window, spec.timestep, spec.noise_seed, spec.taps) == (960, 512, 50, 42, (8, 5, 2))
    assert spec.model_id == "stable-diffusion-v1-5/stable-diffusion-v1-5" and spec.prompt is None
    assert spec.captioner_filename == "odise_label_coco_50e-b67d2efc.pth"
    with pytest.raises(ConfigError, match="multiple of 64"):
        StableDiffusionSpec(image_size=840)
    with pytest.raises(ConfigError, match="timestep"):
        StableDiffusionSpec(timestep=1000)


def test_windows_follow_odise_slide_forward():
    assert window_origins(960, 512) == [0, 448]  # 2 x 2 windows overlapping by 64 px at the authors' size
    assert window_origins(512, 512) == [0]
    assert window_origins(1024, 512) == [0, 512]
    assert window_origins(256, 512) == [0]  # smaller than a window: one crop of the whole side


def test_schedule_and_noise_are_odises():
    abar = sd.alphas_cumprod(StableDiffusionSpec())
    assert abar.dtype == torch.float64 and abar[0] == pytest.approx(1 - 0.00085)
    # numpy, as ODISE: cumprod(1 - linspace(sqrt 0.00085, sqrt 0.012, 1000) ** 2)[50] (float32 gives 0.95157665)
    assert float(abar[50]) == pytest.approx(0.95157690, abs=1e-8)
    noise = sd.shared_noise(StableDiffusionSpec(), 4)
    assert noise.shape == (1, 4, 64, 64)
    assert torch.equal(noise, torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(42)))


def test_fourier_filter_scales_only_the_lowest_frequencies():
    constant = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(sd.fourier_filter(constant, 0.2), constant * 0.2, atol=1e-6)
    stripes = torch.tensor([1.0, -1.0] * 4).repeat(8, 1)[None, None]  # highest frequency only
    assert torch.allclose(sd.fourier_filter(stripes, 0.2), stripes, atol=1e-6)


def test_captioner_weights_load_from_an_odise_checkpoint(tmp_path):
    captioner = ImplicitCaptioner(clip_dim=6, context_len=77, context_dim=4, time_dim=5)
    state = {f"backbone.feature_extractor.{k}": torch.randn_like(v) for k, v in captioner.state_dict().items()}
    state["sem_seg_head.other.weight"] = torch.zeros(2)  # the rest of ODISE's model is ignored
    torch.save({"model": state, "iteration": 1}, tmp_path / "odise.pth")
    sd.load_captioner_weights(captioner, tmp_path / "odise.pth")
    assert torch.equal(captioner.alpha_cond, state["backbone.feature_extractor.alpha_cond"])
    assert torch.equal(captioner.time_embed_project.linear.weight,
                       state["backbone.feature_extractor.time_embed_project.linear.weight"])
    del state["backbone.feature_extractor.alpha_cond_time_embed"]
    torch.save({"model": state}, tmp_path / "partial.pth")
    with pytest.raises(DataError, match="alpha_cond_time_embed"):
        sd.load_captioner_weights(captioner, tmp_path / "partial.pth")


def test_captioner_is_odises_gated_projection():
    captioner = ImplicitCaptioner(clip_dim=3, context_len=4, context_dim=2, time_dim=5)
    with torch.no_grad():
        for p in captioner.parameters():
            p.normal_()
    embed, empty = torch.randn(2, 3), torch.randn(2, 4, 2)
    context, time_offset = captioner(embed, empty)
    project = captioner.clip_project
    expected = empty + torch.tanh(captioner.alpha_cond) * (
        (embed @ project.linear.weight.T + project.linear.bias)[:, None] + project.positional_embedding)
    torch.testing.assert_close(context, expected)
    timing = captioner.time_embed_project
    expected = torch.tanh(captioner.alpha_cond_time_embed) * (
        embed @ timing.linear.weight.T + timing.linear.bias + timing.positional_embedding[0])
    torch.testing.assert_close(time_offset, expected)


def test_on_grid_concatenates_s3_s4_s5_bilinearly():
    maps = [torch.randn(1, 2, 8, 8), torch.randn(1, 3, 4, 4), torch.randn(1, 1, 2, 2)]
    grid = StableDiffusionFeatures.on_grid(maps, 8)
    assert grid.shape == (1, 6, 8, 8) and torch.equal(grid[:, :2], maps[0])
    expected = torch.nn.functional.interpolate(maps[2], size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.equal(grid[:, 5:], expected)


# --- the extraction path on tiny random models -----------------------------------------------------------------

# Channels of the hidden state entering each output block of the tiny UNet below (block_out_channels 8, 16, 32,
# 32, as SD's 320, 640, 1280, 1280): FreeU's "1280" is 32 here and its "640" is 16.
ENTERING = [32, 32, 32, 32, 32, 32, 32, 16, 16, 16, 8, 8]


def write_tiny_release(folder, diffusers, transformers):
    """A tiny random SD 1.5 look-alike in the diffusers layout (unet/, vae/, text_encoder/, tokenizer/), a tiny
    CLIP vision folder, and an ODISE-style checkpoint holding captioner tensors with open gates."""
    torch.manual_seed(0)
    diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(8, 16, 32, 32),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4).save_pretrained(folder / "sd" / "unet")
    diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4), layers_per_block=1, latent_channels=4, norm_num_groups=2,
    ).save_pretrained(folder / "sd" / "vae")
    transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=64, hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        bos_token_id=0, eos_token_id=1, pad_token_id=1)).save_pretrained(folder / "sd" / "text_encoder")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{c: 2 + i for i, c in enumerate(letters)},
             **{c + "</w>": 28 + i for i, c in enumerate(letters)}}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")  # no merges: words split into letters
    transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77
                               ).save_pretrained(folder / "sd" / "tokenizer")
    transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        image_size=28, patch_size=14, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, projection_dim=6)).save_pretrained(folder / "clip")
    captioner = ImplicitCaptioner(clip_dim=6, context_len=77, context_dim=16, time_dim=32)
    state = {f"backbone.feature_extractor.{k}": torch.randn_like(v) for k, v in captioner.state_dict().items()}
    torch.save({"model": state}, folder / "odise.pth")
    return state


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    folder = tmp_path_factory.mktemp("release")
    odise_state = write_tiny_release(folder, diffusers, transformers)
    released = StableDiffusionFeatures.from_pretrained(
        StableDiffusionSpec(model_id=str(folder / "sd"), clip_model_id=str(folder / "clip"), image_size=64,
                            window=64), captioner_weights=folder / "odise.pth", progress=False)

    def build(**spec_fields):
        """Same modules, another spec (from_pretrained is what `released` exercised)."""
        spec = StableDiffusionSpec(**{"image_size": 128, "window": 64, **spec_fields})
        return StableDiffusionFeatures(spec, unet=released.unet, vae=released.vae,
                                       text_encoder=released.text_encoder,
                                       clip_image_encoder=released.clip_image_encoder, clip_image_size=28,
                                       captioner=released.captioner)
    return build, released, odise_state


def test_from_pretrained_reads_the_release_layout(tiny):
    _, released, odise_state = tiny
    assert released.clip_image_size == 28 and released.empty_context.shape == (1, 77, 16)
    assert torch.equal(released.captioner.alpha_cond, odise_state["backbone.feature_extractor.alpha_cond"])
    info = released.weights_info()
    assert len(info["captioner"]["sha256"]) == 64 and info["spec"]["timestep"] == 50
    assert released.text_encoder.tokenizer(["a cat"]).input_ids[0] == [0, 28, 4, 2, 47, 1]  # a</w> c a t</w>
    texts = released.text_encoder(["", "a cat"])
    assert texts.shape == (2, 77, 16) and not torch.allclose(texts[0], texts[1])
def reference_taps(unet, vae, window, context, spec, freeu):
    """The taps through diffusers' own ``UNet2DConditionModel.forward``: pre-hooks on each output block's
    resnet see ``cat([entering, skip])``, apply ODISE's FreeU rule by the entering channel count, and record."""
    latent = vae.encode(window * 2 - 1).latent_dist.mean * vae.config.scaling_factor
    noise = torch.nn.functional.interpolate(sd.shared_noise(spec, 4), size=latent.shape[-2:], mode="bicubic")
    abar = sd.alphas_cumprod(spec)[spec.timestep]
    noisy = float(abar.sqrt()) * latent + float((1 - abar).sqrt()) * noise
    b1, b2, s1, s2 = spec.freeu
    seen, hooks = {}, []
    for index in range(12):
        resnet = unet.up_blocks[index // 3].resnets[index % 3]

        def hook(module, args, index=index):
            x = args[0]
            c = ENTERING[index]
            h, skip = x[:, :c].clone(), x[:, c:]
            if freeu and c in (32, 16):
                h[:, :c // 2] *= b1 if c == 32 else b2
                skip = sd.fourier_filter(skip, s1 if c == 32 else s2)
            seen[index] = h
            return (torch.cat([h, skip], dim=1), *args[1:])
        hooks.append(resnet.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            unet(noisy, spec.timestep, encoder_hidden_states=context)
    finally:
        for h in hooks:
            h.remove()
    return [seen[i] for i in spec.taps]


@pytest.mark.parametrize("freeu", [True, False])
def test_taps_equal_diffusers_forward_at_timestep_50(tiny, freeu):
    build, released, _ = tiny
    unet, vae = released.unet, released.vae
    off = {} if freeu else {"freeu": (1.0, 1.0, 1.0, 1.0)}
    model = build(prompt="", image_size=64, **off)
    window = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ours = model(window)
    assert [tuple(m.shape) for m in ours] == [(1, 16, 4, 4), (1, 32, 2, 2), (1, 32, 1, 1)]  # strides 16, 32, 64
    expected = reference_taps(unet, vae, window, model.empty_context, model.spec, freeu)
    for got, want in zip(ours, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    other_step = reference_taps(unet, vae, window, model.empty_context,
                                StableDiffusionSpec(image_size=64, window=64, timestep=49, **off), freeu)
    assert not torch.allclose(ours[0], other_step[0], rtol=1e-5, atol=1e-5)  # the timestep is visible


def test_freeu_scaling_is_in_the_returned_feature(tiny):
    build = tiny[0]
    window = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    (with_freeu,) = build(prompt="", image_size=64, taps=(0,))(window)  # the mid block's output, 32 channels
    (without,) = build(prompt="", image_size=64, taps=(0,), freeu=(1.0, 1.0, 1.0, 1.0))(window)
    torch.testing.assert_close(with_freeu[:, :16], 1.2 * without[:, :16])
    torch.testing.assert_close(with_freeu[:, 16:], without[:, 16:])


def test_windows_are_averaged_where_they_overlap(tiny):
    build = tiny[0]
    model = build(prompt="", image_size=128, window=64)
    canvas = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    s3 = model(canvas)[0]
    assert s3.shape == (2, 16, 8, 8)  # windows at 0 and 64 along each side, side by side
    torch.testing.assert_close(s3[..., 4:, :4], model.window_features(canvas[:, :, 64:, :64])[0])

    model = build(prompt="", image_size=192, window=128)  # windows at 0 and 64: overlap, as 960 px with 512
    canvas = torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(4))
    s3 = model(canvas)[0]
    left = model.window_features(canvas[:, :, :128, :128])[0]
    right = model.window_features(canvas[:, :, :128, 64:])[0]
    # rows 0..3 lie in the top windows only; columns 0..3 in the left one, columns 4..7 in both
    torch.testing.assert_close(s3[..., :4, :4], left[..., :4, :4])
    torch.testing.assert_close(s3[..., :4, 4:8], (left[..., :4, 4:8] + right[..., :4, :4]) / 2)


def test_implicit_captioner_conditions_and_its_zero_gates_mean_the_empty_prompt(tiny):
    build, released, _ = tiny
    captioner = released.captioner
    window = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    empty = build(prompt="", image_size=64)(window)
    conditioned = released(window)  # prompt=None: the implicit captioner, with the checkpoint's open gates
    assert not torch.allclose(conditioned[0], empty[0], rtol=1e-4, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(conditioned, released(window)))  # deterministic: shared noise
    loaded = {k: v.clone() for k, v in captioner.state_dict().items()}
    try:
        with torch.no_grad():
            captioner.alpha_cond.zero_()
            captioner.alpha_cond_time_embed.zero_()
        for a, b in zip(released(window), empty):  # tanh(0) = 0: an untrained captioner is the empty prompt
            torch.testing.assert_close(a, b)
    finally:
        captioner.load_state_dict(loaded)


def test_random_weights_build_offline_and_encode_only_the_empty_prompt(tiny):
    released = tiny[1]
    architectures = dict(unet=dict(released.unet.config), vae=dict(released.vae.config),
                         text=released.text_encoder.text_model.config.to_dict(),
                         clip=released.clip_image_encoder.vision_model.config.to_dict())
    spec = StableDiffusionSpec(image_size=64, window=64)
    first = StableDiffusionFeatures.random(spec, seed=3, **architectures)
    window = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    maps = first(window)
    assert [tuple(m.shape) for m in maps] == [(1, 16, 4, 4), (1, 32, 2, 2), (1, 32, 1, 1)]
    again = StableDiffusionFeatures.random(spec, seed=3, **architectures)(window)
    assert all(torch.equal(a, b) for a, b in zip(maps, again))  # the seed fixes the weights
    assert first.weights_info()["source"] == "random"
    with pytest.raises(ConfigError, match="tokenizer"):
        StableDiffusionFeatures.random(StableDiffusionSpec(prompt="a cat"), **architectures)


def test_the_implicit_captioner_needs_its_parts(tiny):
    released = tiny[1]
    with pytest.raises(ConfigError, match="implicit captioner"):
        StableDiffusionFeatures(StableDiffusionSpec(), unet=released.unet, vae=released.vae,
                                text_encoder=released.text_encoder)
