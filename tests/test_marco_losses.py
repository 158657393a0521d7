"""MARCO's supervised loss, the sigma and momentum schedules and the EMA teacher, on inputs small enough to
work out by hand (the arithmetic is in the comments). The losses several methods share: test_train_losses.py.

Notation: g(dx, dy) = exp(-(dx^2 + dy^2) / (2 sigma^2)) / (2 pi sigma^2); with sigma = 1:
g0 = g(0, 0) = 1 / (2 pi) = 0.1591549, g1 = g(1, 0) = e^-0.5 / (2 pi) = 0.0965324, g2 = g(1, 1) = e^-1 / (2 pi) = 0.0585483.
"""

import math

import pytest
import torch
from torch import nn

from corrbench.errors import ConfigError
from corrbench.methods.marco.ema import EMATeacher
from corrbench.methods.marco.losses import CoarseToFineLoss, coarse_to_fine_ce, marco_target_cells
from corrbench.methods.marco.schedules import (
    PAPER_MOMENTUM,
    RELEASED_SIGMA,
    SIGMA_PRESETS,
    MomentumSchedule,
    SigmaSchedule,
    paper_sigma_schedule,
    released_momentum_schedule,
    sigma_schedule,
)

G0, G1, G2 = 1 / (2 * math.pi), math.exp(-0.5) / (2 * math.pi), math.exp(-1) / (2 * math.pi)
EPS = 1e-6


