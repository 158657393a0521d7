"""Published numbers in ``corrbench table``: selection, merging of repeated numbers, short labels.

Papers copy each other's numbers: Geo-SC's SPair-71k PCK@0.1 is printed in five tables. A row here is one
method and variant; the tables that print the same numbers for it become one row that keeps every source.
Tables that disagree (Jamais Vu on SPair-71k: 82.5 in MARCO's tables, 82.9 in its own) stay separate rows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Sequence

LABEL_WIDTH = 44  # longer labels are shortened in the middle; csv and json keep the full variant
_AVG_NAMES = {"all": "all", "category": "category"}


def load_published() -> list[dict[str, str]]:
    """The transcribed published numbers shipped with corrbench (``results/published/``)."""
    text = resources.files("corrbench.published").joinpath("published_results.csv").read_text()
    return list(csv.DictReader(io.StringIO(text)))


@dataclass
class PublishedCell:
    text: str  # the number as printed (its digits are the paper's precision)
    aggregation_stated: bool  # False: the source does not say per image/point or how it averages

    @property
    def value(self) -> float:
        return float(self.text)


@dataclass
class PublishedRow:
    method: str
    variant: str
    sources: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], PublishedCell] = field(default_factory=dict)  # (benchmark, alpha) -> cell

    @property
    def full_label(self) -> str:
        return self.method + (f" ({self.variant})" if self.variant else "")

    @property
    def label(self) -> str:
        return shorten(self.full_label, LABEL_WIDTH)

    def agrees_with(self, other: PublishedRow) -> bool:
        shared = self.cells.keys() & other.cells.keys()
        return all(self.cells[k].value == other.cells[k].value for k in shared)

    def absorb(self, other: PublishedRow) -> None:
        for source in other.sources:
            if source not in self.sources:
                self.sources.append(source)
        for key, cell in other.cells.items():
            mine = self.cells.get(key)
            if mine is None:
                self.cells[key] = cell
            elif cell.aggregation_stated and not mine.aggregation_stated:
                self.cells[key] = cell  # one source states how the number was aggregated: it is known


def shorten(text: str, width: int) -> str:
    """Cut the middle, keeping the start (method, variant kind) and the end (the setting that differs)."""
    if len(text) <= width:
        return text
    head = (width - 1) * 3 // 5
    return text[:head].rstrip() + "…" + text[len(text) - (width - 1 - head):].lstrip()


def select_published(
    records: Sequence[dict[str, str]], *, metric: str, alphas: Sequence[str], pck_by: str, avg: str,
    benchmarks: Sequence[str] = (), methods: Sequence[str] = (),
) -> list[PublishedRow]:
    """Whole-benchmark numbers matching the table's metric and aggregation, merged across sources."""
    wanted_methods = {m.lower() for m in methods}
    per_source: dict[tuple[str, str, str], PublishedRow] = {}
    for p in records:
        if p["metric"] != metric or p["category"] or p["alpha"] not in alphas:
            continue
        if (benchmarks and p["benchmark"] not in benchmarks) or (wanted_methods and p["method"].lower() not in wanted_methods):
            continue
        if p["pck_by"] not in (pck_by, "unknown") or p["avg"] not in (_AVG_NAMES[avg], "unknown"):
            continue
        row = per_source.setdefault((p["source"], p["method"], p["variant"]),
                                    PublishedRow(p["method"], p["variant"], [p["source"]]))
        stated = p["pck_by"] != "unknown" and p["avg"] != "unknown"
        row.cells.setdefault((p["benchmark"], p["alpha"]), PublishedCell(p["value"], stated))
    return merge_repeated(list(per_source.values()))


def merge_repeated(rows: list[PublishedRow]) -> list[PublishedRow]:
    """One row per method and variant (case-insensitive) and set of agreeing numbers, all sources kept."""
    merged: list[PublishedRow] = []
    for row in rows:
        same = (row.method.lower(), row.variant.lower())
        target = next((m for m in merged if (m.method.lower(), m.variant.lower()) == same and m.agrees_with(row)),
                      None)
        if target is None:
            merged.append(PublishedRow(row.method, row.variant, list(row.sources), dict(row.cells)))
        else:
            target.absorb(row)
    return merged


def benchmarks_by_coverage(rows: Sequence[PublishedRow]) -> list[str]:
    """Benchmarks with published numbers, the most reported first (ties in name order)."""
    counts: dict[str, int] = {}
    for row in rows:
        for bench in {b for b, _ in row.cells}:
            counts[bench] = counts.get(bench, 0) + 1
    return sorted(counts, key=lambda b: (-counts[b], b))


def source_numbers(rows: Sequence[PublishedRow]) -> dict[str, int]:
    """Footnote numbers for the sources, in order of first appearance."""
    numbers: dict[str, int] = {}
    for row in rows:
        for source in row.sources:
            numbers.setdefault(source, len(numbers) + 1)
    return numbers


def describe(row: PublishedRow) -> dict[str, Any]:
    return {"method": row.method, "variant": row.variant, "sources": list(row.sources)}
