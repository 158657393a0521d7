"""Where backbone weights come from, and a record of which file was used.

Order (ARCHITECTURE.md, "Weights and data"): an explicit path or state dict; else the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<official file name>``, shared with ``torch.hub`` so a file downloaded by the
official code is reused); else a download from the official URL into that cache. ``"random"`` never touches
the disk or the network.

Provenance is ``{"source": ..., "sha256": ...}``: the sha256 of a ~1 GB file takes seconds, so it is kept
in a side file ``<file>.sha256`` and recomputed only when the file's size or mtime changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import ConfigError, CorrbenchError, DataError
from ..files import file_sha256, write_text_atomic

try:  # the shared resumable, atomic downloader; looked up at call time so tests can monkeypatch it here
    from corrbench.datasets.download import download_file
except ImportError:  # pragma: no cover - only while that module is being written
    download_file = None

RANDOM = "random"


def hub_checkpoint_path(filename: str) -> Path:
    """Where torch.hub keeps (and looks for) downloaded checkpoints: ``<hub dir>/checkpoints/<filename>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def resolve_weights(
    url: str,
    filename: str,
    weights: str | os.PathLike | Mapping[str, Any] | None,
    *,
    progress: bool = True,
    sha256: str | None = None,
) -> tuple[Path | dict | None, dict[str, Any]]:
    """Turn a ``weights`` argument into something loadable plus its provenance.

    Returns ``(None, info)`` for ``"random"``, ``(state_dict, info)`` for a state dict given in memory, and
    ``(path, info)`` otherwise, where ``path`` exists. ``info`` holds ``source`` (the official URL, the path
    given, ``"state_dict"`` or ``"random"``), ``sha256`` (None unless a file) and, for files, ``path``.
    ``sha256``: the official file's known digest; the cached or downloaded official file must have it (a
    file passed explicitly is the caller's choice and is not checked).
    """
    if isinstance(weights, str) and weights == RANDOM:
        return None, {"source": RANDOM, "sha256": None}
    if isinstance(weights, Mapping):
        return dict(weights), {"source": "state_dict", "sha256": None}
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise ConfigError(f"weights must be None, 'random', a path or a state dict, not {type(weights).__name__}")
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"weights file not found: {path}",
                              hint=f"pass an existing checkpoint, or omit it to use the official file ({url})")
        return path, {"source": str(path.resolve()), "path": str(path.resolve()), "sha256": cached_file_sha256(path)}

    path = hub_checkpoint_path(filename)
    if not path.is_file():
        _download(url, path, progress)
    digest = cached_file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise DataError(f"{path}: sha256 is {digest}, expected {sha256} (the official {url})",
                        hint=f"delete {path} and run again to download it anew")
    return path, {"source": url, "path": str(path), "sha256": digest}


def _download(url: str, path: Path, progress: bool) -> None:
    manual = (f"download it on a machine with internet access and place it at {path} (for example "
              f"`curl -L -o {path} {url}`), set TORCH_HOME to a folder whose hub/checkpoints/ holds it, "
              "or pass the file explicitly (weights=PATH / --weights PATH)")
    if download_file is None:
        raise DataError(f"{path.name} is not in the torch hub cache and no downloader is available",
                        hint=manual)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_file(url, path, progress=progress)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # offline, HTTP error, disk full...: one clear message with the way out
        if isinstance(exc, CorrbenchError) and url in exc.message:  # the downloader already named the URL
            message = f"{exc.message} (the file belongs at {path})"
        else:
            message = f"could not download {url} to {path}: {type(exc).__name__}: {exc}"
        raise DataError(message, hint=manual) from exc
    if not path.is_file():
        raise DataError(f"downloading {url} did not produce {path}", hint=manual)


def cached_file_sha256(path: Path) -> str:
    """``files.file_sha256`` of ``path``, cached in ``<path>.sha256`` keyed by size and mtime."""
    path = Path(path)
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    side = path.with_name(path.name + ".sha256")
    try:
        cached = json.loads(side.read_bytes())
        if {k: cached.get(k) for k in key} == key and isinstance(cached.get("sha256"), str):
            return cached["sha256"]
    except (OSError, ValueError, AttributeError):
        pass  # absent, unreadable or stale: recompute

    sha = file_sha256(path)
    try:
        # atomic: a concurrent reader sees the old record or the new one
        write_text_atomic(side, json.dumps({**key, "sha256": sha}) + "\n")
    except OSError:
        pass  # a read-only cache only costs recomputation next time
    return sha


def git_blob_id(path: Path) -> str:
    """The id git gives a file's content (sha1 of ``blob <size>\\0`` + content): what a repository commit pins
    for a released file whose bytes could not be read here (``git ls-tree`` lists the blob id of a file a
    partial clone lacks, not its sha256)."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# --- reading checkpoint files safely ----------------------------------------------------------------------

_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+) was not an allowed global")


class DroppedObject:
    """Stands in for a non-tensor object of another library found in a checkpoint (a pickled argparse or
    OmegaConf config, say); holds nothing, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "DroppedObject()"


def read_checkpoint_file(path: str | os.PathLike, *, what: str = "checkpoint",
                         layout: str = "save the weights with torch.save(model.state_dict(), path)") -> dict[str, Any]:
    """The mapping a checkpoint file holds, read with ``weights_only=True`` so no pickled code runs.

    ``weights_only`` refuses unknown globals one at a time: each refused one is mapped to the inert
    ``DroppedObject`` and the file read again (a handful of passes for a pickled config; bounded for hostile
    files). ``what`` and ``layout`` name the expected content in errors.
    """
    path = Path(path)
    dropped: list[tuple[type, str]] = []
    while True:
        try:
            with torch.serialization.safe_globals(dropped):
                content = torch.load(path, map_location="cpu", weights_only=True)
            break
        except pickle.UnpicklingError as exc:
            match = _UNSUPPORTED_GLOBAL.search(str(exc))
            name = match.group(1) if match else ""
            name = name if "." in name else f"builtins.{name}"  # torch names builtins without their module
            if match is None or any(known == name for _, known in dropped) or len(dropped) >= 256:
                raise DataError(f"cannot read checkpoint {path}: {exc}",
                                hint="the file is not a PyTorch checkpoint of tensors and plain values") from None
            dropped.append((DroppedObject, name))
        except FileNotFoundError:
            raise ConfigError(f"checkpoint file not found: {path}") from None
        except Exception as exc:  # truncated downloads, other formats...: all mean "this file is unusable"
            raise DataError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}",
                            hint="the file may be truncated or not a PyTorch checkpoint; delete it and fetch it again"
                            ) from exc
    if not isinstance(content, Mapping):
        raise ConfigError(f"{path} holds a {type(content).__name__}, not a {what}", hint=layout)
    return dict(content)
