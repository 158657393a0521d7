"""MARCO's MP-100 generalisation benchmark: one folder, one module per concern.

- ``layout``: the format as data (folders, file names, the pair-list format, domains, categories, MARCO's
  release), imported by every other module here;
- ``annotations``: the index of MP-100's COCO test annotations (reader and builders);
- ``adapter``: the reader (``MP100``, the ``mp100`` dataset of the benchmark specs);
- ``build``: the curation that rebuilds the pair lists (``corrbench build-mp100``);
- ``release``: MARCO's released lists (``corrbench build-mp100 --official``, and ``MP100.prepare``);
- ``install`` and ``report``: writing a pairs/ folder with its manifest, and what the commands print about it.
"""
