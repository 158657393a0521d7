"""MARCO checkpoints (released layout, strict loading, the default download) and the ``marco`` method
(preprocessing paths, the released matching rule, points back in original pixels, an end-to-end run).

A tiny configuration keeps it fast: ViT-S/14 with random weights, adapters in blocks 10-11, one 2x stage.
"""

from __future__ import annotations

import argparse
import copy
import functools

import numpy as np
import pytest
import torch
from PIL import Image

from corrbench.backbones import weights as weights_mod
from corrbench.errors import ConfigError, DataError
from corrbench.evaluate import RunOptions, run
from corrbench.similarity import Localizer
from corrbench.registry import METHODS
from corrbench.types import FeatureMap
from corrbench.methods.marco import (
    RELEASE_FILENAME,
    RELEASE_URL,
    MARCOArchitecture,
    MARCOMatcher,
    MARCOModel,
    build_marco_model,
    canvas_transform,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from corrbench.methods.marco.matcher import clamp_to_content

from result_checks import assert_summary_matches_pair_scores

TINY = MARCOArchitecture(backbone="vits14", adapter_blocks=(10, 12), upsampling_stages=1)
TINY_OPTIONS = {"backbone": "vits14", "adapter_blocks": "10,12", "upsampling_stages": "1", "weights": "random",
                "checkpoint": "random", "resolution": "56"}
MEAN = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)


@functools.lru_cache(maxsize=None)
def _built(seed: int) -> MARCOModel:
    return build_marco_model("random", "random", architecture=TINY, seed=seed)


def tiny_model(seed: int = 0) -> MARCOModel:
    """A fresh copy of the tiny model (building one takes a second; copying it, milliseconds)."""
    return copy.deepcopy(_built(seed))


