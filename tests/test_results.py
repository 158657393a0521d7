"""Result records: ``result.json`` keeps its bytes across corrbench versions of the same schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corrbench.errors import ResultsError
from corrbench.evaluate import RunOptions, run
from corrbench.results import RESULT_FILE, ResultRecord, find_results, load_result

# Written by `corrbench run -m oracle -b synthetic --limit 20 -q` at commit 9d849ea, when evaluate.run still
# assembled the result as a dict of its own: the layout (field order included) every later writer must keep.
EARLIER = Path(__file__).parent / "data" / "result_v1_oracle_synthetic_limit20.json"


def test_a_result_written_before_the_record_existed_reads_and_writes_back_byte_for_byte(tmp_path):
    record = ResultRecord.from_json(json.loads(EARLIER.read_bytes()), EARLIER)
    assert record.partial is True and record.counts["pairs"] == 20
    assert record.write(tmp_path) == tmp_path / RESULT_FILE
    assert (tmp_path / RESULT_FILE).read_bytes() == EARLIER.read_bytes()


#: Top-level fields whose values change from run to run (time, command line, machine).
_CHANGING = ("created_at", "command", "env")


def _masked(value, path=()):
    """``value`` with what changes from run to run (those fields, every timing in seconds) replaced by its key
    path; dicts become lists of items, so the order of the fields counts."""
    if isinstance(value, dict):
        return [(key, _masked(item, (*path, key))) for key, item in value.items()]
    if path and (path[0] in _CHANGING or "seconds" in path[-1]):
        return "/".join(path)
    return value


def test_a_run_writes_the_fields_an_earlier_corrbench_wrote_in_the_same_order(tmp_path, data_env):
    outcome = run(RunOptions(method="oracle", benchmark="synthetic", limit=20, out=tmp_path, progress=False))
    earlier = json.loads(EARLIER.read_bytes())
    assert _masked(json.loads(outcome.result_path.read_bytes())) == _masked(earlier)
    assert _masked(outcome.result) == _masked(earlier)  # what Python callers get is what the file holds


def test_load_result_names_the_file_and_what_is_wrong(tmp_path):
    data = json.loads(EARLIER.read_bytes())
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**data, "schema_version": 2}))
    with pytest.raises(ResultsError, match="newer.json has result schema version 2; this corrbench reads version 1"):
        load_result(newer)
    lacking = tmp_path / "lacking.json"
    lacking.write_text(json.dumps({k: v for k, v in data.items() if k not in ("metrics", "env")}))
    with pytest.raises(ResultsError, match="lacking.json lacks field\\(s\\) env, metrics"):
        load_result(lacking)
    assert load_result(EARLIER) == {**data, "_path": str(EARLIER)}


def test_a_result_file_that_is_not_text_is_reported_as_unreadable(tmp_path):
    # Bytes that are not UTF-8 made json raise UnicodeDecodeError, which the reader did not catch: `corrbench
    # table` stopped with a traceback instead of listing the file among the unreadable ones.
    broken = tmp_path / "b" / "m" / "run" / RESULT_FILE
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b'{"schema_version": 1, "method": "\xff\xfe"}')
    with pytest.raises(ResultsError, match=f"cannot read result {broken}"):
        load_result(broken)
    results, problems = find_results(tmp_path)
    assert results == [] and len(problems) == 1 and str(broken) in problems[0]
