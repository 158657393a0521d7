"""The training loop: ``train(TrainOptions) -> TrainOutcome`` (``corrbench train``).

In order:

1. ``TrainingRun.prepare``: the method is built under ``seed`` (identically in every process) with its trainer's
   ``training_method_defaults`` and the ``--set`` keys its options know, and asked for its trainer; a preset of
   the trainer's recipes is picked, then overridden by the other ``--set`` keys and ``--epochs`` /
   ``--batch-size`` / ``--lr`` (``options.split_options``: each key belongs to exactly one owner); the data: the
   benchmark's dataset read through its adapter, split ``trn`` for training (``corrbench.train.data``) and
   ``val`` for model selection;
2. seeds: python, numpy and torch reseeded with ``seed + rank`` (the authors' ``make_deterministic``); the
   order of pairs comes from its own generator seeded with ``seed + epoch`` (``train.data.EpochBatches``);
3. per step (``TrainingLoop._step``): ``training_step`` under autocast (bf16 or fp16 on CUDA when asked),
   ``loss.backward()`` (loss-scaled in fp16: ``dtypes.LossScaling``; its state is the checkpoint's
   ``grad_scaler``), gradient clipping of the unscaled gradients, optimiser step (skipped by fp16 on overflow,
   logged as ``skipped``), ``on_optimizer_step`` (the EMA teacher); a constant learning rate unless the trainer's
   ``lr_scheduler`` gives a schedule (stepped after every step, its state in the checkpoints);
4. per epoch (and where ``--max-steps`` stops): validation PCK on the ``val`` pairs with the benchmark's own
   protocol (``validation.validate``: the loops ``corrbench run`` uses), then a checkpoint (``_save``);
   ``best.pth`` follows the best PCK@0.1 per image over all pairs.

Run directory: ``<out>/train/<method>/<benchmark>/<run-id>/`` (``checkpoints.run_identity``):

``train.json``                the resolved configuration, method info, data counts, environment (``record``)
``log.jsonl``                 one line per optimisation step and per validation (``record.LOG_FIELDS``)
``summary.json``              validation history, best and last checkpoint, steps done
``checkpoints/epoch_NNN.pth`` after each epoch (``step_NNNNNNN.pth`` when ``--max-steps`` stops mid-epoch)
``checkpoints/last.pth``, ``best.pth``   hard links to the latest and the best of those

``--resume`` restores the whole state (``checkpoints``), so a resumed run continues bit-identically on CPU.

Multi-GPU (``distributed``): ``--batch-size`` is the effective batch (``G`` x per-process batch, as the authors'
``train.py`` divides it) and the batches of one step over all processes are exactly the single-process batch
of that step (``EpochBatches`` plays ``DistributedSampler`` + ``set_epoch``). A trainer that normalises its
losses by counts summed over processes (MARCO's does) then computes the single-process gradient; process 0
alone logs, validates and writes checkpoints, and a resume needs the same number of processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import click
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..dtypes import LossScaling, autocast
from ..runtime import StageTimer, seed_everything
from .data import EpochBatches, collate_training
from .api import StepOutput, TrainingError, TrainingPlan, TrainingRecipe
from .checkpoints import (CHECKPOINT_DIR, LAST, LR_SCHEDULER_KEY, RESUME_KEYS, SCALER_KEY, check_same_run,
                          find_resume_file, load_checkpoint_file, rng_state, run_directory_of, save_checkpoint,
                          set_rng_state)
from .options import TrainOptions
from .record import LOG_FIELDS, LOG_FILE, append_log, write_summary
from .run import TrainingRun
from .validation import SELECTION_METRIC, selection_value, validate


@dataclass
class TrainOutcome:
    directory: Path
    steps: int
    epochs_done: int
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    last_checkpoint: Path | None

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE


def train(opts: TrainOptions) -> TrainOutcome:
    """Train ``opts.method`` on ``opts.benchmark``'s training split (see the module docstring)."""
    return TrainingLoop(TrainingRun.prepare(opts)).fit()


def _optimizer(recipe: TrainingRecipe, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)


def _number(value: Any) -> float:
    return float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)