def _cells(*points):
    return torch.tensor([[list(p) for p in points]], dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------------
# MARCO's coarse-to-fine cross-entropy


def test_uniform_3x3_map_only_the_centre_offset_is_strictly_inside():
    # 3 x 3 grid, target (1, 1), window 3: offsets land on x, y in {0, 1, 2}; strictly inside (0, 2) is
    # only (1, 1). Uniform map: p = 1/9. Loss = -g0 log(1/9 + 1e-6) = 0.1591549 * 2.1972157 = 0.3496977.
    loss = coarse_to_fine_ce(torch.zeros(1, 1, 3, 3, dtype=torch.float64), _cells((1, 1)), sigma=1.0, window=3)
    assert loss.item() == pytest.approx(0.3496977201780177, rel=1e-12)
    assert loss.item() == pytest.approx(-G0 * math.log(1 / 9 + EPS), rel=1e-12)


def test_uniform_5x5_map_full_window():
    # 5 x 5, target (2, 2), window 3: all 9 offsets inside. Sum of weights g0 + 4 g1 + 4 g2 = 0.7794837;
    # p = 1/25 everywhere: loss = 0.7794837 * -log(0.04 + 1e-6) = 0.7794837 * 3.2188508 = 2.5090417.
    loss = coarse_to_fine_ce(torch.zeros(1, 1, 5, 5, dtype=torch.float64), _cells((2, 2)), sigma=1.0, window=3)
    assert loss.item() == pytest.approx(2.5090416856474476, rel=1e-12)


def test_peaked_map_with_the_marco_temperature():
    # 5 x 5 zeros with 10 ln 72 at (2, 2): exp(s / 10) is 72 there, 1 at the 24 others, sum 96:
    # p = 0.75 at the peak, 1/96 elsewhere. Window 3 at (2, 2), sigma 1:
    # loss = -(g0 log(0.75 + 1e-6) + (4 g1 + 4 g2) log(1/96 + 1e-6))
    #      = 0.1591549 * 0.2876807 + 0.6203221 * 4.5642522 = 2.8771226.
    sim = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    sim[0, 0, 2, 2] = 10 * math.log(72)
    loss = coarse_to_fine_ce(sim, _cells((2, 2)), sigma=1.0, window=3)  # temperature 10 is the default
    assert loss.item() == pytest.approx(2.877122610058328, rel=1e-12)


def test_target_between_cells_is_sampled_bilinearly():
    # 5 x 5 zeros with 10 ln 26 at (x=2, y=2): exp is 26 there, 1 at 24 others, sum 50: p(2,2) = 0.52,
    # p(3,2) = 0.02. Window 1 (weight 1): the target (2.5, 2) samples (0.52 + 0.02) / 2 = 0.27;
    # loss = -log(0.27 + 1e-6) = 1.3093296.
    sim = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    sim[0, 0, 2, 2] = 10 * math.log(26)
    loss = coarse_to_fine_ce(sim, _cells((2.5, 2)), sigma=1.0, window=1)
    assert loss.item() == pytest.approx(1.3093296162869172, rel=1e-12)


def test_a_point_on_the_border_drops_its_own_offset():
    # 3 x 3 uniform, target (0, 1), window 3: x + dx in {-1, 0, 1}; only x = 1 (dx = +1) with y = 1 (dy = 0)
    # is strictly inside. Loss = -g1 log(1/9 + 1e-6) = 0.0965324 * 2.1972157 = 0.2121024.
    loss = coarse_to_fine_ce(torch.zeros(1, 1, 3, 3, dtype=torch.float64), _cells((0, 1)), sigma=1.0, window=3)
    assert loss.item() == pytest.approx(0.21210238891957697, rel=1e-12)


def test_keypoint_with_no_offset_inside_adds_zero_but_counts_in_the_mean():
    # 2 x 2 uniform (p = 1/4), window 1. Target (0.5, 0.5) is inside: -log(0.25 + 1e-6) = 1.3862904.
    # Target (0, 0) is on the border: 0. Mean over the 2 valid keypoints: 0.6931452.
    sim = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    per_kp = coarse_to_fine_ce(sim, _cells((0.5, 0.5), (0, 0)), sigma=1.0, window=1, reduction="none")
    assert per_kp[0, 1].item() == 0.0
    mean = coarse_to_fine_ce(sim, _cells((0.5, 0.5), (0, 0)), sigma=1.0, window=1)
    assert mean.item() == pytest.approx(0.6931451805639454, rel=1e-12)


def test_temperature_divides_the_similarity():
    torch.manual_seed(0)
    sim, cells = torch.randn(2, 3, 9, 8, dtype=torch.float64) * 20, torch.rand(2, 3, 2, dtype=torch.float64) * 7
    a = coarse_to_fine_ce(sim, cells, sigma=2.0)
    b = coarse_to_fine_ce(sim / 10, cells, sigma=2.0, temperature=1.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    assert a.item() != pytest.approx(coarse_to_fine_ce(sim, cells, sigma=2.0, temperature=0.04).item(), rel=1e-3)


def test_invalid_keypoints_contribute_nothing_and_receive_no_gradient():
    torch.manual_seed(0)
    sim = (torch.randn(2, 4, 7, 6, dtype=torch.float64) * 20).requires_grad_(True)
    cells = torch.rand(2, 4, 2, dtype=torch.float64) * 5
    valid = torch.tensor([[True, False, True, True], [False, True, False, False]])
    poisoned = sim.detach().clone()
    poisoned[~valid] = float("nan")  # garbage in padded rows must not leak anywhere
    poisoned.requires_grad_(True)
    loss = coarse_to_fine_ce(poisoned, cells, 2.0, valid)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(poisoned.grad[~valid] == 0)
    assert torch.all(poisoned.grad[valid].abs().sum(dim=(1, 2)) > 0)
    # Same value as computing the valid keypoints alone: (3 + 1 losses) / 4.
    alone = sum(
        coarse_to_fine_ce(sim[b, n][None, None].detach(), cells[b, n][None, None], 2.0, reduction="sum")
        for b, n in valid.nonzero().tolist()
    )
    assert loss.item() == pytest.approx(alone.item() / 4, rel=1e-12)
    assert coarse_to_fine_ce(sim, cells, 2.0, valid, reduction="sum").item() == pytest.approx(alone.item(), rel=1e-12)


def test_all_invalid_batch_gives_zero_with_a_graph():
    sim = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = coarse_to_fine_ce(sim, torch.zeros(1, 2, 2), 1.0, torch.zeros(1, 2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(sim.grad == 0)


def test_gradient_raises_the_target_and_is_shift_invariant():
    # The loss ignores a constant added to a map (softmax), so each map's gradient sums to 0; it lowers
    # when the similarity at the target grows.
    torch.manual_seed(1)
    sim = torch.randn(1, 1, 9, 9, dtype=torch.float64, requires_grad=True)
    coarse_to_fine_ce(sim, _cells((4, 4)), sigma=1.5, window=5).backward()
    assert sim.grad.sum().item() == pytest.approx(0.0, abs=1e-12)
    assert sim.grad[0, 0, 4, 4] < 0 and sim.grad[0, 0, 0, 0] > 0


def test_marco_target_cells_use_the_align_corner_rule():
    # 630 px canvas, 180 cells: x -> x * 179 / 629; the last pixel lands on the last cell.
    pts = torch.tensor([[[0.0, 629.0], [314.5, 62.9]]], dtype=torch.float64)
    cells = marco_target_cells(pts, (630, 630), (180, 180))
    expected = torch.tensor([[[0.0, 179.0], [89.5, 62.9 * 179 / 629]]], dtype=torch.float64)
    torch.testing.assert_close(cells, expected)


def test_coarse_to_fine_loss_follows_the_schedule_and_pixel_rule():
    torch.manual_seed(2)
    sim, pts = torch.randn(2, 3, 12, 12, dtype=torch.float64) * 20, torch.rand(2, 3, 2, dtype=torch.float64) * 47
    loss = CoarseToFineLoss()
    expected = coarse_to_fine_ce(sim, pts * 11 / 47, sigma=RELEASED_SIGMA(6500), valid=None)
    assert loss(sim, pts, (48, 48), iteration=6499).item() == pytest.approx(expected.item(), rel=1e-12)
    assert loss.sigma(999) == 3.5 and loss.sigma(6499) == 2.25


def test_unknown_reduction_is_refused():
    with pytest.raises(ConfigError):
        coarse_to_fine_ce(torch.zeros(1, 1, 3, 3), torch.ones(1, 1, 2), 1.0, reduction="avg")


# ---------------------------------------------------------------------------------------------------------
# Schedules


def test_released_sigma_at_the_boundaries():
    values = {k: RELEASED_SIGMA(k) for k in (0, 999, 1000, 6500, 11999, 12000, 20000)}
    assert values[0] == values[999] == values[1000] == 3.5  # held, and the cosine starts at 3.5
    assert values[6500] == pytest.approx(2.25, rel=1e-15)  # mid-cosine: 1 + 2.5 * 0.5
    assert 1.0 < values[11999] < 1.0 + 1e-6
    assert values[12000] == values[20000] == 1.0
    assert RELEASED_SIGMA.for_iteration(999) == 3.5 and RELEASED_SIGMA.for_iteration(999) == RELEASED_SIGMA(1000)
    series = [RELEASED_SIGMA(k) for k in range(0, 20001)]
    assert all(a >= b for a, b in zip(series, series[1:]))


def test_paper_and_fixed_sigma_presets():
    paper = paper_sigma_schedule(10_000)
    assert paper(0) == 3.0 and paper(5_000) == pytest.approx(2.0) and paper(10_000) == paper(12_000) == 1.0
    assert paper(2_500) == pytest.approx(1 + (1 + math.cos(math.pi / 4)))  # 2.7071
    assert sigma_schedule("paper", total_steps=10_000) == paper
    with pytest.raises(ConfigError):
        sigma_schedule("paper")
    for name, value in (("fixed-1", 1.0), ("fixed-3", 3.0), ("fixed-3.5", 3.5)):
        assert {SIGMA_PRESETS[name](k) for k in (0, 1000, 6500, 50_000)} == {value}
    assert sigma_schedule("fixed-2")(123) == 2.0 and sigma_schedule("released") is RELEASED_SIGMA
    with pytest.raises(ConfigError):
        sigma_schedule("linear")
    with pytest.raises(ConfigError):
        SigmaSchedule(start=1.0, end=3.0)


def test_released_momentum_ramp():
    # 1,000 steps per epoch: ramp over int(5 * 1000 * 0.9) = 4,500 steps.
    m = released_momentum_schedule(1_000)
    assert m.ramp_steps == 4_500
    assert m(0) == 0.99
    assert m(2_250) == pytest.approx((0.99 + 0.9995) / 2, rel=1e-15)  # cosine midpoint
    assert m(4_499) < 0.9995 and m(4_500) == m(40_000) == 0.9995
    series = [m(i) for i in range(0, 6_000)]
    assert all(a <= b for a, b in zip(series, series[1:]))
    assert {PAPER_MOMENTUM(i) for i in (0, 10, 10_000)} == {0.999}
    with pytest.raises(ConfigError):
        MomentumSchedule(start=0.9, end=1.5)


# ---------------------------------------------------------------------------------------------------------
# EMA teacher


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 2)
        self.head = nn.Linear(2, 2)
        self.register_buffer("scale", torch.tensor([2.0]))
        self.backbone.requires_grad_(False)

    def forward(self, x):
        return self.head(self.backbone(x)) * self.scale


def _student():
    torch.manual_seed(0)
    return _Tiny()


def test_teacher_copies_trainable_parameters_and_shares_frozen_ones():
    student = _student()
    ema = EMATeacher(student)
    t = ema.module
    assert ema.names == ("head.weight", "head.bias")
    assert t.backbone.weight is student.backbone.weight and t.backbone.bias is student.backbone.bias
    assert ema.shared_count == 2
    assert t.head.weight is not student.head.weight and torch.equal(t.head.weight, student.head.weight)
    assert t.scale is not student.scale and torch.equal(t.scale, student.scale)
    assert not t.training and not any(p.requires_grad for p in t.parameters())
    assert all(p.requires_grad for p in student.head.parameters())


def test_update_arithmetic_and_frozen_parameters_untouched():
    student = _student()
    ema = EMATeacher(student)
    frozen_before = student.backbone.weight.detach().clone()
    with torch.no_grad():
        ema.module.head.weight.fill_(4.0)
        student.head.weight.fill_(8.0)
        student.scale.fill_(5.0)
    ema.update(student, 0.75)
    # 0.75 * 4 + 0.25 * 8 = 5, exactly representable.
    assert torch.all(ema.module.head.weight == 5.0)
    assert torch.equal(student.backbone.weight, frozen_before) and torch.equal(ema.module.backbone.weight, frozen_before)
    assert ema.module.scale.item() == 2.0  # buffers are copied once, never averaged
    ema.update(student, 1.0)
    assert torch.all(ema.module.head.weight == 5.0)
    ema.update(student, 0.0)
    assert torch.all(ema.module.head.weight == 8.0)
    with pytest.raises(ValueError):
        ema.update(student, 1.5)


def test_update_is_bit_identical_to_the_in_place_formula():
    student = _student()
    ema = EMATeacher(student)
    reference = {n: p.detach().clone() for n, p in student.named_parameters() if p.requires_grad}
    gen = torch.Generator().manual_seed(5)
    for step in range(25):
        with torch.no_grad():
            for p in student.head.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        m = released_momentum_schedule(2)(step)
        for name, p in student.named_parameters():
            if p.requires_grad:
                reference[name].mul_(m).add_((1 - m) * p.detach())
        ema.update(student, m)
    for name, value in ema.state_dict().items():
        assert torch.equal(value, reference[name]), name


def test_state_dict_round_trip_and_strictness():
    student = _student()
    ema = EMATeacher(student)
    with torch.no_grad():
        student.head.weight.add_(1.0)
    ema.update(student, 0.5)
    saved = {k: v.clone() for k, v in ema.state_dict().items()}
    assert list(saved) == ["head.weight", "head.bias"]

    fresh = EMATeacher(_student())
    assert not torch.equal(fresh.module.head.weight, saved["head.weight"])
    fresh.load_state_dict(saved)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, saved[k])
    with pytest.raises(ConfigError, match="missing"):
        fresh.load_state_dict({"head.weight": saved["head.weight"]})
    with pytest.raises(ConfigError, match="unexpected"):
        fresh.load_state_dict({**saved, "backbone.weight": torch.zeros(2, 3)})
    with pytest.raises(ConfigError, match="shape"):
        fresh.load_state_dict({**saved, "head.bias": torch.zeros(3)})
    fresh.load_state_dict({"head.bias": torch.full((2,), 7.0)}, strict=False)
    assert torch.all(fresh.module.head.bias == 7.0)


def test_separately_built_teacher_and_late_unfreezing():
    student, other = _student(), _Tiny()
    ema = EMATeacher(student, teacher=other)
    assert ema.module is other and ema.shared_count == 0
    for (name, p), q in zip(student.named_parameters(), other.parameters()):
        assert torch.equal(p, q), name  # every parameter copied, as the authors' init does
    student.backbone.weight.requires_grad_(True)
    with pytest.raises(ConfigError, match="became trainable"):
        ema.update(student, 0.9)
    with pytest.raises(ConfigError, match="no trainable"):
        EMATeacher(_Tiny().requires_grad_(False))
