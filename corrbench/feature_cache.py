"""A per-image feature cache bounded in bytes.

Keys are ``(feature_key, image_id)`` where ``feature_key`` hashes everything that changes a method's features
(method class, every feature-affecting option, weights hash), so two settings can never share an entry.
Benchmarks reuse images across many pairs (an SPair test image appears in ~13 pairs), so caching each
image's features once per run is the main saving of the harness over per-pair re-extraction.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .types import FeatureMap


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    def to_json(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions}


class FeatureCache:
    """Least-recently-used cache of FeatureMaps; ``max_bytes=0`` disables caching."""

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], FeatureMap] = OrderedDict()
        self._bytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, feature_key: str, image_id: str) -> FeatureMap | None:
        item = self._items.get((feature_key, image_id))
        if item is None:
            self.stats.misses += 1
            return None
        self._items.move_to_end((feature_key, image_id))
        self.stats.hits += 1
        return item

    def put(self, feature_key: str, image_id: str, value: FeatureMap) -> None:
        size = value.nbytes()
        if size > self.max_bytes:
            return
        key = (feature_key, image_id)
        if key in self._items:
            self._bytes -= self._items.pop(key).nbytes()
        self._items[key] = value
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= evicted.nbytes()
            self.stats.evictions += 1

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
