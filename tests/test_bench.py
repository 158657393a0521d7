"""``corrbench bench``: what it measures and records (never how fast this machine is)."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from click.testing import CliRunner

from corrbench.cli import cli
from corrbench.errors import ConfigError, ResultsError
from corrbench.registry import METHODS
from corrbench.timing import BENCH_PRESETS, BenchOptions, PeakMemory, apply_preset, bench, summarize, time_calls
from corrbench.timing_records import (
    BENCH_SCHEMA_VERSION,
    UNVERSIONED,
    WIDE_SPREAD,
    configuration_dir,
    default_output,
    format_history,
    format_table,
    history,
    spread_warnings,
)


def test_summarize_gives_the_spread_per_item_in_ms():
    seconds = [0.01 * k for k in range(1, 11)]  # 10 ms .. 100 ms per call
    assert summarize(seconds) == {"min_ms": 10.0, "median_ms": 55.0, "p90_ms": 90.0, "max_ms": 100.0, "calls": 10,
                                  "spread": 10.0}
    assert summarize(seconds, per=10)["median_ms"] == 5.5 and summarize(seconds, per=10)["spread"] == 10.0
    # one call has no spread: nothing to compare it with
    assert summarize([0.2]) == {"min_ms": 200.0, "median_ms": 200.0, "p90_ms": 200.0, "max_ms": 200.0, "calls": 1,
                                "spread": None}


def _timed(spread):
    return {"median_ms": 1.0, "spread": spread}


def test_a_wide_spread_is_one_warning_naming_each_unstable_timing():
    record = {"stages": {"extract_per_image": _timed(3.0), "match_per_pair": _timed(WIDE_SPREAD)},
              "end_to_end": {"no cache": _timed(None), "cold": _timed(1.2), "warm": _timed(7.04)}}
    (warning,) = spread_warnings(record)
    assert "extract per image 3.0x" in warning and "end to end (warm) 7.0x" in warning
    assert "match per pair" not in warning and "cold" not in warning and "no cache" not in warning  # 1.5 is not wide
    assert f"more than {WIDE_SPREAD}x" in warning and "--passes" in warning and "--threads" not in warning
    record["env"] = {"device": "cpu"}  # on the CPU, the threads competing with other processes are the usual cause
    assert "--threads 1" in spread_warnings(record)[0]
    record["stages"]["extract_per_image"]["spread"] = record["end_to_end"]["warm"]["spread"] = 1.1
    assert spread_warnings(record) == []


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
    return bench(BenchOptions(method="tiny-vit", pairs=8, batch_size=4, iters=2, passes=2, warmup=1, progress=False,
                              data_root=synthetic_data_root, download=False))


def test_feature_method_record_has_every_stage_and_cache_state(tiny_record):
    record = tiny_record
    matcher = METHODS.get("tiny-vit")()
    assert record["parameters"] == matcher.parameter_counts()
    assert set(record["stages"]) == {"extract_per_image", "match_per_pair"}
    assert all(v["calls"] == 2 and 0 < v["min_ms"] <= v["median_ms"] <= v["p90_ms"] <= v["max_ms"]
               and v["spread"] == pytest.approx(v["max_ms"] / v["min_ms"], rel=1e-3) for v in record["stages"].values())
    e2e = record["end_to_end"]
    assert list(e2e) == ["no cache", "cold", "warm"]
    # each cache state is timed over several passes (cold from an empty cache each time), not once
    assert all(v["passes"] == 2 and len(v["seconds"]) == 2 and v["spread"] >= 1 for v in e2e.values())
    assert all(0 < v["min_pairs_per_second"] <= v["pairs_per_second"] <= v["max_pairs_per_second"] for v in e2e.values())
    assert record["settings"]["passes"] == 2 and record["warnings"] == spread_warnings(record)
    # The cache states differ in what they extract: every batch's images / each distinct image once / nothing.
    assert e2e["no cache"]["extracted_images"] > e2e["cold"]["extracted_images"] > 0
    assert e2e["warm"]["extracted_images"] == 0
    settings = record["settings"]
    assert (settings["pairs"], settings["batch_size"], settings["resolution"], settings["dtype"]) == (8, 4, 112, "float32")
    assert record["memory"]["cpu_peak_rss_bytes"] > 0 and "cuda_max_allocated_bytes" not in record["memory"]
    table = format_table(record)
    assert "tiny-vit on cpu" in table and "2 end-to-end passes" in table
    assert re.search(r"\| parameters \(total / trainable\) +\| 91,968 / 91,968 \|", table)
    extract = record["stages"]["extract_per_image"]
    assert (f"| {extract['min_ms']:.2f} / {extract['median_ms']:.2f} / {extract['max_ms']:.2f} "
            f"(spread {extract['spread']:.2f}x") in table


def test_resolution_and_dtype_reach_the_method(synthetic_data_root):
    before = torch.get_num_threads()
    record = bench(BenchOptions(method="tiny-vit", resolution=56, dtype="bfloat16", pairs=2, batch_size=2, iters=1,
                                warmup=0, threads=before + 1, progress=False, data_root=synthetic_data_root,
                                download=False))
    assert record["settings"]["threads"] == before + 1 and torch.get_num_threads() == before  # only while timing
    assert record["settings"]["resolution"] == 56 and record["settings"]["options"]["resolution"] == 56
    assert record["env"]["dtype"] == "bfloat16"
    assert configuration_dir("results", record).as_posix() == "results/bench/tiny-vit/cpu-bfloat16-56px-b2"
    assert default_output("results", record).parent == configuration_dir("results", record)


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


def test_records_are_kept_one_file_per_run_named_by_time(tmp_path):
    record = {"settings": {"dtype": "float32", "resolution": 112, "batch_size": 4, "compile": None},
              "env": {"device": "cuda:0"}, "method": {"name": "tiny-vit"}, "created_at": "2026-12-04T14:35:12+00:00"}
    first = default_output(tmp_path, record)
    assert first == tmp_path / "bench" / "tiny-vit" / "cuda0-float32-112px-b4" / "20261204T143512Z.json"
    first.parent.mkdir(parents=True)
    first.write_text("{}")
    assert default_output(tmp_path, record).name == "20261204T143512Z-2.json"  # same second: never overwritten


def _untimed_fields() -> dict:
    """A record's fields other than its timings, as every record has had them (values shortened)."""
    return {"method": {"name": "tiny-vit"}, "preset": None, "preset_note": None,
            "settings": {"benchmark": "synthetic", "pairs": 16, "batch_size": 4, "resolution": 112, "dtype": "float32",
                         "compile": None, "warmup": 2, "iters": 10, "threads": 2, "options": {}},
            "parameters": {"total": 91968, "trainable": 91968}, "memory": {"cpu_peak_rss_bytes": 1 << 28},
            "env": {"device": "cpu"}, "command": "corrbench bench --method tiny-vit"}


