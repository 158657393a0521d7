"""Where a run executes: the device it asks for, waiting for that device, timing stages on it, and seeding
every generator.

One home for what the harness (``evaluate``), the training engine, ``bench`` and ``match`` all need, so they
resolve ``--device`` and seed the same way.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import defaultdict
from typing import Iterator

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}", hint="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device", hint="use --device cpu")
    return device


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously; a timer must not stop before them)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Seconds per named stage of a step, synchronising CUDA so asynchronous kernels count where they run.

    ``with timer("student_forward"): ...``; ``timer.seconds`` is a dict of totals. The training loop times its
    own stages with it, and trainers theirs (reported in ``StepOutput.seconds``).
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        started = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - started


def seed_everything(seed: int, *, deterministic_cudnn: bool = False) -> None:
    """Seed Python's, numpy's and torch's global generators. Training also asks for deterministic cuDNN
    kernels (``deterministic_cudnn``), as the authors' trainers do; evaluation leaves cuDNN's choice alone."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic_cudnn:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
