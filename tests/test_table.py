"""`corrbench table`: one row per configuration, pair-set markers, --partial, name checks, protocols, machine
formats, and published numbers that read well."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from pathlib import Path

import pytest

from corrbench.results import RESULT_FILE
from corrbench.table import build_table, load_published, render
from corrbench.table_published import LABEL_WIDTH, select_published, short_labels


@pytest.fixture(scope="module")
def _oracle_result(synthetic_data_root, tmp_path_factory):
    from corrbench.evaluate import RunOptions, run

    outcome = run(RunOptions(method="oracle", benchmark="synthetic", data_root=synthetic_data_root,
                             out=tmp_path_factory.mktemp("results"), progress=False))
    return outcome.result


@pytest.fixture
def oracle_result(_oracle_result, tmp_path):
    """A real result file (oracle on synthetic) in this test's results/, to derive other runs from."""
    write_run(tmp_path, _oracle_result, "oracle")
    return copy.deepcopy(_oracle_result)


def write_run(tmp_path: Path, result: dict, name: str) -> None:
    """Place a derived result where `corrbench table` looks (results/<benchmark>/<method>/<name>/)."""
    directory = tmp_path / "results" / result["benchmark"]["name"] / result["method"]["name"] / name
    directory.mkdir(parents=True)
    (directory / RESULT_FILE).write_text(json.dumps(result))


def derived(result: dict, *, created_at: str, pck01: float | None = None, **benchmark) -> dict:
    """A copy of ``result`` made later, with another PCK@0.1 (per image, pooled) and benchmark fields."""
    out = copy.deepcopy(result)
    out["created_at"] = created_at
    if pck01 is not None:
        out["metrics"]["pck"]["image"]["all"]["0.1"] = pck01
    out["benchmark"].update(benchmark)
    return out


