"""The records ``corrbench bench`` keeps: what one holds (``BenchRecord``), where it goes, its history, its table.

A record is one timestamped JSON file in its configuration's folder (``default_output``); records are never
overwritten, and ``history`` reads a configuration's records back, oldest first, so a number can be compared
with the runs before it. How the numbers are measured is ``corrbench.timing``'s part.

Reproducibility: timings on a shared or busy machine vary from call to call (other processes, CPU threads
competing with them, a GPU shared with others); one number hides that. Every stage and cache state therefore
records its ``spread``, the slowest call (or pass) divided by the fastest, and the record's ``warnings`` name
each one whose spread exceeds ``WIDE_SPREAD``. 1.5 is a chosen bound, not a measured property of some machine:
past it the medians depend on what else ran (on a busy 2-core CPU identical runs differed 6.5x with torch's
two threads and 1.8x with one, see the README), so rerun with nothing else running, with ``threads=1`` on a
busy CPU, or with more warm-up / ``iters`` / ``passes``. A stage timed only once has no spread (``None``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import ResultsError
from .files import UnreadableJSON, read_json
from .results import safe_name

#: The layout ``BenchRecord`` writes. Records from before it had a version (one ``<configuration>.json`` per
#: configuration, overwritten by each run) are read as ``UNVERSIONED``: the same fields without ``created_at``
#: (their file's time stands in), ``warnings``, ``passes`` and spreads.
BENCH_SCHEMA_VERSION = 1
UNVERSIONED = 0
#: Slowest / fastest timed call (or pass) above which a stage's or cache state's timing is reported as unstable.
WIDE_SPREAD = 1.5


@dataclass(frozen=True, kw_only=True)
class BenchRecord:
    """One ``corrbench bench`` measurement, field by field in the order its JSON file has them."""

    schema_version: int = BENCH_SCHEMA_VERSION
    method: dict[str, Any]  # name and the method's info (config, weights, parameter counts)
    preset: str | None  # the ``--preset`` that fixed some settings, and what it stands for
    preset_note: str | None
    # benchmark, pairs, batch size, resolution, dtype, compile backend, warm-up, iters, passes, threads, options
    settings: dict[str, Any]
    parameters: dict[str, int]  # total and trainable
    stages: dict[str, Any]  # "extract_per_image" (feature methods), "match_per_pair": ``timing.summarize``
    end_to_end: dict[str, Any]  # cache state -> pairs per second over the timed passes, images extracted
    memory: dict[str, Any]  # peak CPU RSS (and since when), CUDA max allocated on a GPU
    env: dict[str, Any]
    command: str
    created_at: str  # ``results.utc_timestamp()``: it also names the record's file
    warnings: list[str] = field(default_factory=list)  # ``spread_warnings`` when it was measured

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Any, source: Path | str) -> BenchRecord:
        """The record in ``data`` (read from ``source``, named in errors), of this version or an earlier one."""
        hint = "move it out of the folder (or delete it) and run again"
        if not isinstance(data, dict):
            raise ResultsError(f"bench record {source} is not a JSON object", hint=hint)
        version = data.get("schema_version", UNVERSIONED)
        if version not in (UNVERSIONED, BENCH_SCHEMA_VERSION):
            raise ResultsError(f"bench record {source} has schema version {version!r}; this corrbench reads "
                               f"version {BENCH_SCHEMA_VERSION} and records written before versions", hint=hint)
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in data and name not in ("schema_version", "warnings")]
        if missing:
            raise ResultsError(f"bench record {source} lacks field(s) {', '.join(missing)}", hint=hint)
        given = {name: data[name] for name in names if name in data and name != "schema_version"}
        return cls(**given, schema_version=version)


def spread_warnings(record: dict[str, Any]) -> list[str]:
    """The record's warning, if any stage or cache state has a spread above ``WIDE_SPREAD`` (an empty list if
    none), naming each such one."""
    timed = [(name.replace("_", " "), value) for name, value in record["stages"].items()]
    timed += [(f"end to end ({state})", value) for state, value in record["end_to_end"].items()]
    wide = [f"{name} {value['spread']:.1f}x" for name, value in timed
            if value.get("spread") is not None and value["spread"] > WIDE_SPREAD]
    if not wide:
        return []
    cpu = record.get("env", {}).get("device") == "cpu"
    return [f"timings varied more than {WIDE_SPREAD}x (slowest / fastest) in {', '.join(wide)}: something else "
            f"probably competed for the device. Rerun with nothing else running"
            + (", or with fewer CPU threads (--threads 1)" if cpu else "")
            + ", or with more --warmup / --iters / --passes, before comparing this record with others"]


def configuration_dir(out_dir: Path, record: dict[str, Any]) -> Path:
    """``<out>/bench/<method>/<device>-<dtype>-<resolution>px-b<batch>[-compile]``: where every record of one
    configuration is kept."""
    s = record["settings"]
    device = record["env"]["device"].replace(":", "")
    name = f"{device}-{s['dtype']}-{s['resolution'] or 'native'}px-b{s['batch_size']}" + ("-compile" if s["compile"] else "")
    return Path(out_dir) / "bench" / safe_name(record["method"]["name"]) / name


def default_output(out_dir: Path, record: dict[str, Any]) -> Path:
    """A new file for ``record`` in its configuration's folder, named by its UTC time (``20261204T143512Z.json``;
    ``-2``, ``-3``... when a record of the same second exists), so earlier records are kept."""
    folder = configuration_dir(out_dir, record)
    stamp = dt.datetime.fromisoformat(record["created_at"]).astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path, n = folder / f"{stamp}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}.json"
    return path


def history(folder: Path) -> list[dict[str, Any]]:
    """Every record in a configuration folder (``configuration_dir``), oldest first, each with its ``path``.

    Records written before corrbench kept a history (one ``<configuration>.json`` beside the folder,
    overwritten by each run, without ``created_at`` or spreads) are included, dated by their file's time.
    """
    folder = Path(folder)
    legacy = folder.with_name(folder.name + ".json")
    paths = sorted(folder.glob("*.json")) + ([legacy] if legacy.is_file() else [])
    records = []
    for path in paths:
        try:
            data = read_json(path)
        except UnreadableJSON as exc:
            raise ResultsError(f"bench record {path} is unreadable: {exc}",
                               hint="move it out of the folder (or delete it) and run again") from None
        if isinstance(data, dict):
            data.setdefault("created_at", dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
                            .isoformat(timespec="seconds"))
        records.append({**BenchRecord.from_json(data, path).to_json(), "path": str(path)})
    return sorted(records, key=lambda r: dt.datetime.fromisoformat(r["created_at"]))


def format_history(records: Sequence[dict[str, Any]]) -> str:
    """One line per record of a configuration: when, and its median (min - max) per stage and pairs/s."""
    lines = []
    for r in records:
        parts = [f"{name.split('_')[0]} {_range(v, 'median_ms', 'min_ms', 'max_ms')} ms"
                 for name, v in r["stages"].items()]
        parts += [f"{state} {_range(v, 'pairs_per_second', 'min_pairs_per_second', 'max_pairs_per_second')} pairs/s"
                  for state, v in r["end_to_end"].items()]
        lines.append(f"{r['created_at']}  " + ", ".join(parts) + ("  (wide spread)" if r.get("warnings") else ""))
    return "\n".join(lines)


def _range(value: dict[str, Any], middle: str, low: str, high: str) -> str:
    """``median (min-max)``, or the median alone for a single timing or a record made before spreads."""
    if value.get(low) is None or value.get("spread") is None:
        return f"{value[middle]:.2f}"
    return f"{value[middle]:.2f} ({value[low]:.2f}-{value[high]:.2f})"


def format_table(record: dict[str, Any]) -> str:
    """The record as a two-column markdown table with a heading line."""
    s, env = record["settings"], record["env"]

    def ms(stage: str) -> str:
        value = record["stages"].get(stage)
        if not value:
            return "n/a (no feature stage)"
        return f"{value['min_ms']:.2f} / {value['median_ms']:.2f} / {value['max_ms']:.2f}{_spread_note(value)}"

    params = record["parameters"]
    rows = [
        ("parameters (total / trainable)", f"{params['total']:,} / {params['trainable']:,}"),
        ("extract, ms per image (min / median / max)", ms("extract_per_image")),
        ("match, ms per pair (min / median / max)", ms("match_per_pair")),
    ]
    for state, value in record["end_to_end"].items():
        extracted = f" ({value['extracted_images']} images extracted)" if "extracted_images" in value else ""
        rates = (f"{value['min_pairs_per_second']:.2f} / {value['pairs_per_second']:.2f} / "
                 f"{value['max_pairs_per_second']:.2f}")
        rows.append((f"end to end, pairs/s ({state}; min / median / max)", f"{rates}{_spread_note(value)}{extracted}"))
    memory = record["memory"]
    if "cuda_max_allocated_bytes" in memory:
        rows.append(("peak CUDA memory allocated", _gib(memory["cuda_max_allocated_bytes"])))
    rows.append((f"peak CPU RSS (since {memory['cpu_peak_since']})", _gib(memory["cpu_peak_rss_bytes"])))
    width = max(len(r[0]) for r in rows)
    head = (f"{record['method']['name']} on {env['device']} ({env['device_name']}), {s['dtype']}, "
            f"{s['resolution'] or 'native'} px, batch {s['batch_size']} pairs, {s['threads']} threads, "
            f"torch.compile {s['compile'] or 'off'}; {s['pairs']} {s['benchmark']} pairs, {s['warmup']} warm-up + "
            f"{s['iters']} timed calls, {s['passes']} end-to-end passes")
    lines = [head] + ([f"preset {record['preset']}: {record['preset_note']}"] if record["preset"] else []) + [""]
    lines.append(f"| {'quantity':<{width}} | value |")
    lines.append(f"|{'-' * (width + 2)}|-------|")
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _spread_note(value: dict[str, Any]) -> str:
    """`` (spread 1.23x)``, flagged when wide; nothing for a single timing."""
    if value.get("spread") is None:
        return ""
    return f" (spread {value['spread']:.2f}x{', WIDE' if value['spread'] > WIDE_SPREAD else ''})"


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"
