"""The README's own-method example runs, from Python and from the command line as path/to/file.py:Class;
the README's set-up commands are the ones CI runs."""

import re
from pathlib import Path

from click.testing import CliRunner

from corrbench.cli import cli
from corrbench.registry import METHODS

README = Path(__file__).resolve().parents[1] / "README.md"


def _example(name: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- readme-example: {re.escape(name)} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README has no example marked {name}"
    return match.group(1)


def test_own_method_example_from_the_command_line(tmp_path, data_env, monkeypatch):
    (tmp_path / "my_method.py").write_text(_example("my_method.py"))
    monkeypatch.chdir(tmp_path)
    args = ["run", "--method", "my_method.py:ColourPatches", "--benchmark", "synthetic", "--set", "grid=48", "-q"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    found = list((tmp_path / "results" / "synthetic" / "ColourPatches").rglob("result.json"))
    assert len(found) == 1
    assert "ColourPatches on synthetic@v1" in result.output


def test_own_method_example_matches_identical_images(tmp_path):
    import torch

    from corrbench.batching import collate_pairs
    from corrbench.types import Pair

    path = tmp_path / "my_method.py"
    path.write_text(_example("my_method.py"))
    cls = METHODS.get(f"{path}:ColourPatches")
    image = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0))
    kps = torch.tensor([[10.0, 20.0], [80.0, 50.0]]).numpy()
    pair = Pair("p", "c", "a.jpg", "a.jpg", (96, 64), (96, 64), kps, kps, [True, True], [True, True])
    out = cls(grid=32).predict(collate_pairs([{"pair": pair, "src_image": image, "trg_image": image}]))
    # each query is found again within one grid cell (96 / 32 = 3 px, 64 / 32 = 2 px)
    assert (out.points[0] - torch.from_numpy(kps).float()).abs().max() <= 3.0


def test_readme_commands_are_the_ones_ci_runs():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install torch==2.13.0 && pip install -e ".[dev]"' in text
    assert "python -m pytest -q" in text
    assert "torch==2.13.0" in ci and '-e ".[dev]"' in ci and "pytest -q" in ci
