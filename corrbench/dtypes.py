"""Dtypes: the numeric precisions corrbench runs in, autocast, and fp16 loss scaling (one home for all three).

Evaluation (``corrbench run``), timing (``corrbench bench``) and training (``corrbench train``) name a dtype by
its string; ``float32`` runs without autocast, ``bfloat16`` and ``float16`` run the forward passes under
``torch.autocast`` (weights stay fp32). Training in ``float16`` also scales the loss (``LossScaling``, torch's
``GradScaler``): fp16 gradients of small losses underflow, bf16 has fp32's exponent range and needs no scaling.
"""

from __future__ import annotations

import contextlib
from typing import Any, Mapping

import torch

from .errors import ConfigError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype(dtype: str, allowed: tuple[str, ...] | None = None) -> torch.dtype:
    """The torch dtype named ``dtype``; a clear error for an unknown one (or one outside ``allowed``)."""
    names = allowed or tuple(DTYPES)
    if dtype not in names:
        raise ConfigError(f"unknown dtype {dtype!r}", hint=f"use one of {', '.join(names)}")
    return DTYPES[dtype]


def autocast(device: torch.device | str, dtype: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device`` (a no-op for float32)."""
    if check_dtype(dtype) is torch.float32:
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=DTYPES[dtype])


class LossScaling:
    """The backward pass and optimiser step of one training dtype: plain for float32 / bfloat16, dynamically
    loss-scaled for float16 (a step whose gradients overflow is skipped and the scale halves, as ``GradScaler``).

    Use as ``backward(loss)``, ``unscale(optimizer)`` (before clipping, so the clip sees true gradients), then
    ``step(optimizer)``, which returns whether the optimiser stepped.
    """

    def __init__(self, dtype: str, device: torch.device | str):
        check_dtype(dtype)
        self.scaler = torch.amp.GradScaler(torch.device(device).type) if dtype == "float16" else None

    @property
    def enabled(self) -> bool:
        return self.scaler is not None

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        if self.scaler is None:
            optimizer.step()
            return True
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= before  # update() lowers the scale exactly when it skipped the step

    def scale(self) -> float | None:
        return self.scaler.get_scale() if self.scaler is not None else None

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(dict(state))
