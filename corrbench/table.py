"""``corrbench table``: local runs, one row per configuration, beside published numbers.

Columns are (column group, alpha). A column group is one benchmark version under one protocol: a benchmark
whose runs come from several spec versions gets ``spair71k@v1`` and ``spair71k@v2``, and a protocol other
than corrbench's own is named in the header (``spair71k (marco)``); runs scored with other protocol fields
under one name and version (a preset changed between them) get ``[scoring <hash>]`` groups. Numbers that are
not comparable never share a column. Rows and cell markers are explained in ``table_runs`` (local) and
``table_published`` (published); every marker is explained under the table, and csv/json give numbers as
numbers with the markers in their own fields.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from tabulate import tabulate

from .errors import ConfigError
from .metrics import ALPHAS, alpha_key
from .protocol import DEFAULT_PROTOCOL_NAME
from .table_published import (
    benchmarks_by_coverage, describe, load_published, select_published, short_labels, source_numbers,
)
from .table_runs import (
    MARK_OTHER_PAIRS, MARK_PARTIAL, base_benchmark, column_of, configuration, coverage,
    data_warning, pair_marker, protocol_name, reference_pairs, row_labels, scoring_note, select_cells, usable_runs,
)

__all__ = ["FORMATS", "METRICS", "Table", "build_table", "check_thresholds", "load_published", "render", "usable_runs"]

FORMATS = ("md", "csv", "latex", "json")
METRICS = ("pck", "pck_dagger")
MARK_UNSTATED = "*"  # a published number whose source does not state its aggregation
# Without --benchmark, published-only columns are added while the table stays about this wide.
DEFAULT_WIDTH = 160


@dataclass
class Cell:
    value: float | None
    text: str  # as shown: local values to one decimal, published ones as printed
    marker: str = ""


@dataclass
class Column:
    group: str
    alpha: str
    benchmark: str
    version: int | None  # None: a column group holding only published numbers
    protocol: str

    @property
    def header(self) -> str:
        return f"{self.group} @{self.alpha}"


@dataclass
class Row:
    label: str
    origin: str  # "local" or "published"
    source: str  # "local", or the footnote numbers of the published sources ("1,4")
    detail: dict[str, Any]  # the configuration (local) or method, variant and sources (published)
    cells: dict[str, Cell] = field(default_factory=dict)  # Column.header -> cell


@dataclass
class Table:
    columns: list[Column]
    rows: list[Row]
    notes: list[str]

    def header(self) -> list[str]:
        return ["method", "source", *(c.header for c in self.columns)]

    def body(self) -> list[list[str]]:
        return [[r.label, r.source, *(_shown(r.cells.get(c.header)) for c in self.columns)] for r in self.rows]


def _shown(cell: Cell | None) -> str:
    return "" if cell is None else cell.text + cell.marker


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
    protocol: str | None = None,
    partial: bool = False,
    published: Sequence[dict[str, str]] = (),
    all_benchmarks: bool = False,
    known_protocols: Iterable[str] = (),
) -> Table:
    """The table of ``results`` (every run found; the newest complete one fills each cell).

    ``protocol`` keeps only runs scored under that protocol (``corrbench.protocols.recorded_protocol`` reads
    results written before protocols were named); ``known_protocols`` are names accepted even when no run used
    them yet. ``benchmarks`` match a run's recorded name (``spair71k-geoaware``) or its base (``spair71k``).
    """
    if pck_by not in ("image", "point") or avg not in ("all", "category") or metric not in METRICS:
        raise ConfigError(f"bad table options pck_by={pck_by!r} avg={avg!r} metric={metric!r}")
    alphas = check_thresholds(thresholds)
    results = list(results)
    if protocol is not None:
        _check_protocol(protocol, results, known_protocols)
        results = [r for r in results if protocol_name(r) == protocol]
    recorded_names = {r["benchmark"]["name"] for r in results} | {base_benchmark(r) for r in results}
    published_names = {p["benchmark"] for p in published}
    _check_names("benchmark", benchmarks, recorded_names, published_names)
    # the check accepts any letter case, as for methods; the filters below compare names as recorded
    spelled = {name.lower(): name for name in recorded_names | published_names}
    benchmarks = [spelled[name.lower()] for name in benchmarks]
    _check_names("method", methods, {r["method"]["name"] for r in results},
                 {p["method"] for p in published} | {p.get("corrbench_method", "") for p in published} - {""})
    wanted_methods = {m.lower() for m in methods}
    results = [
        r for r in results
        if (not benchmarks or r["benchmark"]["name"] in benchmarks or base_benchmark(r) in benchmarks)
        and (not wanted_methods or r["method"]["name"].lower() in wanted_methods)
    ]
    local = _LocalPart(results, alphas, metric, pck_by, avg, partial)
    notes = local.notes()
    columns, rows = local.columns, local.rows
    if published:
        pub_columns, pub_rows, pub_notes = _published_part(
            published, local, alphas=alphas, metric=metric, pck_by=pck_by, avg=avg, benchmarks=benchmarks,
            methods=methods, all_benchmarks=all_benchmarks,
            widest_local_label=max((r.label for r in rows), key=len, default=""),
        )
        columns = columns + [c for c in pub_columns if c.header not in {x.header for x in columns}]
        rows = rows + pub_rows
        notes += pub_notes
    return Table(columns, rows, notes)


class _LocalPart:
    """Columns, rows and notes of the local runs."""

    def __init__(self, results: list[dict[str, Any]], alphas: list[str], metric: str, pck_by: str, avg: str,
                 partial: bool):
        self.cells = select_cells(results, partial=partial)
        self.references = reference_pairs(results)  # from every run, also those no cell shows
        versions: dict[str, set[int]] = {}
        scorings: dict[tuple[str, int, str], set[str]] = {}
        for _, (name, version, protocol, scoring) in self.cells:
            versions.setdefault(name, set()).add(version)
            scorings.setdefault((name, version, protocol), set()).add(scoring)
        self.versions, self.scorings = versions, scorings
        self.group_of = {column: self.group_label(*column) for _, column in self.cells}
        ordered_columns = sorted(set(self.group_of), key=lambda c: (c[0], c[1], c[2] != DEFAULT_PROTOCOL_NAME, c[2:]))
        self.columns = [Column(self.group_of[c], a, c[0], c[1], c[2]) for c in ordered_columns for a in alphas]
        samples = {key: result for (key, _), result in self.cells.items()}
        labels = row_labels(samples)
        aggregation = "all" if avg == "all" else "category_mean"
        rows: dict[str, Row] = {}
        self.marked: list[tuple[str, str, str, dict[str, Any]]] = []  # (marker, label, group, result)
        for (key, column), result in self.cells.items():
            row = rows.setdefault(key, Row(labels[key], "local", "local", configuration(result)))
            group = self.group_of[column]
            marker = pair_marker(result, self.references.get(column, (None, 0))[0])
            if marker:
                self.marked.append((marker, row.label, group, result))
            values = result["metrics"][metric][pck_by][aggregation]
            for a in alphas:
                value = values.get(a)
                row.cells[f"{group} @{a}"] = Cell(value, "n/a" if value is None else f"{value:.1f}", marker)
        self.rows = sorted(rows.values(), key=lambda r: r.label.lower())

    def group_label(self, name: str, version: int, protocol: str, scoring: str | None = None) -> str:
        label = f"{name}@v{version}" if len(self.versions.get(name, ())) > 1 else name
        if protocol != DEFAULT_PROTOCOL_NAME:
            label = f"{label} ({protocol})"
        # one name and version scored two ways (a protocol's fields changed between runs): the note under
        # each column, keyed by this label, lists its fields
        if scoring is not None and len(self.scorings.get((name, version, protocol), ())) > 1:
            label = f"{label} [scoring {scoring}]"
        return label

    def notes(self) -> list[str]:
        notes: list[str] = []
        warned: dict[str, list[str]] = {}  # one note per data warning, naming every column it concerns
        for result in self.cells.values():
            group = self.group_of[column_of(result)]
            note = f"{group}: {scoring_note(result)}"
            if note not in notes:
                notes.append(note)
            warning = data_warning(result)
            if warning and group not in warned.setdefault(warning, []):
                warned[warning].append(group)
        notes += [f"data warning ({', '.join(groups)}): {warning}" for warning, groups in warned.items()]
        for column, (_, variants) in sorted(self.references.items()):
            if variants > 1 and column in self.group_of:
                notes.append(f"{self.group_of[column]}: complete runs scored {variants} different pair lists (data "
                             f"built differently?); the reference is the one most runs scored")
        if any(m == MARK_OTHER_PAIRS for m, *_ in self.marked):
            notes.append(f"{MARK_OTHER_PAIRS}: scored other pairs than the column's reference, the pair set of the "
                         f"runs that scored the benchmark's whole pair list:")
            notes += [f"  {label} on {group}: {self._pairs_detail(result)}"
                      for m, label, group, result in self.marked if m == MARK_OTHER_PAIRS]
        if any(m == MARK_PARTIAL for m, *_ in self.marked):
            notes.append(f"{MARK_PARTIAL}: a --limit run (shown because of --partial):")
            notes += [f"  {label} on {group}: {coverage(result).describe()}"
                      for m, label, group, result in self.marked if m == MARK_PARTIAL]
        return notes

    def _pairs_detail(self, result: dict[str, Any]) -> str:
        cov = coverage(result)
        if not cov.whole_list:
            return cov.describe()
        reference = self.references[column_of(result)][0]
        return (f"all {cov.listed} listed pairs, but another pair list (sha256 {cov.pairs_fingerprint[:12]}, "
                f"reference {reference[:12]})")


def _published_part(records, local: _LocalPart, *, alphas, metric, pck_by, avg, benchmarks, methods,
                    all_benchmarks, widest_local_label) -> tuple[list[Column], list[Row], list[str]]:
    selected = select_published(records, metric=metric, alphas=alphas, pck_by=pck_by, avg=avg,
                                benchmarks=benchmarks, methods=methods)
    labels = dict(zip(map(id, selected), short_labels(selected)))
    # A benchmark with several local versions: a published number belongs to neither.
    candidates = [b for b in benchmarks_by_coverage(selected) if len(local.versions.get(b, ())) <= 1]
    if benchmarks:
        shown = [b for b in benchmarks if b in candidates]  # in the order asked for
    elif all_benchmarks:
        shown = candidates
    elif local.versions:
        shown = [b for b in candidates if b in local.versions]
    else:
        shown = _fitting_benchmarks(candidates, alphas, max([widest_local_label, *labels.values()], key=len))
    notes: list[str] = []
    hidden = [b for b in candidates if b not in shown]
    if hidden:
        notes.append(f"published numbers for {len(hidden)} more benchmark(s) not shown ({', '.join(hidden)}): "
                     f"add --benchmark NAME, or --all-benchmarks for every one")
    group_of = {b: local.group_label(b, next(iter(local.versions.get(b, {0}))), DEFAULT_PROTOCOL_NAME) for b in shown}
    columns = [Column(group_of[b], a, b, None, DEFAULT_PROTOCOL_NAME) for b in shown for a in alphas]
    kept = [r for r in selected if any(b in shown for b, _ in r.cells)]
    kept.sort(key=lambda r: (labels[id(r)].lower(), r.sources_of(set(shown))))
    numbers = source_numbers([r.sources_of(set(shown)) for r in kept])
    rows: list[Row] = []
    unstated = False
    for published_row in kept:
        sources = published_row.sources_of(set(shown))
        row = Row(labels[id(published_row)], "published", ",".join(str(numbers[s]) for s in sources),
                  describe(published_row, sources))
        for (bench, alpha), cell in published_row.cells.items():
            if bench in shown:
                marker = "" if cell.aggregation_stated else MARK_UNSTATED
                unstated |= bool(marker)
                row.cells[f"{group_of[bench]} @{alpha}"] = Cell(cell.value, cell.text, marker)
        rows.append(row)
    if unstated:
        notes.append(f"{MARK_UNSTATED}: the source does not state whether this number is per image or per point, "
                     f"or how it is averaged")
    if numbers:
        notes.append("source: the paper tables that print the row's numbers (one row for a number several tables "
                     "print; full variant names and provenance: --format json, "
                     "results/published/published_results.csv):")
        notes += [f"  {n}: {source}" for source, n in numbers.items()]
    return columns, rows, notes


def _fitting_benchmarks(candidates: list[str], alphas: list[str], widest_label: str) -> list[str]:
    """The most reported benchmarks, as many as keep the table within DEFAULT_WIDTH characters (at least one)."""
    width = len(widest_label) + len(" | source | ") + 12  # 12: room for a few source numbers
    shown: list[str] = []
    for bench in candidates:
        extra = sum(len(f"{bench} @{a}") + 3 for a in alphas)
        if shown and width + extra > DEFAULT_WIDTH:
            break
        shown.append(bench)
        width += extra
    return shown


def _check_names(kind: str, wanted: Sequence[str], local: set[str], published: set[str]) -> None:
    """A name that matches nothing would print an empty table: say so, with the close names."""
    from .registry import BENCHMARKS, METHODS, did_you_mean

    available = {n.lower() for n in local | published}
    registered = set((BENCHMARKS if kind == "benchmark" else METHODS).names())
    for name in wanted:
        if name.lower() in available:
            continue
        if name in registered:
            raise ConfigError(f"no results for {kind} {name!r}",
                              hint=f"run `corrbench run --{kind} {name} ...` first, or add --published if a paper "
                                   f"reports it")
        hint = did_you_mean(name, local | published | registered)
        listing = f"{kind}s with results: {', '.join(sorted(local)) or 'none'}"
        raise ConfigError(f"unknown {kind} {name!r}", hint=f"{hint} ({listing})" if hint else listing)


def _check_protocol(name: str, results: list[dict[str, Any]], known: Iterable[str]) -> None:
    from .registry import did_you_mean

    seen = {protocol_name(r) for r in results}
    valid = seen | set(known) | {DEFAULT_PROTOCOL_NAME}
    if name not in valid:
        hint = did_you_mean(name, valid)
        listing = f"protocols of these results: {', '.join(sorted(seen)) or 'none'}"
        raise ConfigError(f"unknown protocol {name!r}", hint=f"{hint} ({listing})" if hint else listing)


def render(table: Table, fmt: str = "md") -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown table format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(_as_json(table), indent=2)
    if fmt == "csv":
        return _as_csv(table)
    style = "github" if fmt == "md" else "latex_booktabs"
    text = tabulate(table.body(), headers=table.header(), tablefmt=style, disable_numparse=True)
    if table.notes:
        prefix = "% " if fmt == "latex" else ""
        text += "\n\n" + "\n".join(prefix + line for note in table.notes for line in _wrapped(note))
    return text


def _wrapped(note: str, width: int = 116) -> list[str]:
    """A note in lines of at most ``width`` characters, continuation lines indented under it."""
    indent = " " * (len(note) - len(note.lstrip(" ")) + 2)
    return textwrap.wrap(note, width, subsequent_indent=indent, break_on_hyphens=False) or [""]


def _as_json(table: Table) -> dict[str, Any]:
    columns = [{"name": c.header, "group": c.group, "benchmark": c.benchmark, "version": c.version,
                "protocol": c.protocol, "alpha": c.alpha} for c in table.columns]
    rows = [{"method": r.label, "origin": r.origin, "source": r.source, "detail": r.detail,
             "values": {k: c.value for k, c in r.cells.items()},
             "markers": {k: c.marker for k, c in r.cells.items() if c.marker}} for r in table.rows]
    return {"columns": columns, "rows": rows, "notes": table.notes}


def _as_csv(table: Table) -> str:
    """Numbers as numbers; each value column is followed by its marker column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "origin", "source",
                     *(h for c in table.columns for h in (c.header, f"{c.header} marker"))])
    for r in table.rows:
        values = []
        for c in table.columns:
            cell = r.cells.get(c.header)
            number = "" if cell is None or cell.value is None else repr(cell.value)
            values += [number, "" if cell is None else cell.marker]
        writer.writerow([r.label, r.origin, r.source, *values])
    return buffer.getvalue()
