import pytest
import torch

from corrbench.errors import ConfigError, UnknownNameError
from corrbench.localizers import LOCALIZERS, build_localizer
from corrbench.similarity import (
    Argmax,
    GaussianSoftArgmax,
    WindowSoftArgmax,
    argmax_cells,
    gaussian_soft_argmax,
    mutual_nearest_neighbours,
    nearest_neighbours,
    sample_descriptors,
    similarity_maps,
    window_soft_argmax,
)


def _one_hot_map(h, w, x, y, value=1.0):
    scores = torch.zeros(1, 1, h, w)
    scores[0, 0, y, x] = value
    return scores


@pytest.mark.parametrize("rule", ["half_pixel", "marco", "align_corners"])
def test_sampling_at_cell_coordinates_returns_that_cell(rule):
    features = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    cells = torch.tensor([[[0.0, 0.0], [3.0, 2.0], [1.0, 1.0]]])
    out = sample_descriptors(features, cells, rule)
    expected = torch.stack([features[0, :, 0, 0], features[0, :, 2, 3], features[0, :, 1, 1]])[None]
    torch.testing.assert_close(out, expected)


def test_sampling_between_cells_interpolates_linearly():
    features = torch.tensor([[[[0.0, 10.0]]]])  # one channel, 1 x 2 grid
    out = sample_descriptors(features, torch.tensor([[[0.25, 0.0]]]))
    torch.testing.assert_close(out, torch.tensor([[[2.5]]]))


def test_similarity_plain_and_cosine():
    desc = torch.tensor([[[2.0, 0.0]]])
    feats = torch.tensor([[[[3.0, 0.0]], [[0.0, 4.0]]]])  # (1, 2, 1, 2): cells (3,0) and (0,4)
    torch.testing.assert_close(similarity_maps(desc, feats), torch.tensor([[[[6.0, 0.0]]]]))
    torch.testing.assert_close(similarity_maps(desc, feats, normalize=True), torch.tensor([[[[1.0, 0.0]]]]))


def test_argmax_cells_is_x_then_y():
    torch.testing.assert_close(argmax_cells(_one_hot_map(5, 7, x=6, y=1)), torch.tensor([[[6.0, 1.0]]]))


def test_window_soft_argmax_symmetric_peak_and_far_distractor():
    scores = _one_hot_map(11, 11, 5, 5, 1.0)
    scores[0, 0, 5, 4] = scores[0, 0, 5, 6] = 0.5  # symmetric neighbours keep the expectation at the peak
    scores[0, 0, 0, 10] = 0.99  # outside the window: ignored
    torch.testing.assert_close(window_soft_argmax(scores, radius=2, temperature=0.02), torch.tensor([[[5.0, 5.0]]]))


def test_window_soft_argmax_two_equal_cells_average():
    scores = torch.full((1, 1, 1, 4), -100.0)
    scores[0, 0, 0, 1] = scores[0, 0, 0, 2] = 1.0
    torch.testing.assert_close(window_soft_argmax(scores, radius=1, temperature=0.01), torch.tensor([[[1.5, 0.0]]]))


def test_gaussian_soft_argmax_suppresses_far_modes():
    scores = torch.zeros(1, 1, 1, 60)
    scores[0, 0, 0, 10] = 50.0
    scores[0, 0, 0, 50] = 49.0  # a second mode 40 cells away: suppressed by exp(-40^2 / 98)
    out = gaussian_soft_argmax(scores, sigma=7, temperature=1.0)
    assert abs(out[0, 0, 0].item() - 10.0) < 1e-3
    # Without suppression the two modes would mix: softmax weights e^50 vs e^49 pull the mean towards 50.
    plain = torch.softmax(scores.flatten(2), -1) @ torch.arange(60.0)
    assert plain.item() > 15


def test_mutual_nearest_neighbours_known_pairs_and_chunking():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    for chunk in (1, 2, 100):
        ia, ib = mutual_nearest_neighbours(a, b, chunk_size=chunk)
        assert sorted(zip(ia.tolist(), ib.tolist())) == [(0, 1), (1, 0)]
    empty_a, empty_b = mutual_nearest_neighbours(torch.zeros(0, 2), b)
    assert empty_a.numel() == 0 and empty_b.numel() == 0


def test_localizer_modules_and_errors():
    loc = build_localizer("gaussian-soft-argmax", sigma=3.0, temperature=10.0)
    assert loc.normalize_features is False and "sigma=3.0" in repr(loc)
    torch.testing.assert_close(build_localizer("argmax")(_one_hot_map(3, 3, 2, 1)), torch.tensor([[[2.0, 1.0]]]))
    with pytest.raises(ConfigError, match="unknown localizer"):
        build_localizer("soft")
    with pytest.raises(ConfigError):
        build_localizer("argmax", radius=3)
    with pytest.raises(ValueError):
        argmax_cells(torch.zeros(3, 3))


def test_localizers_are_named_in_the_one_registry_with_did_you_mean():
    assert [(name, LOCALIZERS.get(name)) for name in ("argmax", "window-soft-argmax", "gaussian-soft-argmax")] == [
        ("argmax", Argmax), ("window-soft-argmax", WindowSoftArgmax), ("gaussian-soft-argmax", GaussianSoftArgmax)]
    assert LOCALIZERS.names() == ["argmax", "gaussian-soft-argmax", "window-soft-argmax"]
    with pytest.raises(UnknownNameError) as info:
        build_localizer("window-softargmax")
    # no `corrbench ls localizers` exists, so the hint names every localiser instead of pointing there
    assert info.value.message == "unknown localizer 'window-softargmax'"
    assert info.value.hint.startswith("did you mean 'window-soft-argmax'")
    assert info.value.hint.endswith("? (use one of argmax, gaussian-soft-argmax, window-soft-argmax)")
    assert build_localizer("window-soft-argmax", radius=2, temperature=0.5).radius == 2


def test_nearest_neighbours_top_scores_and_first_row_on_column_ties_across_chunks():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])  # rows 0 and 2 tie for column 0
    b = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    for chunk in (1, 2, 3, 100):
        found = nearest_neighbours(a, b, top=2, chunk_size=chunk)
        torch.testing.assert_close(found.row_scores, torch.tensor([[2.0, 0.8], [1.0, 0.6], [2.0, 0.8], [1.2, 0.96]]))
        assert found.row_index.tolist() == [0, 1, 0, 0]
        assert found.column_index.tolist() == [0, 1, 3]  # column 0: row 0, not the tied row 2 of a later chunk
        assert found.mutual.tolist() == [True, True, False, False]
    assert nearest_neighbours(a, b[:1], top=2).row_scores.shape == (4, 1)  # k = min(top, M)
    with pytest.raises(ValueError, match="at least one row"):
        nearest_neighbours(a, b[:0])


def test_nearest_neighbours_rows_only_skip_the_column_side():
    a, b = torch.randn(50, 8, generator=torch.Generator().manual_seed(0)), torch.randn(30, 8)
    both, rows = nearest_neighbours(a, b, chunk_size=7), nearest_neighbours(a, b, chunk_size=7, columns=False)
    assert torch.equal(rows.row_index, both.row_index) and torch.equal(rows.row_scores, both.row_scores)
    assert rows.column_index is None
    with pytest.raises(ValueError, match="columns=True"):
        rows.mutual
