"""The objectives several methods train with (corrbench.train.losses), on inputs small enough to work out by
hand (the arithmetic is in the comments).

Notation: g(dx, dy) = exp(-(dx^2 + dy^2) / (2 sigma^2)) / (2 pi sigma^2); with sigma = 1:
g0 = g(0, 0) = 1 / (2 pi) = 0.1591549, g1 = g(1, 0) = e^-0.5 / (2 pi) = 0.0965324, g2 = g(1, 1) = e^-1 / (2 pi) = 0.0585483.
"""

import math

import pytest
import torch

from corrbench.errors import ConfigError
from corrbench.train.losses import gaussian_smoothed_ce, gaussian_window, geosc_loss

G0, G1, G2 = 1 / (2 * math.pi), math.exp(-0.5) / (2 * math.pi), math.exp(-1) / (2 * math.pi)


def _cells(*points):
    return torch.tensor([[list(p) for p in points]], dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------------
# The shared window construction


def test_gaussian_window_weights():
    w = gaussian_window(3, 1.0, dtype=torch.float64)
    torch.testing.assert_close(w, torch.tensor([[G2, G1, G2], [G1, G0, G1], [G2, G1, G2]], dtype=torch.float64))
    # Normalised as a continuous density, not over the window: 15 x 15 at sigma 3.5 sums to 0.9379.
    assert gaussian_window(15, 3.5, dtype=torch.float64).sum().item() == pytest.approx(0.9379120961925101, rel=1e-12)
    assert gaussian_window(1, 2.0).item() == 1.0
    with pytest.raises(ConfigError):
        gaussian_window(4, 1.0)


# ---------------------------------------------------------------------------------------------------------
# The unified benchmark's loss


def test_gaussian_smoothed_ce_defaults_and_pair_mean():
    # 9 x 9 uniform map (p = 1/81, no epsilon), target (4, 4), window 7 (offsets -3..3, all inside),
    # sigma 1.5: sum of the 49 weights 0.9654246; loss = 0.9654246 * log 81 = 4.2425095.
    sim = torch.zeros(2, 2, 9, 9, dtype=torch.float64)
    one = gaussian_smoothed_ce(sim[:1, :1], _cells((4, 4)))
    assert one.item() == pytest.approx(4.242509507825684, rel=1e-12)
    # Pair 0: one keypoint (4.2425); pair 1: that keypoint and one on the corner (0, 0), where only the
    # offsets 1..3 x 1..3 are inside (weights over dx, dy in 1..3). Per-pair means, then their mean.
    cells = torch.tensor([[[4, 4], [0, 0]], [[4, 4], [0, 0]]], dtype=torch.float64)
    valid = torch.tensor([[True, False], [True, True]])
    corner = sum(math.exp(-(i * i + j * j) / 4.5) for i in (1, 2, 3) for j in (1, 2, 3)) / (2 * math.pi * 2.25)
    corner *= math.log(81)
    expected = (4.242509507825684 + (4.242509507825684 + corner) / 2) / 2
    assert gaussian_smoothed_ce(sim, cells, valid).item() == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Geo-SC


def _two_cell_maps():
    # 1 x 2 grid, 2 channels: cell 0 holds e0, cell 1 holds e1, in both images.
    f = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]], dtype=torch.float64)
    return f, f.clone()


def test_geosc_loss_by_hand():
    # Keypoints: source cells (0.3, 0), (1.2, 0) -> integer cells 0, 1; target cells (0.1, 0), (1.0, 0).
    # InfoNCE with logit_scale 0 (scale 1): logits = identity; each row/column CE = log(1 + e^-1) = 0.3132617.
    # l2 at temperature 1: keypoint 0's similarities with the target cells are (1, 0) -> weights
    # (e, 1) / (e + 1); expected x = 1 / (e + 1) = 0.2689414; predicted flow = 0.2689414 - 0;
    # target flow = 0.1 - 0.3 = -0.2: error 0.4689414. Keypoint 1: expected x = e / (e + 1) = 0.7310586,
    # flow = 0.7310586 - 1 = -0.2689414, target 1.0 - 1.2 = -0.2: error 0.0689414. Mean 0.2689414.
    f_src, f_trg = _two_cell_maps()
    src, trg = _cells((0.3, 0), (1.2, 0)), _cells((0.1, 0), (1.0, 0))
    # (rel 1e-9: Geo-SC normalises by ||x|| + 1e-10, which scales these unit similarities by 1 - 2e-10.)
    out = geosc_loss(f_src, f_trg, src, trg, torch.tensor(0.0, dtype=torch.float64), temperature=1.0)
    assert out.info_nce.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-9)
    assert out.flow_epe.item() == pytest.approx(1 / (math.e + 1), rel=1e-9)
    assert out.total.item() == pytest.approx(out.info_nce.item() + out.flow_epe.item(), rel=1e-12)


def test_geosc_loss_masks_noise_and_errors():
    f_src, f_trg = _two_cell_maps()
    src, trg = _cells((0.3, 0), (1.2, 0)), _cells((0.1, 0), (1.0, 0))
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    masked = geosc_loss(f_src, f_trg, src, trg, scale, torch.tensor([[True, False]]), temperature=1.0)
    assert masked.info_nce.item() == pytest.approx(0.0, abs=1e-12)  # one keypoint: CE of a single logit
    assert masked.flow_epe.item() == pytest.approx(0.2689414213699951 + 0.2, rel=1e-9)
    masked.total.backward()
    assert scale.grad is not None
    noisy = [geosc_loss(f_src, f_trg, src, trg, scale, flow_noise_std=0.5, generator=torch.Generator().manual_seed(3))
             for _ in range(2)]
    assert noisy[0].flow_epe.item() == noisy[1].flow_epe.item() != pytest.approx(0.2689414213699951)
    with pytest.raises(ValueError, match="outside"):
        geosc_loss(f_src, f_trg, _cells((2.0, 0), (1.0, 0)), trg, scale)
