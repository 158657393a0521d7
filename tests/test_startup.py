"""Commands that only read files start without importing torch (the README's design note): a few seconds
saved on every `corrbench table` and `corrbench ls`."""

import subprocess
import sys

import pytest

# sys.modules["torch"] = None makes any `import torch` raise ImportError, so the command fails if it needs it.
NO_TORCH = (
    "import sys; sys.modules['torch'] = None; from corrbench.cli import main; sys.argv = ['corrbench', *sys.argv[1:]]; "
    "main()"
)


@pytest.mark.parametrize("args", [["table", "--published", "-t", "0.1"], ["ls", "benchmarks"], ["ls", "protocols"]])
def test_command_runs_without_torch(tmp_path, args):
    done = subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
