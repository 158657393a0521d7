from pathlib import Path

import pytest

from corrbench.errors import ConfigError, UnknownNameError
from corrbench.matcher import Matcher
from corrbench.registry import BENCHMARKS, METHODS, Registry
from corrbench.types import MatchOutput


class _Dummy(Matcher):
    def match(self, batch):
        return MatchOutput(points=batch.src_kps.clone())


def test_builtins_come_from_entry_points():
    assert {"oracle", "random", "tiny-vit"} <= set(METHODS.names())
    assert {"synthetic", "synthetic-unseen"} <= set(BENCHMARKS.names())
    assert issubclass(METHODS.get("tiny-vit"), Matcher)


def test_decorator_alias_and_duplicates():
    registry = Registry("method", "corrbench.tests.none")
    registry.register("dummy", aliases=("dm",))(_Dummy)
    assert registry.get("dummy") is _Dummy and registry.get("dm") is _Dummy
    registry.register("dummy", _Dummy)  # the same object again is not a conflict
    with pytest.raises(ConfigError, match="duplicate method name 'dummy'"):
        registry.register("dummy", Matcher)


def test_lazy_string_targets_are_imported_on_use():
    registry = Registry("method", "corrbench.tests.none")
    registry.register("later", "tests_nonexistent_module:Thing")
    assert "later" in registry
    with pytest.raises(ConfigError, match="cannot import"):
        registry.get("later")


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError) as info:
        METHODS.get("tiny_vit")
    assert "did you mean 'tiny-vit'" in str(info.value)


def test_check_rejects_non_matchers(tmp_path):
    path = tmp_path / "thing.py"
    path.write_text("class NotAMatcher:\n    pass\n")
    with pytest.raises(ConfigError, match="not a corrbench.Matcher"):
        METHODS.get(f"{path}:NotAMatcher")
    with pytest.raises(ConfigError, match="defines no 'NotAMatch'"):
        METHODS.get(f"{path}:NotAMatch")
    with pytest.raises(ConfigError, match="file not found"):
        METHODS.get(f"{tmp_path / 'missing.py'}:X")


def test_file_reference_loads_a_matcher(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from corrbench import Matcher, MatchOutput\n"
        "class Mine(Matcher):\n"
        "    def match(self, batch):\n"
        "        return MatchOutput(points=batch.src_kps.clone())\n"
    )
    cls = METHODS.get(f"{path}:Mine")
    assert cls.__name__ == "Mine" and issubclass(cls, Matcher)


def test_file_reference_resumes_across_processes(tmp_path, data_env):
    """A ``file.py:Class`` method gets the same run (and resumes it) in a second process whose str hashes differ."""
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "echo_method.py").write_text(
        "from corrbench import Matcher, MatchOutput\n"
        "class Echo(Matcher):\n"
        "    def match(self, batch):\n"
        "        return MatchOutput(points=batch.src_kps.clone())\n"
    )
    args = [sys.executable, "-m", "corrbench.cli", "run", "--method", "echo_method.py:Echo", "--benchmark",
            "synthetic", "--limit", "2", "-q"]
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    run_dirs = list((tmp_path / "results" / "synthetic" / "Echo").iterdir())
    assert len(run_dirs) == 1, outputs  # the old salted hash made one folder per process
    result = json.loads((run_dirs[0] / "result.json").read_text())
    assert result["timing"]["resumed_pairs"] == 2 and result["timing"]["predicted_pairs"] == 0
    assert result["method"]["class"].startswith("corrbench_user_echo_method_")


def test_editing_a_file_reference_changes_its_identity(tmp_path):
    from corrbench.registry import file_module_name

    path = tmp_path / "mine.py"
    path.write_text("X = 1\n")
    before = file_module_name(path)
    assert file_module_name(path) == before
    path.write_text("X = 2\n")
    assert file_module_name(path) != before


def test_an_unknown_dataset_adapter_gets_did_you_mean_and_the_known_names():
    from corrbench.datasets import DATASETS, make_adapter
    from corrbench.datasets.ap10k.adapter import AP10K
    from corrbench.protocol import BenchmarkSpec

    assert DATASETS.get("ap10k") is AP10K
    spec = BenchmarkSpec(name="mine", version=1, description="", dataset="ap10", data_dir="AP-10K", split="test")
    with pytest.raises(UnknownNameError, match="unknown dataset adapter 'ap10'") as caught:
        make_adapter(spec, Path("/nonexistent"))
    assert caught.value.hint.startswith("did you mean 'ap10k'")
    assert "use one of ap10k, mp100, pf-pascal, pf-willow, pseudo-labels, spair, spair-u, synthetic" in caught.value.hint
