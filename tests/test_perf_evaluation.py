"""The naive loop of the evaluation perf script scores exactly what the harness scores (so its timing compares
like with like), and the script runs end to end."""

from __future__ import annotations

import torch

from corrbench.perf import evaluation
from corrbench.data_root import resolve_data_root
from corrbench.datasets import make_adapter
from corrbench.evaluate import RunOptions, run
from corrbench.registry import BENCHMARKS, METHODS


def test_naive_loop_and_harness_give_the_same_pck(tmp_path, data_env):
    spec = BENCHMARKS.get("synthetic")
    pairs = make_adapter(spec, resolve_data_root(None)).pairs(spec.split, spec.subset).pairs[:12]
    matcher = METHODS.get("tiny-vit")(dim=32).eval()
    naive = evaluation.naive_evaluation(matcher, pairs, spec, torch.device("cpu"))
    harness = run(RunOptions(method="tiny-vit", benchmark="synthetic", options={"dim": "32"}, limit=12, batch_size=5,
                             out=tmp_path, progress=False)).result["metrics"]
    assert naive["pck"] == harness["pck"] and naive["pck_dagger"] == harness["pck_dagger"]


def test_script_prints_both_evaluations_and_the_ratio(data_env, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["evaluation", "--method", "tiny-vit", "--set", "dim=16", "--limit", "4",
                                     "--device", "cpu"])
    evaluation.main()
    out = capsys.readouterr().out
    assert "| naive loop   |" in out and "| harness      |" in out and "speed-up:" in out
    assert "8 extractions, one image at a time" in out
