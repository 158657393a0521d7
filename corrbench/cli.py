"""The ``corrbench`` command line: run, table, match, bench, ls, describe, download, build-*, train, pseudo-labels.

Errors a user can fix (``CorrbenchError``) are printed as one message with a hint and exit non-zero;
``--debug`` shows the traceback instead. Heavy modules (torch) are imported inside the commands that need
them, so ``corrbench table`` and ``corrbench ls`` start fast.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Callable

import click

from . import __version__
from .errors import CorrbenchError
from .train.options import TRAIN_DTYPES  # imports no torch


class _Group(click.Group):
    """Turns CorrbenchErrors into clean messages (tracebacks only with --debug)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # --debug belongs to the group, but people add it where they are typing (`corrbench run ... --debug`):
        # move it in front of the subcommand (not past a `--`, after which everything is literal).
        cut = args.index("--") if "--" in args else len(args)
        if "--debug" in args[1:cut]:
            args = ["--debug", *(a for a in args[:cut] if a != "--debug"), *args[cut:]]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CorrbenchError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(f"Error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"  hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Finished batches are saved; run the same command again to resume.", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors (also accepted after the subcommand).")
@click.version_option(__version__, prog_name="corrbench")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """corrbench: semantic-correspondence methods and benchmarks under one explicit, versioned protocol."""
    ctx.obj = {"debug": debug}


@cli.command("run")
@click.option("--method", "-m", required=True, help="Registered method name, or path/to/file.py:ClassName.")
@click.option("--benchmark", "-b", required=True, help="Registered benchmark name (see `corrbench ls benchmarks`).")
@click.option("--protocol", "-p", help="Score as a reference codebase does: corrbench (default), marco, geoaware, "
              "unified (see `corrbench ls protocols`).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Method option (repeatable).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option("--dtype", default="float32", show_default=True,
              type=click.Choice(["float32", "bfloat16", "float16"]), help="Autocast dtype for the model.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Pairs per batch.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0), help="Image-loading workers.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N pairs (result marked partial).")
@click.option("--seed", default=0, show_default=True, type=int, help="Global random seed (recorded).")
@click.option("--out", default="results", show_default=True, type=click.Path(path_type=Path),
              help="Where run directories are written.")
@click.option("--data-root", type=click.Path(path_type=Path),
              help="Dataset root (default: $CORRBENCH_DATA, then ~/.cache/corrbench/data).")
@click.option("--rescore", is_flag=True, help="Score cached predictions again without building the model.")
@click.option("--no-download", is_flag=True, help="Never download missing data; say what to fetch instead.")
@click.option("--strict", is_flag=True, help="Fail on the first pair that would be skipped (malformed annotation, "
              "missing image, keypoint off the image) instead of skipping and reporting it.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def run_command(method, benchmark, protocol, settings, device, dtype, batch_size, workers, limit, seed, out,
                data_root, rescore, no_download, strict, quiet) -> None:
    """Evaluate a method on a benchmark and write a result file."""
    from .config import parse_assignments
    from .evaluate import RunOptions, run

    outcome = run(RunOptions(
        method=method, benchmark=benchmark, protocol=protocol, options=parse_assignments(settings), device=device,
        dtype=dtype, batch_size=batch_size, workers=workers, limit=limit, seed=seed, out=out, data_root=data_root,
        rescore=rescore, download=not no_download, strict=strict, progress=not quiet,
        command=shlex.join(["corrbench", *sys.argv[1:]]),
    ))
    _print_run_summary(outcome.result)
    click.echo(f"result: {outcome.result_path}")


#: How many of a configuration's latest bench records ``corrbench bench`` lists after its table.
HISTORY_SHOWN = 10


@cli.command("bench")
@click.option("--method", "-m", required=True, help="Registered method name, or path/to/file.py:ClassName.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Method option (repeatable).")
@click.option("--preset", help="A published timing protocol (marco-paper: MARCO Table 12, 840 px, one pair per batch).")
@click.option("--resolution", type=click.IntRange(min=1), help="Input resolution (the method's `resolution` option).")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1), help="Pairs per batch.")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "bfloat16", "float16"]),
              help="bfloat16 / float16 run the model under autocast.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the feature extraction.")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0), help="Untimed calls per stage.")
