"""AP-10K's correspondence benchmark (GeoAware-SC's protocol): one folder, one module per concern.

- ``layout``: the format as data (folder and file names, JSON fields, keypoints, GeoAware-SC's crowd list), which
  both the reader and the builder import;
- ``adapter``: the reader of a built folder (``AP10K``, the ``ap10k`` dataset of the benchmark specs);
- ``build``: ``corrbench build-ap10k``'s builder, from ``raw`` (reading the download) and ``pairs`` (the
  protocol's splits and pair sampling). The reader never imports the builder.
"""
