"""The harness: predict (cached, resumable), then score, then write the result.

Two passes, as in glue-factory: predictions are appended to the run's ``predictions.jsonl`` batch by batch;
scoring reads only cached predictions, so ``rescore`` needs no model and an interrupted run resumes.
The Matcher never sees target keypoints (only the test-only oracle, which declares it, gets them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .batching import batch_loader
from .config import build_config, config_to_json
from .data_root import resolve_data_root
from .datasets import PairSet, make_adapter
from .datasets.base import KEYPOINT_MARGIN
from .environment import describe_environment
from .errors import ConfigError, ResultsError
from .files import json_identity_hash, write_json_atomic, write_jsonl_atomic
from .matcher import Matcher
from .metrics import PCKAccumulator
from .dtypes import autocast, check_dtype
from .predictions import PredictionStore
from .protocol import BenchmarkSpec, Protocol
from .protocols import apply_protocol
from .registry import BENCHMARKS, METHODS, is_file_reference
from .results import PAIRS_FILE, PREDICTIONS_FILE, RESULT_FILE, RUN_FILE, ResultRecord, build_result, run_directory
from .runtime import resolve_device, seed_everything
from .types import Pair


@dataclass
class RunOptions:
    """Everything ``corrbench run`` takes (the CLI fills it; Python callers may too)."""

    method: str
    benchmark: str
    options: dict[str, Any] = field(default_factory=dict)
    protocol: str | None = None  # a named protocol (corrbench.protocols); None: as the benchmark is registered
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 8
    workers: int = 0
    limit: int | None = None
    seed: int = 0
    out: Path = Path("results")
    data_root: Path | None = None
    rescore: bool = False
    download: bool = True
    strict: bool = False
    progress: bool = True
    command: str = ""


@dataclass
class RunOutcome:
    record: ResultRecord
    directory: Path

    @property
    def result(self) -> dict[str, Any]:
        """The result as ``result.json`` holds it."""
        return self.record.to_json()

    @property
    def result_path(self) -> Path:
        return self.directory / RESULT_FILE


def method_name(reference: str, cls: type) -> str:
    """The name results record: the registry name, or the class name for ``file.py:Class`` references."""
    return cls.__name__ if is_file_reference(reference) else reference


def run(opts: RunOptions) -> RunOutcome:
    """Evaluate ``opts.method`` on ``opts.benchmark``; returns the result and its directory."""
    check_dtype(opts.dtype)
    if opts.batch_size < 1 or (opts.limit is not None and opts.limit < 1):
        raise ConfigError("--batch-size and --limit must be positive integers")
    spec: BenchmarkSpec = apply_protocol(BENCHMARKS.get(opts.benchmark), opts.protocol)
    method_cls: type[Matcher] = METHODS.get(opts.method)
    name = method_name(opts.method, method_cls)
    config = config_to_json(build_config(method_cls.Config, opts.options, method_cls.__name__))
    pairset, scored = _load_pairs(spec, opts)

    identity = {
        "method": name,
        "class": f"{method_cls.__module__}:{method_cls.__qualname__}",
        "config": config,
        "benchmark": spec.key,
        "pairs": scored.fingerprint(),
        "dtype": opts.dtype,
        "seed": opts.seed,
    }
    directory = run_directory(opts.out, spec.name, name, identity)
    stored = _stored_run(directory)
    if stored is not None and json_identity_hash(stored["identity"]) != json_identity_hash(identity):
        raise ResultsError(
            f"{directory} holds predictions of a different configuration",
            hint=f"delete {directory} or pass another --out",
        )
    store = PredictionStore(directory / PREDICTIONS_FILE)
    predictions = store.load()
    pending = [p for p in scored.pairs if p.pair_id not in predictions]

    device = resolve_device(opts.device)
    timing: dict[str, Any] = {"resumed_pairs": len(scored.pairs) - len(pending), "predicted_pairs": len(pending)}
    if opts.rescore:
        if pending or stored is None:
            raise ResultsError(
                f"--rescore needs predictions for all {len(scored.pairs)} pairs, but {len(pending)} are missing in "
                f"{store.path}",
                hint="run without --rescore to predict the missing pairs",
            )
        method_info = stored["method"]
    else:
        seed_everything(opts.seed)
        matcher = method_cls(**opts.options).to(device).eval()
        method_info = {"name": name, **matcher.info()}
        if stored is not None and stored["method"]["weights"] != method_info["weights"]:
            raise ResultsError(
                f"{directory} holds predictions made with other weights ({stored['method']['weights']}; now "
                f"{method_info['weights']})",
                hint=f"delete {directory} to predict again with the new weights",
            )
        write_json_atomic(directory / RUN_FILE, {"identity": identity, "method": method_info})
        timing.update(_predict(matcher, pending, store, device, opts))
        predictions = store.load()

    started = time.perf_counter()
    accumulator = score_pairs(spec.protocol, scored.pairs, predictions)
    write_jsonl_atomic(directory / PAIRS_FILE, (s.to_json() for s in accumulator.scores))
    timing["score_seconds"] = round(time.perf_counter() - started, 4)
    record = build_result(
        command=opts.command, spec=spec, pairset=pairset, scored=scored, method=method_info,
        summary=accumulator.summary(), limit=opts.limit, timing=timing,
        env=describe_environment(device, opts.dtype, opts.batch_size, opts.seed), keypoint_margin=KEYPOINT_MARGIN,
    )
    record.write(directory)
    return RunOutcome(record, directory)


def _load_pairs(spec: BenchmarkSpec, opts: RunOptions) -> tuple[PairSet, PairSet]:
    """All pairs of the benchmark (with what was skipped reading them), and those this run scores."""
    adapter = make_adapter(spec, resolve_data_root(opts.data_root), strict=opts.strict)
    adapter.prepare(progress=opts.progress, download=opts.download and not opts.rescore)
    pairset = adapter.pairs(spec.split, spec.subset)
    scored = pairset.pairs[: opts.limit] if opts.limit else pairset.pairs
    return pairset, PairSet(scored, pairset.skipped)


def _stored_run(directory: Path) -> dict[str, Any] | None:
    """The run.json of an earlier run in ``directory`` (its identity and method info), if any."""
    run_file = directory / RUN_FILE
    if not run_file.exists():
        return None
    try:
        stored = json.loads(run_file.read_bytes())
        stored["identity"], stored["method"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ResultsError(f"{run_file} is unreadable ({exc})", hint=f"delete {directory} to start this run afresh")
    return stored


def predict_pairs(matcher: Matcher, pairs: Sequence[Pair], *, device: torch.device, dtype: str, batch_size: int,
                  workers: int = 0, progress: bool = False, desc: str = "predict",
                  ) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """The one predict loop (``corrbench run`` and validation during training): batches of ``pairs`` through
    ``matcher.predict`` under ``dtype``'s autocast, yielding each batch's pair ids and predicted target points
    (float32, one row per keypoint of the pair), in the order of ``pairs``."""
    loader = batch_loader(
        pairs,
        batch_size,
        workers=workers,
        with_masks="masks" in getattr(matcher, "requires", ()),
        with_ground_truth=getattr(matcher, "uses_ground_truth", False),
        pin_memory=device.type == "cuda",
    )
    with tqdm(total=len(pairs), desc=desc, unit="pair", disable=not progress, leave=False) as bar:
        done = 0
        for batch in loader:
            with autocast(device, dtype):
                output = matcher.predict(batch.to(device))
            points = output.points.float().cpu().numpy()
            sizes = [p.num_keypoints for p in pairs[done : done + batch.size]]
            yield batch.pair_ids, [pts[:n] for pts, n in zip(points, sizes)]
            done += batch.size
            bar.update(batch.size)


def score_pairs(protocol: Protocol, pairs: Sequence[Pair], predictions: Mapping[str, np.ndarray]) -> PCKAccumulator:
    """The one scoring loop: each pair's predicted points (by pair id) through the protocol, accumulated."""
    accumulator = PCKAccumulator(protocol.alphas)
    for pair in pairs:
        accumulator.add(protocol.score(pair, predictions[pair.pair_id]))
    return accumulator


def _predict(matcher: Matcher, pairs, store: PredictionStore, device: torch.device, opts: RunOptions) -> dict[str, Any]:
    """Predict ``pairs`` batch by batch, appending to ``store`` after every batch."""
    if not pairs:
        return {"predict_seconds": 0.0}
    started = time.perf_counter()
    for pair_ids, points in predict_pairs(matcher, pairs, device=device, dtype=opts.dtype, batch_size=opts.batch_size,
                                          workers=opts.workers, progress=opts.progress,
                                          desc=f"predict {opts.method} on {opts.benchmark}"):
        store.append(pair_ids, points)
    seconds = time.perf_counter() - started
    cache = getattr(matcher, "feature_cache", None)
    timing = {"predict_seconds": round(seconds, 4), "seconds_per_pair": round(seconds / len(pairs), 6)}
    if cache is not None:
        timing["feature_cache"] = cache.stats.to_json()
    return timing
