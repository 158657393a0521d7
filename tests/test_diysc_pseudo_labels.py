"""DIY-SC's pseudo-labels: equal to the authors' functions on crafted inputs (golden outputs made by
tools/golden/geoaware/make_diysc_golden.py), and the `corrbench pseudo-labels` command end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from corrbench.methods.geoaware import pseudo_labels as pl
from corrbench.methods.geoaware.prototype_filter import SphericalMapper
from corrbench.methods.geoaware.pseudo_label_sampling import sample_chains

GOLDEN = Path(__file__).parent / "data" / "diysc_pseudo_labels.npz"
GRID, CANVAS = 6, 84  # the golden case: 6 x 6 patches of 14 px


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return dict(data)


def _chain_labels(golden, with_spheres: bool):
    k = len(golden["chain_sizes"])
    features = torch.from_numpy(golden["chain_features"]).reshape(k, -1, GRID * GRID).permute(0, 2, 1)
    foreground = [pl.foreground_patches(golden[f"chain_mask{i}"] > 0, GRID, CANVAS) for i in range(k)]
    spheres = torch.from_numpy(golden["chain_spheres"]) if with_spheres else None
    rng = random.Random(int(golden["chain_shuffle_seed"]))
    return pl.tuple_pseudo_labels(pl.normalize_descriptors(features), foreground, pl.patch_corners(GRID, CANVAS), rng,
                                  spheres=spheres)


@pytest.mark.parametrize("tag", ["filtered", "unfiltered"])
def test_chained_pseudo_labels_equal_the_authors(golden, tag):
    """Mask cells, nearest neighbours, relaxed cyclic consistency along the 4-chain, the shuffled ordered pairs
    and the spherical filter: the same pairs in the same order with the same canvas points."""
    labels = _chain_labels(golden, with_spheres=tag == "filtered")
    corners = pl.patch_corners(GRID, CANVAS)
    assert [[i, j] for i, j, *_ in labels] == golden[f"chain_{tag}_pairs"].tolist()
    assert [len(a) for _, _, a, _ in labels] == golden[f"chain_{tag}_counts"].tolist()
    src = np.concatenate([corners[a][:, [1, 0]].numpy() for _, _, a, _ in labels])  # (x, y) as they write them
    trg = np.concatenate([corners[b][:, [1, 0]].numpy() for _, _, _, b in labels])
    np.testing.assert_array_equal(src, golden[f"chain_{tag}_src"])
    np.testing.assert_array_equal(trg, golden[f"chain_{tag}_trg"])


def test_golden_chain_exercises_every_rule(golden):
    """The crafted case is not trivial: links reject points, and the filter removes some rows of every pair."""
    counts = golden["chain_unfiltered_counts"]
    assert 0 < counts[0] < len(pl.foreground_patches(golden["chain_mask0"] > 0, GRID, CANVAS))
    assert (golden["chain_filtered_counts"] < counts).all()


def test_tuple_sampling_equals_the_authors(golden):
    """Same images, same seed, same calls: the same tuples, category after category (one shared stream)."""
    rng = random.Random(42)
    count = int(golden["sampling_count"])
    for c in range(3):
        tuples = sample_chains(golden[f"sampling_azimuths{c}"].tolist(), 4, count, rng)
        assert [list(t) for t in tuples] == golden[f"sampling_tuples{c}"].tolist(), f"category {c}"


def test_spherical_mapper_equals_the_authors(golden):
    seed = int(golden["mapper_seed"])
    mapper = SphericalMapper(128).eval()
    mapper.load_state_dict(_seeded({k: tuple(v.shape) for k, v in mapper.state_dict().items()}, seed))
    tokens = torch.randn(1, GRID * GRID, 128, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        points = mapper(tokens)
    np.testing.assert_allclose(points.numpy(), golden["mapper_points"], rtol=1e-5, atol=1e-6)


def _seeded(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Weights as the golden script draws them: one generator, keys in sorted order."""
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shapes[key], generator=g) * 0.2 for key in sorted(shapes)}


