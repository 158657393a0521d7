"""The command line as a user meets it: run, table, ls, and errors without tracebacks."""

import json
import re

import pytest
from click.testing import CliRunner

from corrbench.cli import cli


def test_run_then_table(invoke):
    oracle = invoke("run", "--method", "oracle", "--benchmark", "synthetic", "-q")
    assert oracle.exit_code == 0, oracle.output
    assert "result: results/synthetic/oracle/" in oracle.output
    random = invoke("run", "--method", "random", "--benchmark", "synthetic", "-q")
    assert random.exit_code == 0, random.output
    table = invoke("table", "--thresholds", "0.01", "0.05", "0.1")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert [c.strip() for c in lines[0].split("|")[3:6]] == ["synthetic @0.01", "synthetic @0.05", "synthetic @0.1"]
    oracle_row = next(line for line in lines if line.startswith("| oracle"))
    assert re.findall(r"\d+\.\d", oracle_row) == ["100.0", "100.0", "100.0"]
    assert any(line.startswith("| random") for line in lines)


def test_table_formats_and_filters(invoke):
    invoke("run", "--method", "oracle", "--benchmark", "synthetic", "-q")
    as_json = json.loads(invoke("table", "--format", "json", "--thresholds", "0.1").output)
    assert as_json["rows"][0]["values"] == {"synthetic @0.1": 100.0}
    csv = invoke("table", "--format", "csv", "-t", "0.05,0.2", "--pck-by", "point", "--avg", "category").output
    assert csv.splitlines()[0] == ("method,origin,source,synthetic @0.05,synthetic @0.05 marker,synthetic @0.2,"
                                   "synthetic @0.2 marker")
    latex = invoke("table", "--format", "latex").output
    assert "\\toprule" in latex
    assert "unknown method 'nobody'" in invoke("table", "--method", "nobody").output


def test_partial_runs_stay_out_of_tables(invoke):
    invoke("run", "--method", "random", "--benchmark", "synthetic", "--limit", "3", "-q")
    result = invoke("table")
    assert result.exit_code == 2 and "no complete runs" in result.output and "--partial" in result.output


def test_table_with_published_numbers(invoke):
    result = invoke("table", "--published", "--benchmark", "spair71k", "--method", "MARCO", "-t", "0.1")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("| MARCO (masks at training"))
    assert "87.2" in row  # MARCO's SPair-71k PCK@0.1 with masks (paper, Table 1)
    numbers = row.split("|")[2].strip().split(",")
    assert any(re.search(rf"^  {n}: MARCO CVPR 2026 Table 1$", result.output, re.M) for n in numbers)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--method", "nope", "--benchmark", "synthetic"], "unknown method 'nope'"),
        (["run", "--method", "oracle", "--benchmark", "synthetc"], "did you mean 'synthetic'"),
        (["run", "--method", "tiny-vit", "--benchmark", "synthetic", "--set", "depth=two"], "expected int"),
        (["run", "--method", "tiny-vit", "--benchmark", "synthetic", "--set", "dept=2"], "did you mean depth"),
        (["run", "--method", "tiny-vit", "--benchmark", "synthetic", "--set", "resolution=100"], "multiple"),
        (["table", "--thresholds", "0.3"], "not computed"),
        (["table", "0.1"], "unexpected argument"),
    ],
)
def test_errors_are_clear_and_have_no_traceback(invoke, args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_data_names_the_path(invoke, tmp_path):
    result = invoke("run", "--method", "oracle", "--benchmark", "synthetic", "--data-root", str(tmp_path / "x"),
                    "--strict", "-q")
    assert result.exit_code == 0  # the synthetic data is generated on first use
    (tmp_path / "y" / "corrbench-synthetic").mkdir(parents=True)
    (tmp_path / "y" / "corrbench-synthetic" / "stray.txt").write_text("")
    result = invoke("run", "--method", "oracle", "--benchmark", "synthetic", "--data-root", str(tmp_path / "y"))
    assert result.exit_code == 2 and "not a complete synthetic dataset" in result.output
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--debug", "run", "--method", "nope", "--benchmark", "synthetic"])
    # the original exception propagates (CliRunner would record SystemExit for any plain non-zero exit)
    assert result.exit_code != 0 and type(result.exception).__name__ == "UnknownNameError"
    plain = CliRunner().invoke(cli, ["run", "--method", "nope", "--benchmark", "synthetic"])
    assert isinstance(plain.exception, SystemExit) and plain.exit_code == 2
    assert "Traceback" not in plain.output and "unknown method 'nope'" in plain.output


def test_ls(invoke):
    methods = invoke("ls", "methods").output
    assert re.search(r"^oracle\s+Test-only", methods, re.M) and "tiny-vit" in methods
    assert "synthetic-unseen" in invoke("ls", "benchmarks").output


def test_debug_works_after_the_subcommand_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", "--method", "nope", "--benchmark", "synthetic", "--debug"])
    assert result.exit_code != 0 and type(result.exception).__name__ == "UnknownNameError"
    plain = CliRunner().invoke(cli, ["run", "--method", "nope", "--benchmark", "synthetic"])
    assert plain.exit_code == 2 and "unknown method 'nope'" in plain.output and "Traceback" not in plain.output


def test_ls_alone_lists_what_can_be_listed(invoke):
    result = invoke("ls")
    assert result.exit_code == 0
    for kind in ("methods", "benchmarks", "options"):
        assert re.search(rf"^corrbench ls {kind}\s+\S", result.output, re.M), result.output
    wrong = invoke("ls", "option", "tiny-vit")
    assert wrong.exit_code == 2 and "did you mean 'options'" in wrong.output
    shouted = invoke("ls", "PROTOCOLS")
    assert shouted.exit_code == 2 and "did you mean 'protocols'" in shouted.output


def test_ls_options_lists_types_defaults_ranges_and_meaning(invoke):
    result = invoke("ls", "options", "tiny-vit")
    assert result.exit_code == 0, result.output
    assert "  dim: int = 64    valid: >= 1\n      token width\n" in result.output, result.output
    # the rules between options are declarations too: a user reading the ranges must also see them
    assert "  and together:\n      resolution must be a multiple of patch_size\n      dim must be divisible by heads" \
        in result.output, result.output
    dinov2 = invoke("ls", "options", "dinov2").output
    assert "  resolution: int = 840    valid: >= 14, multiple of 14\n      canvas side" in dinov2, dinov2
    assert "  window: int = 7    valid: >= 0\n" in dinov2
    assert "      used only with localizer = window-soft-argmax\n" in dinov2
    assert invoke("ls", "options").exit_code == 2


def test_describe_says_what_a_method_is_and_how_it_trains(invoke):
    oracle = invoke("describe", "oracle").output
    assert oracle.startswith("oracle: Test-only") and "test-only: it is given the target keypoints" in oracle
    assert "training: not trainable" in oracle and "oracle has no options" in oracle
    ft = invoke("describe", "dinov2-ft").output
    assert "training canvas: train_resolution=840 px in preset 'unified'" in ft
    assert "  trainable_blocks: int = 2    valid: >= 1\n" in ft, ft
