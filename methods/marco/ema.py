"""The EMA teacher of MARCO's dense self-distillation: an exponential moving average of the student's
trainable parameters.

What the authors do (``train.py``, ``engine.py``, ``util/ema.py``): build a second, complete MARCO
(``build_marco`` twice, so the frozen DINOv2 backbone exists twice in memory), copy every parameter and
buffer of the student into it (``init_teacher_from_student``), freeze it and put it in eval mode; after
each optimiser step, for every student parameter that requires grad, ``t = t * m + (1 - m) * s``
(``p_t.data.mul_(m).add_((1 - m) * p_s.detach().data)``); buffers are never averaged. The teacher file
``teacher{epoch:04}.pth`` holds ``{"model": teacher.state_dict()}``, which MARCO's ``state_dict`` filters
to the adapter and upsampling-head keys, i.e. exactly the trainable parameters, in the student
checkpoint's layout. On resume the teacher is loaded from that file, or re-initialised from the student
when it is missing.

Here: the teacher is a copy of the student whose FROZEN parameters are the student's own tensors (shared,
not copied: same values by construction, never updated by either side), so the backbone is not held twice.
Only the parameters that require grad when the teacher is built are copied and averaged; buffers are
copied once. The update is the authors' arithmetic in the same order (bit-identical results).
``state_dict()`` holds the averaged parameters under the student's parameter names, which is the
authors' teacher-file layout when the student's names follow the official checkpoint.
If a model cannot be deep-copied, or sharing is not wanted, pass a separately built ``teacher``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn

from corrbench.errors import ConfigError


class EMATeacher:
    """EMA copy of ``student``'s trainable parameters; ``.module`` is the teacher network (eval mode, no grad).

    Args:
        student: the model being trained; its ``requires_grad`` flags at this moment decide what is averaged.
        teacher: optional separately built model with the same parameter names (the authors' way); all its
            parameters and buffers are overwritten with the student's, nothing is shared. None: a deep copy
            of the student that shares the student's frozen parameters.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None):
        self.names: tuple[str, ...] = tuple(n for n, p in student.named_parameters() if p.requires_grad)
        if not self.names:
            raise ConfigError("EMATeacher: the student has no trainable parameters to average",
                              hint="set requires_grad on the adapters and the upsampling head first")
        if teacher is None:
            # deepcopy reuses whatever its memo already maps: pre-seeding it with the frozen parameters
            # makes the copy point at the student's tensors instead of duplicating them.
            memo = {id(p): p for p in student.parameters() if not p.requires_grad}
            teacher = copy.deepcopy(student, memo)
        self.module = teacher
        self.module.eval()
        params = dict(self.module.named_parameters())
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ConfigError(f"EMATeacher: the teacher lacks the student's trainable parameters {missing[:5]}")
        self._params: dict[str, nn.Parameter] = {n: params[n] for n in self.names}
        self.module.requires_grad_(False)  # shared parameters are frozen already; this freezes the copies
        for p in self._params.values():
            p.grad = None
        student_ids = {id(p) for p in student.parameters()}
        #: How many of the teacher's parameter tensors are the student's own (frozen, shared in memory).
        self.shared_count = sum(1 for p in self.module.parameters() if id(p) in student_ids)
        self.copy_from(student)

    @torch.no_grad()
    def copy_from(self, student: nn.Module) -> None:
        """Set every teacher parameter and buffer to the student's (initialisation; resume without a file).

        Shared tensors are skipped (they are the student's); a separately built teacher gets all of them,
        as the authors' ``init_teacher_from_student`` does.
        """
        student_params = self._student_params(student)
        for name, target in self.module.named_parameters():
            source = student_params.get(name)
            if source is not None and source is not target:
                target.copy_(source.detach())
        student_buffers = dict(student.named_buffers())
        for name, buffer in self.module.named_buffers():
            source = student_buffers.get(name)
            if source is not None and source is not buffer:
                buffer.copy_(source.detach())

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        """``teacher = momentum * teacher + (1 - momentum) * student`` for every averaged parameter."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMATeacher.update: momentum must lie in [0, 1], got {momentum}")
        student_params = self._student_params(student)
        for name, target in self._params.items():
            target.mul_(momentum).add_((1 - momentum) * student_params[name].detach())

    def _student_params(self, student: nn.Module) -> dict[str, nn.Parameter]:
        params = dict(student.named_parameters())
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ConfigError(
                f"EMATeacher: the student lacks averaged parameters {missing[:5]}",
                hint="pass the unwrapped model (not a DistributedDataParallel wrapper), as when the teacher was built",
            )
        tracked = set(self.names)
        newly_trainable = [n for n, p in params.items() if p.requires_grad and n not in tracked]
        if newly_trainable:
            raise ConfigError(
                f"EMATeacher: parameters {newly_trainable[:5]} became trainable after the teacher was built; "
                "the teacher neither averages them nor owns a copy of them",
                hint="set requires_grad before building the EMATeacher",
            )
        return params

    def state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """The averaged parameters by the student's names (references, like ``nn.Module.state_dict``)."""
        return OrderedDict((name, p.detach()) for name, p in self._params.items())

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, torch.Tensor], strict: bool = True) -> None:
        """Restore the averaged parameters (e.g. from the authors' ``teacher{epoch}.pth`` ``["model"]``)."""
        missing = [n for n in self.names if n not in state]
        unexpected = [k for k in state if k not in self._params]
        if strict and (missing or unexpected):
            raise ConfigError(
                f"EMATeacher.load_state_dict: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}",
                hint="the state must hold exactly the student's trainable parameters; strict=False loads the overlap",
            )
        for name, target in self._params.items():
            if name not in state:
                continue
            value = state[name]
            if tuple(value.shape) != tuple(target.shape):
                raise ConfigError(
                    f"EMATeacher.load_state_dict: {name} has shape {tuple(value.shape)}, "
                    f"the teacher's is {tuple(target.shape)}"
                )
            target.copy_(value)