def test_history_reads_every_record_oldest_first_including_the_old_single_file(tmp_path):
    folder = tmp_path / "bench" / "tiny-vit" / "cpu-float32-112px-b4"
    folder.mkdir(parents=True)
    # Before records were kept, one file beside the folder held the last run, without times or spreads.
    old = {**_untimed_fields(), "stages": {"extract_per_image": {"median_ms": 9.0, "p90_ms": 9.5, "calls": 10}},
           "end_to_end": {"no cache": {"pairs_per_second": 12.0, "seconds": 1.3}}}
    (folder.parent / "cpu-float32-112px-b4.json").write_text(json.dumps(old))
    os.utime(folder.parent / "cpu-float32-112px-b4.json", (1_700_000_000, 1_700_000_000))  # 2023
    new = {**_untimed_fields(), "created_at": "2026-12-04T14:35:12+00:00", "warnings": ["timings varied"],
           "stages": {"extract_per_image": {"min_ms": 4.0, "median_ms": 5.0, "max_ms": 8.0, "spread": 2.0}},
           "end_to_end": {"no cache": {"pairs_per_second": 20.0, "min_pairs_per_second": 18.0,
                                       "max_pairs_per_second": 21.0, "spread": 1.17}}}
    (folder / "20261204T143512Z.json").write_text(json.dumps(new))
    records = history(folder)
    assert [r["created_at"][:4] for r in records] == ["2023", "2026"]
    (folder / "20261204T150000Z.json").write_text('{"stages": ')  # damaged by hand (runs write atomically)
    with pytest.raises(ResultsError, match="20261204T150000Z.json is unreadable"):
        history(folder)
    (folder / "20261204T150000Z.json").unlink()
    lines = format_history(records).splitlines()
    assert lines[0].endswith("extract 9.00 ms, no cache 12.00 pairs/s")
    assert lines[1].endswith("extract 5.00 (4.00-8.00) ms, no cache 20.00 (18.00-21.00) pairs/s  (wide spread)")


