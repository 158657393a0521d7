"""corrbench.backbones: DINOv2 architecture, positional interpolation, strict loading and weight resolution.

Everything here runs offline on a CPU in seconds. Equality of the *numerics* with the official
implementation is checked outside the test suite (it needs the official code); these tests pin the facts
that make that equality possible: parameter names and shapes, interpolation flags, token layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil

import pytest
import torch

from corrbench.backbones import DINOV2_SPECS, load_dinov2, weights as weights_mod
from corrbench.backbones.dinov2 import DinoVisionTransformer, dinov2_spec, expected_state_dict_shapes
from corrbench.errors import ConfigError, DataError, UnknownNameError

# Facts about the official releases (facebookresearch/dinov2 hub models and their *_pretrain.pth files):
# name: (embed_dim, depth, heads, ffn, registers, number of state-dict keys, number of parameters)
RELEASES = {
    "vits14": (384, 12, 6, "mlp", 0, 175, 22_056_576),
    "vits14_reg": (384, 12, 6, "mlp", 4, 176, 22_058_112),
    "vitb14": (768, 12, 12, "mlp", 0, 175, 86_580_480),
    "vitb14_reg": (768, 12, 12, "mlp", 4, 176, 86_583_552),
    "vitl14": (1024, 24, 16, "mlp", 0, 343, 304_368_640),
    "vitl14_reg": (1024, 24, 16, "mlp", 4, 344, 304_372_736),
    "vitg14": (1536, 40, 24, "swiglu", 0, 567, 1_136_480_768),
    "vitg14_reg": (1536, 40, 24, "swiglu", 4, 568, 1_136_486_912),
}
BASE = "https://dl.fbaipublicfiles.com/dinov2"


def official_keys(dim: int, depth: int, ffn: str, registers: int) -> dict[str, tuple[int, ...]]:
    """The official checkpoint layout, written out from the architecture rules, in file order."""
    keys: dict[str, tuple[int, ...]] = {"cls_token": (1, 1, dim), "pos_embed": (1, 1 + 37 * 37, dim)}
    if registers:
        keys["register_tokens"] = (1, registers, dim)
    keys["mask_token"] = (1, dim)
    keys["patch_embed.proj.weight"] = (dim, 3, 14, 14)
    keys["patch_embed.proj.bias"] = (dim,)
    if ffn == "mlp":
        mlp = {"fc1.weight": (4 * dim, dim), "fc1.bias": (4 * dim,), "fc2.weight": (dim, 4 * dim), "fc2.bias": (dim,)}
    else:  # SwiGLUFFNFused: hidden = 2/3 * 4 * dim rounded up to a multiple of 8 = 4096 for ViT-g
        mlp = {"w12.weight": (2 * 4096, dim), "w12.bias": (2 * 4096,), "w3.weight": (dim, 4096), "w3.bias": (dim,)}
    for i in range(depth):
        block = {
            "norm1.weight": (dim,), "norm1.bias": (dim,),
            "attn.qkv.weight": (3 * dim, dim), "attn.qkv.bias": (3 * dim,),
            "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,),
            "ls1.gamma": (dim,),
            "norm2.weight": (dim,), "norm2.bias": (dim,),
            **{f"mlp.{k}": v for k, v in mlp.items()},
            "ls2.gamma": (dim,),
        }
        keys.update({f"blocks.{i}.{k}": v for k, v in block.items()})
    keys["norm.weight"] = (dim,)
    keys["norm.bias"] = (dim,)
    return keys


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_state_dict_keys_and_shapes_equal_the_official_checkpoint(name):
    dim, depth, heads, ffn, registers, n_keys, n_params = RELEASES[name]
    expected = official_keys(dim, depth, ffn, registers)
    assert len(expected) == n_keys  # the rules above reproduce the release's key count

    got = expected_state_dict_shapes(name)  # built on the meta device: no memory, fast even for ViT-g
    assert got == expected
    assert list(got) == list(expected)  # same order as in the files, too
    assert sum(math.prod(s) for s in got.values()) == n_params

    spec = dinov2_spec(name)
    assert (spec.embed_dim, spec.depth, spec.num_heads, spec.num_register_tokens) == (dim, depth, heads, registers)
    arch = name.removesuffix("_reg")
    suffix = "_reg4" if registers else ""
    assert spec.filename == f"dinov2_{arch}{suffix}_pretrain.pth"
    assert spec.url == f"{BASE}/dinov2_{arch}/dinov2_{arch}{suffix}_pretrain.pth"
    # The interpolation flags of the official hub entry points: the register release changed both.
    assert (spec.interpolate_offset, spec.interpolate_antialias) == ((0.0, True) if registers else (0.1, False))


def test_names_and_aliases():
    assert len(DINOV2_SPECS) == 8
    for alias in ("vitl14_reg", "dinov2_vitl14_reg", "DINOv2-ViTL14-reg"):
        assert dinov2_spec(alias).name == "dinov2_vitl14_reg"
    with pytest.raises(UnknownNameError, match="vitl14"):
        dinov2_spec("vitl16")


# --- forward ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vits():
    return load_dinov2("vits14", "random")


@pytest.fixture(scope="module")
def vits_reg():
    return load_dinov2("vits14_reg", "random", seed=1)


@pytest.mark.parametrize("model_name", ["vits", "vits_reg"])
@pytest.mark.parametrize("hw", [(70, 70), (56, 98), (98, 56)])
def test_forward_shapes(request, model_name, hw):
    model = request.getfixturevalue(model_name)
    h, w = hw
    gh, gw = h // 14, w // 14
    n, d, r = gh * gw, 384, model.num_register_tokens
    assert (model.patch_size, model.embed_dim, model.num_heads, model.n_blocks) == (14, 384, 6, 12)
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        out = model.forward_features(x)
        assert out["x_norm_clstoken"].shape == (2, d)
        assert out["x_norm_regtokens"].shape == (2, r, d)
        assert out["x_norm_patchtokens"].shape == (2, n, d)
        assert out["x_prenorm"].shape == (2, 1 + r + n, d)
        assert out["masks"] is None
        assert torch.isfinite(out["x_prenorm"]).all()
        # The normalised outputs are slices of one LayerNorm over x_prenorm, in [CLS, registers, patches] order.
        normed = model.norm(out["x_prenorm"])
        assert torch.equal(normed[:, 1 + r :], out["x_norm_patchtokens"])
        assert torch.equal(model(x), out["x_norm_clstoken"])

        layers = model.get_intermediate_layers(x, n=4, reshape=True, return_class_token=True)
        assert len(layers) == 4
        for maps, cls in layers:
            assert maps.shape == (2, d, gh, gw) and cls.shape == (2, d)
        # The last layer, normalised and reshaped, is x_norm_patchtokens laid out row-major.
        assert torch.allclose(layers[-1][0], out["x_norm_patchtokens"].reshape(2, gh, gw, d).permute(0, 3, 1, 2))
        raw = model.get_intermediate_layers(x, n=[0, 11], norm=False)
        assert [t.shape for t in raw] == [(2, n, d)] * 2
        assert torch.equal(raw[1], out["x_prenorm"][:, 1 + r :])


def test_masks_and_list_inputs(vits):
    x = torch.randn(1, 3, 56, 84)
    masks = torch.zeros(1, 24, dtype=torch.bool)
    masks[0, :5] = True
    with torch.no_grad():
        masked = vits.forward_features(x, masks=masks)
        plain = vits.forward_features(x)
        assert masked["masks"] is masks
        assert not torch.allclose(masked["x_norm_patchtokens"], plain["x_norm_patchtokens"])
        outs = vits.forward_features([x, torch.randn(1, 3, 42, 42)])
    assert [o["x_norm_patchtokens"].shape for o in outs] == [(1, 24, 384), (1, 9, 384)]
    assert torch.allclose(outs[0]["x_norm_patchtokens"], plain["x_norm_patchtokens"])


def test_input_must_be_a_multiple_of_the_patch_size(vits):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        vits.forward_features(torch.randn(1, 3, 100, 112))
    with pytest.raises(ValueError, match="out of range"):
        vits.get_intermediate_layers(torch.randn(1, 3, 28, 28), n=[12])


# --- positional embedding -----------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["vits", "vits_reg"])
def test_positional_grid_at_518_is_the_trained_one(request, model_name):
    model = request.getfixturevalue(model_name)
    pos = model.interpolate_pos_encoding(torch.zeros(1), 518, 518)
    assert pos is model.pos_embed and pos.shape == (1, 1 + 37 * 37, 384)


@pytest.mark.parametrize("model_name", ["vits", "vits_reg"])
@pytest.mark.parametrize("hw", [(224, 308), (840, 840), (126, 518), (518, 532)])
def test_positional_grid_is_resized_to_the_token_grid(request, model_name, hw):
    model = request.getfixturevalue(model_name)
    h, w = hw
    pos = model.interpolate_pos_encoding(torch.zeros(1), h, w)
    assert pos.shape == (1, 1 + (h // 14) * (w // 14), 384)
    assert torch.equal(pos[:, 0], model.pos_embed[:, 0])  # the CLS position is never resampled
    # Bicubic weights sum to one: a constant grid stays constant, whichever rule is used.
    const = DinoVisionTransformer(embed_dim=8, depth=0, num_heads=1, num_register_tokens=model.num_register_tokens,
                                  interpolate_antialias=model.interpolate_antialias,
                                  interpolate_offset=model.interpolate_offset)
    with torch.no_grad():
        const.pos_embed.fill_(0.5)
    assert torch.allclose(const.interpolate_pos_encoding(torch.zeros(1), h, w), torch.tensor(0.5), atol=1e-5)


def test_the_two_releases_resample_positions_differently(vits, vits_reg):
    # Same grid, different official rules (scale factor + 0.1 offset vs. explicit size + antialias): the
    # results must differ, or one of the releases would get features unlike the official code's.
    pos = vits.pos_embed.detach()
    a = vits.interpolate_pos_encoding(torch.zeros(1), 224, 308)
    with torch.no_grad():
        saved = vits_reg.pos_embed.clone()
        vits_reg.pos_embed.copy_(pos)
        b = vits_reg.interpolate_pos_encoding(torch.zeros(1), 224, 308)
        vits_reg.pos_embed.copy_(saved)
    assert a.shape == b.shape and (a - b).abs().max() > 1e-3


def test_positional_dtype_follows_the_tokens(vits):
    pos = vits.interpolate_pos_encoding(torch.zeros(1, dtype=torch.bfloat16), 224, 224)
    assert pos.dtype == torch.bfloat16


# --- loading ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vits_file(tmp_path_factory, vits):
    path = tmp_path_factory.mktemp("ckpt") / "dinov2_vits14_pretrain.pth"
    torch.save(vits.state_dict(), path)
    return path


def _place(src, dst) -> None:
    """Put a copy of ``src`` at ``dst`` cheaply (hard link where the file system allows it)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_random_init_is_deterministic_and_leaves_the_global_rng_alone(vits):
    state = torch.random.get_rng_state()
    again = load_dinov2("dinov2_vits14", "random", seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert _same_weights(vits, again)
    assert not _same_weights(vits, load_dinov2("vits14", "random", seed=1))
    assert again.weights_info() == {"name": "dinov2_vits14", "source": "random", "sha256": None, "seed": 0}
    assert not again.training  # returned ready for inference


def test_load_from_path_and_state_dict(vits, vits_file):
    from_file = load_dinov2("vits14", vits_file)
    assert _same_weights(vits, from_file)
    info = from_file.weights_info()
    assert info["sha256"] == hashlib.sha256(vits_file.read_bytes()).hexdigest()
    assert info["source"] == str(vits_file.resolve())

    sd = vits.state_dict()
    from_dict = load_dinov2("vits14", sd)
    assert _same_weights(vits, from_dict)
    assert from_dict.weights_info()["source"] == "state_dict"
    assert from_dict.pos_embed.data_ptr() != sd["pos_embed"].data_ptr()  # copied, not aliased


def test_sha256_is_cached_beside_the_file(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    sha = hashlib.sha256(b"abc").hexdigest()
    assert weights_mod.cached_file_sha256(f) == sha
    side = tmp_path / "w.pth.sha256"
    record = json.loads(side.read_text())
    assert record["sha256"] == sha and record["size"] == 3
    # Same size and mtime: the side file is trusted (this is what saves re-hashing a 1 GB file).
    side.write_text(json.dumps({**record, "sha256": "cached"}))
    assert weights_mod.cached_file_sha256(f) == "cached"
    # The file changed: recomputed.
    f.write_bytes(b"abcd")
    os.utime(f, ns=(record["mtime_ns"] + 10**9, record["mtime_ns"] + 10**9))
    assert weights_mod.cached_file_sha256(f) == hashlib.sha256(b"abcd").hexdigest()


def test_strict_loading_lists_every_kind_of_mismatch(vits, vits_file, tmp_path):
    sd = dict(vits.state_dict())
    del sd["mask_token"]
    sd["blocks.0.extra.weight"] = torch.zeros(1)
    sd["norm.weight"] = torch.zeros(7)
    with pytest.raises(ConfigError) as err:
        load_dinov2("vits14", sd)
    msg = str(err.value)
    assert "1 missing: mask_token" in msg
    assert "1 unexpected: blocks.0.extra.weight" in msg
    assert "1 with a wrong shape: norm.weight: checkpoint (7,) vs model (384,)" in msg

    # A ViT-S file loaded as ViT-S with registers: the message names the file and the difference.
    with pytest.raises(ConfigError, match=r"dinov2_vits14_pretrain\.pth.*1 missing: register_tokens"):
        load_dinov2("vits14_reg", vits_file)

    # Long lists are cut to the first few, with a count.
    with pytest.raises(ConfigError, match=r"175 missing: .*\(170 more\)") as err:
        load_dinov2("vits14", {"something": torch.zeros(1)})
    assert "1 unexpected: something" in str(err.value)


def test_unreadable_or_absent_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="weights file not found"):
        load_dinov2("vits14", tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read checkpoint"):
        load_dinov2("vits14", bad)


# --- hub cache and download ---------------------------------------------------------------------------


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def _no_download(*args, **kwargs):
    raise AssertionError("download_file must not be called")


def test_hub_cache_is_used_without_downloading(torch_home, vits, vits_file, monkeypatch):
    cached = torch_home / "hub" / "checkpoints" / "dinov2_vits14_pretrain.pth"
    cached.parent.mkdir(parents=True)
    _place(vits_file, cached)
    monkeypatch.setattr(weights_mod, "download_file", _no_download)
    model = load_dinov2("vits14")
    assert _same_weights(vits, model)
    info = model.weights_info()
    assert info["source"] == f"{BASE}/dinov2_vits14/dinov2_vits14_pretrain.pth"
    assert info["path"] == str(cached)
    assert info["sha256"] == hashlib.sha256(vits_file.read_bytes()).hexdigest()


def test_empty_cache_downloads_the_official_file(torch_home, vits, vits_file, monkeypatch):
    calls = []

    def fake_download(url, destination, *, sha256=None, progress=True):
        calls.append((url, destination, progress))
        _place(vits_file, destination)
        return destination

    monkeypatch.setattr(weights_mod, "download_file", fake_download)
    model = load_dinov2("vits14", progress=False)
    expected = torch_home / "hub" / "checkpoints" / "dinov2_vits14_pretrain.pth"
    assert calls == [(f"{BASE}/dinov2_vits14/dinov2_vits14_pretrain.pth", expected, False)]
    assert _same_weights(vits, model)

    # Once cached, never again.
    load_dinov2("vits14")
    assert len(calls) == 1


def test_random_never_downloads(torch_home, monkeypatch):
    monkeypatch.setattr(weights_mod, "download_file", _no_download)
    load_dinov2("vits14_reg", "random")
    assert not (torch_home / "hub").exists()


@pytest.mark.parametrize("failure", ["socket", "downloader"])
def test_offline_error_names_the_url_and_the_expected_path(torch_home, monkeypatch, failure):
    def offline(url, destination, **kwargs):
        if failure == "downloader":  # the shared downloader's own error, which already names the URL
            raise DataError(f"could not download {url}: network is unreachable")
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(weights_mod, "download_file", offline)
    with pytest.raises(DataError) as err:
        load_dinov2("vitb14_reg")
    msg = str(err.value)
    url = f"{BASE}/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth"
    path = torch_home / "hub" / "checkpoints" / "dinov2_vitb14_reg4_pretrain.pth"
    assert url in msg and str(path) in msg and "network is unreachable" in msg
    assert "--weights" in msg  # and how to get around it
