"""The synthetic benchmark: a procedural dataset in SPair-71k's layout, generated on first use.

- ``render``: draws the images and writes the dataset (``generate_synthetic``; the categories, keypoint names
  and generator version are its format);
- ``adapter``: ``SyntheticDataset``, the ``synthetic`` dataset of the benchmark specs, which reads the folder with
  the SPair-71k reader and generates it when it is missing.
"""