@click.option("--iters", default=10, show_default=True, type=click.IntRange(min=1), help="Timed calls per stage.")
@click.option("--passes", default=3, show_default=True, type=click.IntRange(min=1),
              help="Timed end-to-end passes per cache state.")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads while timing (default: torch's); 1 steadies CPU timings on a busy machine.")
@click.option("--pairs", default=16, show_default=True, type=click.IntRange(min=1),
              help="Benchmark pairs in the end-to-end passes.")
@click.option("--benchmark", "-b", default="synthetic", show_default=True, help="Where the timed images come from.")
@click.option("--data-root", type=click.Path(path_type=Path),
              help="Dataset root (default: $CORRBENCH_DATA, then ~/.cache/corrbench/data).")
@click.option("--no-download", is_flag=True, help="Never download missing benchmark data; say what to fetch instead.")
@click.option("--out", default="results", show_default=True, type=click.Path(path_type=Path),
              help="Adds <out>/bench/<method>/<device>-<dtype>-<resolution>px-b<batch>/<UTC time>.json "
                   "(earlier records are kept).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON record instead of the table.")
def bench_command(method, settings, preset, resolution, batch_size, dtype, device, use_compile, warmup, iters, passes,
                  threads, pairs, benchmark, data_root, no_download, out, as_json) -> None:
    """Time a method: parameters, per-stage times (min / median / max), pairs per second and peak memory."""
    import json

    from .config import parse_assignments
    from .files import write_json_atomic
    from .timing import BenchOptions, bench
    from .timing_records import default_output, format_history, format_table, history

    record = bench(BenchOptions(
        method=method, options=parse_assignments(settings), benchmark=benchmark, preset=preset, resolution=resolution,
        batch_size=batch_size, dtype=dtype, device=device, compile=use_compile, warmup=warmup, iters=iters,
        passes=passes, threads=threads, pairs=pairs, data_root=data_root, download=not no_download,
        command=shlex.join(["corrbench", *sys.argv[1:]]),
    ))
    path = default_output(out, record)
    write_json_atomic(path, record)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(format_table(record))
        records = history(path.parent)
        if len(records) > 1:  # earlier runs of the same configuration, to see how far this one can be trusted
            shown = records[-HISTORY_SHOWN:]
            click.echo(f"\nthis configuration's records ({len(shown)} of {len(records)}, oldest first):\n"
                       f"{format_history(shown)}")
    for warning in record["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"record: {path}", err=as_json)


def _print_run_summary(result: dict) -> None:
    from tabulate import tabulate

    protocol = result["benchmark"]["protocol"]
    pck_by, average = protocol["pck_by"], protocol["average"]
    avg_key = "all" if average == "all" else "category_mean"
    alphas = list(result["metrics"]["pck"][pck_by][avg_key])
    rows = [[metric, *(_fmt(result["metrics"][metric][pck_by][avg_key][a]) for a in alphas)]
            for metric in ("pck", "pck_dagger")]
    counts = result["counts"]
    title = (f"{result['method']['name']} on {result['benchmark']['key']} ({counts['pairs']} pairs, "
             f"{counts['points']} points; per {pck_by}, {average}{'; PARTIAL' if result['partial'] else ''})")
    click.echo(title)
    click.echo(tabulate(rows, headers=["metric", *(f"@{a}" for a in alphas)], tablefmt="github", disable_numparse=True))
    if counts["skipped"]:
        click.echo("skipped: " + ", ".join(f"{n} {reason}" for reason, n in counts["skipped"].items()))


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


@cli.command("table")
@click.option("--results", "results_dir", default="results", show_default=True,
              type=click.Path(path_type=Path), help="Directory of run results.")
@click.option("--thresholds", "-t", multiple=True, help="Alphas to show, e.g. --thresholds 0.01 0.05 0.1.")
@click.option("--pck-by", default="image", show_default=True, type=click.Choice(["image", "point"]))
@click.option("--avg", default="all", show_default=True, type=click.Choice(["all", "category"]),
              help="Pool all pairs, or average the per-category values.")
@click.option("--metric", default="pck", show_default=True, type=click.Choice(["pck", "pck_dagger"]))
@click.option("--benchmark", "benchmarks", multiple=True,
              help="Only these benchmarks (repeatable): a base name (spair71k, every protocol's columns) or a "
                   "recorded one (spair71k-geoaware).")
@click.option("--method", "methods", multiple=True, help="Only these methods (repeatable).")
@click.option("--protocol", help="Only runs scored under this protocol (default: runs of every protocol, each in "
                                 "its own columns).")
@click.option("--partial", is_flag=True, help="Also show --limit runs (marked) where no complete run exists.")
@click.option("--format", "fmt", default="md", show_default=True, type=click.Choice(["md", "csv", "latex", "json"]))
@click.option("--published", is_flag=True, help="Add the papers' published numbers (results/published/).")
@click.option("--all-benchmarks", is_flag=True,
              help="With --published: a column for every benchmark with published numbers, however wide "
                   "(always so in csv and json).")
@click.argument("more_thresholds", nargs=-1, metavar="")
def table_command(results_dir, thresholds, pck_by, avg, metric, benchmarks, methods, protocol, partial, fmt,
                  published, all_benchmarks, more_thresholds) -> None:
    """Print local runs (one row per configuration, the newest complete run in each cell) and, optionally,
    published numbers."""
    from .errors import ConfigError
    from .results import find_results
    from .protocols import PRESETS
    from .table import build_table, check_thresholds, load_published, render, usable_runs

    # `--thresholds 0.01 0.05 0.1`: click options take one value each, so the values after the first
    # arrive as arguments; they are accepted only right after --thresholds was given.
    if more_thresholds and not thresholds:
        raise ConfigError(f"unexpected argument(s) {' '.join(more_thresholds)}",
                          hint="thresholds go after --thresholds, e.g. --thresholds 0.01 0.05 0.1")
    values = [v for item in (*thresholds, *more_thresholds) for v in item.replace(",", " ").split()]
    try:
        alphas = [float(v) for v in values] or [0.01, 0.05, 0.1]
    except ValueError:
        raise ConfigError(f"thresholds must be numbers, got {' '.join(values)}") from None
    check_thresholds(alphas)
    results, problems = find_results(results_dir) if results_dir.exists() else ([], [])
    for problem in problems:
        click.secho(f"warning: skipped {problem}", fg="yellow", err=True)
    if not usable_runs(results, partial=partial) and not published:
        limited = bool(results) and not partial
        raise ConfigError(f"no complete runs under {results_dir}",
                          hint="add --partial to show the --limit runs there" if limited else
                          "run `corrbench run --method M --benchmark B` first, or add --published")
    table = build_table(results, thresholds=alphas, pck_by=pck_by, avg=avg, metric=metric, benchmarks=benchmarks,
                        methods=methods, protocol=protocol, partial=partial,
                        all_benchmarks=all_benchmarks or fmt in ("csv", "json"),  # the width limit is for reading
                        published=load_published() if published else (), known_protocols=PRESETS)
    if not table.rows:
        raise ConfigError("no run or published number matches these filters",
                          hint="each name exists, but not together; drop a --benchmark, --method or --protocol")
    click.echo(render(table, fmt))


@cli.command("match")
@click.option("--method", "-m", required=True, help="Registered method name, or path/to/file.py:ClassName.")
@click.option("--src", "src", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Source image.")
@click.option("--trg", "trg", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Target image.")
@click.option("--points", help='Source points as "x,y x,y ..." (pixels, (0, 0) = centre of the top-left pixel).')
@click.option("--points-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON with [[x, y], ...] or {"points": [[x, y], ...]}.')
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Method option (repeatable).")
@click.option("--weights", help="Backbone weights file (sets the method's `weights` option).")
@click.option("--checkpoint", help="Method checkpoint file (sets the method's `checkpoint` option).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write a side-by-side picture here.")
def match_command(method, src, trg, points, points_file, settings, weights, checkpoint, device, as_json, out) -> None:
    """Predict where points of one image land in another, with any method."""
    import json

    from .config import parse_assignments
    from .errors import ConfigError
    from .match_images import build_matcher, match_points, parse_points, read_points_file

    if (points is None) == (points_file is None):
        raise ConfigError("give exactly one of --points and --points-file")
    if out is not None:  # before the model is built: a wrong file name must not cost a model load
        from .visualize import check_picture_path

        check_picture_path(out)
    queries = parse_points(points) if points is not None else read_points_file(points_file)
    options = parse_assignments(settings)
    for key, value in (("weights", weights), ("checkpoint", checkpoint)):
        if value is not None:
            options[key] = value
    from .runtime import resolve_device

    matcher = build_matcher(method, options, resolve_device(device))
    predicted = match_points(matcher, src, trg, queries)
    if as_json:
        click.echo(json.dumps({"method": method, "src": str(src), "trg": str(trg),
                               "src_points": queries.tolist(), "trg_points": predicted.round(2).tolist()}))
    else:
        for i, (a, b) in enumerate(zip(queries, predicted)):
            click.echo(f"{i:3d}  ({a[0]:8.2f}, {a[1]:8.2f})  ->  ({b[0]:8.2f}, {b[1]:8.2f})")
    if out is not None:
        from PIL import Image

        from .visualize import save_correspondences

        with Image.open(src) as src_image, Image.open(trg) as trg_image:
            save_correspondences(out, src_image, trg_image, queries, predicted, title=f"{method}: {src.name} -> {trg.name}")
        if not as_json:
            click.echo(f"picture: {out}")


@cli.command("download")
@click.argument("benchmarks", nargs=-1, required=True)
@click.option("--data-root", type=click.Path(path_type=Path),
              help="Dataset root (default: $CORRBENCH_DATA, then ~/.cache/corrbench/data).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def download_command(benchmarks, data_root, quiet) -> None:
    """Fetch the data of one or more benchmarks into the data root (resumable, checksummed, atomic)."""
    from .data_root import resolve_data_root
    from .datasets import make_adapter
    from .registry import BENCHMARKS

    root = resolve_data_root(data_root)
    for name in benchmarks:
        adapter = make_adapter(BENCHMARKS.get(name), root)
        adapter.prepare(progress=not quiet, download=True)
        click.echo(f"{name}: ready at {adapter.root}")


#: What `corrbench ls WHAT` lists: WHAT -> (one line for `corrbench ls`, the function that prints the listing,
#: taking the NAMES that follow WHAT). Register more with ``@_listing``.
LISTINGS: dict[str, tuple[str, Callable[[tuple[str, ...]], None]]] = {}


def _listing(what: str, summary: str):
    def decorator(show: Callable[[tuple[str, ...]], None]):
        LISTINGS[what] = (summary, show)
        return show

    return decorator


@cli.command("ls")
@click.argument("what", required=False)
@click.argument("names", nargs=-1)
def ls_command(what: str | None, names: tuple[str, ...]) -> None:
    """List what can be listed, or one kind of thing: `corrbench ls methods`, `corrbench ls options tiny-vit`."""
    from .errors import ConfigError

    if what is None:
        _print_columns([(f"corrbench ls {kind}", summary) for kind, (summary, _) in LISTINGS.items()])
        return
    if what not in LISTINGS:
        from .registry import did_you_mean

        close = did_you_mean(what, LISTINGS)
        raise ConfigError(f"cannot list {what!r}", hint=(f"{close} " if close else "")
                          + f"corrbench ls lists: {', '.join(LISTINGS)}")
    LISTINGS[what][1](names)


def _registry_listing(kind: str):
    def show(names: tuple[str, ...]) -> None:
        from .registry import BENCHMARKS, METHODS

        _no_names(kind, names)
        registry = METHODS if kind == "methods" else BENCHMARKS
        rows = []
        for name in registry.names():
            try:
                rows.append((name, registry.get(name).description))
            except CorrbenchError as exc:  # one broken plug-in must not hide the others
                rows.append((name, f"(unavailable: {exc.message})"))
        _print_columns(rows)

    return show


_listing("methods", "registered methods, one line each")(_registry_listing("methods"))
_listing("benchmarks", "registered benchmarks, one line each")(_registry_listing("benchmarks"))


@_listing("options", "a method's options (--set KEY=VALUE): type, default, valid values, meaning")
def _show_options(names: tuple[str, ...]) -> None:
    from .errors import ConfigError
    from .method_help import options_table

    if len(names) != 1:
        raise ConfigError("corrbench ls options takes one method", hint="e.g. corrbench ls options tiny-vit")
    click.echo(options_table(names[0]))


@cli.command("describe")
@click.argument("method")
def describe_command(method: str) -> None:
    """A method: what it is, where it comes from, how it trains, and its options."""
    from .method_help import describe_method

    click.echo(describe_method(method))


def _no_names(kind: str, names: tuple[str, ...]) -> None:
    if names:
        from .errors import ConfigError

        raise ConfigError(f"corrbench ls {kind} takes no names, got {' '.join(names)}",
                          hint="corrbench ls options METHOD lists one method's options")


def _print_columns(rows: list[tuple[str, str]]) -> None:
    width = max((len(n) for n, _ in rows), default=0)
    for name, description in rows:
        click.echo(f"{name.ljust(width)}  {description}")


@_listing("protocols", "named protocols (--protocol NAME) with the fields each sets")
def _list_protocols(names: tuple[str, ...]) -> None:
    from .protocols import PRESETS

    _no_names("protocols", names)
    width = max(len(name) for name in PRESETS)
    for preset in PRESETS.values():
        click.echo(f"{preset.name.ljust(width)}  {preset.description}")
        fields = {**preset.protocol, **{f"frame ({d})": f for d, f in preset.frames.items()},
                  **{f"{k} (where the dataset has it)": v for k, v in preset.adapter_options.items()}}
        for key, value in fields.items():
            click.echo(f"{''.ljust(width)}    {key} = {value}")


# -- dataset builders ---------------------------------------------------------------------------------------
# The builders are plain functions in their dataset folders; these are their commands. The builder modules import
# no torch, and are imported only when a command runs; the names the help texts show come from the layout.

from .datasets.ap10k import layout as ap10k_layout  # noqa: E402


@cli.command("build-ap10k")
@click.option("--raw", "raw", type=click.Path(file_okay=False, path_type=Path),
              help="The unzipped AP-10K download (annotations/, data/); default "
                   f"<data root>/{ap10k_layout.RAW_FOLDER}.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path),
              help="Where datasets live; the benchmark goes to <data root>/AP-10K. Default $CORRBENCH_DATA, "
                   "then ~/.cache/corrbench/data.")
@click.option("--seed", default=42, show_default=True, type=int, help="Seed of the pair sampling (recorded).")
@click.option("--crowd-rule", type=click.Choice(ap10k_layout.CROWD_RULES), default="list", show_default=True,
              help="list: drop the images of GeoAware-SC's crowd list (downloaded to <data root>/"
                   f"{ap10k_layout.CROWD_LIST_SOURCE.provides} on first use), as the papers' builds do; derived: "
                   "images with more than one annotation (or iscrowd), which gives other test lists (warned, "
                   "recorded).")
@click.option("--crowd-list", type=click.Path(dir_okay=False, path_type=Path),
              help="Read the crowd list from this file instead of downloading it (one image id a line); "
                   "a list other than the published one is warned about and recorded.")
@click.option("--path-prefix", default="", metavar="PREFIX",
              help="Written before the ImageAnnotation/... paths in pair files; data/ap-10k/ lets GeoAware-SC's "
                   "and MARCO's loaders read the folder as their data/ap-10k.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def build_ap10k_command(raw: Path | None, data_root: Path | None, seed: int, crowd_rule: str,
                        crowd_list: Path | None, path_prefix: str, quiet: bool) -> None:
    """Build the AP-10K correspondence benchmark (intra-species, cross-species, cross-family pairs)."""
    from .data_root import resolve_data_root
    from .datasets.ap10k.build import build_ap10k, format_statistics

    root = resolve_data_root(data_root)
    out_root = root / ap10k_layout.BUILT_FOLDER
    manifest = build_ap10k(raw or root / ap10k_layout.RAW_FOLDER, out_root, seed=seed, progress=not quiet,
                           crowd_rule=crowd_rule, crowd_list=crowd_list, data_root=root, path_prefix=path_prefix)
    click.echo(format_statistics(manifest, out_root))


@cli.command("build-mp100")
@click.option("--annotations", type=click.Path(file_okay=False, path_type=Path),
              help="Folder with MP-100's mp100_split{1..5}_test.json [default: <data root>/MP-100/annotations].")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path),
              help="MP-100's image folder (category folders) [default: <data root>/MP-100/images].")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path),
              help="Datasets folder; default $CORRBENCH_DATA, then ~/.cache/corrbench/data.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the rebuilt lists (recorded; not used with --official).")
@click.option("--official", is_flag=True, help="Install MARCO's released lists (downloads mp100_pairs.zip).")
@click.option("--official-zip", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Install MARCO's released lists from a local copy of mp100_pairs.zip (offline).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the statistics table.")
def build_mp100_command(annotations, images, data_root, seed, official, official_zip, quiet) -> None:
    """Build MARCO's MP-100 benchmark pair lists into <data root>/MP-100/pairs/ (mp100_all/pairs/ in MARCO's layout).

    Without --official: rebuild the five lists from MP-100's test annotations (seeded, byte-identical every
    time). With --official / --official-zip: install the lists MARCO released, to evaluate the paper's pairs.
    """
    from .data_root import resolve_data_root
    from .datasets.mp100.build import build_mp100
    from .datasets.mp100.layout import MANIFEST_FILE, locate_mp100, pairs_dir
    from .datasets.mp100.release import install_official_lists
    from .datasets.mp100.report import statistics_table

    root = resolve_data_root(data_root)
    folders = locate_mp100(root)
    annotations = annotations or folders.annotations
    images = images or folders.images
    if official or official_zip:
        manifest = install_official_lists(root, zip_path=official_zip, annotations_root=annotations,
                                          images_root=images, progress=not quiet)  # fmt: skip
    else:
        manifest = build_mp100(annotations, images, root, seed=seed, progress=not quiet)
    if quiet:
        click.echo(statistics_table(manifest))
    click.echo(f"written: {pairs_dir(root)} ({manifest['kind']} lists; manifest {MANIFEST_FILE})")
    expected = {folders.annotations: annotations, folders.images: images}
    for place, given in expected.items():
        if Path(given).resolve() != place.resolve():
            click.echo(f"note: the mp100-* benchmarks read {place}; link it: ln -s {Path(given).resolve()} {place}")


@cli.command("train")
@click.option("--method", "-m", required=True, help="A trainable method (e.g. marco).")
@click.option("--benchmark", "-b", required=True, help="Trains on its dataset's trn split, validates on val.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Method option or training setting (repeatable).")
@click.option("--preset", default=None,
              help="Training preset of the method (MARCO: released, paper, or an ablation such as marco-sup).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the preset's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Effective batch over all processes.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Override the preset's learning rate.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many optimisation steps in all.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(list(TRAIN_DTYPES)),
              help="bfloat16 / float16: CUDA autocast for forward passes and losses (float16 also scales the loss).")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0), help="Data-loading workers.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of everything random.")
@click.option("--out", default="results", show_default=True, type=click.Path(path_type=Path),
              help="Runs go to OUT/train/METHOD/BENCHMARK/RUN-ID/.")
@click.option("--data-root", type=click.Path(path_type=Path),
              help="Dataset root (default: $CORRBENCH_DATA, then ~/.cache/corrbench/data).")
@click.option("--resume", default=None, metavar="PATH|auto",
              help="Continue a run: a checkpoint, a run directory, or auto (this configuration's run, if any).")
@click.option("--no-validate", is_flag=True, help="Skip the per-epoch validation on the val split.")
@click.option("--val-limit", type=click.IntRange(min=1), help="Validate on the first N val pairs only.")
@click.option("--no-download", is_flag=True, help="Never download missing data.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def train_command(method, benchmark, settings, preset, epochs, batch_size, lr, max_steps, device, dtype, workers,
                  seed, out, data_root, resume, no_validate, val_limit, no_download, quiet) -> None:
    """Train a method on a benchmark's training split (checkpoints, log, validation, resume)."""
    import os

    from .config import parse_assignments
    from .train.loop import train
    from .train.options import TrainOptions

    outcome = train(TrainOptions(
        method=method, benchmark=benchmark, options=parse_assignments(settings), preset=preset, epochs=epochs,
        batch_size=batch_size, lr=lr, max_steps=max_steps, device=device, dtype=dtype, workers=workers, seed=seed,
        out=out, data_root=data_root, resume=resume, validate=not no_validate, val_limit=val_limit,
        progress=not quiet, download=not no_download, command=shlex.join(["corrbench", *sys.argv[1:]]),
    ))
    if int(os.environ.get("RANK", "0")) != 0:
        return
    click.echo(f"trained {outcome.steps} steps ({outcome.epochs_done} epochs done)")
    if outcome.best is not None:
        click.echo(f"best: epoch {outcome.best['epoch']}, val PCK@0.1 {outcome.best['selection']:.2f}")
    if outcome.last_checkpoint is not None:
        click.echo(f"last checkpoint: {outcome.last_checkpoint}")
    click.echo(f"run: {outcome.directory}")


@_listing("trainers", "registered trainers (a method's trainer = \"NAME\") and the trainable methods' trainers")
def _list_trainers(names: tuple[str, ...]) -> None:
    from .registry import METHODS
    from .train.api import TRAINERS

    _no_names("trainers", names)
    rows = [(name, "registered trainer") for name in TRAINERS.names()]
    for name in METHODS.names():
        try:
            target = getattr(METHODS.get(name), "trainer", None)
        except CorrbenchError:  # `ls methods` reports a broken plug-in
            continue
        if target is not None:
            rows.append((name, f"method trained by {target if isinstance(target, str) else target.__qualname__}"))
    _print_columns(rows)




# -- DIY-SC pseudo-labels ------------------------------------------------------------------------------------

@cli.command("pseudo-labels")
@click.option("--method", "-m", default="diy-sc", show_default=True,
              help="Whose pseudo-labels (a registered generator; the options below are DIY-SC's).")
@click.option("--source", "-s", default="spair71k", show_default=True,
              help="An SPair-layout benchmark (spair71k, synthetic) whose trn/val images are pseudo-labelled.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="The folder to write [default: <data root>/<source folder>-DIY-SC, which the "
                   "<source>-diy-sc benchmarks read].")
@click.option("--data-root", type=click.Path(path_type=Path),
              help="Dataset root (default: $CORRBENCH_DATA, then ~/.cache/corrbench/data).")
@click.option("--pairs", "pairs", multiple=True, metavar="SPLIT=N",
              help="Most pairs per category of a split (repeatable) [default: trn=30000, val=300, DIY-SC's README].")
@click.option("--chain-length", default=4, show_default=True, type=int, help="Images per chain (their --n_tupl).")
@click.option("--chaining", default="azimuth_bin", show_default=True, type=click.Choice(["azimuth_bin", "random"]),
              help="How chains are sampled: consecutive azimuth bins (SPair's ImageAnnotation), or random images.")
@click.option("--cycle", default="relaxed", show_default=True, type=click.Choice(["relaxed", "strict"]),
              help="Cyclic consistency of each link: return within --rejection-patches, or exactly.")
@click.option("--rejection-patches", default=2, show_default=True, type=click.IntRange(min=0),
              help="Relaxed cyclic-consistency radius in patches (their --rej_th_patch).")
@click.option("--sphere-filter/--no-sphere-filter", default=True, show_default=True,
              help="Reject labels whose spherical-mapper points disagree (their --filter_sph).")
@click.option("--sphere-threshold", default=0.15, show_default=True, type=click.FloatRange(min=0, max=1),
              help="Largest kept angle between the two spherical points, as a fraction of pi.")
@click.option("--sphere-weights", metavar="PATH|random",
              help="Spherical-mapper checkpoint [default: DIY-SC's released one, downloaded on first use].")
@click.option("--masks", default="segmentation", show_default=True, metavar="segmentation|FOLDER",
              help="Object masks: the dataset's segmentation, or a folder of DIY-SC's SAM masks "
                   "(<folder>/<cat>/<name>_mask.png).")
@click.option("--resolution", default=840, show_default=True, type=click.IntRange(min=14),
              help="Canvas side for DINOv2 features (a multiple of 14).")
@click.option("--backbone-weights", metavar="PATH|random",
              help="DINOv2 ViT-B/14 weights [default: the official ones]; random also makes SD random.")
@click.option("--sources", default="dino", show_default=True, type=click.Choice(["dino", "sd,dino"]),
              help="Zero-shot features: DINOv2 (their README's --only_dino command) or SD + DINOv2 (their "
                   "script's default, the paper's main setting; needs the diffusion extra).")
@click.option("--seed", default=42, show_default=True, type=int, help="Seed of the tuple sampling (theirs: 42).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Images per forward pass.")
@click.option("--no-download", is_flag=True, help="Never download missing data.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def pseudo_labels_command(method, source, out, data_root, pairs, chain_length, chaining, cycle, rejection_patches,
                          sphere_filter, sphere_threshold, sphere_weights, masks, resolution, backbone_weights, sources,
                          seed, device, batch_size, no_download, quiet) -> None:
    """Generate DIY-SC's pseudo-labels as an SPair-layout folder (resumable: run it again to finish)."""
    from .data_root import resolve_data_root
    from .datasets.pseudo_labels import GENERATORS
    from .errors import ConfigError

    counts = {}
    for item in pairs:
        split, _, number = item.partition("=")
        try:
            counts[split.strip()] = int(number)
        except ValueError:
            raise ConfigError(f"--pairs {item!r} is not SPLIT=N",
                              hint="e.g. --pairs trn=30000 --pairs val=300") from None
    root = resolve_data_root(data_root)
    folder, manifest, hint = GENERATORS.get(method)(
        data_root=root, out=out, device=device, batch_size=batch_size, download=not no_download, progress=not quiet,
        source=source, pairs=counts or None, chain_length=chain_length, chaining=chaining, cycle=cycle,
        rejection_patches=rejection_patches, sphere_filter=sphere_filter, sphere_threshold=sphere_threshold,
        sphere_weights=sphere_weights, masks=masks, resolution=resolution, backbone_weights=backbone_weights,
        sources=tuple(sources.split(",")), seed=seed)
    for split, per_category in manifest["counts"].items():
        listing = ", ".join(f"{c} {n}" for c, n in per_category.items())
        click.echo(f"{split}: {sum(per_category.values())} pairs ({listing})")
    click.echo(f"written: {folder}")
    click.echo(hint)


def main() -> None:
    cli(prog_name="corrbench")


if __name__ == "__main__":
    main()
