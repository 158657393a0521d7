"""What a training run writes beside its checkpoints: ``train.json``, ``log.jsonl`` and ``summary.json``.

``train.json`` is one typed record (``TrainRecord``), built in one place (``TrainingRun.record``) and
versioned by ``TRAIN_SCHEMA_VERSION``; its JSON keys keep the order of the fields below, which is the order
runs written before this module have (so the same run writes the same bytes).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..files import write_json_atomic

#: The version of ``train.json``'s layout; raise it when a field changes meaning or goes away.
TRAIN_SCHEMA_VERSION = 1
CONFIG_FILE = "train.json"
LOG_FILE = "log.jsonl"
SUMMARY_FILE = "summary.json"
TRAIN_SPLIT = "trn"
VAL_SPLIT = "val"
#: Fields of a ``"event": "step"`` log line (diagnostics such as ``sigma`` and ``ema_momentum`` come in
#: addition, as top-level fields, when the method reports them).
LOG_FIELDS = ("event", "step", "epoch", "batch", "lr", "loss", "losses", "grad_norm", "seconds")
VALIDATION_FIELDS = ("event", "step", "epoch", "pck", "selection", "best", "pairs", "seconds")


@dataclass(frozen=True)
class TrainData:
    """The data a run trains and validates on (``train.json``'s ``data``)."""

    train_split: str
    train_pairs: int
    dropped: Any
    resize: Any
    masks: str
    val_split: str | None
    val_pairs: int


@dataclass(frozen=True, kw_only=True)
class TrainRecord:
    """``train.json``: the resolved configuration, the method, the data and the environment of one run."""

    schema_version: int = TRAIN_SCHEMA_VERSION
    command: str
    created_at: str
    identity: dict[str, Any]
    recipe: dict[str, Any]
    max_steps: int | None
    world_size: int
    method: dict[str, Any]
    benchmark: dict[str, Any]
    data: TrainData
    env: dict[str, Any]
    notices: list[str]
    resumed_from: str | None

    def to_json(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**fields, "data": dataclasses.asdict(self.data)}

    def write(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / CONFIG_FILE, self.to_json())


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    """One line of ``log.jsonl`` (a step or a validation)."""
    with open(run_dir / LOG_FILE, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def write_summary(run_dir: Path, *, steps: int, epochs_done: int, batch_in_epoch: int, history: list,
                  best: dict[str, Any] | None, last_checkpoint: Path, selection: Sequence[str]) -> None:
    """``summary.json``: validation history, best and last checkpoint, steps done, and the validation number
    that picks the best checkpoint (``selection``: metric, pck_by, average, alpha)."""
    write_json_atomic(run_dir / SUMMARY_FILE, {
        "run": str(run_dir), "steps": steps, "epochs_done": epochs_done, "batch_in_epoch": batch_in_epoch,
        "history": history, "best": best, "last_checkpoint": str(last_checkpoint),
        "selection": dict(zip(("metric", "pck_by", "average", "alpha"), selection)),
    })
