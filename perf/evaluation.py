"""Full evaluation: corrbench's harness vs a naive loop that re-extracts both images of every pair.

    python -m corrbench.perf.evaluation                       # dinov2-vits14, random weights, 840 px
    python -m corrbench.perf.evaluation --method dinov2-vitb14 --limit 20
    python -m corrbench.perf.evaluation --method marco --set weights=random --set checkpoint=random \\
        --device cuda --dtype bfloat16

Both evaluate the same pairs of a benchmark (``synthetic``'s 60 test pairs by default, generated offline)
with the same matcher object and the same protocol, and must give the same PCK. The naive loop is how the
reference scripts evaluate: for each pair, load both images, extract each one alone in fp32, match, score.
The harness is ``corrbench run`` (``corrbench.evaluate.run``): batches of pairs, each distinct image
extracted once into the feature cache, in the chosen dtype, predictions cached to disk, results written.
Weights are random by default (``--set weights=random``): timing needs the real architecture, not its
trained values. Wall-clock times include image loading and scoring for both.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from corrbench.config import parse_assignments
from corrbench.data_root import resolve_data_root
from corrbench.datasets import make_adapter
from corrbench.datasets.images import load_image
from corrbench.environment import device_name
from corrbench.evaluate import RunOptions, run
from corrbench.runtime import resolve_device
from corrbench.metrics import PCKAccumulator
from corrbench.registry import BENCHMARKS, METHODS


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="dinov2-vits14")
    parser.add_argument("--set", dest="settings", action="append", default=None, metavar="KEY=VALUE",
                        help="method option (repeatable; default: weights=random)")
    parser.add_argument("--benchmark", default="synthetic")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    parser.add_argument("--batch-size", type=int, default=8, help="the harness's pairs per batch")
    parser.add_argument("--dtype", default="float32", help="the harness's dtype (the naive loop is always fp32)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0, help="the harness's image-loading workers")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--data-root", type=Path, default=None)
    return parser.parse_args()


def naive_evaluation(matcher, pairs, spec, device: torch.device) -> dict:
    """Per pair: load, extract the source and the target image one at a time (fp32), match, score."""
    accumulator = PCKAccumulator(spec.protocol.alphas)
    with torch.inference_mode():
        for pair in pairs:
            src = load_image(pair.src_image, pair.src_size).to(device)
            trg = load_image(pair.trg_image, pair.trg_size).to(device)
            (src_map,) = matcher.extract([src])
            (trg_map,) = matcher.extract([trg])
            points = torch.from_numpy(pair.src_kps).float().nan_to_num(0.0).to(device)
            predicted = matcher.match_maps(src_map, trg_map, points).float().cpu().numpy()
            accumulator.add(spec.protocol.score(pair, predicted))
    return accumulator.summary()


def main() -> None:
    args = arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
    options = parse_assignments(args.settings or ["weights=random"])
    device = resolve_device(args.device)
    spec = BENCHMARKS.get(args.benchmark)
    adapter = make_adapter(spec, resolve_data_root(args.data_root))
    adapter.prepare(progress=False)
    pairs = adapter.pairs(spec.split, spec.subset).pairs[: args.limit]
    images = len({p.src_id for p in pairs} | {p.trg_id for p in pairs})

    torch.manual_seed(0)
    matcher = METHODS.get(args.method)(**options).to(device).eval()
    if not hasattr(matcher, "extract"):
        raise SystemExit(f"{args.method} has no feature extraction: nothing to compare")

    started = time.perf_counter()
    naive = naive_evaluation(matcher, pairs, spec, device)
    naive_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        outcome = run(RunOptions(method=args.method, benchmark=args.benchmark, options=options, device=str(device),
                                 dtype=args.dtype, batch_size=args.batch_size, workers=args.workers, limit=args.limit,
                                 out=Path(out), data_root=args.data_root, progress=False))
        harness_seconds = time.perf_counter() - started
    harness = outcome.result["metrics"]["pck"]
    cache = outcome.result["timing"].get("feature_cache", {})

    print("Full evaluation, corrbench's harness vs a naive per-pair loop (corrbench.perf.evaluation)")
    print(f"  torch {torch.__version__}, {torch.get_num_threads()} threads, {device} ({device_name(device)})")
    print(f"  {args.method} {options} ({sum(p.numel() for p in matcher.parameters()):,} parameters), "
          f"{len(pairs)} {args.benchmark} pairs over {images} distinct images")
    print(f"  naive loop: {2 * len(pairs)} extractions, one image at a time, fp32")
    print(f"  harness: batch {args.batch_size} pairs, {args.dtype}, {args.workers} workers, "
          f"{cache.get('misses', '?')} extractions ({cache.get('hits', '?')} cache hits)")
    print()
    print(f"| {'evaluation':<12} | {'seconds':>8} | {'pairs/s':>8} | {'PCK@0.1 (image, all)':>21} |")
    print(f"|{'-' * 14}|{'-' * 10}|{'-' * 10}|{'-' * 23}|")
    for name, seconds, summary in (("naive loop", naive_seconds, naive["pck"]), ("harness", harness_seconds, harness)):
        print(f"| {name:<12} | {seconds:>8.1f} | {len(pairs) / seconds:>8.2f} | {summary['image']['all']['0.1']:>21.2f} |")
    print(f"\nspeed-up: {naive_seconds / harness_seconds:.1f}x")


if __name__ == "__main__":
    main()
