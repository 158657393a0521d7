"""File-level helpers: identity hashes that name run directories and cache keys, atomic writes."""

import dataclasses
from pathlib import Path

from corrbench.matcher import FeatureMatcher
from corrbench.matching import build_localizer
from corrbench.results import fingerprint, run_directory
from corrbench.training import _hash

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
    assert fingerprint(IDENTITY) == IDENTITY_SHA256
    assert _hash(IDENTITY) == IDENTITY_SHA256
    assert run_directory(Path("out"), "spair", "dinov2", IDENTITY) == Path("out/spair/dinov2") / IDENTITY_SHA256[:12]
    assert PinnedMatcher().feature_key() == "8b39aaf7c706348a"
    assert PinnedMatcher(localizer="window-soft-argmax").feature_key() == "8b39aaf7c706348a"
