"""``corrbench table``: local runs (latest complete per method and benchmark) beside published numbers.

Columns are (benchmark, alpha). A benchmark whose local runs come from more than one spec version gets
one column group per version (``spair71k@v1``, ``spair71k@v2``), so versions never share a column.
Published numbers carry their own protocol facts; a number whose source does not state its aggregation is
marked ``*`` and explained under the table.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable, Sequence

from tabulate import tabulate

from .errors import ConfigError
from .metrics import ALPHAS, alpha_key

FORMATS = ("md", "csv", "latex", "json")
METRICS = ("pck", "pck_dagger")
_PUBLISHED_AVG = {"all": "all", "category": "category_mean"}


@dataclass
class Row:
    label: str
    origin: str  # "local" or the published source
    values: dict[tuple[str, str], str] = field(default_factory=dict)  # (column group, alpha key) -> text


@dataclass
class Table:
    groups: list[str]
    alphas: list[str]
    rows: list[Row]
    notes: list[str]

    def header(self) -> list[str]:
        return ["method", *(f"{g} @{a}" for g in self.groups for a in self.alphas)]

    def body(self) -> list[list[str]]:
        return [[r.label, *(r.values.get((g, a), "") for g in self.groups for a in self.alphas)] for r in self.rows]


def load_published() -> list[dict[str, str]]:
    """The transcribed published numbers shipped with corrbench (``results/published/``)."""
    text = resources.files("corrbench.published").joinpath("published_results.csv").read_text()
    return list(csv.DictReader(io.StringIO(text)))


def check_thresholds(thresholds: Sequence[float]) -> list[str]:
    keys = [alpha_key(a) for a in thresholds]
    unknown = [k for k in keys if k not in {alpha_key(a) for a in ALPHAS}]
    if unknown:
        raise ConfigError(
            f"threshold(s) {', '.join(unknown)} are not computed",
            hint=f"choose among {' '.join(alpha_key(a) for a in ALPHAS)}",
        )
    return keys


def build_table(
    results: Iterable[dict[str, Any]],
    *,
    thresholds: Sequence[float] = (0.01, 0.05, 0.1),
    pck_by: str = "image",
    avg: str = "all",
    metric: str = "pck",
    benchmarks: Sequence[str] = (),
    methods: Sequence[str] = (),
    published: Sequence[dict[str, str]] = (),
) -> Table:
    if pck_by not in ("image", "point") or avg not in _PUBLISHED_AVG or metric not in METRICS:
        raise ConfigError(f"bad table options pck_by={pck_by!r} avg={avg!r} metric={metric!r}")
    alphas = check_thresholds(thresholds)
    wanted_methods = {m.lower() for m in methods}
    results = [
        r for r in results
        if (not benchmarks or r["benchmark"]["name"] in benchmarks)
        and (not wanted_methods or r["method"]["name"].lower() in wanted_methods)
    ]
    versions: dict[str, set[int]] = {}
    for r in results:
        versions.setdefault(r["benchmark"]["name"], set()).add(int(r["benchmark"]["version"]))

    def group_of(name: str, version: int) -> str:
        return f"{name}@v{version}" if len(versions.get(name, ())) > 1 else name

    notes: list[str] = []
    rows: dict[str, Row] = {}
    groups: list[str] = []
    for r in results:
        bench, method = r["benchmark"], r["method"]
        group = group_of(bench["name"], int(bench["version"]))
        if group not in groups:
            groups.append(group)
        label = method["name"] + (" (ground truth)" if method.get("uses_ground_truth") else "")
        row = rows.setdefault(f"local:{label}", Row(label, "local"))
        values = r["metrics"][metric][pck_by]["all" if avg == "all" else "category_mean"]
        for a in alphas:
            value = values.get(a)
            row.values[(group, a)] = "" if value is None else f"{value:.1f}"
        protocol = bench["protocol"]
        note = (f"{group}: v{bench['version']}, threshold {protocol['threshold']}, comparison "
                f"{protocol['comparison']}, frame {protocol['frame']}, split {bench['split']}")
        if note not in notes:
            notes.append(note)

    starred = False
    for p in published:
        if p["metric"] != metric or p["category"] or p["alpha"] not in alphas:
            continue
        if benchmarks and p["benchmark"] not in benchmarks:
            continue
        if wanted_methods and p["method"].lower() not in wanted_methods:
            continue
        if p["pck_by"] not in (pck_by, "unknown") or p["avg"] not in (avg, "unknown"):
            continue
        group = p["benchmark"] if len(versions.get(p["benchmark"], ())) <= 1 else None
        if group is None:
            continue  # several local versions: a published number belongs to neither
        if group not in groups:
            groups.append(group)
        label = p["method"] + (f" ({p['variant']})" if p["variant"] else "")
        row = rows.setdefault(f"{p['source']}:{label}", Row(f"{label} [{p['source']}]", p["source"]))
        unknown = p["pck_by"] == "unknown" or p["avg"] == "unknown"
        starred |= unknown
        row.values.setdefault((group, p["alpha"]), p["value"] + ("*" if unknown else ""))
    if starred:
        notes.append("*: the source does not state whether this number is per image or per point, or how it "
                     "is averaged")
    if published:
        notes.append("published numbers are transcribed with provenance in results/published/published_results.csv")
    ordered = sorted(rows.values(), key=lambda r: (r.origin != "local", r.origin, r.label))
    return Table(groups, alphas, ordered, notes)


def render(table: Table, fmt: str = "md") -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown table format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if fmt == "json":
        records = [
            {"method": r.label, "origin": r.origin,
             "values": {f"{g} @{a}": v for (g, a), v in r.values.items()}}
            for r in table.rows
        ]
        return json.dumps({"columns": table.header(), "rows": records, "notes": table.notes}, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.header())
        writer.writerows(table.body())
        return buffer.getvalue()
    style = "github" if fmt == "md" else "latex_booktabs"
    text = tabulate(table.body(), headers=table.header(), tablefmt=style, disable_numparse=True)
    if table.notes:
        prefix = "% " if fmt == "latex" else ""
        text += "\n\n" + "\n".join(f"{prefix}{n}" for n in table.notes)
    return text
