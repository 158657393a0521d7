"""MARCO's central claim in miniature: dense self-distillation keeps unseen keypoints matchable.

Trains a tiny MARCO twice on the synthetic benchmark's ``trn`` split on the CPU, with the same seed, data order
and initialisation: with flow-anchored self-distillation (``marco``) and without it (``marco-sup``). Then
scores both, and the untrained initialisation, on the held-out ``test`` pairs of ``synthetic`` (the keypoint
types seen in training) and ``synthetic-unseen`` (four other keypoint types per category, never supervised),
with corrbench's own protocol (``Protocol.score``, PCK per image, bbox threshold), and prints the time per
training step split into data, student forward, teacher forward, mining, losses, backward and optimiser.

    python -m corrbench.experiments.marco_synthetic            # about 1.5 minutes on 2 CPU cores
    python -m corrbench.experiments.marco_synthetic --epochs 1 --max-steps 5 --score-limit 12   # a quick look
    python -m corrbench.experiments.marco_synthetic --images-per-category 60 --train-pairs 160 --test-pairs 24 \
        --epochs 6 --adapter-blocks 0,12                     # ten times the data, 1,200 steps: about 19 minutes

``--images-per-category`` trains and scores on a larger dataset from the same generator (seed 0), registered
as ``synthetic-i<N>-p<trn>`` / ``-unseen`` with its own data folder; the synthetic benchmark itself is never
replaced.

The tiny MARCO: DINOv2 ViT-S/14 with RANDOM weights (no download; ``--weights official`` or a path for the
real ones; frozen, as MARCO's backbone), AdaptFormer adapters in its last blocks (``--adapter-blocks``), the
2-stage 4x upsampling head, trained with the released recipe except where a miniature needs otherwise
(printed): a higher learning rate, a small batch, a 112 px canvas, and the paper's sigma schedule (3 -> 1 over
the run; the released one holds 3.5 for the first 1,000 steps, longer than a short run).

Reading the numbers: a frozen RANDOM backbone gives features with little semantic content. The training loss
falls (the runs fit their training pairs), but on held-out instances both runs stay within a few points of
chance, and the order of the two changes with the seed and the size; differences of a point or two are within
the noise of the test pairs. Offline, the script therefore measures the pipeline end to end and the cost of
each stage of a step; it tests the paper's claim only with real backbone weights (``--weights official`` or a
path), where the teacher's mutual nearest neighbours mean something. The README lists what was measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from corrbench.data_root import resolve_data_root
from corrbench.datasets import make_adapter
from corrbench.errors import CorrbenchError
from corrbench.registry import BENCHMARKS, METHODS
from corrbench.train.loop import train
from corrbench.train.options import TrainOptions
from corrbench.train.validation import validate

STAGES = ("data", "student_forward", "teacher_forward", "mining", "losses", "other", "backward", "optimizer", "total")
ALPHAS = ("0.05", "0.1")


def _marco_method() -> str:
    """``marco`` as a trainable method.

    Normally the ``corrbench.methods`` entry point and ``MARCOMatcher.trainer`` provide it; this also works
    from a checkout whose installed metadata predates them.
    """
    from corrbench.methods.marco.matcher import MARCOMatcher

    if getattr(MARCOMatcher, "trainer", None) is None:
        MARCOMatcher.trainer = "corrbench.methods.marco.training:MARCOTrainer"
    if "marco" not in METHODS:
        METHODS.register("marco", MARCOMatcher)
    return "marco"


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="passes over the 120 training pairs")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--resolution", type=int, default=112, help="training and inference canvas (multiple of 14)")
    parser.add_argument("--adapter-blocks", default="9,12", help="adapters in blocks START..STOP-1 of the 12")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default="random",
                        help="ViT-S/14 backbone: random (default, offline), official (DINOv2's file from the torch hub "
                        "cache, downloaded if absent), or a path")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--images-per-category", type=int, default=None,
                        help="train and test on a larger generated synthetic dataset with this many images per "
                        "category (default: the synthetic benchmark itself, 12)")
    parser.add_argument("--train-pairs", type=int, default=160,
                        help="with --images-per-category: trn pairs per category")
    parser.add_argument("--test-pairs", type=int, default=24,
                        help="with --images-per-category: test pairs per category")
    parser.add_argument("--max-steps", type=int, default=None, help="stop each training run after this many steps")
    parser.add_argument("--score-limit", type=int, default=None, help="score only the first N pairs of each test set")
    parser.add_argument("--out", type=Path, default=None, help="run folders (default: a new temporary folder)")
    parser.add_argument("--data-root", type=Path, default=None)
    return parser.parse_args(argv)


def method_options(args: argparse.Namespace, self_distillation: bool) -> dict[str, str]:
    return {
        "weights": "none" if args.weights == "official" else args.weights, "checkpoint": "random",
        "seed": str(args.seed), "backbone": "vits14",
        "adapter_blocks": args.adapter_blocks, "upsampling_stages": "2", "resolution": str(args.resolution),
        "train_resolution": str(args.resolution), "sigma_schedule": "paper",
        "self_distillation": "true" if self_distillation else "false",
    }


def score(checkpoint: Path | None, args: argparse.Namespace, test_sets: dict) -> dict[str, dict[str, float]]:
    """PCK per image on each test set, of the weights in ``checkpoint`` (None: the initialisation)."""
    from corrbench.methods.marco.checkpoint import load_checkpoint
    from corrbench.methods.marco.matcher import MARCOMatcher

    options = {k: v for k, v in method_options(args, True).items() if k in MARCOMatcher.Config.__dataclass_fields__}
    matcher = MARCOMatcher(**options)
    if checkpoint is not None:
        load_checkpoint(matcher.model, checkpoint, progress=False)
    out = {}
    for name, (spec, pairs) in test_sets.items():
        summary = validate(matcher, pairs, spec, torch.device("cpu"), "float32", batch_size=16)
        out[name] = summary["pck"]["image"]["all"]
    return out


def step_seconds(run_dir: Path) -> dict[str, float]:
    """Mean seconds per training step of each stage (the first step, which warms up, left out)."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    steps = [r["seconds"] for r in records if r["event"] == "step"][1:]
    return {stage: float(np.mean([s.get(stage, 0.0) for s in steps])) for stage in STAGES}