def trained_state(model: MARCOModel, seed: int = 1) -> dict[str, torch.Tensor]:
    """Non-zero adapters and head, as after training."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in model.trainable_state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- checkpoints -------------------------------------------------------------------------------------------


def test_save_writes_the_released_layout_and_loads_back(tmp_path):
    source = tiny_model()
    source.load_state_dict(trained_state(source), strict=False)
    path = save_checkpoint(tmp_path / "ckpt" / "marco.pth", source)
    content = torch.load(path, weights_only=True)
    assert list(content) == ["model"] and list(content["model"]) == list(source.trainable_state_dict())

    target = tiny_model()
    assert not same(target.trainable_state_dict(), source.trainable_state_dict())
    info = load_checkpoint(target, path)
    assert same(target.trainable_state_dict(), source.trainable_state_dict())
    assert info["source"] == str(path.resolve()) and len(info["sha256"]) == 64
    assert target.weights_info()["sha256"] == info["sha256"]
    assert target.weights_info()["backbone"]["source"] == "random"


def test_resume_entries_are_saved_beside_the_model(tmp_path):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=1e-4, momentum=0.9)
    for p in model.trainable_parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()  # momentum buffers: a non-trivial optimizer state
    ema = trained_state(model, seed=2)
    path = save_checkpoint(tmp_path / "c.pth", model, optimizer=optimizer, ema=ema, step=120, epoch=3,
                           config={"lr": 1e-4, "blocks": [10, 12]})
    content = read_checkpoint(path)
    assert set(content) == {"model", "optimizer", "ema", "step", "epoch", "config"}
    assert content["step"] == 120 and content["epoch"] == 3 and content["config"]["blocks"] == [10, 12]
    assert same(content["ema"], ema)
    restored = torch.optim.SGD(model.trainable_parameters(), lr=1e-4, momentum=0.9)
    restored.load_state_dict(content["optimizer"])  # same parameters in the same order
    momentum = [o.state_dict()["state"][0]["momentum_buffer"] for o in (restored, optimizer)]
    assert torch.equal(*momentum)
    load_checkpoint(tiny_model(), path)  # extra entries do not disturb loading the model


@pytest.mark.parametrize("wrap", [True, False], ids=["model-entry", "bare"])
def test_state_dicts_in_memory_load_wrapped_or_bare(wrap):
    model = tiny_model()
    state = trained_state(model)
    info = load_checkpoint(model, {"model": state} if wrap else state)
    assert same(model.trainable_state_dict(), state) and info["source"] == "state_dict"


class _RebuiltByABuiltin:
    """Pickles as a call of the builtin ``dict`` (as some config objects do)."""

    def __reduce__(self):
        return dict, ([("sigma", 3.5)],)


def test_the_authors_training_checkpoints_load(tmp_path):
    """Their train.py pickles ``args`` (an OmegaConf-laden Namespace) next to ``model`` with the legacy format;
    such objects are read as inert placeholders."""
    model = tiny_model()
    state = trained_state(model)
    path = tmp_path / "checkpoint0007.pth"
    args = argparse.Namespace(lr=1e-4, name_exp="marco", cfg=_RebuiltByABuiltin())
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 7, "args": args}, path,
               _use_new_zipfile_serialization=False)
    load_checkpoint(model, path)
    assert same(model.trainable_state_dict(), state)
    content = read_checkpoint(path)
    assert type(content["args"]).__name__ == "DroppedObject" and content["epoch"] == 7


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("upscale.0.conv2.weight"), "1 missing: upscale.0.conv2.weight"),
    (lambda s: s.update({"dino.blocks.3.adapter.up_proj.bias": torch.zeros(384)}),
     "1 unexpected: dino.blocks.3.adapter.up_proj.bias"),
    (lambda s: s.update({"dino.blocks.10.adapter.down_proj.weight": torch.zeros(96, 384)}),
     r"1 with a wrong shape: dino.blocks.10.adapter.down_proj.weight: file \(96, 384\) vs model \(192, 384\)"),
])
def test_strict_loading_lists_what_does_not_fit_and_names_the_file(tmp_path, change, message):
    model = tiny_model()
    state = trained_state(model)
    change(state)
    path = save_checkpoint(tmp_path / "broken.pth", state)
    before = model.trainable_state_dict()
    with pytest.raises(ConfigError, match=message) as err:
        load_checkpoint(model, path)
    assert str(path) in str(err.value)
    assert same(model.trainable_state_dict(), before)  # nothing half-loaded


def test_a_checkpoint_that_does_not_fit_fails_before_the_backbone_is_read(tmp_path, monkeypatch):
    import corrbench.methods.marco.checkpoint as factory_mod  # build_marco_model's home

    path = save_checkpoint(tmp_path / "other.pth", tiny_model())
    monkeypatch.setattr(factory_mod, "load_dinov2", lambda *a, **k: pytest.fail("backbone read before the check"))
    with pytest.raises(ConfigError, match="does not fit the MARCO model") as err:
        build_marco_model("random", path)  # the released architecture: ViT-L, blocks 15..23, 2 stages
    assert "12 unexpected: dino.blocks.10.adapter" in str(err.value) and "vitl14_reg" in str(err.value)


def test_backbone_weights_in_a_marco_checkpoint_are_refused_with_a_hint():
    model = tiny_model()
    state = {**trained_state(model), "dino.norm.weight": torch.ones(384)}
    with pytest.raises(ConfigError, match="1 unexpected: dino.norm.weight") as err:
        load_checkpoint(model, state)
    assert "only adapter and head parameters" in str(err.value)


@pytest.mark.parametrize("content, message", [
    ({"model": {"upscale.0.conv1.weight": "not a tensor"}}, "is not a tensor"),
    ([torch.zeros(1)], "holds a list"),
])
def test_files_that_are_not_marco_checkpoints(tmp_path, content, message):
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(ConfigError, match=message):
        load_checkpoint(tiny_model(), path)


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read checkpoint"):
        load_checkpoint(tiny_model(), junk)
    with pytest.raises(ConfigError, match="MARCO checkpoint not found"):
        load_checkpoint(tiny_model(), tmp_path / "absent.pth")


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_default_checkpoint_is_the_release_downloaded_once_into_the_hub_cache(torch_home, tmp_path, monkeypatch):
    model = tiny_model()
    state = trained_state(model)
    release = save_checkpoint(tmp_path / "release.pth", state)
    calls = []

    def fake_download(url, destination, *, sha256=None, progress=True):
        calls.append((url, destination, progress))
        destination.write_bytes(release.read_bytes())
        return destination

    monkeypatch.setattr(weights_mod, "download_file", fake_download)
    info = load_checkpoint(model, None, progress=False)
    cached = torch_home / "hub" / "checkpoints" / RELEASE_FILENAME
    assert calls == [(RELEASE_URL, cached, False)]
    assert info["source"] == RELEASE_URL and info["path"] == str(cached) and len(info["sha256"]) == 64
    assert same(model.trainable_state_dict(), state)
    load_checkpoint(tiny_model(), None)  # cached now: no second download
    assert len(calls) == 1


def test_offline_without_the_release_says_where_it_belongs(torch_home, monkeypatch):
    def offline(url, destination, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(weights_mod, "download_file", offline)
    with pytest.raises(DataError) as err:
        load_checkpoint(tiny_model(), None)
    message = str(err.value)
    assert RELEASE_URL in message and str(torch_home / "hub" / "checkpoints" / RELEASE_FILENAME) in message
    assert "--checkpoint" in message


def test_random_checkpoint_is_offline_and_seeded(torch_home, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(weights_mod, "download_file", no_download)
    backbone = {k: v for k, v in tiny_model().state_dict().items() if k.startswith("dino.") and ".adapter." not in k}
    backbone = {k.removeprefix("dino."): v for k, v in backbone.items()}
    a = build_marco_model(backbone, "random", architecture=TINY, seed=0)
    b = build_marco_model(backbone, "random", architecture=TINY, seed=0)
    c = build_marco_model(backbone, "random", architecture=TINY, seed=1)
    assert same(a.trainable_state_dict(), b.trainable_state_dict())
    assert torch.count_nonzero(a.dino.blocks[10].adapter.up_proj.weight) == 0
    assert not torch.equal(a.upscale[0].conv1.weight, c.upscale[0].conv1.weight)
    assert a.weights_info()["source"] == "random" and a.weights_info()["seed"] == 0
    assert a.weights_info()["backbone"]["source"] == "state_dict"
    assert not (torch_home / "hub").exists()


# --- preprocessing -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def matchers():
    model = tiny_model()
    model.load_state_dict(trained_state(model), strict=False)
    return {resize: MARCOMatcher(model, resolution=56, resize=resize) for resize in ("stretch", "longest_side_pad")}


def test_canvas_transforms_of_both_paths():
    stretch = canvas_transform((300, 200), "stretch", 770)
    assert stretch.out_size == stretch.resized_size == (770, 770) and stretch.rule == "scale"
    np.testing.assert_allclose(stretch.forward(np.array([[150.0, 100.0]])), [[385.0, 385.0]])  # x * S / W
    pad = canvas_transform((300, 199), "longest_side_pad", 770)
    # longest side to 770, the other int(round(199 * 770 / 300)) = 511; image at the top-left corner
    assert pad.out_size == (770, 770) and pad.resized_size == (770, 511) and pad.offset == (0, 0)
    np.testing.assert_allclose(pad.forward(np.array([[300.0, 199.0]])), [[770.0, 511.0]])  # per axis: x * w' / W


def _pil_resized(image: torch.Tensor, size) -> torch.Tensor:
    pixels = (image * 255).round().byte().permute(1, 2, 0).numpy()
    resized = np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1).float() / 255


def test_stretch_canvas_is_the_pil_resize_normalised(matchers):
    image = torch.randint(0, 256, (3, 40, 70)).float() / 255
    canvas, transform = matchers["stretch"].canvas(image)
    assert canvas.shape == (3, 56, 56) and transform.in_size == (70, 40)
    torch.testing.assert_close(canvas, (_pil_resized(image, (56, 56)) - MEAN) / STD, rtol=0, atol=1e-6)


def test_pad_canvas_pads_bottom_right_with_zeros_after_normalising(matchers):
    image = torch.randint(0, 256, (3, 40, 70)).float() / 255
    canvas, transform = matchers["longest_side_pad"].canvas(image)
    assert transform.resized_size == (56, 32) and transform.offset == (0, 0)  # round(40 * 56 / 70) = 32
    torch.testing.assert_close(canvas[:, :32], (_pil_resized(image, (56, 32)) - MEAN) / STD, rtol=0, atol=1e-6)
    assert torch.count_nonzero(canvas[:, 32:]) == 0  # the mean colour, not black


def test_torch_interpolation_stays_within_one_grey_level_of_pil():
    model = tiny_model()
    pil = MARCOMatcher(model, resolution=56)
    on_device = MARCOMatcher(model, resolution=56, interpolation="torch")
    image = torch.rand(3, 37, 81)
    diff = ((pil.canvas(image)[0] - on_device.canvas(image)[0]) * STD).abs().max()
    assert 0 < diff <= 1.5 / 255


# --- the matching rule on feature maps whose answer is known ----------------------------------------------


def one_hot_maps(grid: int, permutation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Source cell k carries code k; target cell permutation[k] carries code k. Large values make the
    soft-argmax (temperature 10 on raw dot products) exactly the matching cell."""
    codes = torch.eye(grid * grid) * 1000.0
    src = codes.reshape(grid * grid, grid, grid)
    trg = torch.zeros_like(codes)
    trg[:, permutation] = codes
    return src, trg.reshape(grid * grid, grid, grid)