def test_zero_shot_features_equal_the_authors_extraction(golden):
    """Their resize (LANCZOS, centred padding), normalisation and last-block tokens before the final norm, on
    the same tiny DINOv2: the family's features (what the pseudo-label command uses) equal theirs."""
    from corrbench.backbones.dinov2 import DinoV2Spec, DinoVisionTransformer
    from corrbench.methods.geoaware.features import DINOv2Source

    model = DinoVisionTransformer.from_spec(DinoV2Spec("dinov2_tiny", 64, 2, 2, "mlp", 0, False, 0.1)).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(_seeded(shapes, int(golden["features_seed"])))
    w, h = golden["features_size"].tolist()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack([127 + 120 * np.sin(xx / 5.0), 127 + 120 * np.cos(yy / 7.0),
                    127 + 120 * np.sin((xx + yy) / 9.0)], -1)
    image = torch.from_numpy(np.round(rgb).astype(np.uint8)).permute(2, 0, 1).float() / 255  # an 8-bit image
    with torch.no_grad():
        features = DINOv2Source(model, CANVAS)([image])
    np.testing.assert_allclose(features.numpy(), golden["features_out"], rtol=1e-5, atol=1e-5)


def test_canvas_points_map_back_as_their_trainer_maps_them_forward(golden):
    """Pair files hold original pixels; their ``preprocess_kps_pad`` must carry them back to the canvas point."""
    from corrbench.methods.geoaware.pseudo_label_folder import canvas_to_original

    for k, size in enumerate(golden["kps_sizes"].tolist()):
        original = canvas_to_original(golden[f"kps_canvas{k}"], tuple(size), CANVAS)
        np.testing.assert_allclose(original, golden["kps_points"], atol=1e-9)


def test_descriptor_normalisation_splits_sd_and_dino():
    features = torch.cat([torch.full((1, 2, pl.SD_CHANNELS), 3.0), torch.full((1, 2, 4), 0.5)], dim=-1)
    out = pl.normalize_descriptors(features, sd_channels=pl.SD_CHANNELS)
    # each part has norm 1 before the joint normalisation, so both weigh the same afterwards
    assert torch.allclose(out[..., : pl.SD_CHANNELS].norm(dim=-1), torch.full((1, 2), 2**-0.5))
    assert torch.allclose(out[..., pl.SD_CHANNELS :].norm(dim=-1), torch.full((1, 2), 2**-0.5))


def test_relaxed_cycle_keeps_a_return_exactly_two_patches_away():
    """Their radius is ``2 * 14`` px compared with ``<=`` between cell corners: a point whose return lands two
    cells to the side is kept, one whose return lands diagonally two cells away (39.6 px) is not."""
    features = torch.zeros(2, 9, 2)
    features[0, [0, 2, 8]] = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2]]), dim=-1)
    features[1, 4] = torch.tensor([1.0, 0.0])
    first, second = pl.cycle_consistent_matches(features, 0, 1, torch.tensor([0, 2, 8]), torch.tensor([4]),
                                                pl.patch_corners(3, 42))  # every point returns to cell 0
    assert first.tolist() == [0, 2] and second.tolist() == [4, 4]
    strict = pl.cycle_consistent_matches(features, 0, 1, torch.tensor([0, 2, 8]), torch.tensor([4]),
                                         pl.patch_corners(3, 42), mode="strict")
    assert strict[0].tolist() == [0]


# --- the command ----------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_backbone(monkeypatch):
    """A one-block random DINOv2 (128 channels) in place of ViT-B/14: same code path, CPU seconds."""
    from corrbench.backbones.dinov2 import DinoV2Spec, DinoVisionTransformer
    from corrbench.methods.geoaware import pseudo_label_folder

    def tiny(weights, device):
        torch.manual_seed(0)
        return DinoVisionTransformer.from_spec(DinoV2Spec("dinov2_tiny", 128, 1, 2, "mlp", 0, False, 0.1)).eval()

    monkeypatch.setattr(pseudo_label_folder, "load_zero_shot_backbone", tiny)


def _generate(invoke, *extra):
    return invoke("pseudo-labels", "--source", "synthetic", "--resolution", "112", "--sphere-weights", "random",
                  "--pairs", "trn=5", "--pairs", "val=2", "--seed", "1", "--quiet", *extra)