class TrainingLoop:
    """The optimisation of one prepared run: the position (``step``, ``epoch``, ``batch_in_epoch``), the
    optimiser, the validation history and the best validation so far.

    Named apart from the methods' trainers (``Trainable``), which this loop drives.
    """

    def __init__(self, run: TrainingRun):
        self.run, self.procs, self.device = run, run.procs, run.device
        self.recipe, self.trainer, opts = run.recipe, run.trainer, run.opts
        self.resume_file = find_resume_file(opts.resume, run.run_dir) if opts.resume else None
        checkpoint = self._checkpoint_to_resume()
        self.sampler = EpochBatches(len(run.train_data), self.recipe.batch_size, seed=opts.seed, rank=self.procs.rank,
                                    world_size=self.procs.world_size)
        self.steps_per_epoch = self.sampler.batches_per_epoch()
        self.parameters = self._configure_trainer()
        self.optimizer = _optimizer(self.recipe, self.parameters)
        hook = getattr(self.trainer, "lr_scheduler", None)  # a Trainable need not derive from TrainerBase
        self.lr_scheduler = hook(self.optimizer) if callable(hook) else None
        self.scaling = LossScaling(opts.dtype, self.device)
        self._restore(checkpoint)
        self.procs.bind_student(self.trainer, self.device)
        self.loader = self._loader()
        self.last_path: Path | None = self.resume_file
        self._start_files(resumed=checkpoint is not None)

    # -- setup -------------------------------------------------------------------------------------------------
    def _checkpoint_to_resume(self) -> dict[str, Any] | None:
        run = self.run
        if self.resume_file is None:
            if (run.run_dir / CHECKPOINT_DIR / LAST).exists():
                raise ConfigError(f"{run.run_dir} already holds checkpoints of this configuration",
                                  hint="continue it with --resume auto, or delete the folder to start over")
            return None
        checkpoint = load_checkpoint_file(self.resume_file)
        check_same_run(checkpoint, self.resume_file, run.identity, self.procs.world_size)
        run.run_dir = run_directory_of(self.resume_file)
        return checkpoint

    def _configure_trainer(self) -> list[nn.Parameter]:
        opts = self.run.opts
        plan = TrainingPlan(steps_per_epoch=self.steps_per_epoch, epochs=self.recipe.epochs, device=self.device,
                            dtype=opts.dtype, world_size=self.procs.world_size, rank=self.procs.rank, seed=opts.seed)
        self.trainer.configure_training(self.recipe, plan)
        parameters = list(self.trainer.trainable_parameters())
        if not parameters or not all(p.requires_grad for p in parameters):
            raise ConfigError(f"{self.run.method}: trainable_parameters() must return parameters that require gradients")
        return parameters

    def _restore(self, checkpoint: dict[str, Any] | None) -> None:
        """Reseed this process (``seed + rank``), then load a resumed run's whole state over it."""
        seed_everything(self.run.opts.seed + self.procs.rank, deterministic_cudnn=True)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.history: list[dict[str, Any]] = []
        if checkpoint is not None:
            self.trainer.load_release_state(checkpoint)
            self.trainer.load_extra_state(checkpoint["trainer"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scaling.load_state_dict(checkpoint.get(SCALER_KEY, {}))
            if self.lr_scheduler is not None:
                self.lr_scheduler.load_state_dict(checkpoint[LR_SCHEDULER_KEY])
            # "epoch" is the index of the last completed epoch, as in the authors' checkpoints (-1: none yet).
            self.step, self.epoch = checkpoint["step"], checkpoint["epoch"] + 1
            self.batch_in_epoch = checkpoint["batch_in_epoch"]
            self.history = list(checkpoint["history"])
            set_rng_state(checkpoint["rng"][self.procs.rank])
        selected = [h for h in self.history if h.get("selection") is not None]
        self.best = max(selected, key=lambda h: h["selection"], default=None)

    def _loader(self) -> Any:
        opts = self.run.opts
        return torch.utils.data.DataLoader(
            self.run.train_data, batch_sampler=self.sampler, num_workers=opts.workers,
            collate_fn=collate_training, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(opts.seed),
        )

    def _start_files(self, resumed: bool) -> None:
        run = self.run
        if self.procs.main:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            if not resumed:
                (run.run_dir / LOG_FILE).unlink(missing_ok=True)
            run.record(self.resume_file).write(run.run_dir)
        self.procs.barrier()

    # -- the loop ----------------------------------------------------------------------------------------------
    def fit(self) -> TrainOutcome:
        stopped = False
        while self.epoch < self.recipe.epochs and not stopped:
            stopped = self._epoch()
        self.procs.finish()
        return TrainOutcome(directory=self.run.run_dir, steps=self.step, epochs_done=self.epoch,
                            history=self.history, best=self.best, last_checkpoint=self.last_path)

    def _epoch(self) -> bool:
        """Train until the epoch ends or ``--max-steps`` stops it (then True); validate and save either way."""
        opts, max_steps = self.run.opts, self.run.opts.max_steps
        self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
        self.trainer.student().train()
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch_in_epoch, unit="step", leave=False,
                   desc=f"epoch {self.epoch + 1}/{self.recipe.epochs}", disable=not (opts.progress and self.procs.main))
        batches, done_here, stopped = iter(self.loader), 0, False
        while self.batch_in_epoch < self.steps_per_epoch:
            if max_steps is not None and self.step >= max_steps:
                stopped = True
                break
            loss = self._step(batches)
            self.step, self.batch_in_epoch, done_here = self.step + 1, self.batch_in_epoch + 1, done_here + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
        bar.close()
        del batches
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self._validate_and_save(f"epoch_{self.epoch:03d}")
        elif done_here:
            self._validate_and_save(f"step_{self.step:07d}")
        return stopped

    def _step(self, batches: Iterator[Any]) -> float:
        """One optimisation step on the next batch, logged; returns the loss (mean over processes)."""
        timer = StageTimer(self.device)
        with timer("data"):
            batch = next(batches).to(self.device, non_blocking=True)
        with timer("forward"), autocast(self.device, self.run.opts.dtype):
            out = self.trainer.training_step(batch, self.step, self.epoch)
        self._check_output(out, batch)
        with timer("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaling.backward(out.loss)
        with timer("optimizer"):
            grad_norm, stepped, hooks = self._optimizer_step()
        return self._log_step(out, grad_norm, stepped, hooks, dict(timer.seconds))

    def _check_output(self, out: Any, batch: Any) -> None:
        if not isinstance(out, StepOutput):
            raise TrainingError(f"{type(self.trainer).__name__}.training_step returned {type(out).__name__}, "
                                "not StepOutput")
        if not torch.isfinite(out.loss.detach()).all():
            raise TrainingError(f"the training loss is {out.loss.item()} at step {self.step} (epoch {self.epoch + 1})",
                                hint="lower --lr, or check the data of this batch: " + ", ".join(batch.pair_ids[:4]))

    def _optimizer_step(self) -> tuple[Any, bool, dict[str, Any]]:
        """Unscale, clip, step (``stepped`` is False only in fp16, when the gradients overflowed), then the
        trainer's hook; returns the gradient norm before clipping (None without clipping)."""
        self.scaling.unscale(self.optimizer)
        clip = self.recipe.clip_grad_norm
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, clip) if clip is not None else None
        stepped = self.scaling.step(self.optimizer)
        if self.lr_scheduler is not None:  # every step, as the authors' loops (an fp16-skipped one included)
            self.lr_scheduler.step()
        return grad_norm, stepped, dict(self.trainer.on_optimizer_step(self.step))

    def _log_step(self, out: StepOutput, grad_norm: Any, stepped: bool, hooks: dict[str, Any],
                  seconds: dict[str, float]) -> float:
        names = ["loss", *out.losses]
        values = self.procs.mean([_number(out.loss), *(_number(v) for v in out.losses.values())], self.device)
        scaler = {"loss_scale": self.scaling.scale(), "skipped": float(not stepped)} if self.scaling.enabled else {}
        diagnostics = {k: _number(v) for k, v in {**out.diagnostics, **hooks, **scaler}.items()}
        reserved = set(LOG_FIELDS) & set(diagnostics)
        if reserved:
            raise TrainingError(f"diagnostics {sorted(reserved)} collide with the log's own fields")
        record = {"event": "step", "step": self.step, "epoch": self.epoch, "batch": self.batch_in_epoch,
                  "lr": self.optimizer.param_groups[0]["lr"], "loss": values[0],
                  "losses": dict(zip(names[1:], values[1:])),
                  "grad_norm": None if grad_norm is None else _number(grad_norm), **diagnostics,
                  "seconds": _stage_seconds(out, seconds)}
        self._log(record)
        return values[0]

    def _log(self, record: dict[str, Any]) -> None:
        if self.procs.main:
            append_log(self.run.run_dir, record)

    # -- validation and checkpoints ----------------------------------------------------------------------------
    def _validate_and_save(self, tag: str) -> None:
        validation = self._validate()
        self.last_path = self._save(tag, validation) or self.last_path

    def _validate(self) -> dict[str, Any] | None:
        """Validation after ``self.epoch`` completed epochs (process 0; the others wait); its log record."""
        opts = self.run.opts
        if not opts.validate:
            return None
        record = self._validation_record() if self.procs.main else None
        self.procs.barrier()
        return record

    def _validation_record(self) -> dict[str, Any]:
        run, opts = self.run, self.run.opts
        started = time.perf_counter()
        batch_size = opts.val_batch_size if opts.val_batch_size is not None else max(
            1, self.recipe.batch_size // self.procs.world_size)
        summary = validate(run.matcher, run.val_pairs, run.spec, self.device, opts.dtype, batch_size, opts.workers,
                           progress=opts.progress)
        protocol, value = run.spec.protocol, selection_value(summary)
        is_best = value is not None and (self.best is None or value > self.best["selection"])
        avg = "all" if protocol.average == "all" else "category_mean"
        record = {"event": "validation", "step": self.step, "epoch": self.epoch,
                  "pck": summary["pck"][protocol.pck_by][avg], "pck_image_all": summary["pck"]["image"]["all"],
                  "selection": value, "best": is_best, "pairs": summary["counts"]["pairs"],
                  "seconds": round(time.perf_counter() - started, 3)}
        self.history.append({k: record[k] for k in ("step", "epoch", "selection", "pck", "best")})
        if is_best:
            self.best = {k: record[k] for k in ("step", "epoch", "selection", "pck")}
        self._log(record)
        if opts.progress:
            shown = "n/a (no pair scored)" if value is None else f"{value:.2f}"
            click.echo(f"validation after epoch {self.epoch} (step {self.step}): PCK@0.1 {shown}"
                       f"{' (best)' if is_best else ''}", err=True)
        return record

    def _save(self, tag: str, validation: dict[str, Any] | None) -> Path | None:
        """A checkpoint of the current position (process 0 writes it; every process gives its generators)."""
        states = self.procs.gather(rng_state())
        path = None
        if self.procs.main:
            path = self.run.run_dir / CHECKPOINT_DIR / f"{tag}.pth"
            save_checkpoint(self._checkpoint_state(states), path,
                            best=validation is not None and bool(validation.get("best")))
            write_summary(self.run.run_dir, steps=self.step, epochs_done=self.epoch,
                          batch_in_epoch=self.batch_in_epoch, history=self.history, best=self.best,
                          last_checkpoint=path, selection=SELECTION_METRIC)
        self.procs.barrier()
        return path

    def _checkpoint_state(self, rng_states: list[Any]) -> dict[str, Any]:
        release = self.trainer.release_state()
        clash = [k for k in (*RESUME_KEYS, SCALER_KEY, LR_SCHEDULER_KEY) if k in release]
        if clash:
            raise TrainingError(f"{self.run.method}'s release layout uses the engine's keys {clash}")
        return {
            **release,
            "optimizer": self.optimizer.state_dict(),
            **({SCALER_KEY: self.scaling.state_dict()} if self.scaling.enabled else {}),
            **({LR_SCHEDULER_KEY: self.lr_scheduler.state_dict()} if self.lr_scheduler is not None else {}),
            "trainer": self.trainer.extra_state(),
            "step": self.step,
            "epoch": self.epoch - 1,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": rng_states,
            "config": {"identity": self.run.identity, "recipe": self.recipe.to_json(),
                       "world_size": self.procs.world_size},
            "history": self.history,
        }


def _stage_seconds(out: StepOutput, engine: dict[str, float]) -> dict[str, float]:
    """The log's ``seconds``: data, the method's own stages when it reports them (plus what they leave out,
    ``other``) else its whole ``forward``, backward, optimizer, and their total."""
    forward = engine["forward"]
    stages = dict(out.seconds) if out.seconds else {"forward": forward}
    if out.seconds:
        stages["other"] = max(0.0, forward - sum(out.seconds.values()))
    seconds = {"data": engine["data"], **stages, "backward": engine["backward"], "optimizer": engine["optimizer"]}
    rounded = {k: round(v, 6) for k, v in seconds.items()}
    rounded["total"] = round(sum(seconds.values()), 6)
    return rounded
