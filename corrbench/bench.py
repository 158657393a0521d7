"""``corrbench bench``: speed, size and memory of any method, measured the same way.

What is measured (``bench(BenchOptions)``):

- **parameters**: total and trainable (``Matcher.parameter_counts``);
- **extract**: seconds per image of ``FeatureMatcher.extract`` on batches of ``2 x batch_size`` distinct images
  (what one batch of pairs with no shared image extracts), median and p90 over ``iters`` calls after
  ``warmup`` calls;
- **match**: seconds per pair of the harness's matching with every feature map already cached
  (``Matcher.predict`` on a batch whose features are in the cache: descriptor sampling, similarity maps and
  the localiser), median and p90 likewise. A method without features (``oracle``, ``random``) has only this
  stage, and it is its whole ``predict``;
- **end to end**: pairs per second of ``predict`` over ``pairs`` benchmark pairs in batches of ``batch_size``,
  in three cache states: ``no cache`` (every batch extracts its own images, as the reference scripts and the
  MARCO paper's FPS protocol do), ``cold`` (a fresh feature cache, as a first ``corrbench run``: images shared
  by pairs are extracted once) and ``warm`` (every feature cached);
- **peak memory**: CUDA ``max_memory_allocated`` on a GPU; on the CPU the process's peak resident set
  (``VmHWM``, reset at the start where Linux allows, else the peak since the process started).

Images are loaded from the benchmark (``synthetic`` by default, generated offline) into memory and moved to
the device before any timing, so the figures exclude disk and JPEG decoding; every timed call is
CUDA-synchronised. ``dtype`` runs the model under autocast (``corrbench.precision``), ``compile`` wraps the
extraction (or, without features, ``match``) in ``torch.compile``.

Presets (``--preset``) fix the settings of a published protocol: ``marco-paper`` is MARCO's Table 12
(840 px, one reference-target pair per batch so both images go through the network together, features
re-extracted for every pair: read the ``no cache`` pairs/s against the paper's FPS).
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .errors import ConfigError

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


def summarize(seconds: Sequence[float], per: int = 1) -> dict[str, float]:
    """Median and 90th percentile of ``seconds`` divided by ``per`` (items per call), in milliseconds."""
    values = sorted(s / per * 1000.0 for s in seconds)
    p90 = values[min(len(values) - 1, max(0, int(round(0.9 * (len(values) - 1)))))]
    return {"median_ms": round(statistics.median(values), 4), "p90_ms": round(p90, 4), "calls": len(values)}


def time_calls(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> list[float]:
    """Seconds of each of ``iters`` calls of ``fn`` after ``warmup`` untimed ones (CUDA synchronised)."""
    from .evaluate import synchronize

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
    """Measure ``opts.method`` (see the module docstring); returns the JSON record."""
    from .config import config_to_json
    from .environment import describe_environment
    from .evaluate import method_name, resolve_device, seed_everything
    from .feature_cache import FeatureCache
    from .matcher import FeatureMatcher
    from .precision import autocast, check_dtype
    from .registry import BENCHMARKS, METHODS

    opts, preset_note = apply_preset(opts)
    check_dtype(opts.dtype)
    if min(opts.batch_size, opts.iters, opts.pairs) < 1 or opts.warmup < 0:
        raise ConfigError("--batch-size, --iters and --pairs must be positive and --warmup not negative")
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
            for state, cache in (("no cache", FeatureCache(0)), ("cold", FeatureCache())):
                matcher.feature_cache = cache
                end_to_end[state] = _end_to_end(predict_all, batches, device, cache)
            matcher.feature_cache = FeatureCache(UNBOUNDED)
            predict_all()  # every feature map of these pairs now cached: what remains is matching
            first = batches[0]
            stages["match_per_pair"] = summarize(
                time_calls(lambda: matcher.predict(first), device, opts.warmup, opts.iters), per=first.size)
            end_to_end["warm"] = _end_to_end(predict_all, batches, device, matcher.feature_cache)
        else:
            first = batches[0]
            stages["match_per_pair"] = summarize(
                time_calls(lambda: matcher.predict(first), device, opts.warmup, opts.iters), per=first.size)
            predict_all()  # warm-up pass
            end_to_end["no cache"] = _end_to_end(predict_all, batches, device, None)

    record = {
        "method": {"name": method_name(opts.method, method_cls), **matcher.info()},
        "preset": opts.preset,
        "preset_note": preset_note,
        "settings": {
            "benchmark": spec.name, "pairs": sum(b.size for b in batches), "batch_size": opts.batch_size,
            "resolution": getattr(getattr(matcher, "config", None), "resolution", None), "dtype": opts.dtype,
            "compile": opts.compile_backend if opts.compile else None, "warmup": opts.warmup, "iters": opts.iters,
            "threads": torch.get_num_threads(), "options": config_to_json(matcher.config),
        },
        "parameters": matcher.parameter_counts(),
        "stages": stages,
        "end_to_end": end_to_end,
        "memory": memory.stop(),
        "env": describe_environment(device, opts.dtype, opts.batch_size, opts.seed),
        "command": opts.command,
    }
    return record


def _distinct_images(batches: Sequence[Any]) -> list[torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    for batch in batches:
        for image, image_id in [*zip(batch.src_images, batch.src_ids), *zip(batch.trg_images, batch.trg_ids)]:
            seen.setdefault(image_id, image)
    return list(seen.values())


def _end_to_end(predict_all: Callable[[], None], batches: Sequence[Any], device: torch.device, cache: Any) -> dict:
    """Pairs per second of one pass over ``batches``, and the images it extracted (the cache's misses)."""
    misses = cache.stats.misses if cache is not None else 0
    (seconds,) = time_calls(predict_all, device, warmup=0, iters=1)
    out = {"pairs_per_second": round(sum(b.size for b in batches) / seconds, 4), "seconds": round(seconds, 4)}
    if cache is not None:
        out["extracted_images"] = cache.stats.misses - misses
    return out


def default_output(out_dir: Path, record: dict[str, Any]) -> Path:
    """``<out>/bench/<method>/<device>-<dtype>-<resolution>px-b<batch>[-compile].json``."""
    from .results import safe_name

    s = record["settings"]
    device = record["env"]["device"].replace(":", "")
    name = f"{device}-{s['dtype']}-{s['resolution'] or 'native'}px-b{s['batch_size']}" + ("-compile" if s["compile"] else "")
    return Path(out_dir) / "bench" / safe_name(record["method"]["name"]) / f"{name}.json"


def format_table(record: dict[str, Any]) -> str:
    """The record as a two-column markdown table with a heading line."""
    s, env = record["settings"], record["env"]

    def ms(stage: str) -> str:
        value = record["stages"].get(stage)
        return f"{value['median_ms']:.2f} / {value['p90_ms']:.2f}" if value else "n/a (no feature stage)"

    params = record["parameters"]
    rows = [
        ("parameters (total / trainable)", f"{params['total']:,} / {params['trainable']:,}"),
        ("extract, ms per image (median / p90)", ms("extract_per_image")),
        ("match, ms per pair (median / p90)", ms("match_per_pair")),
    ]
    for state, value in record["end_to_end"].items():
        extracted = f" ({value['extracted_images']} images extracted)" if "extracted_images" in value else ""
        rows.append((f"end to end, pairs/s ({state})", f"{value['pairs_per_second']:.2f}{extracted}"))
    memory = record["memory"]
    if "cuda_max_allocated_bytes" in memory:
        rows.append(("peak CUDA memory allocated", _gib(memory["cuda_max_allocated_bytes"])))
    rows.append((f"peak CPU RSS (since {memory['cpu_peak_since']})", _gib(memory["cpu_peak_rss_bytes"])))
    width = max(len(r[0]) for r in rows)
    head = (f"{record['method']['name']} on {env['device']} ({env['device_name']}), {s['dtype']}, "
            f"{s['resolution'] or 'native'} px, batch {s['batch_size']} pairs, {s['threads']} threads, "
            f"torch.compile {s['compile'] or 'off'}; {s['pairs']} {s['benchmark']} pairs, {s['warmup']} warm-up + "
            f"{s['iters']} timed calls")
    lines = [head] + ([f"preset {record['preset']}: {record['preset_note']}"] if record["preset"] else []) + [""]
    lines.append(f"| {'quantity':<{width}} | value |")
    lines.append(f"|{'-' * (width + 2)}|-------|")
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"
