"""``corrbench bench``: what it measures and records (never how fast this machine is)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from corrbench.bench import (
    BENCH_PRESETS,
    BenchOptions,
    PeakMemory,
    apply_preset,
    bench,
    default_output,
    format_table,
    summarize,
    time_calls,
)
from corrbench.cli import cli
from corrbench.errors import ConfigError
from corrbench.registry import METHODS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_summarize_gives_median_and_p90_per_item_in_ms():
    seconds = [0.01 * k for k in range(1, 11)]  # 10 ms .. 100 ms per call
    assert summarize(seconds) == {"median_ms": 55.0, "p90_ms": 90.0, "calls": 10}
    assert summarize(seconds, per=10)["median_ms"] == 5.5
    assert summarize([0.2]) == {"median_ms": 200.0, "p90_ms": 200.0, "calls": 1}


def test_time_calls_warms_up_then_times_each_call():
    calls = []
    seconds = time_calls(lambda: calls.append(1), torch.device("cpu"), warmup=3, iters=4)
    assert len(calls) == 7 and len(seconds) == 4 and all(s >= 0 for s in seconds)


def test_marco_paper_preset_fixes_resolution_and_batch():
    opts, note = apply_preset(BenchOptions(method="marco", preset="marco-paper", resolution=224, batch_size=8))
    assert (opts.resolution, opts.batch_size) == (840, 1) and "Table 12" in note
    assert set(BENCH_PRESETS) == {"marco-paper"}
    with pytest.raises(ConfigError, match="unknown bench preset 'paper'"):
        apply_preset(BenchOptions(method="marco", preset="paper"))


def test_cpu_peak_memory_sees_a_large_allocation():
    memory = PeakMemory(torch.device("cpu"))
    memory.start()
    before = memory.stop()["cpu_peak_rss_bytes"]
    block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
    after = memory.stop()["cpu_peak_rss_bytes"]
    del block
    assert after - before >= 48 * 1024 * 1024


@pytest.fixture(scope="module")
def tiny_record(synthetic_data_root):
    return bench(BenchOptions(method="tiny-vit", pairs=8, batch_size=4, iters=2, warmup=1, progress=False,
                              data_root=synthetic_data_root, download=False))


def test_feature_method_record_has_every_stage_and_cache_state(tiny_record):
    record = tiny_record
    matcher = METHODS.get("tiny-vit")()
    assert record["parameters"] == matcher.parameter_counts()
    assert set(record["stages"]) == {"extract_per_image", "match_per_pair"}
    assert all(v["calls"] == 2 and 0 < v["median_ms"] <= v["p90_ms"] for v in record["stages"].values())
    e2e = record["end_to_end"]
    assert list(e2e) == ["no cache", "cold", "warm"] and all(v["pairs_per_second"] > 0 for v in e2e.values())
    # The cache states differ in what they extract: every batch's images / each distinct image once / nothing.
    assert e2e["no cache"]["extracted_images"] > e2e["cold"]["extracted_images"] > 0
    assert e2e["warm"]["extracted_images"] == 0
    settings = record["settings"]
    assert (settings["pairs"], settings["batch_size"], settings["resolution"], settings["dtype"]) == (8, 4, 112, "float32")
    assert record["memory"]["cpu_peak_rss_bytes"] > 0 and "cuda_max_allocated_bytes" not in record["memory"]
    table = format_table(record)
    assert "tiny-vit on cpu" in table and "| parameters (total / trainable)       | 91,968 / 91,968 |" in table


def test_resolution_and_dtype_reach_the_method(synthetic_data_root):
    record = bench(BenchOptions(method="tiny-vit", resolution=56, dtype="bfloat16", pairs=2, batch_size=2, iters=1,
                                warmup=0, progress=False, data_root=synthetic_data_root, download=False))
    assert record["settings"]["resolution"] == 56 and record["settings"]["options"]["resolution"] == 56
    assert record["env"]["dtype"] == "bfloat16"
    assert default_output("results", record).as_posix() == "results/bench/tiny-vit/cpu-bfloat16-56px-b2.json"


def test_method_without_features_times_predict_only(synthetic_data_root):
    record = bench(BenchOptions(method="oracle", pairs=4, iters=2, warmup=0, progress=False,
                                data_root=synthetic_data_root, download=False))
    assert list(record["stages"]) == ["match_per_pair"] and list(record["end_to_end"]) == ["no cache"]
    assert "n/a" in format_table(record)
    with pytest.raises(ConfigError, match="'oracle' has no resolution option"):
        bench(BenchOptions(method="oracle", resolution=224, data_root=synthetic_data_root))


def test_compile_wraps_the_extraction(synthetic_data_root):
    record = bench(BenchOptions(method="tiny-vit", compile=True, compile_backend="eager", pairs=2, batch_size=2,
                                iters=1, warmup=1, progress=False, data_root=synthetic_data_root, download=False))
    assert record["settings"]["compile"] == "eager" and record["stages"]["extract_per_image"]["calls"] == 1


def test_cli_prints_the_table_and_writes_the_record(tmp_path, data_env):
    result = CliRunner().invoke(cli, ["bench", "--method", "tiny-vit", "--pairs", "4", "--iters", "1", "--warmup", "0",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "extract, ms per image" in result.output
    record = json.loads((tmp_path / "bench" / "tiny-vit" / "cpu-float32-112px-b4.json").read_text())
    assert record["command"].startswith("corrbench ") and record["settings"]["pairs"] == 4

    wrong = CliRunner().invoke(cli, ["bench", "--method", "tiny-vt", "--out", str(tmp_path)])
    assert wrong.exit_code != 0 and "tiny-vit" in wrong.output and "Traceback" not in wrong.output


def test_marco_gpu_script_rows_from_bench_records(synthetic_data_root, capsys):
    # The GPU script on the CPU with a tiny method: the same code path, one row per dtype.
    from corrbench.benchmarks.perf import marco_gpu

    marco_gpu.main(["--method", "tiny-vit", "--set", "dim=16", "--resolution", "56", "--device", "cpu",
                    "--dtypes", "float32", "bfloat16", "--pairs", "2", "--batch-size", "2", "--iters", "1",
                    "--data-root", str(synthetic_data_root)])
    out = capsys.readouterr().out
    assert "tiny-vit at 56 px on cpu" in out
    assert sum(line.startswith(("| float32", "| bfloat16")) for line in out.splitlines()) == 2