def benchmark_names(args: argparse.Namespace) -> tuple[str, str]:
    """``(seen, unseen)`` benchmark names the experiment trains and scores on.

    By default the synthetic benchmark itself. With ``--images-per-category`` a larger dataset from the same
    generator (seed 0, more images and pairs per category, its own data folder) is registered under its own
    names, so it never stands in for the benchmark.
    """
    if args.images_per_category is None:
        return "synthetic", "synthetic-unseen"
    from dataclasses import replace

    from corrbench.benchmarks.synthetic import SYNTHETIC, SYNTHETIC_UNSEEN

    n, trn, test = args.images_per_category, args.train_pairs, args.test_pairs
    # val keeps the benchmark's 6 pairs per category: the runs train without validation
    size = {"images_per_category": n, "pairs_per_category": {"trn": trn, "val": 6, "test": test}}
    tag = f"synthetic-i{n}-p{trn}"
    for spec, name in ((SYNTHETIC, tag), (SYNTHETIC_UNSEEN, f"{tag}-unseen")):
        if name not in BENCHMARKS:
            BENCHMARKS.register(name, replace(
                spec, name=name, data_dir=f"corrbench-{tag}",
                description=f"{spec.description}; {n} images and {trn} trn / {test} test pairs per category",
                adapter_options={**spec.adapter_options, **size},
            ))
    return tag, f"{tag}-unseen"


def load_test_sets(args: argparse.Namespace) -> dict:
    """The data the experiment runs on: benchmark names, held-out test pairs and the number of training pairs."""
    data_root = resolve_data_root(args.data_root)
    seen, unseen = benchmark_names(args)
    test_sets = {}
    for name in (seen, unseen):
        spec = BENCHMARKS.get(name)
        adapter = make_adapter(spec, data_root)
        adapter.prepare(progress=False)
        pairs = adapter.pairs(spec.split, spec.subset).pairs
        test_sets[name] = (spec, pairs[: args.score_limit] if args.score_limit else pairs)
    return {"benchmarks": (seen, unseen), "test_sets": test_sets,
            "trn_pairs": len(make_adapter(test_sets[seen][0], data_root).pairs("trn").pairs),
            "test_pairs": {name: len(pairs) for name, (_, pairs) in test_sets.items()}}


