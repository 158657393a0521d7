"""Published numbers in ``corrbench table``: selection, merging of repeated numbers, short labels.

Papers copy each other's numbers: Geo-SC's SPair-71k PCK@0.1 is printed in five tables. A row here is one
method and variant; the tables that print the same numbers for it become one row that keeps every source.
Tables that disagree (Jamais Vu on SPair-71k: 82.5 in MARCO's tables, 82.9 in its own) stay separate rows.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Sequence

LABEL_WIDTH = 56  # longer labels are shortened (see short_labels); json keeps the full variant


def load_published() -> list[dict[str, str]]:
    """The transcribed published numbers shipped with corrbench (``results/published/``), each with the
    ``corrbench_method`` its printed method and variant stand for ("" when corrbench has no such method)."""
    records = _read_package_csv("published_results.csv")
    registered = published_method_names()
    for record in records:
        record["corrbench_method"] = registered.get((record["method"], record["variant"]), "")
    return records


def published_method_names() -> dict[tuple[str, str], str]:
    """(method, variant) as printed -> the registered corrbench method (``results/published/method_names.csv``).

    Papers print one method under several names (Geo-SC, GeoAware-SC, TLR) and one name for several of
    corrbench's methods (DIY-SC: SD+DINOv2 is ``diy-sc-sd``, its DINOv2-only variant ``diy-sc``); that file says
    which printed rows are which method, so ``--method geoaware-sc`` shows the papers' rows beside the runs.
    """
    return {(r["method"], r["variant"]): r["corrbench_method"] for r in _read_package_csv("method_names.csv")}


def _read_package_csv(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(resources.files("corrbench.published").joinpath(name).read_text())))


@dataclass
class PublishedCell:
    text: str  # the number as printed (its digits are the paper's precision)
    aggregation_stated: bool  # False: the source does not say per image/point or how it averages
    sources: list[str] = field(default_factory=list)  # every table that prints this number

    @property
    def value(self) -> float:
        return float(self.text)


@dataclass
class PublishedRow:
    method: str
    variant: str
    sources: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], PublishedCell] = field(default_factory=dict)  # (benchmark, alpha) -> cell
    corrbench_method: str = ""  # the registered method this printed row stands for, if any

    @property
    def name(self) -> str:
        """The printed method, after the registered one it stands for: ``geoaware-sc: Geo-SC``."""
        return f"{self.corrbench_method}: {self.method}" if self.corrbench_method else self.method

    @property
    def full_label(self) -> str:
        return self.name + (f" ({self.variant})" if self.variant else "")

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
                self.cells[key] = PublishedCell(cell.text, cell.aggregation_stated, list(cell.sources))
                continue
            mine.sources += [s for s in cell.sources if s not in mine.sources]
            # one source states how the number was aggregated: then it is known
            mine.aggregation_stated |= cell.aggregation_stated

    def sources_of(self, benchmarks: set[str]) -> list[str]:
        """The tables behind this row's numbers on ``benchmarks``, in the row's order."""
        used = {s for (bench, _), cell in self.cells.items() if bench in benchmarks for s in cell.sources}
        return [s for s in self.sources if s in used]


def short_labels(rows: Sequence[PublishedRow], width: int = LABEL_WIDTH) -> list[str]:
    """A label per row of at most ``width`` characters that still tells one table's rows apart.

    A label that is too long first loses the words its variant shares with every other variant of that
    method in the same table (those say what the table is about, e.g. "zero-shot; input ..."), then its
    middle. csv and json keep the full variant.
    """
    siblings: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        siblings.setdefault((row.method, row.sources[0]), []).append(row.variant)
    labels = []
    for row in rows:
        label = row.full_label
        if len(label) > width:
            variant = _distinct_part(row.variant, siblings[(row.method, row.sources[0])])
            label = _cut_middle(f"{row.name} ({variant})", width)
        labels.append(label)
    # Cutting may leave two rows of one table alike: number them, as the source column cannot tell them apart.
    seen = Counter((label, row.sources[0]) for label, row in zip(labels, rows))
    index: Counter = Counter()
    for i, row in enumerate(rows):
        key = (labels[i], row.sources[0])
        if seen[key] > 1:
            index[key] += 1
            labels[i] = f"{labels[i]} #{index[key]}"
    return labels


def _distinct_part(variant: str, variants: list[str]) -> str:
    """``variant`` without the words it shares at its start (but the first) and end with all ``variants``."""
    others = [v for v in variants if v != variant]
    if not others:
        return variant
    words = variant.split(" ")
    split = [v.split(" ") for v in others]
    start = 0
    while start < len(words) - 1 and all(len(o) > start and o[start] == words[start] for o in split):
        start += 1
    end = 0
    while end < len(words) - start - 1 and all(len(o) > end and o[-1 - end] == words[-1 - end] for o in split):
        end += 1
    # the first word usually names the kind of variant ("zero-shot;", "ablation", "fine-tuned"): keep it
    head = words[0] + (" …" if start > 1 else " ") if start else ""
    return head + " ".join(words[max(start, 1 if start else 0): len(words) - end]) + ("…" if end else "")


def _cut_middle(text: str, width: int) -> str:
    """Cut whole words from the middle: the end (often the setting) and the start (method, kind of variant)
    stay readable."""
    if len(text) <= width:
        return text
    words = text.split(" ")
    tail: list[str] = []
    while len(words) > 1 and len(" ".join([words[-1], *tail])) <= (width - 1) * 3 // 5:
        tail.insert(0, words.pop())
    head: list[str] = []
    while words and len(" ".join([*head, words[0]])) + len(" ".join(tail)) + 2 <= width:
        head.append(words.pop(0))
    if not head or not tail:  # words too long to cut between
        keep = (width - 1) // 2
        return text[:keep] + "…" + text[len(text) - (width - 1 - keep):]
    return " ".join(head) + " … " + " ".join(tail)


def select_published(
    records: Sequence[dict[str, str]], *, metric: str, alphas: Sequence[str], pck_by: str, avg: str,
    benchmarks: Sequence[str] = (), methods: Sequence[str] = (),
) -> list[PublishedRow]:
    """Whole-benchmark numbers matching the table's metric and aggregation, merged across sources.

    A name in ``methods`` selects the rows printed under that name (any letter case) and the rows that stand for
    the registered method of that name (``corrbench_method``). A registered name wins over a printed one:
    ``diy-sc`` is the DINOv2-only method, so the papers' other "DIY-SC" rows show under ``diy-sc-sd``.
    """
    wanted_methods = {m.lower() for m in methods}
    registered = {p.get("corrbench_method", "").lower() for p in records} - {""}
    per_source: dict[tuple[str, str, str], PublishedRow] = {}
    for p in records:
        if p["metric"] != metric or p["category"] or p["alpha"] not in alphas:
            continue
        if benchmarks and p["benchmark"] not in benchmarks:
            continue
        stands_for = p.get("corrbench_method", "")
        printed = p["method"].lower()
        if wanted_methods and stands_for.lower() not in wanted_methods \
                and (printed not in wanted_methods or printed in registered):
            continue
        if p["pck_by"] not in (pck_by, "unknown") or p["avg"] not in (avg, "unknown"):
            continue
        row = per_source.setdefault((p["source"], p["method"], p["variant"]),
                                    PublishedRow(p["method"], p["variant"], [p["source"]],
                                                 corrbench_method=stands_for))
        stated = p["pck_by"] != "unknown" and p["avg"] != "unknown"
        row.cells.setdefault((p["benchmark"], p["alpha"]), PublishedCell(p["value"], stated, [p["source"]]))
    return merge_repeated(list(per_source.values()))


def merge_repeated(rows: list[PublishedRow]) -> list[PublishedRow]:
    """One row per method and variant (case-insensitive) and set of agreeing numbers, all sources kept."""
    merged: list[PublishedRow] = []
    for row in rows:
        same = (row.method.lower(), row.variant.lower())
        target = next((m for m in merged if (m.method.lower(), m.variant.lower()) == same and m.agrees_with(row)),
                      None)
        if target is None:
            merged.append(PublishedRow(row.method, row.variant, list(row.sources),
                                       corrbench_method=row.corrbench_method))
            merged[-1].absorb(row)
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


def source_numbers(sources_per_row: Sequence[Sequence[str]]) -> dict[str, int]:
    """Footnote numbers for the sources, in order of first appearance."""
    numbers: dict[str, int] = {}
    for sources in sources_per_row:
        for source in sources:
            numbers.setdefault(source, len(numbers) + 1)
    return numbers


def describe(row: PublishedRow, sources: Sequence[str]) -> dict[str, Any]:
    """What json shows of a row: the method and variant as printed, and its sources by name."""
    return {"method": row.method, "variant": row.variant, "corrbench_method": row.corrbench_method,
            "sources": list(sources)}
