"""Golden outputs of the authors' MARCO code (visinf/MARCO) for tests/test_marco_parity.py.

Runs the authors' code from local checkouts (it is imported, never copied into corrbench):

    python tools/golden/make_marco_golden.py --marco PATH/TO/MARCO --dinov2 PATH/TO/dinov2 \
        --out tests/data/marco_official_tiny.npz

Environment (how tests/data/marco_official_tiny.npz was made, on CPU torch 2.13.0, visinf/MARCO 1ec16b93,
facebookresearch/dinov2 b8931f7b): a venv with --system-site-packages over the CPU torch, plus (pip --no-deps)
einops, omegaconf, timm 1.0.7, matplotlib and torchvision 0.28.0. The PyPI torchvision wheel's C ops need a CUDA
torch, so that venv's torchvision/__init__.py was edited not to import _meta_registrations /
_autograd_registrations; the hub helper uses only torchvision's pure-Python transforms (ToTensor, Normalize).

- The authors' model is built by their own factory (``models._build_marco_from_cfg``) with a tiny config:
  ViT-S/14 with registers ('small'), adapters in blocks 8..11, channel factor 0.5 (width 192), 2 upsampling
  stages, softmax temperature 10. Their ``torch.hub.load('facebookresearch/dinov2', ...)`` is redirected to the
  local dinov2 checkout (source='local', pretrained=False): no network, no released weights.
- Every parameter is then overwritten with seeded values (``golden_cases.marco_weights``), drawn per key in sorted
  corrbench key order (the authors' wrapper key ``dino.blocks.N.block.X`` is corrbench's ``dino.blocks.N.X``),
  so the test regenerates them; the file holds outputs only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image
from golden_cases import marco_weights  # beside this script

WEIGHT_SEED = 21
CHANNELS = slice(0, None, 24)  # 16 of 384 channels of the feature maps (keeps the file small)

def redirect_hub_to(dinov2_repo: Path) -> None:
    """The authors load DINOv2 through torch.hub; serve it from the local checkout, without weights."""
    hub_load = torch.hub.load

    def local_hub_load(repo, name, *args, **kwargs):
        assert repo == "facebookresearch/dinov2", repo
        return hub_load(str(dinov2_repo), name, source="local", pretrained=False)

    torch.hub.load = local_hub_load


def corrbench_key(key: str) -> str:
    parts = key.split(".")
    if parts[:2] == ["dino", "blocks"] and len(parts) > 3 and parts[3] == "block":
        del parts[3]
    return ".".join(parts)


def git_head(repo: Path) -> str:
    return subprocess.check_output(["git", "-C", str(repo), "rev-parse", "HEAD"], text=True).strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--marco", type=Path, required=True, help="a checkout of visinf/MARCO")
    parser.add_argument("--dinov2", type=Path, required=True, help="a checkout of facebookresearch/dinov2")
    parser.add_argument("--out", type=Path, default=Path("tests/data/marco_official_tiny.npz"))
    args = parser.parse_args(argv)
    redirect_hub_to(args.dinov2)
    sys.path.insert(0, str(args.marco))
    from models import _build_marco_from_cfg
    from util.geometry import regularise_coordinates
    from util.visualization import preprocess_data

    torch.set_num_threads(1)
    cfg = OmegaConf.create({"model_size": "small", "n_upscale": 2, "adaptformer_stages": [8, 12],
                            "channel_factor": 0.5, "softmax_temp": 10})
    model = _build_marco_from_cfg(cfg).eval()
    full = torch.nn.Module.state_dict(model)  # MARCO.state_dict keeps only adapters + head
    names = {corrbench_key(k): k for k in full}
    seeded = marco_weights({k: tuple(full[v].shape) for k, v in names.items()}, WEIGHT_SEED)
    torch.nn.Module.load_state_dict(model, {names[k]: v for k, v in seeded.items()}, strict=True)

    out: dict[str, np.ndarray] = {}
    inputs = torch.Generator().manual_seed(1234)
    # 1. Network and matching on seeded, already-normalised square canvases.
    for side in (56, 70):
        samples = torch.randn(1, 2, 3, side, side, generator=inputs)
        interior = torch.rand(1, 6, 2, generator=inputs) * (side - 1)
        edges = torch.tensor([[[0.0, 0.0], [side - 1.0, side - 1.0], [side - 0.5, 3.0], [1e-4, 1e-4]]])
        points = torch.cat([interior, edges], dim=1)
        with torch.no_grad():
            fmaps = model.forward_backbone(samples)
            sims = model.sample_descriptors_w_sim(fmaps, points, (side, side))
            predicted = model(samples, points, (side, side))
        tag = f"canvas{side}"
        out[f"{tag}_features"] = fmaps[0, :, CHANNELS].numpy()
        out[f"{tag}_similarity"] = sims[0].numpy()
        out[f"{tag}_points"] = points[0].numpy()
        out[f"{tag}_predicted"] = predicted[0].numpy()

    # 2. The torch.hub helper's preprocessing (longest side + bottom/right zero padding) on seeded 8-bit images,
    #    then the datasets' source clamp (regularise_coordinates, eps 1e-4, resized image size) on its points.
    images = torch.Generator().manual_seed(4321)
    src = torch.randint(0, 256, (31, 45, 3), generator=images, dtype=torch.uint8).numpy()  # H x W x 3
    trg = torch.randint(0, 256, (52, 30, 3), generator=images, dtype=torch.uint8).numpy()
    src_points = [[3.25, 7.5], [40.0, 12.75], [22.5, 30.5], [0.0, 0.0], [44.9, 30.9], [44.0, 0.0]]
    with tempfile.TemporaryDirectory() as tmp:
        src_path, trg_path = Path(tmp, "src.png"), Path(tmp, "trg.png")
        Image.fromarray(src).save(src_path)
        Image.fromarray(trg).save(trg_path)
        hub = preprocess_data(str(src_path), str(trg_path), src_points, inference_res=56, device="cpu")
    resized_h, resized_w = 39, 56  # the hub helper's resized source (31 x 45 -> round(31 * 56 / 45) = 39)
    clamped = regularise_coordinates(hub["src_kps"], resized_h, resized_w, eps=1e-4)
    with torch.no_grad():
        hub_predicted = model(hub["samples"], hub["src_kps"], hub["img_size"])
        clamped_predicted = model(hub["samples"], clamped, hub["img_size"])
    out["hub_samples"] = hub["samples"][0].numpy()
    out["hub_src_points"] = np.asarray(src_points, dtype=np.float32)
    out["hub_src_kps"] = hub["src_kps"][0].numpy()
    out["hub_predicted"] = hub_predicted[0].numpy()
    out["datasets_src_kps"] = clamped[0].numpy()
    out["datasets_predicted"] = clamped_predicted[0].numpy()

    np.savez_compressed(args.out, **out)
    moved = (hub_predicted - clamped_predicted).abs().amax(dim=-1)[0]
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); MARCO {git_head(args.marco)[:12]}, "
          f"dinov2 {git_head(args.dinov2)[:12]}, torch {torch.__version__}")
    print("hub vs datasets clamp, source shift:", (hub["src_kps"] - clamped).abs().amax(dim=-1)[0].tolist())
    print("hub vs datasets clamp, prediction shift (canvas px):", moved.tolist())


if __name__ == "__main__":
    main()