def run_experiment(args: argparse.Namespace, data: dict, echo=print) -> dict:
    """Train both runs, score them and the initialisation; ``echo`` says when each run is done.

    Returns ``data`` with what ``report`` prints added.
    """
    out = args.out or Path(tempfile.mkdtemp(prefix="marco_synthetic_"))
    method = _marco_method()
    seen = data["benchmarks"][0]
    results, timings, steps, seconds = {}, {}, {}, {}
    results["initialisation (untrained)"] = score(None, args, data["test_sets"])
    for label, self_distillation in (("marco (self-distillation)", True), ("marco-sup (no self-distillation)", False)):
        started = time.perf_counter()
        outcome = train(TrainOptions(
            method=method, benchmark=seen, options=method_options(args, self_distillation),
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_steps=args.max_steps, device="cpu",
            seed=args.seed, out=out / ("sd" if self_distillation else "sup"), data_root=args.data_root,
            validate=False, progress=sys.stderr.isatty(),  # the engine's bars on a terminal, none in logs
        ))
        seconds[label] = time.perf_counter() - started
        steps[label] = outcome.steps
        echo(f"  trained {label}: {steps[label]} steps in {seconds[label]:.0f} s ({outcome.directory})")
        results[label] = score(outcome.last_checkpoint, args, data["test_sets"])
        timings[label] = step_seconds(outcome.directory)
    return {**data, "out": out, "pck": results, "step_seconds": timings, "steps": steps, "train_seconds": seconds}


def describe(args: argparse.Namespace, data: dict) -> list[str]:
    """The header: the model, the recipe and the data, as run (printed before the training starts)."""
    from corrbench.methods.marco.training import PRESETS

    released = PRESETS["released"]
    seen, unseen = data["benchmarks"]
    trn_pairs, test_pairs = data["trn_pairs"], data["test_pairs"]
    start, stop = (int(b) for b in args.adapter_blocks.split(","))
    backbone = f"random init (seed {args.seed})" if args.weights == "random" else f"weights {args.weights}"
    steps = f"{args.epochs} epochs x {trn_pairs // args.batch_size} steps"
    if args.max_steps:
        steps += f", at most {args.max_steps} steps"
    return [
        "MARCO on the synthetic benchmark, CPU (corrbench.experiments.marco_synthetic)",
        f"  torch {torch.__version__}, {torch.get_num_threads()} threads, seed {args.seed}",
        f"  model: DINOv2 ViT-S/14 {backbone}, frozen; adapters in blocks {start}..{stop - 1} of 0..11 "
        f"(bottleneck 0.5 x 384 = 192, scale 0.1); 2-stage 4x head; canvas {args.resolution} px (stretch) for "
        "training and inference",
        f"  training: {seen} trn ({trn_pairs} pairs), {steps}, batch {args.batch_size}, {released.optimizer} lr "
        f"{args.lr:g} (released 1e-4) weight decay {released.weight_decay:g}, clip {released.clip_grad_norm}, "
        "sigma 3 -> 1 cosine over the run (paper), EMA 0.99 -> 0.9995 over 90% of 5 epochs (released), flow "
        "anchoring: k 7, 300 samples, weight 1, masks: ground-truth segmentation",
        f"  scored on: {seen} test ({test_pairs[seen]} pairs, seen keypoint types) and {unseen} test "
        f"({test_pairs[unseen]} pairs, held-out keypoint types); PCK per image, bbox threshold, original image frame",
    ]


def report(outcome: dict) -> list[str]:
    """The PCK table and the per-stage step times."""
    seen, unseen = outcome["benchmarks"]
    lines = ["", "PCK (%) on held-out test pairs"]
    header = f"| {'model':<34} | seen @0.05 | seen @0.1 | unseen @0.05 | unseen @0.1 |"
    lines += [header, "|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|"]
    for label, values in outcome["pck"].items():
        cells = [f"{values[seen][a]:.1f}" for a in ALPHAS] + [f"{values[unseen][a]:.1f}" for a in ALPHAS]
        lines.append(f"| {label:<34} | {cells[0]:>10} | {cells[1]:>9} | {cells[2]:>12} | {cells[3]:>11} |")

    lines += ["", "Seconds per training step (mean over steps 2..N)"]
    widths = [max(len(stage), 6) for stage in STAGES]
    lines.append(f"| {'run':<34} | " + " | ".join(f"{s:>{w}}" for s, w in zip(STAGES, widths)) + " |")
    lines.append("|" + "-" * 36 + "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for label, seconds in outcome["step_seconds"].items():
        lines.append(f"| {label:<34} | " + " | ".join(f"{seconds[s]:>{w}.3f}" for s, w in zip(STAGES, widths)) + " |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    args = arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        data = load_test_sets(args)
        print("\n".join(describe(args, data)), flush=True)
        outcome = run_experiment(args, data, echo=lambda line: print(line, flush=True))
    except CorrbenchError as exc:  # bad options or data: the message and its hint, no traceback
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None  # the exit status `corrbench` gives the same error
    print("\n".join(report(outcome)))
    return outcome


if __name__ == "__main__":
    main()
