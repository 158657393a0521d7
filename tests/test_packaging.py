"""A regular (non-editable) install carries methods/, benchmarks/, perf/, experiments/ and the published numbers
inside the corrbench namespace, and squats no generic top-level name."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_regular_install_imports_and_runs(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith((".dist-info", ".egg-info"))
                  and p.name != "bin") == ["corrbench"]
    script = (
        "import corrbench.methods.oracle, corrbench.benchmarks.synthetic, corrbench.table as t;"
        "import corrbench, sys;"
        "assert corrbench.__file__.startswith(sys.argv[1]), corrbench.__file__;"
        "print(len(t.load_published()))"
    )
    out = subprocess.run([sys.executable, "-c", script, str(target)], check=True, capture_output=True,
                         text=True, cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert int(out.stdout) > 1000
    listing = subprocess.run([sys.executable, "-c", "from corrbench.cli import main; main()", "ls", "methods"],
                             check=True, capture_output=True, text=True, cwd=tmp_path,
                             env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert "tiny-vit" in listing.stdout and "unavailable" not in listing.stdout
    # the README's performance and experiment commands (`python -m corrbench.perf.mining ...`) work there too
    for module in ("corrbench.perf.mining", "corrbench.experiments.marco_synthetic"):
        usage = subprocess.run([sys.executable, "-m", module, "--help"], check=True, capture_output=True, text=True,
                               cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
        assert usage.stdout.startswith("usage:"), (module, usage.stdout)
