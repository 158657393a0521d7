import numpy as np
import pytest
from PIL import Image

from corrbench.batching import make_batch
from corrbench.datasets import make_adapter
from corrbench.datasets.images import load_image, load_mask
from corrbench.errors import DataError
from corrbench.registry import BENCHMARKS


def test_palette_mask_keeps_only_the_pairs_class(tmp_path):
    values = np.zeros((4, 6), dtype=np.uint8)
    values[0, :3] = 8  # the pair's category (e.g. cat = VOC index 7 + 1)
    values[2, 3:] = 12  # another object in the picture
    values[3, 0] = 255  # VOC's void border
    image = Image.fromarray(values, mode="P")
    image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    path = tmp_path / "seg.png"
    image.save(path)
    assert load_mask(path, (6, 4), label=8).sum() == 3
    everything = load_mask(path, (6, 4))
    assert everything.sum() == 6 and not everything[3, 0]
    with pytest.raises(DataError, match="is 6x4"):
        load_mask(path, (4, 6))


def test_image_size_is_checked_against_the_annotation(tmp_path):
    path = tmp_path / "a.jpg"
    Image.new("RGB", (10, 7)).save(path)
    assert load_image(path, (10, 7)).shape == (3, 7, 10)
    with pytest.raises(DataError, match="annotation says 7x10"):
        load_image(path, (7, 10))
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "b.jpg")
    (tmp_path / "c.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        load_image(tmp_path / "c.jpg")


def test_synthetic_masks_cover_the_keypoints(synthetic_data_root):
    adapter = make_adapter(BENCHMARKS.get("synthetic"), synthetic_data_root)
    pairs = adapter.pairs("test").pairs[:4]
    batch = make_batch(pairs, with_masks=True)
    for pair, mask in zip(pairs, batch.src_masks):
        assert mask.shape == (pair.src_size[1], pair.src_size[0]) and 0 < mask.float().mean() < 0.9
        xy = np.round(pair.src_kps).astype(int)
        assert mask[xy[:, 1], xy[:, 0]].float().mean() > 0.8
