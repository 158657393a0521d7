"""Golden outputs of the official DINOv2 code (facebookresearch/dinov2) for tests/test_dinov2_parity.py.

Runs the official code from a local checkout (imported through torch.hub's local source, never copied):

    python tools/golden/make_dinov2_golden.py --dinov2 PATH/TO/dinov2 --out tests/data/dinov2_official_vits14.npz

tests/data/dinov2_official_vits14.npz was made with facebookresearch/dinov2 b8931f7b on CPU torch 2.13.0,
float32, one thread, xFormers absent. For ``dinov2_vits14`` and ``dinov2_vits14_reg`` (``pretrained=False``)
every parameter is overwritten with seeded values (one draw per key in checkpoint order; norm weights near 1),
then ``forward_features`` and ``get_intermediate_layers(x, n=2, reshape=True, norm=True)[0]`` are recorded on
seeded inputs of 56 x 70 and 98 x 84 pixels (grids other than the 37 x 37 the releases were trained at, so each
release's positional-embedding interpolation is exercised). The test regenerates weights and inputs from the
same seeds; the file holds outputs only.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np
import torch
from golden_cases import DINOV2_CASES, dinov2_outputs, dinov2_weights  # beside this script

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dinov2", type=Path, required=True, help="a checkout of facebookresearch/dinov2")
    parser.add_argument("--out", type=Path, default=Path("tests/data/dinov2_official_vits14.npz"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out: dict[str, np.ndarray] = {}
    for release, seed in DINOV2_CASES.items():
        model = torch.hub.load(str(args.dinov2), f"dinov2_{release}", source="local", pretrained=False).eval()
        shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        model.load_state_dict(dinov2_weights(shapes, seed), strict=True)
        out.update(dinov2_outputs(model, release))
    np.savez_compressed(args.out, **out)
    head = subprocess.check_output(["git", "-C", str(args.dinov2), "rev-parse", "HEAD"], text=True).strip()
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); dinov2 {head[:12]}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
