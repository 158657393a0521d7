"""Performance scripts: each prints ratios measured in one run on one machine (see the README's Performance)."""
