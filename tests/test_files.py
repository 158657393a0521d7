"""File-level helpers: identity hashes that name run directories and cache keys, atomic writes."""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest

from corrbench.files import (
    UnreadableJSON,
    decode_json,
    file_sha256,
    json_identity_hash,
    read_json,
    replacing,
    replacing_directory,
    write_bytes_atomic,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from corrbench.matcher import FeatureMatcher
from corrbench.localizers import build_localizer
from corrbench.results import run_directory

# An identity with the features that canonical JSON must settle: key order, nesting, None, floats, non-ASCII.
IDENTITY = {
    "method": "dinov2",
    "config": {"resolution": 840, "layer": -1, "temperature": 0.02, "name": "ünïcode"},
    "weights": {"source": "random", "sha256": None},
    "pairs": ["b", "a"],
    "limit": None,
    "dtype": "float32",
    "alphas": [0.05, 0.1],
}
# Computed by the code before the helpers had one home (results.fingerprint, training._hash): run
# directories, training runs and feature-cache keys written before must keep their names.
IDENTITY_SHA256 = "68f75206189bf3760844c434acb98ae6b35c203f808b519bf74f69f90c5eff0d"


class PinnedMatcher(FeatureMatcher):
    matching_options = ("localizer",)

    @dataclasses.dataclass
    class Config:
        resolution: int = 8
        localizer: str = "argmax"

    def build_localizer(self):
        return build_localizer(self.config.localizer)

    def extract(self, images):
        raise AssertionError("not called: only the feature key is asked for")


PinnedMatcher.__module__ = "corrbench_pinned"  # the key hashes the class path: keep it independent of test layout


def test_identity_hashes_are_those_written_before():
    assert json_identity_hash(IDENTITY) == IDENTITY_SHA256
    assert json_identity_hash(dict(reversed(IDENTITY.items()))) == IDENTITY_SHA256  # key order does not count
    assert run_directory(Path("out"), "spair", "dinov2", IDENTITY) == Path("out/spair/dinov2") / IDENTITY_SHA256[:12]
    assert PinnedMatcher().feature_key() == "8b39aaf7c706348a"
    assert PinnedMatcher(localizer="window-soft-argmax").feature_key() == "8b39aaf7c706348a"


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "last.pth"
    target.write_bytes(b"old")

    def torch_save_that_fails(path: Path) -> None:  # as torch.save of an unpicklable object: half a file
        path.write_bytes(b"half")
        raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        with replacing(target) as tmp:
            torch_save_that_fails(tmp)
    assert target.read_bytes() == b"old"
    assert _siblings(tmp_path) == ["last.pth"]

    with pytest.raises(TypeError):  # not JSON: fails while writing, before any rename
        write_json_atomic(tmp_path / "result.json", {"value": object()})
    assert _siblings(tmp_path) == ["last.pth"]


def test_atomic_writes_replace_the_whole_file(tmp_path):
    write_bytes_atomic(tmp_path / "a" / "b.bin", b"\x00\x01")  # parent folders are created
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    write_text_atomic(tmp_path / "t.txt", "first, longer text")
    write_text_atomic(tmp_path / "t.txt", "ü")
    assert (tmp_path / "t.txt").read_bytes() == "ü".encode("utf-8")
    write_json_atomic(tmp_path / "r.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "r.json").read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'
    write_jsonl_atomic(tmp_path / "p.jsonl", [{"x": 1}, {"y": None}])
    assert (tmp_path / "p.jsonl").read_text() == '{"x": 1}\n{"y": null}\n'
    assert _siblings(tmp_path) == ["a", "p.jsonl", "r.json", "t.txt"]


def test_written_files_get_the_usual_permissions_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "result.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o644


def test_replacing_a_directory_swaps_it_whole_or_not_at_all(tmp_path):
    target = tmp_path / "AP-10K"
    target.mkdir()
    (target / "old.json").write_text("old")

    with pytest.raises(KeyboardInterrupt):
        with replacing_directory(target) as staging:
            (staging / "new.json").write_text("new")
            raise KeyboardInterrupt  # an interrupted build
    assert _siblings(target) == ["old.json"] and _siblings(tmp_path) == ["AP-10K"]

    with replacing_directory(target) as staging:
        assert _siblings(staging) == []
        (staging / "new.json").write_text("new")
    assert _siblings(target) == ["new.json"] and _siblings(tmp_path) == ["AP-10K"]

    with replacing_directory(tmp_path / "fresh" / "folder") as staging:  # no old folder, no parent yet
        (staging / "x").write_text("x")
    assert _siblings(tmp_path / "fresh" / "folder") == ["x"]


def test_file_sha256_reads_the_whole_file_in_blocks(tmp_path):
    data = os.urandom((1 << 20) + 17)  # more than one read block
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(tmp_path / "f")) == hashlib.sha256(data).hexdigest()


def test_identity_hash_is_canonical_json():
    canonical = json.dumps(IDENTITY, sort_keys=True)
    assert json_identity_hash(IDENTITY) == hashlib.sha256(canonical.encode()).hexdigest()
    # values JSON cannot write are hashed by their text, as the training run identity always did
    assert json_identity_hash({"root": Path("/data")}) == json_identity_hash({"root": "/data"})


def test_read_json_says_why_a_file_cannot_be_read(tmp_path):
    good = tmp_path / "good.json"
    good.write_bytes('\ufeff{"name": "café"}'.encode("utf-8"))  # a BOM, as some editors write: still JSON
    assert read_json(good) == {"name": "café"}
    assert decode_json('[1, 2]'.encode("utf-16"), "inline") == [1, 2]  # json detects UTF-16 itself
    with pytest.raises(UnreadableJSON) as missing:
        read_json(tmp_path / "absent.json")
    assert missing.value.missing and missing.value.path == tmp_path / "absent.json"
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": ')
    with pytest.raises(UnreadableJSON, match="Expecting value: line 1 column 7") as bad:
        read_json(broken)
    assert not bad.value.missing and isinstance(bad.value.cause, json.JSONDecodeError)
    with pytest.raises(UnreadableJSON) as undecodable:
        decode_json(b'{"a": "\xff"}', "inline")  # not UTF-8
    assert isinstance(undecodable.value.cause, UnicodeDecodeError)
