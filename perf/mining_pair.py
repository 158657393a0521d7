"""A mining input at MARCO's training scale with a known answer: two object masks related by an affine warp,
teacher-like features (a smooth random field of object coordinates plus noise) and GT keypoints.

The features make the mutual nearest neighbours follow the warp, as a trained teacher's do, so every step of
the chain runs on realistic amounts of work (thousands of seeds, tens of thousands of flow pixels).
"""

from __future__ import annotations

import math

import torch


def make_mining_pair(image: int = 630, grid: int = 180, channels: int = 1024, coverage: float = 0.3,
                     keypoints: int = 12, noise: float = 0.3, seed: int = 0):
    """``(features (2, C, grid, grid), masks (2, image, image) bool, keypoints (2, K, 2) px)``."""
    g = torch.Generator().manual_seed(seed)
    radius = math.sqrt(coverage * image * image / math.pi)
    rx, ry, centre = radius * 1.15, radius / 1.15, torch.tensor([image / 2, image / 2])
    angle = math.radians(10)
    warp = torch.tensor([[0.95 * math.cos(angle), -0.95 * math.sin(angle) + 0.05],
                         [0.95 * math.sin(angle), 0.95 * math.cos(angle)]])
    shift = centre - warp @ centre + torch.tensor([12.0, -8.0])
    unwarp = torch.linalg.inv(warp)

    def inside(points: torch.Tensor) -> torch.Tensor:
        return ((points[:, 0] - centre[0]) / rx) ** 2 + ((points[:, 1] - centre[1]) / ry) ** 2 <= 1

    ys, xs = torch.meshgrid(torch.arange(image, dtype=torch.float32), torch.arange(image, dtype=torch.float32),
                            indexing="ij")
    pixels = torch.stack((xs, ys), -1).reshape(-1, 2)
    masks = torch.stack((inside(pixels), inside((pixels - shift) @ unwarp.T))).reshape(2, image, image)

    frequencies = torch.randn(channels // 2, 2, generator=g) / 60.0
    phases = torch.rand(channels // 2, generator=g) * 2 * math.pi

    def field(points: torch.Tensor) -> torch.Tensor:  # object coordinates -> C smooth channels
        z = points @ frequencies.T + phases
        return torch.cat((torch.sin(z), torch.cos(z)), -1)

    gy, gx = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                            indexing="ij")
    cells = torch.stack((gx, gy), -1).reshape(-1, 2) * image / grid
    source = field(cells) + noise * torch.randn(grid * grid, channels, generator=g)
    target = field((cells - shift) @ unwarp.T) + noise * torch.randn(grid * grid, channels, generator=g)
    features = torch.stack((source.T, target.T)).reshape(2, channels, grid, grid)

    theta = torch.rand(keypoints, generator=g) * 2 * math.pi
    r = torch.rand(keypoints, generator=g).sqrt() * 0.85
    kp_source = torch.stack((centre[0] + rx * r * torch.cos(theta), centre[1] + ry * r * torch.sin(theta)), -1)
    return features, masks, torch.stack((kp_source, kp_source @ warp.T + shift))
