import numpy as np
import pytest
import torch

from corrbench.errors import ConfigError
from corrbench.geometry import (
    ResizePolicy,
    cells_to_pixels,
    cells_to_sampling_grid,
    pixels_to_cells,
    resize_image,
)


@pytest.mark.parametrize("kind", ["stretch", "longest_side_pad", "longest_side", "none"])
@pytest.mark.parametrize("rule", ["half_pixel", "scale", "align_corners"])
def test_transforms_invert_exactly(kind, rule):
    policy = ResizePolicy(kind, 84, rule=rule, multiple=14)
    t = policy.transform((300, 200))
    pts = np.array([[0.0, 0.0], [299.0, 199.0], [12.5, 170.25]])
    np.testing.assert_allclose(t.inverse(t.forward(pts)), pts, atol=1e-9)
    tp = torch.tensor(pts, dtype=torch.float64)
    torch.testing.assert_close(t.forward(tp), torch.from_numpy(t.forward(pts)))


def test_half_pixel_rule_maps_pixel_edges_to_edges():
    # Under the pixel-centre convention the image spans [-0.5, W-0.5]: its edges must land on the new edges.
    t = ResizePolicy("stretch", 50).transform((100, 200))
    np.testing.assert_allclose(t.forward(np.array([[-0.5, -0.5], [99.5, 199.5]])), [[-0.5, -0.5], [49.5, 49.5]])


def test_marco_scale_rule_and_align_corner_rule():
    scale = ResizePolicy("stretch", 50, rule="scale").transform((100, 200))
    np.testing.assert_allclose(scale.forward(np.array([[10.0, 10.0]])), [[5.0, 2.5]])
    corners = ResizePolicy("stretch", 51, rule="align_corners").transform((101, 201))
    np.testing.assert_allclose(corners.forward(np.array([[100.0, 200.0], [0.0, 0.0]])), [[50.0, 50.0], [0.0, 0.0]])


def test_longest_side_pad_centres_the_content():
    t = ResizePolicy("longest_side_pad", 100).transform((200, 100))
    assert t.resized_size == (100, 50) and t.offset == (0, 25) and t.out_size == (100, 100)
    image = torch.ones(3, 100, 200)
    canvas, _ = ResizePolicy("longest_side_pad", 100).apply(image)
    assert canvas.shape == (3, 100, 100)
    assert canvas[:, :25].sum() == 0 and canvas[:, 75:].sum() == 0
    assert torch.allclose(canvas[:, 25:75], torch.ones(3, 50, 100))


def test_resize_image_shapes_and_bad_names():
    assert resize_image(torch.rand(3, 40, 60), (30, 20)).shape == (3, 20, 30)
    assert resize_image(torch.rand(2, 3, 40, 60), (30, 20), "bicubic").shape == (2, 3, 20, 30)
    with pytest.raises(ConfigError):
        resize_image(torch.rand(3, 4, 4), (2, 2), "lanczos9")
    with pytest.raises(ConfigError):
        ResizePolicy.parse("stretch:big")
    with pytest.raises(ConfigError):
        ResizePolicy("squash", 10)
    assert ResizePolicy.parse("longest_side_pad:840") == ResizePolicy("longest_side_pad", 840)


def test_half_pixel_cells_are_patch_centres():
    # 4 cells over 56 pixels (patch 14): cell j's centre is at pixel 14 j + 6.5.
    cells = pixels_to_cells(torch.tensor([[6.5, 6.5], [48.5, 20.5]]), (56, 56), (4, 4))
    torch.testing.assert_close(cells, torch.tensor([[0.0, 0.0], [3.0, 1.0]]))
    torch.testing.assert_close(cells_to_pixels(cells, (56, 56), (4, 4)), torch.tensor([[6.5, 6.5], [48.5, 20.5]]))


def test_marco_cell_rule_matches_its_code():
    # MARCO: x_feat = x * W_feat / W_img, sampled with align_corners=True; back: c * (W_img-1)/(W_feat-1).
    cells = pixels_to_cells(torch.tensor([[770.0 / 2, 0.0]]), (770, 770), (220, 220), "marco")
    torch.testing.assert_close(cells, torch.tensor([[110.0, 0.0]]))
    grid, align = cells_to_sampling_grid(cells, (220, 220), "marco")
    assert align is True
    torch.testing.assert_close(grid, torch.tensor([[2 * 110.0 / 219 - 1, -1.0]]))
    back = cells_to_pixels(torch.tensor([[219.0, 0.0]]), (770, 770), (220, 220), "marco")
    torch.testing.assert_close(back, torch.tensor([[769.0, 0.0]]))


def test_unknown_cell_rule():
    with pytest.raises(ConfigError, match="cell rule"):
        pixels_to_cells(torch.zeros(1, 2), (10, 10), (2, 2), "nearest")
