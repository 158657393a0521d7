"""MARCO (ViT-L/14 + adapters + head) at 840 px on a GPU: pairs per second in fp32 and bf16, cache cold and warm.

    python -m corrbench.perf.marco_gpu                     # needs CUDA; random weights, no download
    python -m corrbench.perf.marco_gpu --dtypes float32 bfloat16 float16 --batch-size 8

Each dtype is one ``corrbench bench`` measurement (``corrbench.timing``) of the ``marco`` method with random
weights (``weights=random``, ``checkpoint=random``: the released architecture, no download) on the
``synthetic`` benchmark's pairs: ``no cache`` re-extracts the images of every batch (the MARCO paper's FPS
protocol with ``--batch-size 1``), ``cold`` starts from an empty feature cache (a first ``corrbench run``),
``warm`` has every feature cached (matching only). ``--device cpu`` runs the same on the CPU (slowly).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from corrbench.config import parse_assignments
from corrbench.timing import BenchOptions, bench
from corrbench.timing_records import WIDE_SPREAD

RANDOM_MARCO = ("weights=random", "checkpoint=random")


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="marco")
    parser.add_argument("--set", dest="settings", action="append", default=None, metavar="KEY=VALUE",
                        help="method option (repeatable; default: weights=random checkpoint=random)")
    parser.add_argument("--resolution", type=int, default=840)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--passes", type=int, default=3, help="timed end-to-end passes per cache state")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-root", default=None)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One ``bench`` record per dtype."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script times the GPU path (use --device cpu to run it on the CPU)")
    options = parse_assignments(args.settings or list(RANDOM_MARCO))
    return [
        bench(BenchOptions(method=args.method, options=options, resolution=args.resolution, dtype=dtype,
                           batch_size=args.batch_size, pairs=args.pairs, iters=args.iters, passes=args.passes,
                           device=args.device, data_root=args.data_root, progress=False))
        for dtype in args.dtypes
    ]


def widest_spread(record: dict[str, Any]) -> float | None:
    """The largest slowest / fastest ratio of the record's stages and cache states (None: all timed once)."""
    spreads = [v.get("spread") for v in [*record["stages"].values(), *record["end_to_end"].values()]]
    return max((s for s in spreads if s is not None), default=None)


def format_rows(records: list[dict[str, Any]]) -> str:
    """One row per record: medians, and the widest spread (flagged when above ``WIDE_SPREAD``)."""
    lines = [f"| {'dtype':<9} | {'extract ms/img':>14} | {'match ms/pair':>13} | {'no cache':>9} | {'cold':>9} | "
             f"{'warm':>9} | {'peak GiB':>8} | {'max/min':>8} |",
             f"|{'-' * 11}|{'-' * 16}|{'-' * 15}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 10}|{'-' * 10}|"]
    for r in records:
        e2e, memory = r["end_to_end"], r["memory"]
        peak = memory.get("cuda_max_allocated_bytes", memory["cpu_peak_rss_bytes"]) / 1024**3
        widest = widest_spread(r)
        spread = "n/a" if widest is None else f"{widest:.2f}" + ("!" if widest > WIDE_SPREAD else "")
        lines.append(
            f"| {r['settings']['dtype']:<9} | {r['stages']['extract_per_image']['median_ms']:>14.1f} | "
            f"{r['stages']['match_per_pair']['median_ms']:>13.2f} | {e2e['no cache']['pairs_per_second']:>9.2f} | "
            f"{e2e['cold']['pairs_per_second']:>9.2f} | {e2e['warm']['pairs_per_second']:>9.2f} | {peak:>8.2f} | "
            f"{spread:>8} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    records = measure(args)
    first = records[0]
    env, s = first["env"], first["settings"]
    print(f"{args.method} at {s['resolution']} px on {env['device']} ({env['device_name']}), torch {env['torch']}, "
          f"batch {s['batch_size']} pairs, {s['pairs']} synthetic pairs, {first['parameters']['total']:,} parameters")
    print("pairs per second end to end (no cache: every batch re-extracts; cold: empty feature cache; warm: all cached)")
    print(format_rows(records))
    print(f"max/min: the slowest timed call or pass over the fastest, worst stage; '!' above {WIDE_SPREAD}x "
          "(the timing is not reliable: rerun with nothing else on the device)")


if __name__ == "__main__":
    main()
