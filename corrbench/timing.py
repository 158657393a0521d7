"""How ``corrbench bench`` times a method: speed, size and memory of any method, measured the same way.

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
CUDA-synchronised. ``dtype`` runs the model under autocast (``corrbench.dtypes``), ``compile`` wraps the
extraction (or, without features, ``match``) in ``torch.compile``.

The record (``corrbench.timing_records.BenchRecord``) keeps each stage's and cache state's ``spread``
(slowest / fastest) and warns when one is wide; ``corrbench.timing_records`` also says where records go and
reads a configuration's history back.

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

from .batching import batch_loader
from .config import config_to_json
from .data_root import resolve_data_root
from .datasets import make_adapter
from .environment import describe_environment
from .errors import ConfigError
from .evaluate import method_name
from .feature_cache import FeatureCache
from .matcher import FeatureMatcher, Matcher
from .dtypes import autocast, check_dtype
from .registry import BENCHMARKS, METHODS
from .results import utc_timestamp
from .runtime import resolve_device, seed_everything, synchronize
from .timing_records import BenchRecord, spread_warnings

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


def time_calls(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> list[float]:
    """Seconds of each of ``iters`` calls of ``fn`` after ``warmup`` untimed ones (CUDA synchronised)."""
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
    opts, preset_note = apply_preset(opts)
    check_dtype(opts.dtype)
    if min(opts.batch_size, opts.iters, opts.passes, opts.pairs) < 1 or opts.warmup < 0:
        raise ConfigError("--batch-size, --iters, --passes and --pairs must be positive and --warmup not negative")
    method_cls = METHODS.get(opts.method)
    options = _method_options(opts, method_cls)
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
    with torch.inference_mode(), autocast(device, opts.dtype):
        time_stages = _time_feature_method if has_features else _time_predict_only
        stages, end_to_end = time_stages(matcher, batches, device, opts)
    record = BenchRecord(
        method={"name": method_name(opts.method, method_cls), **matcher.info()},
        preset=opts.preset,
        preset_note=preset_note,
        settings={
            "benchmark": spec.name, "pairs": sum(b.size for b in batches), "batch_size": opts.batch_size,
            "resolution": getattr(getattr(matcher, "config", None), "resolution", None), "dtype": opts.dtype,
            "compile": opts.compile_backend if opts.compile else None, "warmup": opts.warmup, "iters": opts.iters,
            "passes": opts.passes, "threads": torch.get_num_threads(), "options": config_to_json(matcher.config),
        },
        parameters=matcher.parameter_counts(),
        stages=stages,
        end_to_end=end_to_end,
        memory=memory.stop(),
        env=describe_environment(device, opts.dtype, opts.batch_size, opts.seed),
        command=opts.command,
        created_at=utc_timestamp(),
    )
    return dataclasses.replace(record, warnings=spread_warnings(record.to_json())).to_json()


def _method_options(opts: BenchOptions, method_cls: type[Matcher]) -> dict[str, Any]:
    """The method's options with ``--resolution`` among them (an error for a method without that option)."""
    options = dict(opts.options)
    if opts.resolution is not None:
        fields = {f.name for f in dataclasses.fields(method_cls.Config)} if dataclasses.is_dataclass(method_cls.Config) else set()
        if "resolution" not in fields:
            raise ConfigError(f"method {opts.method!r} has no resolution option",
                              hint="leave out --resolution (and --preset) for this method")
        options["resolution"] = str(opts.resolution)
    return options


def _time_feature_method(matcher: FeatureMatcher, batches: list, device: torch.device,
                         opts: BenchOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stages (extract, match) and the three cache states of a method with features."""
    images = _distinct_images(batches)
    per_call = min(len(images), 2 * opts.batch_size)
    chunks = [images[i : i + per_call] for i in range(0, len(images) - per_call + 1, per_call)] or [images]
    rotation = itertools.cycle(chunks)  # successive calls see different images
    stages = {"extract_per_image": summarize(
        time_calls(lambda: matcher.extract(next(rotation)), device, opts.warmup, opts.iters), per=len(chunks[0]))}
    predict_all = _prediction_pass(matcher, batches)

    def use_cache(cache: FeatureCache) -> FeatureCache:
        matcher.feature_cache = cache
        return cache

    end_to_end: dict[str, Any] = {}
    # "no cache": every batch extracts its images; "cold": the harness's own cache, empty at the start
    for state, new_cache in (("no cache", lambda: FeatureCache(0)), ("cold", FeatureCache)):
        end_to_end[state] = _end_to_end(predict_all, batches, device, opts.passes, lambda: use_cache(new_cache()))
    matcher.feature_cache = FeatureCache(UNBOUNDED)
    predict_all()  # every feature map of these pairs now cached: what remains is matching
    first = batches[0]
    stages["match_per_pair"] = summarize(
        time_calls(lambda: matcher.predict(first), device, opts.warmup, opts.iters), per=first.size)
    end_to_end["warm"] = _end_to_end(predict_all, batches, device, opts.passes, lambda: matcher.feature_cache)
    return stages, end_to_end


def _time_predict_only(matcher: Matcher, batches: list, device: torch.device,
                       opts: BenchOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """A method without features: ``predict`` is its one stage, and it has no cache."""
    predict_all = _prediction_pass(matcher, batches)
    first = batches[0]
    stages = {"match_per_pair": summarize(
        time_calls(lambda: matcher.predict(first), device, opts.warmup, opts.iters), per=first.size)}
    predict_all()  # warm-up pass
    return stages, {"no cache": _end_to_end(predict_all, batches, device, opts.passes, lambda: None)}


def _prediction_pass(matcher: Matcher, batches: list) -> Callable[[], None]:
    """One pass of ``predict`` over every batch, as a call to time."""
    def predict_all() -> None:
        for batch in batches:
            matcher.predict(batch)

    return predict_all


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
