"""File-level helpers: writes that a reader never sees half done, and the hashes that name content.

- ``replacing(path)`` yields a temporary sibling path to write (``torch.save``, a copy, a link) and renames
  it over ``path`` when the block succeeds; ``write_text_atomic`` / ``write_bytes_atomic`` /
  ``write_json_atomic`` / ``write_jsonl_atomic`` are the common cases. Either way the temporary file is
  removed when writing fails, so an interrupted run leaves neither half a file nor a stray ``.tmp``.
- ``replacing_directory(target)`` does the same for a whole folder (dataset builders).
- ``file_sha256(path)``: the sha256 of a file's bytes, read in blocks (checkpoints and archives are GBs).
- ``json_identity_hash(identity)``: the sha256 of canonical JSON, which names run directories, training runs
  and feature-cache keys. Its exact bytes are part of the on-disk format: changing it renames every run.
- ``read_json(path)`` / ``decode_json(raw, path)``: a JSON file's value, or ``UnreadableJSON`` saying why not
  (the file cannot be read, is not UTF-8/16/32, or is not JSON); each reader words its own skip or error.

Only the standard library is imported here: the CLI's start-up time depends on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

_READ_BLOCK = 1 << 20


def _sibling(path: Path, role: str) -> Path:
    """A hidden name beside ``path`` that no other process or thread picks: pid and a random token."""
    return path.with_name(f".{path.name}.{role}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; it replaces ``path`` when the block ends normally.

    The temporary file is synced before the rename (else a crash can leave the new name with empty content
    on disk) and removed when the block raises. The file is created by the caller's writer, so it gets the
    usual permissions (``mkstemp`` would make it private to its owner).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "new")
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either the old file or the whole new one, never half."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    """``write_bytes_atomic`` of UTF-8 text (not the locale's encoding: files must read the same anywhere)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path | str, data: Any) -> None:
    """Pretty JSON (indent 2, keys in the order given) and a final newline."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_jsonl_atomic(path: Path | str, records: Iterable[Any]) -> None:
    """One compact JSON value a line."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


@contextlib.contextmanager
def replacing_directory(target: Path | str) -> Iterator[Path]:
    """Yield a new empty folder beside ``target`` to build in; it takes ``target``'s place when the block
    ends normally, and is removed when the block raises (``target`` is then left as it was).

    Readers see the old folder or the new one, never a mix; between the two renames there is a moment with
    neither (POSIX has no portable atomic exchange of two folders).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(target, "building")
    staging.mkdir()  # not mkdtemp: a data folder keeps the usual permissions, not owner-only
    try:
        yield staging
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    retired = _sibling(target, "old")
    if target.exists():
        os.replace(target, retired)
    try:
        os.replace(staging, target)
    except OSError:
        if retired.exists():
            os.replace(retired, target)  # put the old folder back rather than leave none
        raise
    shutil.rmtree(retired, ignore_errors=True)


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of the file's bytes, read in blocks so that a multi-GB checkpoint is never held in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def json_identity_hash(identity: Any) -> str:
    """Hex sha256 of ``identity`` as canonical JSON (sorted keys, ``json``'s default separators and ASCII
    escapes); a value JSON cannot write is hashed by its ``str()``.

    These bytes name existing run directories (``results.run_directory``), training runs and feature-cache
    keys: any change to them makes every earlier run unfindable (``tests/test_files.py`` pins a value).
    """
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


class UnreadableJSON(Exception):
    """A JSON file that cannot be read (``cause``: the OSError) or decoded (a UnicodeDecodeError or
    JSONDecodeError). ``str()`` is the cause's message, so a reader can say "not valid JSON (<why>)"."""

    def __init__(self, path: Path | str, cause: Exception):
        super().__init__(str(cause))
        self.path = Path(path)
        self.cause = cause

    @property
    def missing(self) -> bool:
        return isinstance(self.cause, FileNotFoundError)


def decode_json(raw: bytes, path: Path | str) -> Any:
    """The JSON value in ``raw``, the bytes of ``path`` (read by the caller, e.g. to hash them too). Bytes, not
    text: ``json`` detects UTF-8 (with or without BOM), UTF-16 and UTF-32 itself, so no locale is involved."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableJSON(path, exc) from None


def read_json(path: Path | str) -> Any:
    """The JSON value in the file ``path``; ``UnreadableJSON`` when it cannot be read or parsed."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableJSON(path, exc) from None
    return decode_json(raw, path)
