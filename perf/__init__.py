"""Performance scripts (installed as ``corrbench.perf``; timing a method is ``corrbench bench``, see
``corrbench.timing``): each prints ratios measured in one run on one machine (see the README's Performance)."""
