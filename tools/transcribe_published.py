#!/usr/bin/env python3
"""Transcribe published semantic-correspondence numbers into results/published/.

The reference folder holds a machine-readable extraction of the result tables printed in
the MARCO, UnifiedBench, DIY-SC and Jamais Vu papers. The project does not ship those
reference files; this script selects the tables corrbench compares against and writes
the facts (one row per printed number) into our own CSVs:

    results/published/published_results.csv
    results/published/published_compute.csv

The output is deterministic: rows are stably sorted by
(source, method, variant, benchmark, category, metric, alpha) and written with "\\n"
line endings, so re-running on the same input gives byte-identical files.

Usage (from the repository root):

    python tools/transcribe_published.py [--reference DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = REPO_ROOT / ".." / "shared" / "reference"
DEFAULT_OUT = REPO_ROOT / "results" / "published"

RESULT_COLUMNS = [
    "source", "method", "variant", "backbone", "supervision", "train_data",
    "benchmark", "category", "metric", "alpha", "threshold", "pck_by", "avg",
    "value", "notes",
]
COMPUTE_COLUMNS = [
    "source", "method", "backbone", "params", "fps", "hardware", "resolution", "notes",
]
SORT_KEY = ["source", "method", "variant", "benchmark", "category", "metric", "alpha"]

# Closed vocabularies; an unexpected value means the reference changed and needs a look.
VOCAB = {
    "threshold": {"bbox", "img", "bbox-kp"},
    "pck_by": {"image", "point", "unknown"},
    "avg": {"all", "category-mean", "unknown"},
}
# The reference spells the mean of per-category scores "category-mean"; we write "category".
AVG_MAP = {"all": "all", "category-mean": "category", "unknown": "unknown"}

MARCO = "MARCO CVPR 2026"
UNIFIED = "UnifiedBench TPAMI 2025"
DIYSC = "DIY-SC ICCV 2025"
JAMAIS_VU = "Jamais Vu NeurIPS 2025"

# (paper prefix, tables, required, whole-benchmark only?, printed method names kept or None for every row)
#  - required tables must be present in the reference, optional ones are taken "if present";
#  - "whole-benchmark only" tables are checked to hold no per-category rows;
#  - a list of method names keeps only those methods' rows (tables transcribed for one family's numbers).
SELECTION = [
    # MARCO main tables: standard benchmarks, MP-100 per domain, SPair-U per category.
    (MARCO, ["1", "2", "3"], True, False),
    # MARCO's other tables whose every row is a whole-benchmark number: ablations (4, 7-10),
    # Geo-SC + MARCO loss (5), AP-10K pre-training (6), supervision (11), MP-100 alpha sweep (14).
    # Tables 15/16 (MP-100 per category), 12 (compute, see below) and 13 (statistics) are left out.
    (MARCO, ["4", "5", "6", "7", "8", "9", "10", "11", "14"], False, True),
    # UnifiedBench: zero-shot backbones (V), fine-tuned backbones (VI), fine-tuned stages (VII),
    # comparison with the state of the art (XI).
    (UNIFIED, ["V", "VI", "VII", "XI"], True, False),
    # DIY-SC main table (SPair-71k per category, per-keypoint PCK).
    (DIYSC, ["2"], False, False),
    # Jamais Vu main tables (SPair-71k and SPair-U per category).
    (JAMAIS_VU, ["1", "2"], False, False),
    # The GeoAware-SC family on the benchmarks the tables above leave out (issue 13): Jamais Vu on AP-10K and
    # PF-PASCAL (Jamais Vu Table 3, training on SPair-71k only), DIY-SC and its DINOv2-only variant on AP-10K
    # (DIY-SC Table 3) and with other pseudo-label sources (Table 4); "TLR" is DIY-SC's name for GeoAware-SC.
    (JAMAIS_VU, ["3"], False, False, ["Jamais Vu"]),
    (DIYSC, ["3"], False, False, ["DIY-SC", "TLR"]),
    (DIYSC, ["4"], False, False, ["DIY-SC"]),
]


def read_csv(path: Path, columns: list[str]) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            sys.exit(f"{path}: missing columns {missing}")
        return [{c: row[c] for c in columns} for row in reader]


def write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def select_results(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    available = {row["source"] for row in rows}
    wanted: dict[str, set[str] | None] = {}  # source -> printed method names kept (None: all)
    for paper, tables, required, whole_only, *methods in SELECTION:
        for table in tables:
            source = f"{paper} Table {table}"
            if source not in available:
                if required:
                    sys.exit(f"required table not in the reference: {source}")
                print(f"note: optional table not in the reference, skipped: {source}")
                continue
            if whole_only and any(r["category"] for r in rows if r["source"] == source):
                sys.exit(f"{source} has per-category rows; revisit SELECTION")
            kept = set(methods[0]) if methods else None
            missing = sorted((kept or set()) - {r["method"] for r in rows if r["source"] == source})
            if missing:
                sys.exit(f"{source} has no rows of {missing}; revisit SELECTION")
            previous = wanted.get(source, set())
            wanted[source] = None if kept is None or previous is None else previous | kept

    selected = []
    for row in rows:
        if row["source"] not in wanted:
            continue
        if wanted[row["source"]] is not None and row["method"] not in wanted[row["source"]]:
            continue
        for column, allowed in VOCAB.items():
            if row[column] not in allowed:
                sys.exit(f"{row['source']}: unexpected {column}={row[column]!r}")
        out = dict(row)  # value and notes are copied verbatim, as strings
        out["avg"] = AVG_MAP[row["avg"]]
        selected.append(out)
    # sorted() is stable: rows with equal keys keep the reference order.
    return sorted(selected, key=lambda r: tuple(r[c] for c in SORT_KEY))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference", type=Path, default=DEFAULT_REFERENCE,
        help="folder with published_results.csv and published_compute.csv "
             "(default: ../shared/reference relative to the repository root)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help="output folder (default: results/published in the repository)",
    )
    args = parser.parse_args(argv)

    results = select_results(read_csv(args.reference / "published_results.csv", RESULT_COLUMNS))
    compute = read_csv(args.reference / "published_compute.csv", COMPUTE_COLUMNS)
    compute = sorted(compute, key=lambda r: (r["source"], r["method"]))

    write_csv(args.out / "published_results.csv", RESULT_COLUMNS, results)
    write_csv(args.out / "published_compute.csv", COMPUTE_COLUMNS, compute)

    print(f"published_results.csv: {len(results)} rows")
    for source, n in sorted(Counter(r["source"] for r in results).items()):
        print(f"  {n:5d}  {source}")
    print(f"published_compute.csv: {len(compute)} rows")
    for source, n in sorted(Counter(r["source"] for r in compute).items()):
        print(f"  {n:5d}  {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
