"""The MARCO miniature experiment script (experiments/marco_synthetic.py), run end to end at a tiny size."""

from __future__ import annotations

import json

import pytest

from corrbench.experiments import marco_synthetic
from corrbench.datasets import make_adapter
from corrbench.registry import BENCHMARKS


def test_the_script_trains_both_runs_and_reports_pck_and_stage_times(tmp_path, capsys):
    outcome = marco_synthetic.main([
        "--epochs", "1", "--max-steps", "2", "--batch-size", "2", "--score-limit", "3",
        "--out", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data"),
    ])
    assert outcome["benchmarks"] == ("synthetic", "synthetic-unseen")
    assert outcome["test_pairs"] == {"synthetic": 3, "synthetic-unseen": 3}
    labels = ["initialisation (untrained)", "marco (self-distillation)", "marco-sup (no self-distillation)"]
    assert list(outcome["pck"]) == labels
    for values in outcome["pck"].values():
        for name in outcome["benchmarks"]:
            assert set(marco_synthetic.ALPHAS) <= set(values[name])
            assert all(0.0 <= values[name][a] <= 100.0 for a in marco_synthetic.ALPHAS)
    assert outcome["steps"] == {labels[1]: 2, labels[2]: 2}
    sd, sup = outcome["step_seconds"][labels[1]], outcome["step_seconds"][labels[2]]
    # only the self-distillation run has a teacher and mines matches
    assert sd["teacher_forward"] > 0 and sd["mining"] > 0
    assert sup["teacher_forward"] == 0 and sup["mining"] == 0
    printed = capsys.readouterr().out
    assert "PCK (%) on held-out test pairs" in printed and "at most 2 steps" in printed
    assert printed.count("| marco") >= 4  # two PCK rows and two timing rows
    # the header comes before the training, each run's line as it finishes, the tables last
    assert printed.index("model: DINOv2 ViT-S/14") < printed.index("trained marco (self-distillation): 2 steps")
    assert printed.index("trained marco-sup") < printed.index("PCK (%) on held-out test pairs")


def test_bad_options_end_with_the_message_and_no_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        marco_synthetic.main(["--images-per-category", "3", "--data-root", str(tmp_path)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: images_per_category must be an integer >= 6") and "hint:" in err


def test_a_larger_dataset_gets_its_own_names_folder_and_generation_arguments(tmp_path):
    args = marco_synthetic.arguments(["--images-per-category", "7", "--train-pairs", "5", "--test-pairs", "4"])
    seen, unseen = marco_synthetic.benchmark_names(args)
    assert (seen, unseen) == ("synthetic-i7-p5", "synthetic-i7-p5-unseen")
    assert marco_synthetic.benchmark_names(args) == (seen, unseen)  # a second call reuses the registration
    spec = BENCHMARKS.get(seen)
    assert spec.data_dir == "corrbench-synthetic-i7-p5" == BENCHMARKS.get(unseen).data_dir
    assert spec.adapter_options["images_per_category"] == 7
    assert spec.adapter_options["pairs_per_category"] == {"trn": 5, "val": 6, "test": 4}
    assert BENCHMARKS.get("synthetic").data_dir == "corrbench-synthetic"  # the benchmark itself is untouched
    adapter = make_adapter(BENCHMARKS.get(unseen), tmp_path)
    adapter.prepare(progress=False)
    manifest = json.loads((tmp_path / spec.data_dir / "synthetic_manifest.json").read_text())
    assert manifest["arguments"]["images_per_category"] == 7
    assert adapter.pairs("test").pairs  # the held-out keypoint pairs exist
    assert marco_synthetic.benchmark_names(marco_synthetic.arguments([])) == ("synthetic", "synthetic-unseen")
