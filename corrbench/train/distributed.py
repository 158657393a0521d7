"""Multi-process training: this process's place in the run, and the student wrapped for it.

``torchrun --nproc_per_node G -m corrbench.cli train ...`` starts G processes; each takes ``cuda:LOCAL_RANK``
(gloo on CPU). The student is wrapped in ``DistributedDataParallel`` and bound back to the trainer, whose step
calls it. Process 0 alone logs, validates and writes checkpoints; the others wait at ``barrier``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from ..runtime import resolve_device
from .api import Trainable


@dataclass
class Processes:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def mean(self, values: Sequence[float], device: torch.device) -> list[float]:
        """The mean of each value over processes (for logging)."""
        if not self.distributed or not values:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return (t / self.world_size).tolist()

    def gather(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def bind_student(self, trainer: Trainable, device: torch.device) -> None:
        """Give the trainer its student, wrapped in ``DistributedDataParallel`` when there are several processes."""
        student = trainer.student()
        if self.distributed:
            student = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)
        trainer.bind_student(student)

    def finish(self) -> None:
        if self.distributed:
            torch.distributed.destroy_process_group()


def start_processes(device_name: str) -> tuple[Processes, torch.device]:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes(), resolve_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Processes(rank, world, local), torch.device("cuda", local) if cuda else torch.device("cpu")
