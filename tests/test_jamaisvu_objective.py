"""Jamais Vu's category-prototype objective (methods/geoaware/prototypes.py) against the authors' functions.

Golden tensors: tests/data/jamaisvu_objective_golden.npz, from VICO-UoE/JamaisVu's own ``calculate_3d_loss`` and
building blocks on crafted inputs, and the MoGe-format map folders under tests/data/jamaisvu_maps (written by
OpenCV exactly as MoGe writes them); tools/golden/geoaware/make_jamaisvu_golden.py made both.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from corrbench.errors import DataError
from corrbench.methods.geoaware import prototype_geometry as geometry
from corrbench.methods.geoaware.exr import read_exr_channels
from corrbench.methods.geoaware.point_maps import read_training_geometry
from corrbench.methods.geoaware.prototypes import (
    CategoryPrototype, prototype_losses, sample_at_keypoints, keypoint_alignment_loss,
)

DATA = Path(__file__).parent / "data"
MAPS = DATA / "jamaisvu_maps"
GOLDEN = np.load(DATA / "jamaisvu_objective_golden.npz")
SEED = 7  # the generator's: the first farthest point is drawn after torch.manual_seed(SEED)
IMAGES = {"2008_000001": "bottle", "2008_000002": "cat"}
LOSS_RTOL = 1e-5
GRAD_TOL = dict(rtol=1e-4, atol=1e-6)


def golden(key: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(GOLDEN[key]))


def read(image: str):
    return read_training_geometry(MAPS / "MoGeMaps", MAPS / "owlv2_sam_masks", IMAGES[image], image)


@pytest.mark.parametrize("image", IMAGES)
def test_moge_map_folders_read_as_the_authors_loader_reads_them(image):
    maps = read(image)
    assert torch.equal(maps.points, golden(f"{image}/points"))  # (z, y, x) channel order and clips included
    assert torch.equal(maps.depth, golden(f"{image}/depth"))
    assert torch.equal(maps.object_mask, golden(f"{image}/mask").float())
    assert maps.points.abs().max() == 1e3  # MoGe's infinite background is clipped


@pytest.mark.parametrize("case", ["raw_blocks", "half", "uncompressed"])
def test_exr_variants_decode_as_openexr_does(case):
    array, names = read_exr_channels(MAPS / "exr_cases" / f"{case}.exr")
    assert names == ["B", "G", "R"]
    assert np.array_equal(array, GOLDEN[f"exr/{case}"])


def prototype_from_golden(image: str) -> CategoryPrototype:
    prototype = CategoryPrototype(feature_dim=8, logged_points=16, sampled_points=48)
    row = prototype.index(IMAGES[image])
    with torch.no_grad():
        prototype.kps[row] = golden(f"{image}/kps")
        prototype.kps_feats[row] = golden(f"{image}/kps_feats")
        prototype.geom_temp.copy_(golden(f"{image}/geom_temp"))
    return prototype


def test_prototype_state_dict_has_the_authors_layout():
    prototype = CategoryPrototype(feature_dim=8, logged_points=16, sampled_points=48)
    layout = [f"{k}:{tuple(v.shape)}" for k, v in prototype.state_dict().items()]
    assert sorted(layout) == sorted(GOLDEN["state_dict_layout"].tolist())


@pytest.mark.parametrize("image", IMAGES)
def test_prototype_losses_and_gradients_equal_the_authors(image):
    prototype = prototype_from_golden(image)
    keypoints = golden(f"{image}/keypoints")
    descriptors = golden(f"{image}/descriptors")[0].t().reshape(8, 6, 6).clone().requires_grad_(True)
    maps = read(image)
    losses = prototype_losses(prototype, IMAGES[image], keypoints[:, :2], keypoints[:, 2].bool(), descriptors,
                              maps.points, maps.depth, maps.object_mask, annotation_size=48, neighbourhood_size=8,
                              generator=torch.Generator().manual_seed(SEED))
    expected = {name: float(GOLDEN[f"{image}/{name}"]) for name in
                ("total", "keypoint_alignment", "keypoint_features", "geometry")}
    assert losses.total.item() == pytest.approx(expected["total"], rel=LOSS_RTOL)
    assert losses.keypoint_alignment.item() == pytest.approx(expected["keypoint_alignment"], rel=LOSS_RTOL)
    assert losses.keypoint_features.item() == pytest.approx(expected["keypoint_features"], rel=LOSS_RTOL)
    geometry_loss = (losses.object_to_prototype + losses.prototype_to_object).item()
    assert geometry_loss == pytest.approx(expected["geometry"], rel=LOSS_RTOL)
    losses.total.backward()
    row = prototype.index(IMAGES[image])
    grad = descriptors.grad.reshape(8, 36).t().unsqueeze(0)
    torch.testing.assert_close(grad, golden(f"{image}/grad_descriptors"), **GRAD_TOL)
    torch.testing.assert_close(prototype.kps.grad[row], golden(f"{image}/grad_kps"), **GRAD_TOL)
    torch.testing.assert_close(prototype.kps_feats.grad[row], golden(f"{image}/grad_kps_feats"), **GRAD_TOL)
    torch.testing.assert_close(prototype.geom_temp.grad, golden(f"{image}/grad_geom_temp"), **GRAD_TOL)


def test_geometry_building_blocks_equal_the_authors():
    source, target, mask = golden("kabsch/source"), golden("kabsch/target"), golden("kabsch/mask")
    # the same operations in the same order: bit-equal (the masked centroid's +1e-6 shows only at this level)
    assert torch.equal(geometry.similarity_transform(source, target), golden("kabsch/plain"))
    assert torch.equal(geometry.similarity_transform(source, target, mask=mask), golden("kabsch/masked"))

    for case, n in (("fps", 12), ("fps_edge", 7)):  # fps_edge: ties, 4 masked points for 7 samples, an empty mask
        sampled, indices = geometry.farthest_point_sample(golden(f"{case}/points"), golden(f"{case}/mask"), n,
                                                          torch.Generator().manual_seed(SEED))
        assert torch.equal(indices, golden(f"{case}/indices")) and torch.equal(sampled, golden(f"{case}/sampled"))

    posed, canonical = golden("neighbours/points"), golden("neighbours/canonical")
    geodesic = geometry.pseudo_geodesic_neighbours(posed, 6)
    assert torch.equal(geodesic, golden("neighbours/geodesic"))
    nn_loss = geometry.local_shape_loss(posed, canonical, geometry.nearest_neighbours(canonical, 6))
    geodesic_loss = geometry.local_shape_loss(canonical, posed, geodesic)
    assert nn_loss.item() == pytest.approx(float(GOLDEN["loss/nn_geom"]), rel=LOSS_RTOL)
    assert geodesic_loss.item() == pytest.approx(float(GOLDEN["loss/geodesic_geom"]), rel=LOSS_RTOL)
    alignment = keypoint_alignment_loss(posed[:, :9], canonical[:, :9])
    assert alignment.item() == pytest.approx(float(GOLDEN["loss/kps_alignment"]), rel=LOSS_RTOL)

    kept = geometry.depth_inlier_mask(golden("depth_filter/mask"), golden("depth_filter/depth"))
    assert torch.equal(kept, golden("depth_filter/kept"))
    assert kept.sum() < golden("depth_filter/mask").sum()  # the far pixels were dropped

    feature_map, cells, valid = golden("gather/map"), golden("gather/cells"), golden("gather/valid")
    values = sample_at_keypoints(feature_map[0], cells[0], valid[0])
    torch.testing.assert_close(values, golden("gather/values")[0])


def test_the_first_farthest_point_comes_from_the_generator():
    points, mask = golden("fps/points"), golden("fps/mask")
    draws = {tuple(geometry.farthest_point_sample(points, mask, 3, torch.Generator().manual_seed(s))[1][0].tolist())
             for s in range(8)}
    assert len(draws) > 1


def test_pseudo_geodesic_neighbourhoods_differ_from_nearest_ones():
    posed = golden("neighbours/points")
    assert not torch.equal(geometry.pseudo_geodesic_neighbours(posed, 6), geometry.nearest_neighbours(posed, 6))


# -- bad input: one clear message naming the file --------------------------------------------------------------

def copy_maps(tmp_path: Path) -> Path:
    shutil.copytree(MAPS, tmp_path / "maps")
    return tmp_path / "maps"


def test_missing_point_map_names_the_folder_and_layout(tmp_path):
    root = copy_maps(tmp_path)
    (root / "MoGeMaps" / "bottle" / "2008_000001" / "points.exr").unlink()
    with pytest.raises(DataError, match=r"2008_000001: no points\.exr or points\.npy") as err:
        read_training_geometry(root / "MoGeMaps", root / "owlv2_sam_masks", "bottle", "2008_000001")
    assert "MoGeMaps layout" in str(err.value)


def test_unsupported_exr_compression_is_named(tmp_path):
    path = copy_maps(tmp_path) / "MoGeMaps" / "bottle" / "2008_000001" / "depth.exr"
    data = bytearray(path.read_bytes())
    at = data.index(b"compression\0compression\0") + len(b"compression\0compression\0") + 4
    data[at] = 4  # PIZ
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"depth\.exr: EXR compression PIZ is not supported"):
        read_exr_channels(path)


def test_truncated_exr_is_named(tmp_path):
    path = copy_maps(tmp_path) / "MoGeMaps" / "cat" / "2008_000002" / "points.exr"
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(DataError, match=r"points\.exr: not a readable OpenEXR file"):
        read_exr_channels(path)


def test_mask_of_another_size_is_refused(tmp_path):
    root = copy_maps(tmp_path)
    np.save(root / "owlv2_sam_masks" / "bottle" / "2008_000001.npy", np.ones((5, 5), dtype=bool))
    with pytest.raises(DataError, match="object mask is 5x5 but the point map is 16x22"):
        read_training_geometry(root / "MoGeMaps", root / "owlv2_sam_masks", "bottle", "2008_000001")


def test_npy_point_maps_from_another_model_are_read_too(tmp_path):
    root = copy_maps(tmp_path)
    folder = root / "MoGeMaps" / "bottle" / "2008_000001"
    exr_maps = read_training_geometry(root / "MoGeMaps", root / "owlv2_sam_masks", "bottle", "2008_000001")
    np.save(folder / "points.npy", read_exr_channels(folder / "points.exr")[0])
    np.save(folder / "depth.npy", read_exr_channels(folder / "depth.exr")[0][..., 0])
    (folder / "points.exr").unlink()
    (folder / "depth.exr").unlink()
    npy_maps = read_training_geometry(root / "MoGeMaps", root / "owlv2_sam_masks", "bottle", "2008_000001")
    assert torch.equal(npy_maps.points, exr_maps.points) and torch.equal(npy_maps.depth, exr_maps.depth)


def test_a_keypoint_the_category_does_not_define_is_refused():
    prototype = prototype_from_golden("2008_000001")
    keypoints = golden("2008_000001/keypoints")
    visible = keypoints[:, 2].bool().clone()
    visible[12] = True  # bottle defines 10 keypoints
    maps = read("2008_000001")
    with pytest.raises(DataError, match="keypoint 12 is visible but bottle defines only 10"):
        prototype_losses(prototype, "bottle", keypoints[:, :2], visible, torch.zeros(8, 6, 6), maps.points,
                         maps.depth, maps.object_mask, annotation_size=48)
