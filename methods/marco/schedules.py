"""MARCO's training schedules as pure functions of the step: the coarse-to-fine Gaussian width and the
EMA-teacher momentum.

Coarse-to-fine sigma (the width, in feature cells, of the Gaussian target of the supervised loss).
  Released code (``configs/train/train.yaml`` ``coarse_to_fine``; ``util/losses.py``
  ``GaussianCrossEntropyLoss`` driving ``WarmupCosineSchedule``): sigma 3.5 held for the first 1,000 steps,
  then a half cosine down to 1.0 reached at step 12,000 (``decay_std`` counts from step 0, not from the end
  of the hold), then 1.0 for good:

      sigma(k) = end + (start - end) * 0.5 * (1 + cos(pi * (k - hold) / (end_step - hold)))   hold <= k < end_step

  Paper (Eq. 9 and Sec. 4): sigma_max 3 -> sigma_min 1 by the same half cosine over the whole training,
  no hold: ``paper_sigma_schedule(total_steps)``. Paper Table 4 ablates fixed widths 3 and 1:
  ``SIGMA_PRESETS["fixed-3"]``, ``["fixed-1"]``; ``"fixed-3.5"`` is what the released code trains with when
  ``schedule_std`` is ``constant`` (it keeps the initial ``loss_kernel_std``).

  Step convention. ``SigmaSchedule(k)`` is the value after ``k`` calls of the released scheduler's
  ``step()``. ``engine.py`` creates the scheduler at ``len(loader) * epoch`` and calls ``step()`` BEFORE
  each loss, so the optimisation step with global 0-based index ``i`` trains with ``sigma(i + 1)``:
  use ``SigmaSchedule.for_iteration(i)`` in a training loop.

EMA momentum (``util/ema.py`` ``get_ema_momentum``, ``configs/train/train.yaml`` ``ema``).
  Released: cosine ramp from 0.99 to 0.9995 over ``int(0.9 * 5 * steps_per_epoch)`` steps (90% of the
  first five epochs), then 0.9995:

      m(i) = end - (end - start) * (1 + cos(pi * i / ramp_steps)) / 2                i < ramp_steps

  ``i`` is the global 0-based index of the optimisation step just taken: ``engine.py`` updates the teacher
  after ``optimizer.step()`` with the step counter before its increment, so the first update uses 0.99.
  Paper (Sec. 4): a constant beta = 0.999: ``PAPER_MOMENTUM``.

Values are computed with the same floating-point operations in the same order as the released code, so
they are identical to its, not just close (checked by the verification script named in the report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from corrbench.errors import ConfigError


@dataclass(frozen=True)
class SigmaSchedule:
    """Gaussian width held at ``start`` until ``hold_steps``, half-cosine to ``end`` at ``end_step``, then ``end``.

    ``start == end`` (or ``end_step <= hold_steps``) makes a constant schedule.
    """

    start: float
    end: float
    hold_steps: int = 0
    end_step: int = 0

    def __post_init__(self) -> None:
        if not (self.start > 0 and self.end > 0):
            raise ConfigError(f"SigmaSchedule: widths must be positive, got start={self.start}, end={self.end}")
        if self.end > self.start:
            raise ConfigError(
                f"SigmaSchedule: a coarse-to-fine schedule narrows, got start={self.start} < end={self.end}",
                hint="swap start and end, or use a fixed preset",
            )
        if self.hold_steps < 0 or self.end_step < 0:
            raise ConfigError(f"SigmaSchedule: step counts must be >= 0, got {self.hold_steps}, {self.end_step}")

    @property
    def is_constant(self) -> bool:
        return self.start == self.end or self.end_step <= self.hold_steps

    def __call__(self, step: int) -> float:
        """Sigma after ``step`` scheduler steps (see the module docstring for the +1 of training loops)."""
        if step < 0:
            raise ValueError(f"SigmaSchedule: step must be >= 0, got {step}")
        if self.start == self.end:
            return float(self.start)
        if step < self.hold_steps:
            return float(self.start)
        if step < self.end_step:
            progress = float(step - self.hold_steps) / float(max(1, self.end_step - self.hold_steps))
            return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return float(self.end)

    def for_iteration(self, iteration: int) -> float:
        """Sigma used by the optimisation step with global 0-based index ``iteration`` (released engine order)."""
        return self(iteration + 1)


def fixed_sigma(sigma: float) -> SigmaSchedule:
    """A constant width (the released ``schedule_std: constant``, the paper's fixed-sigma ablations)."""
    return SigmaSchedule(start=sigma, end=sigma)


#: Released configuration: 3.5 for 1,000 steps, cosine to 1.0 at step 12,000.
RELEASED_SIGMA = SigmaSchedule(start=3.5, end=1.0, hold_steps=1_000, end_step=12_000)


def paper_sigma_schedule(total_steps: int, sigma_max: float = 3.0, sigma_min: float = 1.0) -> SigmaSchedule:
    """The paper's Eq. 9: ``sigma_min + (sigma_max - sigma_min) (1 + cos(pi t / T)) / 2`` over ``T = total_steps``.

    The paper trains 10 epochs at batch 16; ``T`` depends on the dataset size, so it is an argument.
    """
    if total_steps <= 0:
        raise ConfigError(f"paper_sigma_schedule: total_steps must be > 0, got {total_steps}")
    return SigmaSchedule(start=sigma_max, end=sigma_min, hold_steps=0, end_step=total_steps)


#: Named schedules that need no training length. The paper's schedule does: ``paper_sigma_schedule(T)``.
SIGMA_PRESETS: dict[str, SigmaSchedule] = {
    "released": RELEASED_SIGMA,
    "fixed-3.5": fixed_sigma(3.5),
    "fixed-3": fixed_sigma(3.0),
    "fixed-1": fixed_sigma(1.0),
}


def sigma_schedule(name: str, total_steps: int | None = None) -> SigmaSchedule:
    """A sigma schedule by name: ``released``, ``paper`` (needs ``total_steps``), ``fixed-<sigma>``."""
    if name in SIGMA_PRESETS:
        return SIGMA_PRESETS[name]
    if name == "paper":
        if total_steps is None:
            raise ConfigError("the paper's sigma schedule anneals over the whole training", hint="pass total_steps")
        return paper_sigma_schedule(total_steps)
    if name.startswith("fixed-"):
        try:
            return fixed_sigma(float(name[len("fixed-"):]))
        except ValueError:
            pass
    raise ConfigError(
        f"unknown sigma schedule {name!r}", hint=f"use one of {', '.join([*SIGMA_PRESETS, 'paper'])} or fixed-<sigma>"
    )


@dataclass(frozen=True)
class MomentumSchedule:
    """EMA momentum: cosine ramp from ``start`` to ``end`` over ``ramp_steps`` steps, then ``end``."""

    start: float
    end: float
    ramp_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"MomentumSchedule: {name} must lie in [0, 1], got {value}")
        if self.ramp_steps < 0:
            raise ConfigError(f"MomentumSchedule: ramp_steps must be >= 0, got {self.ramp_steps}")

    def __call__(self, step: int) -> float:
        """Momentum of the teacher update after the optimisation step with global 0-based index ``step``."""
        if step < 0:
            raise ValueError(f"MomentumSchedule: step must be >= 0, got {step}")
        if step >= self.ramp_steps:
            return float(self.end)
        cos_factor = (1 + math.cos(math.pi * step / self.ramp_steps)) / 2
        return self.end - (self.end - self.start) * cos_factor


def released_momentum_schedule(
    steps_per_epoch: int, warmup_epochs: int = 5, start: float = 0.99, end: float = 0.9995, ramp: float = 0.9
) -> MomentumSchedule:
    """The released ramp: ``ramp_steps = int(warmup_epochs * steps_per_epoch * ramp)`` (``engine.py``, ``util/ema.py``)."""
    if steps_per_epoch <= 0:
        raise ConfigError(f"released_momentum_schedule: steps_per_epoch must be > 0, got {steps_per_epoch}")
    return MomentumSchedule(start=start, end=end, ramp_steps=int(warmup_epochs * steps_per_epoch * ramp))


#: The paper's constant teacher momentum (Sec. 4, "teacher EMA momentum beta = 0.999").
PAPER_MOMENTUM = MomentumSchedule(start=0.999, end=0.999, ramp_steps=0)