def test_records_carry_their_schema_version_and_history_reads_only_versions_it_knows(tmp_path, tiny_record):
    assert list(tiny_record)[0] == "schema_version" and tiny_record["schema_version"] == BENCH_SCHEMA_VERSION
    folder = tmp_path / "cpu-float32-112px-b4"
    folder.mkdir()
    timings = {"stages": {"match_per_pair": {"median_ms": 1.0}}, "end_to_end": {}}
    # a record from before records were versioned is read as such, and one of this version as written
    (folder / "20231114T221320Z.json").write_text(json.dumps({**_untimed_fields(), **timings}))
    os.utime(folder / "20231114T221320Z.json", (1_700_000_000, 1_700_000_000))  # dated by its file's time
    (folder / "20261204T143512Z.json").write_text(json.dumps(tiny_record))
    unversioned, current = history(folder)
    assert unversioned["schema_version"] == UNVERSIONED and unversioned["warnings"] == []
    assert {k: v for k, v in current.items() if k != "path"} == tiny_record
    newer = folder / "20261204T150000Z.json"
    newer.write_text(json.dumps({**tiny_record, "schema_version": BENCH_SCHEMA_VERSION + 1}))
    with pytest.raises(ResultsError, match=f"20261204T150000Z.json has schema version {BENCH_SCHEMA_VERSION + 1}"):
        history(folder)
    newer.write_text(json.dumps({k: v for k, v in tiny_record.items() if k not in ("settings", "memory")}))
    with pytest.raises(ResultsError, match="20261204T150000Z.json lacks field\\(s\\) settings, memory"):
        history(folder)


def test_cli_prints_the_table_and_adds_a_record_per_run(tmp_path, data_env):
    args = ["bench", "--method", "tiny-vit", "--pairs", "4", "--iters", "2", "--passes", "2", "--warmup", "0",
            "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "extract, ms per image (min / median / max)" in result.output
    folder = tmp_path / "bench" / "tiny-vit" / "cpu-float32-112px-b4"
    (path,) = folder.glob("*.json")
    record = json.loads(path.read_text())
    assert record["command"].startswith("corrbench ") and record["settings"]["pairs"] == 4
    assert record["settings"]["passes"] == 2 and record["created_at"]

    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert len(list(folder.glob("*.json"))) == 2 and json.loads(path.read_text()) == record  # the first is kept
    assert "this configuration's records (2 of 2, oldest first)" in again.output

    wrong = CliRunner().invoke(cli, ["bench", "--method", "tiny-vt", "--out", str(tmp_path)])
    assert wrong.exit_code != 0 and "tiny-vit" in wrong.output and "Traceback" not in wrong.output


def test_cli_warns_on_stderr_when_the_spread_is_wide(tmp_path, data_env, monkeypatch):
    import corrbench.timing

    def unstable_summary(seconds, per=1):  # as if every stage's slowest call had taken 4x its fastest
        return {**summarize(seconds, per), "spread": 4.0}

    monkeypatch.setattr(corrbench.timing, "summarize", unstable_summary)
    result = CliRunner().invoke(cli, ["bench", "--method", "oracle", "--pairs", "2", "--iters", "2", "--passes", "1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "warning: timings varied more than 1.5x (slowest / fastest) in match per pair 4.0x" in result.stderr
    assert "(spread 4.00x, WIDE)" in result.stdout
    (path,) = (tmp_path / "bench" / "oracle").rglob("*.json")
    assert json.loads(path.read_text())["warnings"] == [result.stderr.splitlines()[0].removeprefix("warning: ")]


def test_marco_gpu_script_rows_from_bench_records(synthetic_data_root, capsys):
    # The GPU script on the CPU with a tiny method: the same code path, one row per dtype.
    from corrbench.perf import marco_gpu

    marco_gpu.main(["--method", "tiny-vit", "--set", "dim=16", "--resolution", "56", "--device", "cpu",
                    "--dtypes", "float32", "bfloat16", "--pairs", "2", "--batch-size", "2", "--iters", "1",
                    "--data-root", str(synthetic_data_root)])
    out = capsys.readouterr().out
    assert "tiny-vit at 56 px on cpu" in out and " max/min |" in out
    rows = [line for line in out.splitlines() if line.startswith(("| float32", "| bfloat16"))]
    assert len(rows) == 2 and all(row.split("|")[-2].strip() for row in rows)