def test_command_writes_an_spair_folder_that_trains(invoke, data_env, tiny_backbone):
    from corrbench.datasets import make_adapter
    from corrbench.datasets.spair import SPairLayout
    from corrbench.files import read_json
    from corrbench.registry import BENCHMARKS

    result = _generate(invoke)
    assert result.exit_code == 0, result.output
    folder = data_env / "corrbench-synthetic-DIY-SC"
    assert "corrbench train --method METHOD --benchmark synthetic-diy-sc" in result.output
    manifest = read_json(folder / "pseudo_labels_manifest.json")
    assert manifest["complete"] and manifest["source"]["benchmark"] == "synthetic"
    assert manifest["settings"]["pairs"] == {"trn": 5, "val": 2} and manifest["sphere_mapper"]["source"] == "random"
    adapter = make_adapter(BENCHMARKS.get("synthetic-diy-sc"), data_env)
    adapter.prepare(download=False)
    trn = adapter.pairs("trn")
    assert trn.pairs and not trn.skipped
    assert sum(manifest["counts"]["trn"].values()) == len(trn.pairs)
    assert all(n <= 5 for n in manifest["counts"]["trn"].values())
    pair = trn.pairs[0]
    assert pair.src_image.is_file() and pair.src_mask is not None and "mask_label" in pair.meta
    assert len(pair.src_kps) == len(pair.trg_kps) > 0
    # the plain SPair-71k reader reads the same folder; the test split is the source's
    plain = SPairLayout(folder)
    assert [p.pair_id for p in plain.pairs("trn").pairs] == [p.pair_id for p in trn.pairs]
    source_test = make_adapter(BENCHMARKS.get("synthetic"), data_env).pairs("test").pairs
    assert [p.pair_id for p in plain.pairs("test").pairs] == [p.pair_id for p in source_test]


