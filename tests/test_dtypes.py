"""Autocast and fp16 loss scaling (``corrbench.dtypes``), on the CPU."""

from __future__ import annotations

import pytest
import torch

from corrbench.errors import ConfigError
from corrbench.dtypes import LossScaling, autocast, check_dtype


def test_unknown_dtype_names_the_choices():
    with pytest.raises(ConfigError, match="unknown dtype 'fp16'") as info:
        check_dtype("fp16")
    assert "float16" in info.value.hint
    with pytest.raises(ConfigError):
        check_dtype("float16", allowed=("float32",))


@pytest.mark.parametrize("dtype, expected", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_autocast_runs_matmuls_in_the_dtype(dtype, expected):
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("cpu", dtype):
        assert (a @ b).dtype == expected


def model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_float16_scaling_updates_like_plain_backward():
    # Scaling the loss, then unscaling the gradients before the step, must give fp32's update exactly
    # (the scale is a power of two).
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    updated = []
    for dtype in ("float32", "float16"):
        model, optimizer = model_and_optimizer()
        scaling = LossScaling(dtype, "cpu")
        scaling.backward(torch.nn.functional.mse_loss(model(x), y))
        if dtype == "float16":
            assert model.weight.grad.abs().sum() > 1000  # the stored gradients are scaled (65536 at start)
        scaling.unscale(optimizer)
        assert scaling.step(optimizer)
        updated.append(model.weight.detach().clone())
    torch.testing.assert_close(updated[0], updated[1], rtol=0, atol=1e-7)


def test_float16_overflow_skips_the_step_halves_the_scale_and_resumes():
    model, optimizer = model_and_optimizer()
    before = model.weight.detach().clone()
    scaling = LossScaling("float16", "cpu")
    start = scaling.scale()
    scaling.backward(model(torch.full((1, 3), float("inf"))).sum())
    scaling.unscale(optimizer)
    assert not scaling.step(optimizer)
    assert torch.equal(model.weight, before) and scaling.scale() == start / 2

    restored = LossScaling("float16", "cpu")
    restored.load_state_dict(scaling.state_dict())
    assert restored.scale() == start / 2


def test_plain_dtypes_have_no_scaler_state():
    scaling = LossScaling("bfloat16", "cpu")
    assert not scaling.enabled and scaling.scale() is None and scaling.state_dict() == {}
