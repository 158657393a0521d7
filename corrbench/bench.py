"""``corrbench bench``: speed, size and memory of any method, measured the same way.

What is measured (``bench(BenchOptions)``):

- **parameters**: total and trainable (``Matcher.parameter_counts``);
- **extract**: seconds per image of ``FeatureMatcher.extract`` on batches of ``2 x batch_size`` distinct images
  (what one batch of pairs with no shared image extracts), min, median, p90 and max over ``iters`` calls after
  ``warmup`` calls;
- **match**: seconds per pair of the harness's matching with every feature map already cached
  (``Matcher.predict`` on a batch whose features are in the cache: descriptor sampling, similarity maps and
  the localiser), likewise. A method without features (``oracle``, ``random``) has only this stage, and it is
  its whole ``predict``;
- **end to end**: pairs per second of ``predict`` over ``pairs`` benchmark pairs in batches of ``batch_size``,
  in three cache states: ``no cache`` (every batch extracts its own images, as the reference scripts and the
  MARCO paper's FPS protocol do), ``cold`` (a fresh feature cache, as a first ``corrbench run``: images shared
  by pairs are extracted once) and ``warm`` (every feature cached); each state is timed over ``passes``
  passes (``cold`` with a fresh cache for each), reported as the median pass with the slowest and fastest;
- **peak memory**: CUDA ``max_memory_allocated`` on a GPU; on the CPU the process's peak resident set
  (``VmHWM``, reset at the start where Linux allows, else the peak since the process started).

Images are loaded from the benchmark (``synthetic`` by default, generated offline) into memory and moved to
the device before any timing, so the figures exclude disk and JPEG decoding; every timed call is
CUDA-synchronised. ``dtype`` runs the model under autocast (``corrbench.precision``), ``compile`` wraps the
extraction (or, without features, ``match``) in ``torch.compile``.

Reproducibility: timings on a shared or busy machine vary from call to call (other processes, CPU threads
competing with them, a GPU shared with others); one number hides that. Every stage and cache state therefore
records its ``spread``, the slowest call (or pass) divided by the fastest, and the record's ``warnings`` name
each one whose spread exceeds ``WIDE_SPREAD``. 1.5 is a chosen bound, not a measured property of some machine:
past it the medians depend on what else ran (on a busy 2-core CPU identical runs differed 6.5x with torch's
two threads and 1.8x with one, see the README), so rerun with nothing else running, with ``threads=1`` on a
busy CPU, or with more warm-up / ``iters`` / ``passes``. A stage timed only once has no spread (``None``).
Records are never overwritten: each run writes a new timestamped file next to the earlier runs of the same
configuration (``default_output``), and ``history`` reads them back, oldest first.

Presets (``--preset``) fix the settings of a published protocol: ``marco-paper`` is MARCO's Table 12
(840 px, one reference-target pair per batch so both images go through the network together, features
re-extracted for every pair: read the ``no cache`` pairs/s against the paper's FPS).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .errors import ConfigError, ResultsError

#: Settings a preset fixes (anything not named keeps the command line's value).
BENCH_PRESETS: dict[str, dict[str, Any]] = {
    "marco-paper": {
        "resolution": 840,
        "batch_size": 1,
        "note": "MARCO Table 12 protocol: 840 px, one reference-target pair per batch (both images in one forward "
                "pass), features re-extracted for every pair; compare the 'no cache' pairs/s with the paper's FPS "
                "(8.3 on an RTX 4090)",
    },
}
CACHE_STATES = ("no cache", "cold", "warm")
#: Slowest / fastest timed call (or pass) above which a stage's or cache state's timing is reported as unstable.
WIDE_SPREAD = 1.5
UNBOUNDED = 1 << 62  # a feature cache that never evicts (the warm state holds every image of the timed pairs)


@dataclass
class BenchOptions:
    """Everything ``corrbench bench`` takes (None: the method's or the preset's value)."""

    method: str
    options: dict[str, Any] = field(default_factory=dict)
    benchmark: str = "synthetic"
    preset: str | None = None
    resolution: int | None = None
    batch_size: int = 4
    dtype: str = "float32"
    device: str = "auto"
    compile: bool = False
    compile_backend: str = "inductor"
    warmup: int = 2
    iters: int = 10
    passes: int = 3
    threads: int | None = None  # CPU intra-op threads while timing (None: torch's default)
    pairs: int = 16
    seed: int = 0
    data_root: Path | None = None
    download: bool = True
    progress: bool = True
    command: str = ""


def apply_preset(opts: BenchOptions) -> tuple[BenchOptions, str | None]:
    """``opts`` with its preset's settings, and the preset's note."""
    if opts.preset is None:
        return opts, None
    if opts.preset not in BENCH_PRESETS:
        raise ConfigError(f"unknown bench preset {opts.preset!r}", hint=f"use one of {', '.join(BENCH_PRESETS)}")
    settings = dict(BENCH_PRESETS[opts.preset])
    note = settings.pop("note", None)
    return dataclasses.replace(opts, **settings), note


def summarize(seconds: Sequence[float], per: int = 1) -> dict[str, Any]:
    """Min, median, 90th percentile and max of ``seconds`` divided by ``per`` (items per call), in milliseconds,
    and their ``spread`` (max / min; None for a single call)."""
    values = sorted(s / per * 1000.0 for s in seconds)
    p90 = values[min(len(values) - 1, max(0, int(round(0.9 * (len(values) - 1)))))]
    return {"min_ms": round(values[0], 4), "median_ms": round(statistics.median(values), 4), "p90_ms": round(p90, 4),
            "max_ms": round(values[-1], 4), "calls": len(values), "spread": spread(values)}


def spread(values: Sequence[float]) -> float | None:
    """Largest / smallest of two or more positive ``values`` (how far repeated timings of one thing disagree)."""
    if len(values) < 2:
        return None
    low = min(values)
    return round(max(values) / low, 3) if low > 0 else float("inf")


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


def time_calls(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> list[float]:
    """Seconds of each of ``iters`` calls of ``fn`` after ``warmup`` untimed ones (CUDA synchronised)."""
    from .runtime import synchronize

    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(iters):
        started = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return seconds


class PeakMemory:
    """The peak memory of the code run between ``start()`` and ``stop()`` (CUDA) or of the process (CPU)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.rss_reset = False

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:  # "5" resets the peak resident set size VmHWM (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
            self.rss_reset = True
        except OSError:
            self.rss_reset = False

    def stop(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cpu_peak_rss_bytes": cpu_peak_rss(), "cpu_peak_since": "bench start" if self.rss_reset
                               else "process start"}
        if self.device.type == "cuda":
            out["cuda_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
        return out


def cpu_peak_rss() -> int:
    """The process's peak resident set size in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kB on Linux


def _load_batches(opts: BenchOptions, spec: Any, with_masks: bool, with_ground_truth: bool) -> list:
    from .batching import batch_loader
    from .data_root import resolve_data_root
    from .datasets import make_adapter

    adapter = make_adapter(spec, resolve_data_root(opts.data_root))
    adapter.prepare(progress=opts.progress, download=opts.download)
    pairs = adapter.pairs(spec.split, spec.subset).pairs[: opts.pairs]
    if not pairs:
        raise ConfigError(f"{spec.name} has no pairs to time", hint="pick another --benchmark")
    loader = batch_loader(pairs, opts.batch_size, with_masks=with_masks, with_ground_truth=with_ground_truth)
    return list(loader)


def bench(opts: BenchOptions) -> dict[str, Any]:
    """Measure ``opts.method`` (see the module docstring); returns the JSON record.

    ``opts.threads`` sets torch's CPU threads for the measurement only (restored afterwards).
    """
    if opts.threads is not None and opts.threads < 1:
        raise ConfigError(f"--threads must be positive, got {opts.threads}")
    previous_threads = torch.get_num_threads()
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    try:
        return _measure(opts)
    finally:
        torch.set_num_threads(previous_threads)


def _measure(opts: BenchOptions) -> dict[str, Any]:
    from .config import config_to_json
    from .environment import describe_environment
    from .evaluate import method_name
    from .feature_cache import FeatureCache
    from .matcher import FeatureMatcher
    from .precision import autocast, check_dtype
    from .registry import BENCHMARKS, METHODS
    from .runtime import resolve_device, seed_everything

    opts, preset_note = apply_preset(opts)
    check_dtype(opts.dtype)
    if min(opts.batch_size, opts.iters, opts.passes, opts.pairs) < 1 or opts.warmup < 0:
        raise ConfigError("--batch-size, --iters, --passes and --pairs must be positive and --warmup not negative")
    method_cls = METHODS.get(opts.method)
    options = dict(opts.options)
    if opts.resolution is not None:
        fields = {f.name for f in dataclasses.fields(method_cls.Config)} if dataclasses.is_dataclass(method_cls.Config) else set()
        if "resolution" not in fields:
            raise ConfigError(f"method {opts.method!r} has no resolution option",
                              hint="leave out --resolution (and --preset) for this method")
        options["resolution"] = str(opts.resolution)
    spec = BENCHMARKS.get(opts.benchmark)
    device = resolve_device(opts.device)

    seed_everything(opts.seed)
    matcher = method_cls(**options).to(device).eval()
    batches = _load_batches(opts, spec, with_masks="masks" in getattr(matcher, "requires", ()),
                            with_ground_truth=getattr(matcher, "uses_ground_truth", False))
    batches = [b.to(device) for b in batches]
    has_features = isinstance(matcher, FeatureMatcher)
    if opts.compile:
        name = "extract" if has_features else "match"
        setattr(matcher, name, torch.compile(getattr(matcher, name), backend=opts.compile_backend))

    memory = PeakMemory(device)
    memory.start()
    stages: dict[str, Any] = {}
    end_to_end: dict[str, Any] = {}

    def predict_all() -> None:
        for batch in batches:
            matcher.predict(batch)

    with torch.inference_mode(), autocast(device, opts.dtype):
        if has_features:
            images = _distinct_images(batches)
            per_call = min(len(images), 2 * opts.batch_size)
            chunks = [images[i : i + per_call] for i in range(0, len(images) - per_call + 1, per_call)] or [images]
            rotation = itertools.cycle(chunks)  # successive calls see different images
            stages["extract_per_image"] = summarize(
                time_calls(lambda: matcher.extract(next(rotation)), device, opts.warmup, opts.iters),
                per=len(chunks[0]))
            # "no cache": every batch extracts its images; "cold": the harness's own cache, empty at the start
            def use_cache(cache: FeatureCache) -> FeatureCache:
                matcher.feature_cache = cache
                return cache

            for state, new_cache in (("no cache", lambda: FeatureCache(0)), ("cold", FeatureCache)):
                end_to_end[state] = _end_to_end(predict_all, batches, device, opts.passes,
                                                lambda: use_cache(new_cache()))
            matcher.feature_cache = FeatureCache(UNBOUNDED)
            predict_all()  # every feature map of these pairs now cached: what remains is matching
            first = batches[0]
            stages["match_per_pair"] = summarize(
                time_calls(lambda: matcher.predict(first), device, opts.warmup, opts.iters), per=first.size)
            end_to_end["warm"] = _end_to_end(predict_all, batches, device, opts.passes, lambda: matcher.feature_cache)
        else:
            first = batches[0]
            stages["match_per_pair"] = summarize(
                time_calls(lambda: matcher.predict(first), device, opts.warmup, opts.iters), per=first.size)
            predict_all()  # warm-up pass
            end_to_end["no cache"] = _end_to_end(predict_all, batches, device, opts.passes, lambda: None)

    record = {
        "method": {"name": method_name(opts.method, method_cls), **matcher.info()},
        "preset": opts.preset,
        "preset_note": preset_note,
        "settings": {
            "benchmark": spec.name, "pairs": sum(b.size for b in batches), "batch_size": opts.batch_size,
            "resolution": getattr(getattr(matcher, "config", None), "resolution", None), "dtype": opts.dtype,
            "compile": opts.compile_backend if opts.compile else None, "warmup": opts.warmup, "iters": opts.iters,
            "passes": opts.passes, "threads": torch.get_num_threads(), "options": config_to_json(matcher.config),
        },
        "parameters": matcher.parameter_counts(),
        "stages": stages,
        "end_to_end": end_to_end,
        "memory": memory.stop(),
        "env": describe_environment(device, opts.dtype, opts.batch_size, opts.seed),
        "command": opts.command,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    record["warnings"] = spread_warnings(record)
    return record


def _distinct_images(batches: Sequence[Any]) -> list[torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    for batch in batches:
        for image, image_id in [*zip(batch.src_images, batch.src_ids), *zip(batch.trg_images, batch.trg_ids)]:
            seen.setdefault(image_id, image)
    return list(seen.values())


def _end_to_end(predict_all: Callable[[], None], batches: Sequence[Any], device: torch.device, passes: int,
                prepare_cache: Callable[[], Any]) -> dict:
    """Pairs per second of ``passes`` passes over ``batches`` (median pass, fastest and slowest), and the images
    one pass extracted (the cache's misses). ``prepare_cache()`` runs before each pass and returns the cache
    the pass uses (None: the method has none)."""
    pairs = sum(b.size for b in batches)
    seconds, extracted = [], set()
    for _ in range(passes):
        cache = prepare_cache()
        misses = cache.stats.misses if cache is not None else 0
        seconds += time_calls(predict_all, device, warmup=0, iters=1)
        if cache is not None:
            extracted.add(cache.stats.misses - misses)
    rates = sorted(pairs / s for s in seconds)
    out = {"pairs_per_second": round(pairs / statistics.median(seconds), 4), "min_pairs_per_second": round(rates[0], 4),
           "max_pairs_per_second": round(rates[-1], 4), "passes": passes,
           "seconds": [round(s, 4) for s in seconds], "spread": spread(seconds)}
    if extracted:
        (out["extracted_images"],) = extracted  # every pass of one state extracts the same images
    return out


def configuration_dir(out_dir: Path, record: dict[str, Any]) -> Path:
    """``<out>/bench/<method>/<device>-<dtype>-<resolution>px-b<batch>[-compile]``: where every record of one
    configuration is kept."""
    from .results import safe_name

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
    import json

    folder = Path(folder)
    legacy = folder.with_name(folder.name + ".json")
    paths = sorted(folder.glob("*.json")) + ([legacy] if legacy.is_file() else [])
    records = []
    for path in paths:
        try:
            record = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ResultsError(f"bench record {path} is unreadable: {exc}",
                               hint="move it out of the folder (or delete it) and run again") from None
        record.setdefault("created_at", dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
                          .isoformat(timespec="seconds"))
        records.append({**record, "path": str(path)})
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