def test_command_resumes_an_interrupted_run(invoke, data_env, tiny_backbone, tmp_path, monkeypatch):
    full = tmp_path / "full"
    assert _generate(invoke, "--out", str(full)).exit_code == 0
    part = tmp_path / "part"
    assert _generate(invoke, "--out", str(part)).exit_code == 0
    # interrupt: the last finished tuples of trn never happened, the manifest is not complete
    progress = part / "progress" / "trn.jsonl"
    lines = progress.read_text().splitlines()
    progress.write_text("\n".join(lines[: len(lines) // 2]) + "\n" + lines[len(lines) // 2][:7])
    for stem in (s for line in lines[len(lines) // 2 :] for s in json.loads(line)["stems"]):
        (part / "PairAnnotation" / "trn" / f"{stem}.json").unlink()
    manifest = part / "pseudo_labels_manifest.json"
    manifest.write_text(manifest.read_text().replace('"complete": true', '"complete": false'))
    from corrbench.methods.geoaware.pseudo_label_folder import PseudoLabelRun

    redone = []
    original = PseudoLabelRun._write_tuple
    monkeypatch.setattr(PseudoLabelRun, "_write_tuple", lambda self, *a: redone.append(a[1]) or original(self, *a))
    assert _generate(invoke, "--out", str(part)).exit_code == 0
    assert len(redone) == len(lines) - len(lines) // 2  # only the unfinished tuples were computed again
    for name in ("Layout/large/trn.txt", "Layout/large/val.txt"):
        assert (part / name).read_text() == (full / name).read_text()
    stems = (full / "Layout/large/trn.txt").read_text().split()
    assert stems and all((part / "PairAnnotation/trn" / f"{s}.json").read_text()
                         == (full / "PairAnnotation/trn" / f"{s}.json").read_text() for s in stems)


def test_command_refuses_a_folder_made_with_other_settings(invoke, data_env, tiny_backbone, tmp_path):
    assert _generate(invoke, "--out", str(tmp_path / "x")).exit_code == 0
    result = _generate(invoke, "--out", str(tmp_path / "x"), "--cycle", "strict")
    assert result.exit_code != 0 and "other settings" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (("--pairs", "test=5"), "--pairs names split(s) test"),
    (("--pairs", "trn"), "--pairs 'trn' is not SPLIT=N"),
    (("--source", "pf-pascal"), "need a benchmark in SPair-71k's layout"),
    (("--resolution", "100"), "--resolution must be a multiple of the patch size 14"),
])
def test_command_bad_options_get_one_line(invoke, data_env, args, message):
    result = invoke("pseudo-labels", "--sphere-weights", "random", "--quiet", *args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_spherical_mapper_loads_their_checkpoint_layout(tmp_path):
    """Their file holds the whole DINOMapper less DINOv2; the mapper takes the sphere_mapper.* tensors."""
    from corrbench.methods.geoaware.prototype_filter import load_spherical_mapper

    source = SphericalMapper(128)
    content = {f"sphere_mapper.{k}": v for k, v in source.state_dict().items()}
    content.update({"sphere.weight": torch.zeros(1024, 3), "prototypes.proj.weight": torch.zeros(768, 3)})
    torch.save(content, tmp_path / "200.pth")
    mapper, info = load_spherical_mapper(tmp_path / "200.pth", dim=128)
    tokens = torch.randn(1, 5, 128)
    with torch.no_grad():
        assert torch.equal(mapper(tokens), source.eval()(tokens))
    assert info["sha256"] and info["source"].endswith("200.pth")


def test_a_cached_file_that_is_not_the_released_mapper_is_refused(tmp_path, monkeypatch):
    from corrbench.errors import DataError
    from corrbench.methods.geoaware import prototype_filter

    bogus = tmp_path / "cached.pth"
    bogus.write_bytes(b"hello\n")
    assert prototype_filter.git_blob_id(bogus) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`
    monkeypatch.setattr(prototype_filter, "resolve_weights", lambda *a, **k: (bogus, {"source": "url", "sha256": "x"}))
    with pytest.raises(DataError, match="not the released spherical mapper"):
        prototype_filter.load_spherical_mapper(None)


# --- --sources: DINOv2 only (their README's command) or SD + DINOv2 (their script's default) -------------------

def test_sources_are_recorded_and_a_folder_made_with_other_sources_is_refused(invoke, data_env, tiny_backbone,
                                                                             tmp_path):
    out = tmp_path / "x"
    assert _generate(invoke, "--out", str(out)).exit_code == 0
    manifest_path = out / "pseudo_labels_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["settings"]["sources"] == ["dino"] and "sd" not in manifest
    assert _generate(invoke, "--out", str(out)).exit_code == 0  # the same sources resume
    manifest["settings"]["sources"] = ["sd", "dino"]  # as a --sources sd,dino run records it
    manifest_path.write_text(json.dumps(manifest))
    result = _generate(invoke, "--out", str(out))
    assert result.exit_code != 0 and "other settings" in result.output and "Traceback" not in result.output
    del manifest["settings"]["sources"]  # a folder written before --sources existed was DINOv2-only
    manifest_path.write_text(json.dumps(manifest))
    assert _generate(invoke, "--out", str(out)).exit_code == 0


def test_sd_sources_without_the_extra_stop_in_one_line_before_any_file(invoke, data_env, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` raise ImportError
    out = tmp_path / "sd"
    result = _generate(invoke, "--out", str(out), "--sources", "sd,dino")
    assert result.exit_code != 0 and "Traceback" not in result.output
    line = next(line for line in result.output.splitlines() if "diffusers" in line)
    assert "pip install 'corrbench[diffusion]'" in line
    assert not out.exists()


def test_sd_and_dino_sources_make_labels_on_a_tiny_sd(invoke, data_env, tiny_backbone, tmp_path, monkeypatch):
    """SD + DINOv2 through the family's registered "sd" source (toy SD 1.5 architectures, random weights)."""
    import functools

    pytest.importorskip("diffusers")
    pytest.importorskip("transformers").logging.set_verbosity_error()
    from test_geoaware_methods import TINY_SD

    from corrbench.methods.geoaware import features, sd_source

    monkeypatch.setitem(features.FEATURE_SOURCES, "sd", functools.partial(sd_source.build_sd_source,
                                                                          architectures=TINY_SD))
    widths = []
    normalize = pl.normalize_descriptors
    monkeypatch.setattr(pl, "normalize_descriptors",
                        lambda f, sd_channels=0: widths.append((f.shape[-1], sd_channels)) or normalize(f, sd_channels))
    out = tmp_path / "sd"
    result = _generate(invoke, "--out", str(out), "--sources", "sd,dino", "--backbone-weights", "random")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "pseudo_labels_manifest.json").read_text())
    assert manifest["settings"]["sources"] == ["sd", "dino"] and manifest["sd"]["source"] == "random"
    assert sum(manifest["counts"]["trn"].values()) > 0
    assert widths and set(widths) == {(32 + 64 + 64 + 128, 32 + 64 + 64)}  # SD s3, s4, s5, then DINOv2's 128