def rows_of(output: str) -> dict[str, list[str]]:
    """Markdown table rows by label: the cells after the label."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith("| method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


# -- one row per configuration ------------------------------------------------------------------------------

def test_runs_of_one_method_with_other_options_or_dtype_get_their_own_labelled_rows(invoke):
    for extra in ([], ["--set", "seed=1"], ["--dtype", "bfloat16"]):
        assert invoke("run", "--method", "random", "--benchmark", "synthetic", "-q", *extra).exit_code == 0
    rows = rows_of(invoke("table").output)
    # only what differs between the rows is named (the option and the dtype)
    assert set(rows) == {"random [seed=0, --dtype=float32]", "random [seed=1, --dtype=float32]",
                         "random [seed=0, --dtype=bfloat16]"}
    as_json = json.loads(invoke("table", "--format", "json").output)
    details = {r["method"]: r["detail"] for r in as_json["rows"]}
    assert details["random [seed=1, --dtype=float32]"]["config"]["seed"] == 1
    assert details["random [seed=0, --dtype=bfloat16]"]["dtype"] == "bfloat16"


def test_a_method_with_one_configuration_keeps_its_plain_name(invoke, oracle_result, tmp_path):
    other = copy.deepcopy(oracle_result)
    other["method"].update(name="random", uses_ground_truth=False)
    write_run(tmp_path, other, "random")
    reseeded = copy.deepcopy(other)
    reseeded["env"]["seed"] = 3
    write_run(tmp_path, reseeded, "random-3")
    assert set(rows_of(invoke("table").output)) == {"oracle (ground truth)", "random [--seed=3]",
                                                    "random [--seed=0]"}


def test_the_newest_complete_run_of_a_configuration_fills_its_cell(invoke, oracle_result, tmp_path):
    write_run(tmp_path, derived(oracle_result, created_at="2000-01-01T00:00:00+00:00", pck01=11.0), "old")
    write_run(tmp_path, derived(oracle_result, created_at="2999-01-01T00:00:00+00:00", pck01=77.0), "new")
    rows = rows_of(invoke("table", "-t", "0.1").output)
    assert rows == {"oracle (ground truth)": ["local", "77.0"]}


# -- pair sets ------------------------------------------------------------------------------------------------

def test_a_run_that_skipped_pairs_is_marked_against_the_whole_list_reference(invoke, oracle_result, tmp_path):
    skipped = derived(oracle_result, created_at="2999-01-01T00:00:00+00:00", pck01=50.0,
                      pairs_fingerprint="f" * 64)
    skipped["method"]["config"] = {"variant": "b"}  # another configuration: its own row
    skipped["counts"].update(pairs=58, skipped={"image not found": 2})
    write_run(tmp_path, skipped, "skipped")
    output = invoke("table", "-t", "0.1").output
    rows = rows_of(output)
    assert rows["oracle (ground truth) [variant=unset]"] == ["local", "100.0"]  # the reference: unmarked
    assert rows["oracle (ground truth) [variant=b]"] == ["local", "50.0†"]
    assert "†: scored other pairs than the column's reference" in output
    assert "58 of 60 listed pairs (skipped: 2 image not found)" in " ".join(output.split())


def test_runs_of_another_pair_list_are_marked_and_the_disagreement_noted(invoke, oracle_result, tmp_path):
    for i, fp in enumerate(["a" * 64, "a" * 64, "b" * 64]):
        run = derived(oracle_result, created_at=f"2999-01-0{i + 1}T00:00:00+00:00", pck01=60.0 + i,
                      pairs_fingerprint=fp)
        run["method"]["config"] = {"k": i}
        write_run(tmp_path, run, f"r{i}")
    output = invoke("table", "-t", "0.1").output
    rows = rows_of(output)
    assert [rows[f"oracle (ground truth) [k={i}]"][1] for i in range(3)] == ["60.0", "61.0", "62.0†"]
    assert rows["oracle (ground truth) [k=unset]"][1] == "100.0†"  # the first run: yet another list
    assert "complete runs scored 3 different pair lists" in output
    assert "another pair list (sha256 bbbbbbbbbbbb, reference aaaaaaaaaaaa)" in " ".join(output.split())


# -- --partial --------------------------------------------------------------------------------------------------

def test_limited_runs_appear_with_partial_and_are_marked(invoke):
    invoke("run", "--method", "random", "--benchmark", "synthetic", "--limit", "3", "-q")
    hidden = invoke("table")
    assert hidden.exit_code == 2 and "add --partial" in hidden.output
    shown = invoke("table", "--partial", "-t", "0.1")
    assert shown.exit_code == 0, shown.output
    assert re.fullmatch(r"\d+\.\d‡", rows_of(shown.output)["random"][1])
    assert "random on synthetic: 3 of 60 listed pairs (--limit run)" in shown.output
    assert json.loads(invoke("table", "--partial", "--format", "json", "-t", "0.1").output)["rows"][0]["markers"] \
        == {"synthetic @0.1": "‡"}


def test_a_complete_run_is_preferred_to_a_limited_one(invoke):
    invoke("run", "--method", "oracle", "--benchmark", "synthetic", "-q")
    invoke("run", "--method", "oracle", "--benchmark", "synthetic", "--limit", "3", "-q")
    assert rows_of(invoke("table", "--partial", "-t", "0.1").output) == {"oracle (ground truth)": ["local", "100.0"]}


# -- names that match nothing -------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--benchmark", "synthetc"], "unknown benchmark 'synthetc'\n  hint: did you mean 'synthetic'"),
    (["--method", "oracel"], "unknown method 'oracel'\n  hint: did you mean 'oracle'"),
    (["--benchmark", "spair71k"], "no results for benchmark 'spair71k'"),
    (["--published", "--method", "MARKO"], "did you mean 'MARCO'"),
    (["--protocol", "marko"], "unknown protocol 'marko'"),
])
def test_names_that_match_nothing_are_errors_with_suggestions(invoke, oracle_result, args, message):
    result = invoke("table", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_names_match_in_any_letter_case_as_the_check_accepts_them(invoke, oracle_result):
    # the name check is case-insensitive; the filter must agree, or the table comes out empty
    assert rows_of(invoke("table", "--benchmark", "SYNTHETIC", "--method", "Oracle", "-t", "0.1").output) == {
        "oracle (ground truth)": ["local", "100.0"]}
    published = invoke("table", "--published", "--benchmark", "PF-Willow", "--method", "lpmflow", "-t", "0.1")
    assert published.exit_code == 0 and "81.0*" in published.output, published.output


def test_names_are_checked_against_published_numbers_too(invoke):
    result = invoke("table", "--published", "--benchmark", "pf-willow", "--method", "lpmflow", "-t", "0.1")
    assert result.exit_code == 0, result.output
    assert "| LPMFlow" in result.output and "81.0*" in result.output
    nothing = invoke("table", "--published", "--benchmark", "pf-willow", "--method", "geo-sc")
    assert nothing.exit_code == 2 and "no run or published number matches these filters" in nothing.output


# -- protocols ------------------------------------------------------------------------------------------------

def test_protocol_filters_runs_and_names_its_columns(invoke, oracle_result, tmp_path):
    marco = derived(oracle_result, created_at="2999-01-01T00:00:00+00:00", pck01=42.0)
    marco["benchmark"]["protocol"]["name"] = "marco"
    write_run(tmp_path, marco, "marco")
    both = invoke("table", "-t", "0.1").output
    assert both.splitlines()[0].split("|")[3:5] == [" synthetic @0.1   ", " synthetic (marco) @0.1   "]
    only_marco = invoke("table", "--protocol", "marco", "-t", "0.1").output
    assert rows_of(only_marco) == {"oracle (ground truth)": ["local", "42.0"]}
    assert "synthetic (marco) @0.1" in only_marco
    # results written before protocols had names count as corrbench's
    assert rows_of(invoke("table", "--protocol", "corrbench", "-t", "0.1").output) == {
        "oracle (ground truth)": ["local", "100.0"]}


def test_a_run_under_a_named_protocol_sits_under_its_base_benchmark(invoke, oracle_result, tmp_path,
                                                                     synthetic_data_root):
    from corrbench.evaluate import RunOptions, run

    geoaware = run(RunOptions(method="oracle", benchmark="synthetic", protocol="geoaware", progress=False,
                              data_root=synthetic_data_root, out=tmp_path / "results")).result
    assert geoaware["benchmark"]["name"] == "synthetic-geoaware"
    # a *-marco result written before protocols were named: its name alone says which protocol it is
    legacy = derived(oracle_result, created_at="2999-01-01T00:00:00+00:00", pck01=42.0, name="synthetic-marco")
    legacy["benchmark"]["protocol"].pop("name", None)
    legacy["benchmark"].pop("base", None)
    write_run(tmp_path, legacy, "legacy-marco")
    header = invoke("table", "-t", "0.1").output.splitlines()[0]
    assert [c.strip() for c in header.split("|")[3:6]] == [
        "synthetic @0.1", "synthetic (geoaware) @0.1", "synthetic (marco) @0.1"]
    for name in ("synthetic", "synthetic-geoaware"):  # the base name or the recorded one
        only = invoke("table", "--benchmark", name, "--protocol", "geoaware", "-t", "0.1")
        assert only.exit_code == 0, only.output
        assert rows_of(only.output) == {"oracle (ground truth)": ["local", "100.0"]}
    # a registered protocol no run used yet is not a typo
    unused = invoke("table", "--protocol", "unified")
    assert unused.exit_code == 2 and "no run or published number matches" in unused.output


def test_column_notes_name_every_scoring_choice_that_is_not_corrbenchs(oracle_result):
    """What a named protocol changes beyond threshold/comparison/frame (float32 ties, dagger candidates, data
    options) and an AP-10K folder built without the published crowd list are said under the column."""
    geoaware = derived(oracle_result, created_at="2999-01-01T00:00:00+00:00")
    geoaware["benchmark"]["protocol"].update(name="geoaware", arithmetic="torch-float32",
                                             dagger_candidates="both-visible", frame="letterbox:840",
                                             comparison="<")
    unified = derived(oracle_result, created_at="2999-01-01T00:00:00+00:00",
                      adapter_options={"floor_keypoints": True, "layout": "large"})
    unified["benchmark"]["protocol"]["name"] = "unified"
    crowd = derived(oracle_result, created_at="2999-01-01T00:00:00+00:00",
                    data={"crowd_rule": "derived", "warning": "AP-10K crowd images were derived from the annotations"})
    crowd["method"]["config"] = {"variant": "b"}
    notes = build_table([oracle_result, geoaware, unified]).notes
    assert "synthetic (geoaware): v1, protocol geoaware, threshold bbox, comparison <, frame letterbox:840, " \
           "arithmetic torch-float32, PCK-dagger candidates both-visible, split test" in notes
    assert any(n.startswith("synthetic (unified):") and "floor_keypoints=True" in n and "layout" not in n
               for n in notes)
    assert "synthetic: v1, protocol corrbench, threshold bbox, comparison <=, frame original, split test" in notes
    warned = copy.deepcopy(crowd)
    warned["benchmark"]["protocol"]["name"] = "marco"
    assert build_table([crowd, warned]).notes[-1] == (
        "data warning (synthetic, synthetic (marco)): AP-10K crowd images were derived from the annotations")


def test_runs_scored_with_other_fields_under_one_protocol_name_get_their_own_columns(invoke, oracle_result,
                                                                                      tmp_path):
    # the same preset name and benchmark version, but the preset's fields changed between the two runs
    old = derived(oracle_result, created_at="2999-01-01T00:00:00+00:00", pck01=42.0, name="synthetic-geoaware")
    old["benchmark"]["protocol"].update(name="geoaware", frame="letterbox:840", comparison="<")
    new = copy.deepcopy(old)
    new["created_at"] = "2999-01-02T00:00:00+00:00"
    new["metrics"]["pck"]["image"]["all"]["0.1"] = 43.0
    new["benchmark"]["protocol"]["arithmetic"] = "torch-float32"
    write_run(tmp_path, old, "geoaware-old")
    write_run(tmp_path, new, "geoaware-new")
    output = invoke("table", "--protocol", "geoaware", "-t", "0.1").output
    header = [c.strip() for c in output.splitlines()[0].split("|")[3:5]]
    assert all(h.startswith("synthetic (geoaware) [scoring ") for h in header) and header[0] != header[1]
    assert sorted(rows_of(output)["oracle (ground truth)"][1:]) == ["42.0", "43.0"]  # neither hides the other
    assert "arithmetic torch-float32" in output  # the note under the newer column says how it differs


def test_known_protocols_without_runs_are_accepted(oracle_result):
    table = build_table([oracle_result], protocol="geoaware", known_protocols=["geoaware"])
    assert table.rows == []


# -- machine formats ------------------------------------------------------------------------------------------

def test_csv_and_json_give_numbers_with_markers_apart(invoke, oracle_result, tmp_path):
    skipped = derived(oracle_result, created_at="2999-01-01T00:00:00+00:00", pck01=12.5,
                      pairs_fingerprint="f" * 64)
    skipped["method"]["config"] = {"variant": "b"}
    skipped["counts"].update(pairs=58, skipped={"image not found": 2})
    write_run(tmp_path, skipped, "skipped")
    as_json = json.loads(invoke("table", "--format", "json", "-t", "0.1").output)
    by_label = {r["method"]: r for r in as_json["rows"]}
    assert by_label["oracle (ground truth) [variant=b]"]["values"] == {"synthetic @0.1": 12.5}
    assert by_label["oracle (ground truth) [variant=b]"]["markers"] == {"synthetic @0.1": "†"}
    assert as_json["columns"][0] == {"name": "synthetic @0.1", "group": "synthetic", "benchmark": "synthetic",
                                     "version": 1, "protocol": "corrbench", "alpha": "0.1"}
    records = list(csv.DictReader(io.StringIO(invoke("table", "--format", "csv", "-t", "0.1").output)))
    marked = next(r for r in records if r["method"].endswith("[variant=b]"))
    assert float(marked["synthetic @0.1"]) == 12.5 and marked["synthetic @0.1 marker"] == "†"


# -- published numbers ----------------------------------------------------------------------------------------

def test_published_numbers_printed_by_several_tables_are_one_row_with_every_source():
    rows = select_published(load_published(), metric="pck", alphas=["0.1"], pck_by="image", avg="all",
                            benchmarks=["spair71k"], methods=["Geo-SC"])
    plain = [r for r in rows if r.variant == ""]
    assert len(plain) == 1  # 83.2 is printed by five tables
    assert plain[0].cells[("spair71k", "0.1")].text == "83.2"
    assert set(plain[0].sources) == {"Jamais Vu NeurIPS 2025 Table 1", "MARCO CVPR 2026 Table 1",
                                     "MARCO CVPR 2026 Table 11", "MARCO CVPR 2026 Table 5",
                                     "MARCO CVPR 2026 Table 6"}
    # Jamais Vu's own table states the aggregation, so the merged number is not starred
    assert plain[0].cells[("spair71k", "0.1")].aggregation_stated
    # numbers the papers disagree on stay apart: Jamais Vu on SPair-71k, 82.9 in its paper, 82.5 in MARCO's
    jv = select_published(load_published(), metric="pck", alphas=["0.1"], pck_by="image", avg="all",
                          benchmarks=["spair71k"], methods=["Jamais Vu"])
    assert sorted(r.cells[("spair71k", "0.1")].text for r in jv if r.variant == "") == ["82.5", "82.9"]


def test_published_labels_are_short_and_tell_each_tables_rows_apart():
    rows = select_published(load_published(), metric="pck", alphas=["0.01", "0.05", "0.1", "0.15"],
                            pck_by="image", avg="all")
    labels = short_labels(rows)
    assert max(len(label) for label in labels) <= LABEL_WIDTH + 3  # " #n" where cutting made two alike
    assert len({(label, row.sources[0]) for label, row in zip(labels, rows)}) == len(rows)


def test_published_table_has_a_readable_default_width(invoke):
    result = invoke("table", "--published")
    assert result.exit_code == 0, result.output
    table_lines = [line for line in result.output.splitlines() if line.startswith("|")]
    assert max(len(line) for line in table_lines) <= 160
    assert max(len(line) for line in result.output.splitlines()) <= 160
    assert "--all-benchmarks" in result.output
    assert re.search(r"^  1: \S.*Table", result.output, re.M)  # the source column's footnotes
    everything = invoke("table", "--published", "--all-benchmarks", "-t", "0.1").output
    assert len({h.split(" @")[0] for h in everything.splitlines()[0].split("|")[3:-1]}) == 12
    # machine formats are not read on a screen: every benchmark
    as_json = json.loads(invoke("table", "--published", "--format", "json", "-t", "0.1").output)
    assert len({c["benchmark"] for c in as_json["columns"]}) == 12


def test_published_columns_follow_the_local_runs(invoke, oracle_result):
    output = invoke("table", "--published").output
    assert "spair71k @" not in output.splitlines()[0]
    assert "published numbers for 12 more benchmark(s) not shown" in output


# -- published rows of the methods corrbench registers -----------------------------------------------------------

def published_at_01(methods, benchmarks):
    return select_published(load_published(), metric="pck", alphas=["0.1"], pck_by="image", avg="all",
                            benchmarks=benchmarks, methods=methods)


def test_published_rows_stand_for_registered_methods_whatever_the_paper_calls_them():
    rows = published_at_01(["geoaware-sc"], ["spair71k"])
    assert {r.method for r in rows} == {"Geo-SC", "GeoAware-SC", "TLR"}  # MARCO/Jamais Vu, UnifiedBench, DIY-SC
    assert {r.corrbench_method for r in rows} == {"geoaware-sc"}
    assert all(r.full_label.startswith("geoaware-sc: ") for r in rows)
    assert not any("MARCO" in r.variant for r in rows)  # Geo-SC trained with MARCO's loss is another method
    # one printed name, two methods: DIY-SC's DINOv2-only variant is diy-sc, the SD+DINOv2 model diy-sc-sd
    dino = published_at_01(["diy-sc"], ["spair71k"])
    assert [(r.variant, r.cells[("spair71k", "0.1")].text) for r in dino] == [
        ("DINOv2 only (adapter on DINOv2 features)", "70.6")]
    assert published_at_01(["DIY-SC"], ["spair71k"]) == dino  # the registered name wins in any letter case
    with_sd = published_at_01(["diy-sc-sd"], ["spair71k"])
    assert {r.variant for r in with_sd} == {"", "SPair", "IN3D", "IN3D -> SPair"}
    assert all(r.cells[("spair71k", "0.1")].text == "71.6" for r in with_sd if r.variant in ("", "SPair"))


def test_the_family_has_its_published_rows_on_ap10k_and_pf_pascal_with_their_source():
    benchmarks = ["ap10k-intra-species", "pf-pascal"]
    jamais_vu = [r for r in published_at_01(["jamais-vu"], benchmarks) if r.cells]
    assert [(r.cells[("ap10k-intra-species", "0.1")].text, r.cells[("pf-pascal", "0.1")].text, r.sources)
            for r in jamais_vu] == [("71.3", "87.5", ["Jamais Vu NeurIPS 2025 Table 3"])]
    dino = published_at_01(["diy-sc"], benchmarks)
    assert dino[0].cells[("ap10k-intra-species", "0.1")].text == "71.2" and dino[0].sources == [
        "DIY-SC ICCV 2025 Table 3"]


def test_method_names_file_names_only_printed_rows_and_each_once():
    from importlib import resources

    text = resources.files("corrbench.published").joinpath("method_names.csv").read_text()
    assert {len(fields) for fields in csv.reader(io.StringIO(text))} == {4}  # an unquoted comma adds a field
    entries = [(r["method"], r["variant"]) for r in csv.DictReader(io.StringIO(text))]
    assert len(entries) == len(set(entries))
    printed = {(p["method"], p["variant"]) for p in load_published()}
    assert set(entries) <= printed, set(entries) - printed


def test_method_names_file_maps_printed_rows_to_registered_methods_only():
    """A row mapped to a name no method is registered under would never sit beside a run of that method."""
    from corrbench.registry import METHODS
    from corrbench.table_published import published_method_names

    unknown = sorted({name for name in published_method_names().values() if name not in METHODS})
    assert not unknown, f"method_names.csv names unregistered methods: {unknown}"


def test_published_rows_sit_beside_the_runs_of_the_method_they_stand_for(invoke, oracle_result, tmp_path):
    run = derived(oracle_result, created_at="2999-01-01T00:00:00+00:00", pck01=50.0, name="spair71k",
                  base="spair71k")
    run["method"]["name"] = "jamais-vu"
    write_run(tmp_path, run, "jv")
    result = invoke("table", "--published", "--method", "jamais-vu", "-t", "0.1")
    assert result.exit_code == 0, result.output
    rows = rows_of(result.output)
    local = [label for label, cells in rows.items() if cells[0] == "local"]
    assert len(local) == 1 and rows[local[0]][1] == "50.0"
    printed = [[c.strip() for c in line.strip("|").split("|")] for line in result.output.splitlines()
               if line.startswith("| jamais-vu: ")]
    # Jamais Vu's own 82.9 and MARCO's copy of it, 82.5: papers that disagree stay apart
    assert sorted((cells[0], cells[2]) for cells in printed) == [
        ("jamais-vu: Jamais Vu", "82.5*"), ("jamais-vu: Jamais Vu", "82.9"),
        ("jamais-vu: Jamais Vu (AP-10K pretrain)", "85.4")]
    # without a run the registered name is known too, from the papers' rows alone
    alone = invoke("table", "--published", "--method", "geoaware-sc", "--benchmark", "spair-u", "-t", "0.1")
    assert alone.exit_code == 0 and "geoaware-sc: Geo-SC" in alone.output, alone.output
    as_json = json.loads(invoke("table", "--published", "--method", "diy-sc", "--format", "json", "-t", "0.1").output)
    assert {r["detail"]["corrbench_method"] for r in as_json["rows"]} == {"diy-sc"}


def test_transcription_keeps_only_the_named_methods_of_a_family_table(tmp_path):
    from repo_tools import load_tool

    tool = load_tool("transcribe_published.py")
    base = dict.fromkeys(tool.RESULT_COLUMNS, "")
    base.update(metric="pck", alpha="0.1", threshold="bbox", pck_by="image", avg="all", benchmark="spair71k",
                value="1.0")
    required = [f"{paper} Table {t}" for paper, tables, required, *_ in tool.SELECTION if required for t in tables]
    rows = [{**base, "source": source, "method": "M"} for source in required]
    rows += [{**base, "source": "Jamais Vu NeurIPS 2025 Table 3", "method": m} for m in ("Jamais Vu", "SD")]
    selected = tool.select_results(rows)
    assert [r["method"] for r in selected if r["source"] == "Jamais Vu NeurIPS 2025 Table 3"] == ["Jamais Vu"]


def test_markdown_shows_the_markers_explained_under_the_table(oracle_result):
    table = build_table([oracle_result], thresholds=[0.1], published=load_published(), benchmarks=["spair71k"],
                        methods=["DHF"])
    text = render(table)
    assert "64.9*" in text and "*: the source does not state" in text


def test_labels_name_the_weights_only_where_the_options_do_not_tell_rows_apart(oracle_result):
    from corrbench.table_runs import row_key, row_labels

    def run(weights: dict, config: dict) -> dict:
        out = copy.deepcopy(oracle_result)
        out["method"].update(weights=weights, config=config)
        return out

    replaced = [run({"source": "/ckpt/marco.pth", "sha256": "1" * 64}, {"checkpoint": "/ckpt/marco.pth"}),
                run({"source": "/ckpt/marco.pth", "sha256": "2" * 64}, {"checkpoint": "/ckpt/marco.pth"})]
    labels = row_labels({row_key(r): r for r in replaced})
    assert sorted(labels.values()) == ["oracle (ground truth) [weights=11111111]",
                                       "oracle (ground truth) [weights=22222222]"]
    seeded = [run({"source": "random", "seed": s}, {"seed": s}) for s in (0, 1)]
    labels = row_labels({row_key(r): r for r in seeded})
    assert sorted(labels.values()) == ["oracle (ground truth) [seed=0]", "oracle (ground truth) [seed=1]"]
