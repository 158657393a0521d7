"""Loading the repository's maintainer scripts (tools/, not an installed package) in tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(relative: str) -> ModuleType:
    """``tools/<relative>`` as a module (e.g. ``load_tool("golden/golden_cases.py")``)."""
    path = TOOLS / relative
    spec = importlib.util.spec_from_file_location(f"corrbench_tools_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
