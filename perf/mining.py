"""Flow-anchored mining: milliseconds per pair, corrbench's vectorised chain vs the straightforward loops.

    python -m corrbench.perf.mining                  # 630 px, 180 x 180 grid, 1024 channels
    python -m corrbench.perf.mining --repeats 3 --device cuda

The input is ``mining_pair.make_mining_pair`` at MARCO's training scale (630 px canvas, 180 x 180 teacher
cells, 1024 channels; an object covering 30 % of the image). Both chains run the released mining steps with
the default ``FlowAnchoringConfig``; the script first checks that they return the same matches, then times
each ``--repeats`` times (after one warm-up) and prints per-step medians and the ratio of the medians of
the totals. The loop chain (``mining_loops.py``) runs on the CPU; ``--device cuda`` runs corrbench's on the GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from corrbench.perf.mining_loops import loop_mine_matches
from corrbench.perf.mining_pair import make_mining_pair
from corrbench.environment import device_name
from corrbench.runtime import synchronize
from corrbench.methods.marco.flow_anchoring import mine_matches

STEPS = ("mutual_matches", "dense_flow", "clustering", "anchoring_and_sampling")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=int, default=630, help="canvas side in pixels")
    parser.add_argument("--grid", type=int, default=180, help="teacher feature grid side in cells")
    parser.add_argument("--channels", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="where corrbench's chain runs (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    return parser.parse_args()


def timed(fn, repeats: int, device: torch.device) -> tuple[list[float], dict[str, list[float]], object]:
    fn(0)  # warm-up
    totals, steps, result = [], {}, None
    for r in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        result = fn(r)
        synchronize(device)
        totals.append((time.perf_counter() - started) * 1000)
        for name, ms in result.timings_ms.items():
            steps.setdefault(name, []).append(ms)
    return totals, steps, result


def main() -> None:
    args = arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    features, masks, keypoints = make_mining_pair(args.image, args.grid, args.channels)

    fast = mine_matches(features, masks, keypoints, seed=0)
    slow = loop_mine_matches(features, masks, keypoints, seed=0)
    same = (fast.skipped is None and slow.skipped is None and torch.equal(fast.source, slow.source)
            and torch.equal(fast.target, slow.target))
    if not same:
        raise SystemExit("the two chains disagree on this input; the timing comparison would be meaningless")

    on_device = [t.to(device) for t in (features, masks, keypoints)]
    fast_totals, fast_steps, result = timed(
        lambda r: mine_matches(*on_device, seed=r, profile=True), args.repeats, device)
    slow_totals, slow_steps, _ = timed(
        lambda r: loop_mine_matches(features, masks, keypoints, seed=r), args.repeats, torch.device("cpu"))

    print("Flow-anchored mining per pair (corrbench.perf.mining)")
    print(f"  torch {torch.__version__}, {torch.get_num_threads()} threads; corrbench's chain on {device} "
          f"({device_name(device)}), the loop chain on the CPU")
    print(f"  input: {args.image} px canvas, {args.grid} x {args.grid} cells x {args.channels} channels; "
          f"{result.counts['src_cells']} / {result.counts['trg_cells']} masked cells, {result.counts['seeds_mnn']} "
          f"mutual matches, {result.counts['triangles']} triangles, {result.counts['valid_pixels']} flow pixels, "
          f"{result.counts['clusters']} clusters ({result.counts['anchored_clusters']} anchored), "
          f"{result.counts['matches']} matches -> {result.counts['sampled']} sampled")
    print("  both chains return identical matches on this input (checked before timing)")
    print(f"\nmedian ms over {args.repeats} runs after one warm-up")
    print(f"| {'step':<24} | {'loops':>10} | {'corrbench':>10} | {'ratio':>6} |")
    print(f"|{'-' * 26}|{'-' * 12}|{'-' * 12}|{'-' * 8}|")
    for name in STEPS:
        a, b = statistics.median(slow_steps[name]), statistics.median(fast_steps[name])
        print(f"| {name:<24} | {a:>10.1f} | {b:>10.1f} | {a / b:>5.1f}x |")
    a, b = statistics.median(slow_totals), statistics.median(fast_totals)
    print(f"| {'total per pair':<24} | {a:>10.1f} | {b:>10.1f} | {a / b:>5.1f}x |")


if __name__ == "__main__":
    main()