@pytest.mark.parametrize("resize", ["stretch", "longest_side_pad"])
def test_matching_returns_the_known_answer_in_original_target_pixels(matchers, resize):
    matcher = matchers[resize]
    grid, size = 8, 56  # an 8 x 8 map on a 56 px canvas
    permutation = torch.randperm(grid * grid, generator=torch.Generator().manual_seed(0))
    src_features, trg_features = one_hot_maps(grid, permutation)
    src_transform = canvas_transform((100, 70), resize, size)  # landscape source
    trg_transform = canvas_transform((60, 90), resize, size)  # portrait target
    src = FeatureMap(src_features, src_transform, cell_rule="marco")
    trg = FeatureMap(trg_features, trg_transform, cell_rule="marco")

    # Source points exactly on cells: canvas x = j * S / w (MARCO samples at x * w / S, align_corners=True).
    cells = torch.tensor([[0, 0], [3, 2], [5, 4], [7, 1], [2, 3]])
    canvas_points = cells.float() * size / grid
    src_points = src_transform.inverse(canvas_points)
    predicted = matcher.match_maps(src, trg, src_points.float())

    index = permutation[cells[:, 1] * grid + cells[:, 0]]
    target_cells = torch.stack((index % grid, index // grid), dim=-1).double()
    target_canvas = target_cells * (size - 1) / (grid - 1)  # back with the align-corner rule
    w, h = trg_transform.resized_size  # then to original pixels: x * W / w' per axis
    expected = target_canvas * torch.tensor([60 / w, 90 / h], dtype=torch.float64)
    torch.testing.assert_close(predicted.double(), expected, rtol=0, atol=1e-3)


def test_matching_runs_the_localiser_the_options_build():
    """``match_maps`` localises with ``matcher.localizer`` (built from ``sigma`` and ``temperature``), not with a
    second copy of those settings: a localiser put in its place decides the answer."""
    matcher = MARCOMatcher(tiny_model(), resolution=56, sigma="3", temperature="0.5")
    assert (matcher.localizer.sigma, matcher.localizer.temperature) == (3.0, 0.5)
    seen = []

    class FirstCell(Localizer):
        def forward(self, scores):
            seen.append(tuple(scores.shape))
            return torch.zeros(*scores.shape[:2], 2, dtype=scores.dtype)

    matcher.localizer = FirstCell()
    t = canvas_transform((70, 42), "stretch", 56)
    src, trg = FeatureMap(torch.rand(4, 8, 8), t, "marco"), FeatureMap(torch.rand(4, 8, 8), t, "marco")
    predicted = matcher.match_maps(src, trg, torch.tensor([[10.0, 20.0], [60.0, 5.0], [33.0, 40.0]]))
    assert seen == [(1, 3, 8, 8)] and torch.equal(predicted, torch.zeros(3, 2))  # cell (0, 0) is pixel (0, 0)


def test_descriptors_are_compared_without_normalisation(matchers):
    """Raw dot products: a target cell with the same direction but a larger norm wins."""
    src_features = torch.zeros(2, 8, 8)
    src_features[0] = 1.0
    trg_features = torch.zeros(2, 8, 8)
    trg_features[0, 2, 6] = 1.0  # same direction as the source descriptor, small
    trg_features[:, 5, 1] = torch.tensor([3000.0, 3000.0])  # 45 degrees off, large
    t = canvas_transform((56, 56), "stretch", 56)
    src, trg = FeatureMap(src_features, t, "marco"), FeatureMap(trg_features, t, "marco")
    predicted = matchers["stretch"].match_maps(src, trg, torch.tensor([[10.0, 10.0]]))
    torch.testing.assert_close(predicted, torch.tensor([[1 * 55 / 7, 5 * 55 / 7]]), atol=1e-3, rtol=0)


def test_source_points_are_clamped_into_the_resized_image():
    """MARCO's datasets clamp scaled source points to [1e-4, side - 1 - 1e-4] of the resized image, which
    matters when down-scaling: x = W - 1 scales to (W - 1) * S / W > S - 1."""
    stretch = canvas_transform((100, 50), "stretch", 56)
    points = torch.tensor([[99.0, 49.0], [0.0, 0.0], [50.0, 25.0]])
    clamped = clamp_to_content(stretch.forward(points), stretch)
    torch.testing.assert_close(clamped, torch.tensor([[55 - 1e-4, 49 * 56 / 50], [1e-4, 1e-4], [28.0, 28.0]]))
    pad = canvas_transform((100, 50), "longest_side_pad", 56)  # content 56 x 28: y is clamped to the content
    torch.testing.assert_close(clamp_to_content(pad.forward(points[:1]), pad), torch.tensor([[55 - 1e-4, 27 - 1e-4]]))


def test_matching_uses_the_clamped_source_points(matchers):
    """Visible on the padded path's short axis: there the unclamped point would sample inside the canvas.
    (Along a full side, cells beyond w - 1 are clamped by grid_sample's border padding anyway.)"""
    torch.manual_seed(0)
    grid = 8
    src_features = torch.arange(grid, dtype=torch.float32)[:, None].repeat(1, grid)[None] * 3  # 3 * row
    trg_features = torch.rand(1, grid, grid)
    src = FeatureMap(src_features, canvas_transform((100, 50), "longest_side_pad", 56), "marco")  # content 56 x 28
    trg = FeatureMap(trg_features, canvas_transform((56, 56), "longest_side_pad", 56), "marco")
    predict = lambda y: matchers["longest_side_pad"].match_maps(src, trg, torch.tensor([[30.0, y]]))  # noqa: E731
    assert torch.equal(predict(49.0), predict(49.4))  # both clamped to 27 - 1e-4
    assert not torch.equal(predict(40.0), predict(40.4))  # elsewhere the descriptor moves with the point


# --- the method ---------------------------------------------------------------------------------------------


def test_transfer_points_on_images_of_any_size(matchers):
    torch.manual_seed(0)
    src, trg = torch.rand(3, 50, 90), torch.rand(3, 120, 64)
    for matcher in matchers.values():
        points = matcher.transfer_points(src, trg, [[0, 0], [89, 49], [45.5, 20.25]])
        assert points.shape == (3, 2) and torch.isfinite(points).all()
        assert (points >= 0).all() and (points[:, 0] <= 63).all() and (points[:, 1] <= 119).all()


def test_features_have_the_upsampled_grid_and_marco_cell_rule(matchers):
    (fmap,) = matchers["stretch"].extract([torch.rand(3, 30, 45)])
    assert fmap.features.shape == (384, 8, 8) and fmap.cell_rule == "marco"  # 56 / 14 * 2
    assert fmap.transform.in_size == (45, 30) and fmap.transform.out_size == (56, 56)


def test_options_defaults_and_cache_key():
    cfg = MARCOMatcher.Config()
    defaults = (cfg.resolution, cfg.resize, cfg.sigma, cfg.temperature, cfg.interpolation)
    assert defaults == (770, "stretch", 7.0, 10.0, "pil")
    assert cfg.architecture() == MARCOArchitecture()
    model = tiny_model()
    options = {k: v for k, v in TINY_OPTIONS.items() if k in ("weights", "checkpoint", "resolution")}
    base = MARCOMatcher(model, **options)
    assert base.localizer.sigma == 7.0 and base.localizer.temperature == 10.0 and base.normalize_features is False
    assert MARCOMatcher(model, **options, sigma="3", temperature="0.5").feature_key() == base.feature_key()
    assert MARCOMatcher(model, **{**options, "resolution": "70"}).feature_key() != base.feature_key()
    assert MARCOMatcher(model, **options, resize="longest_side_pad").feature_key() != base.feature_key()
    assert MARCOMatcher(model, **options, interpolation="torch").feature_key() != base.feature_key()
    assert MARCOMatcher(model, **{**options, "seed": "1"}).feature_key() != base.feature_key()


@pytest.mark.parametrize("options, message", [
    ({"resolution": "60"}, "option 'resolution' .* multiple of 14, got 60"),
    ({"resize": "squash"}, "option 'resize' .* one of stretch, longest_side_pad, got 'squash'"),
    ({"interpolation": "lanczos"}, "option 'interpolation' .* one of pil, torch"),
    ({"adapter_blocks": "10,13"}, "adapter_blocks"),
    ({"sigma": "0"}, "option 'sigma' .* must be > 0, got 0.0"),
])
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        MARCOMatcher(**{**TINY_OPTIONS, **options})


def test_wrapping_a_model_takes_its_architecture():
    model = tiny_model()
    matcher = MARCOMatcher(model, resolution=28)
    assert matcher.model is model and matcher.config.backbone == "vits14"
    assert tuple(matcher.config.adapter_blocks) == (10, 12) and matcher.config.upsampling_stages == 1
    with pytest.raises(ConfigError, match="options say"):
        MARCOMatcher(model, upsampling_stages=2)


def test_runs_end_to_end_on_the_synthetic_benchmark(tmp_path, data_env):
    assert METHODS.get("marco") is MARCOMatcher
    opts = RunOptions(method="marco", benchmark="synthetic", options=dict(TINY_OPTIONS), limit=4, batch_size=2,
                      out=tmp_path, progress=False)
    outcome = run(opts)
    result = outcome.result
    assert result["counts"]["pairs"] == 4
    method = result["method"]
    assert method["weights"]["source"] == "random" and method["weights"]["backbone"]["source"] == "random"
    assert method["parameters"]["adapters"] == 2 * (2 * 384 + 384 * 192 + 192 + 192 * 384 + 384)
    assert method["config"]["resize"] == "stretch" and method["config"]["adapter_blocks"] == [10, 12]
    assert_summary_matches_pair_scores(result, outcome.directory)
