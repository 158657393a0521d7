"""The synthetic benchmark: a procedural dataset in SPair-71k's layout, generated on first use.

- ``layout``: the format as data (categories, keypoint names, splits, file names, generator version, and the
  check of the generator's arguments);
- ``sketches``: what is drawn (materials, canonical-frame geometry, the five categories);
- ``render``: one instance posed, placed among clutter and occluders, rasterised, with its keypoints;
- ``generate``: ``generate_synthetic``, which writes the dataset (images, SPair records, pairs, manifest);
- ``adapter``: ``SyntheticDataset``, the ``synthetic`` dataset of the benchmark specs, which reads the folder with
  the SPair-71k reader and generates it when it is missing.
"""
