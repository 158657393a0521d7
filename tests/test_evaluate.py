"""The harness end to end on the synthetic benchmark: oracle, random, tiny-vit, resume, rescore, guards."""

import json

import pytest

from corrbench.errors import ResultsError
from corrbench.evaluate import RunOptions, run
from corrbench.predictions import PredictionStore
from corrbench.results import load_result

ALPHA_KEYS = ["0.01", "0.05", "0.1", "0.15", "0.2"]


def _refuse_to_build(self, *args, **kwargs):
    raise AssertionError("the model was built, but this path must not need it")


def _run(tmp_path, data_env, method, **kwargs):
    return run(RunOptions(method=method, benchmark=kwargs.pop("benchmark", "synthetic"), out=tmp_path / "results",
                          progress=False, **kwargs))


def test_oracle_scores_100_everywhere(tmp_path, data_env):
    result = _run(tmp_path, data_env, "oracle").result
    for metric in ("pck", "pck_dagger"):
        for by in ("image", "point"):
            for avg in ("all", "category_mean"):
                assert [result["metrics"][metric][by][avg][a] for a in ALPHA_KEYS] == [100.0] * 5
            for per_cat in result["metrics"][metric][by]["per_category"].values():
                assert list(per_cat.values()) == [100.0] * 5
    assert result["method"]["uses_ground_truth"] is True
    assert result["partial"] is False and result["counts"]["pairs"] > 20


def test_random_scores_low_and_result_has_required_fields(tmp_path, data_env):
    outcome = _run(tmp_path, data_env, "random")
    result = load_result(outcome.result_path)
    assert result["metrics"]["pck"]["image"]["all"]["0.1"] < 15.0
    assert result["metrics"]["pck"]["image"]["all"]["0.01"] < 2.0
    for key in ("schema_version", "command", "created_at", "benchmark", "method", "counts", "timing", "env"):
        assert key in result
    assert result["benchmark"]["protocol"]["comparison"] == "<=" and result["benchmark"]["version"] == 1
    assert result["benchmark"]["keypoint_margin"] == 0.5  # the reading rule that decides which pairs score
    assert set(result["env"]) >= {"corrbench", "git_commit", "python", "torch", "device", "dtype", "batch_size", "seed"}
    assert result["method"]["weights"]["source"] == "none" and "parameters" in result["method"]
    lines = (outcome.directory / "pairs.jsonl").read_text().splitlines()
    assert len(lines) == result["counts"]["pairs"]


def test_tiny_vit_runs_and_is_reproducible(tmp_path, data_env):
    first = _run(tmp_path, data_env, "tiny-vit", limit=6, batch_size=4).result
    assert first["partial"] is True and first["counts"]["limit"] == 6 and first["counts"]["pairs"] == 6
    assert first["method"]["weights"]["source"] == "random" and first["method"]["parameters"]["total"] > 0
    assert first["timing"]["feature_cache"]["misses"] > 0
    again = run(RunOptions(method="tiny-vit", benchmark="synthetic", out=tmp_path / "other", limit=6, batch_size=2,
                           progress=False)).result
    assert again["metrics"] == first["metrics"]  # batch size does not change answers


def test_interrupted_run_resumes_and_rescore_needs_no_model(tmp_path, data_env, monkeypatch):
    complete = _run(tmp_path, data_env, "random")
    store = complete.directory / "predictions.jsonl"
    lines = store.read_text().splitlines(keepends=True)
    store.write_text("".join(lines[:5]) + lines[5][:17])  # five whole lines and a torn sixth
    resumed = _run(tmp_path, data_env, "random")
    assert resumed.directory == complete.directory
    assert resumed.result["timing"]["resumed_pairs"] == 5
    assert resumed.result["metrics"] == complete.result["metrics"]
    assert len(PredictionStore(store).load()) == complete.result["counts"]["pairs"]

    monkeypatch.setattr("corrbench.methods.random_points.RandomMatcher.__init__", _refuse_to_build)
    rescored = _run(tmp_path, data_env, "random", rescore=True)
    assert rescored.result["metrics"] == complete.result["metrics"]


def test_rescore_refuses_missing_predictions(tmp_path, data_env):
    with pytest.raises(ResultsError, match="--rescore needs predictions"):
        _run(tmp_path, data_env, "random", rescore=True)


def test_changed_configuration_gets_its_own_directory(tmp_path, data_env):
    a = _run(tmp_path, data_env, "random")
    b = _run(tmp_path, data_env, "random", options={"seed": "1"})
    assert a.directory != b.directory
    assert a.result["metrics"] != b.result["metrics"]
    # a hand-edited run.json that no longer matches its directory is refused, not mixed
    run_file = a.directory / "run.json"
    data = json.loads(run_file.read_text())
    data["identity"]["config"]["seed"] = 5
    run_file.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="different configuration"):
        _run(tmp_path, data_env, "random")


def test_unseen_keypoints_benchmark(tmp_path, data_env):
    seen = _run(tmp_path, data_env, "oracle").result
    unseen = _run(tmp_path, data_env, "oracle", benchmark="synthetic-unseen").result
    assert unseen["metrics"]["pck"]["point"]["all"]["0.01"] == 100.0
    assert unseen["benchmark"]["adapter_options"]["pair_dir"] == "ExtraPairAnnotation"
    assert 0 < unseen["counts"]["points"] < seen["counts"]["points"]


def test_new_weights_never_mix_with_old_predictions(tmp_path, data_env, monkeypatch):
    _run(tmp_path, data_env, "tiny-vit", limit=2)
    monkeypatch.setattr("corrbench.methods.tiny_vit.TinyViTMatcher.weights_info",
                        lambda self: {"source": "/w/new.pth", "sha256": "ab" * 32})
    with pytest.raises(ResultsError, match="other weights"):
        _run(tmp_path, data_env, "tiny-vit", limit=2)
