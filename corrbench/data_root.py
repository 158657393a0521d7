"""Where datasets live: ``--data-root``, then ``$CORRBENCH_DATA``, then ``~/.cache/corrbench/data``.

Never relative to the source tree and never hard-coded, so an installed corrbench and a checkout agree.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CORRBENCH_DATA"
DEFAULT = Path("~/.cache/corrbench/data")


def resolve_data_root(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return DEFAULT.expanduser()
