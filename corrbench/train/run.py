"""One training run before its first step: devices, the method and its recipe, the run's identity and
directory, the training and validation pairs (``TrainingRun.prepare``), and its ``train.json`` record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import torch

from ..config import config_to_json
from ..data_root import resolve_data_root
from ..datasets import make_adapter
from ..environment import describe_environment
from ..errors import ConfigError, DataError
from ..evaluate import method_name
from ..registry import BENCHMARKS, METHODS
from ..results import utc_timestamp
from ..runtime import seed_everything
from .api import check_flip_views
from .data import TrainingPairs
from .checkpoints import run_directory, run_identity
from .distributed import Processes, start_processes
from .options import MethodToTrain, TrainOptions, build_for_training, canvas_notice, check_precision_device
from .record import TRAIN_SPLIT, VAL_SPLIT, TrainData, TrainRecord


@dataclass
class TrainingRun:
    """Everything one run of ``train`` decided before its first step, in this process."""

    opts: TrainOptions
    procs: Processes
    device: torch.device
    spec: Any  # the benchmark's BenchmarkSpec
    method: str  # the name results record
    built: MethodToTrain
    identity: dict[str, Any]
    run_dir: Path
    notices: list[str]
    train_data: Any = None  # corrbench.train.data.TrainingPairs, read by prepare
    val_pairs: list = field(default_factory=list)

    @property
    def matcher(self) -> Any:
        return self.built.matcher

    @property
    def trainer(self) -> Any:
        return self.built.trainer

    @property
    def recipe(self) -> Any:
        return self.built.recipe

    @classmethod
    def prepare(cls, opts: TrainOptions) -> TrainingRun:
        """Check the options, start the processes, build the method, name the run and read its data."""
        opts.check()
        procs, device = _start(opts)
        spec = BENCHMARKS.get(opts.benchmark)
        method_cls = METHODS.get(opts.method)
        method = method_name(opts.method, method_cls)
        # The method is built from the run's seed (the same in every process), so random initialisations are
        # reproducible on resume and equal across processes; the loop reseeds with ``seed + rank`` afterwards.
        seed_everything(opts.seed, deterministic_cudnn=True)
        built = build_for_training(method_cls, opts)
        check_flip_views(built.trainer, built.recipe, method)
        built.matcher.to(device)
        config = getattr(built.matcher, "config", None)
        notice = canvas_notice(method, opts.options, config, built.preset, built.recipe)
        if notice and procs.main:
            click.secho(f"notice: {notice}", fg="yellow", err=True)
        identity = run_identity(method, method_cls, config_to_json(config) if config is not None else {},
                                built.preset, built.recipe, spec.key, opts.seed, opts.dtype)
        run = cls(opts, procs, device, spec, method, built, identity,
                  run_directory(opts.out, method, spec.name, identity), [notice] if notice else [])
        run._read_data()
        return run

    def _read_data(self) -> None:
        opts = self.opts
        adapter = make_adapter(self.spec, resolve_data_root(opts.data_root))
        adapter.prepare(progress=opts.progress and self.procs.main, download=opts.download)
        train_set = adapter.pairs(TRAIN_SPLIT, self.spec.subset)
        options = self.recipe.data_options(self.spec.dataset, self.trainer.auto_train_resize)
        self.train_data = TrainingPairs(train_set.pairs, options)
        self.val_pairs = self._val_pairs(adapter) if opts.validate else []

    def _val_pairs(self, adapter: Any) -> list:
        try:
            val_set = adapter.pairs(VAL_SPLIT, self.spec.subset)
        except (ConfigError, DataError) as exc:
            raise ConfigError(f"{self.spec.name} has no usable {VAL_SPLIT!r} split for validation: {exc.message}",
                              hint="train with --no-validate") from None
        pairs = val_set.pairs[: self.opts.val_limit] if self.opts.val_limit else val_set.pairs
        if not pairs:
            raise ConfigError(f"{self.spec.name}'s {VAL_SPLIT!r} split is empty", hint="train with --no-validate")
        return pairs

    def record(self, resumed_from: Path | None) -> TrainRecord:
        """``train.json`` of this run (the one place it is built)."""
        opts, recipe, data = self.opts, self.recipe, self.train_data
        return TrainRecord(
            command=opts.command, created_at=utc_timestamp(), identity=self.identity, recipe=recipe.to_json(),
            max_steps=opts.max_steps, world_size=self.procs.world_size,
            method={"name": self.method, **(self.matcher.info() if hasattr(self.matcher, "info") else {})},
            benchmark={**self.spec.to_json(), "key": self.spec.key},
            data=TrainData(train_split=TRAIN_SPLIT, train_pairs=len(data), dropped=data.dropped, resize=data.resize,
                           masks=recipe.masks, val_split=VAL_SPLIT if opts.validate else None,
                           val_pairs=len(self.val_pairs)),
            env=describe_environment(self.device, opts.dtype, recipe.batch_size, opts.seed),
            notices=self.notices, resumed_from=str(resumed_from) if resumed_from else None,
        )


def _start(opts: TrainOptions) -> tuple[Processes, torch.device]:
    procs, device = start_processes(opts.device)
    check_precision_device(opts.dtype, device.type)
    if device.type == "cuda":  # as the authors' train.py on Ampere and newer
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return procs, device
