from dataclasses import replace

import pytest

from corrbench.registry import BENCHMARKS


@pytest.mark.parametrize("name", ["spair71k", "spair-u", "mp100-human-face", "mp100-apparel", "mp100-animal-body",
                                  "mp100-animal-face", "mp100-home-furniture"])
def test_marco_frame_variants_differ_only_in_the_frame(name):
    base, variant = BENCHMARKS.get(name), BENCHMARKS.get(f"{name}-marco")
    assert variant.protocol.frame == "square:770" and base.protocol.frame == "original"
    same = replace(variant, name=base.name, description=base.description, protocol=base.protocol)
    assert same == base
