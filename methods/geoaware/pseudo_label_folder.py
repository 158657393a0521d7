"""``corrbench pseudo-labels``: DIY-SC's pseudo-labels for an SPair-layout benchmark, written as an SPair-71k
folder that corrbench's SPair reader (and ``corrbench train``) reads.

The folder (default ``<data root>/<source folder>-DIY-SC``, e.g. ``SPair-71k-DIY-SC``)::

    PairAnnotation/trn|val/<pair id>-<src>-<trg>:<cat>.json   pseudo-labels (SPair's keys, original pixels)
    Layout/large/trn|val.txt                                  their stems, in generation order
    PairAnnotation/test, Layout/large/test.txt                the source's test split, untouched (link, copy)
    JPEGImages, Segmentation, ImageAnnotation                 relative links to the source's folders
    pseudo_labels_manifest.json                               settings, source, weights, counts; complete
    progress/<split>.jsonl                                    one line per finished tuple (for resuming)

What their script does and this one too (``gen_pseudo_labels.py`` as the README runs it: ``--filter_sph
--subsample 30000 --split trn`` and ``--subsample 300 --split val``, ``--only_dino``): per split and category,
sample 4-tuples along azimuth bins (``pseudo_label_sampling``), chain, check and filter their points
(``pseudo_labels``, ``prototype_filter``) and keep at most ``--subsample`` pairs per category, taken tuple
after tuple. What differs, on purpose or by necessity:

- output: SPair pair files in original-image pixels (their ``<cat>_anns.pt`` holds 840 px canvas points); a
  canvas point maps back by the inverse of their ``preprocess_kps_pad`` (one scale ``840 / max(W, H)`` and
  the centring offset), so their loader's padding puts it on the same canvas pixel;
- masks: their SAM masks (``preprocess_mask_sam.py``, box prompts) when ``--masks`` names such a folder
  (``<folder>/<cat>/<name>_mask.png``), else the dataset's segmentation (ground truth);
- features: computed per category in memory (their code reads precomputed files) through the family's feature
  sources: ``--sources dino`` (the default: DINOv2 only, their README's displayed command ``--only_dino``) or
  ``--sources sd,dino`` (their script's own default without ``--only_dino``, the README's "Full (SD+DINOv2)"
  option and the paper's main setting -- its Appendix E: a DINOv2 adapter trained on DINOv2-only pseudo-labels
  drops to 67.17 % per image; needs the ``diffusion`` extra). With SD, each image's descriptor is SD
  s3, s4, s5 then DINOv2 (``sd_source``), the SD and DINOv2 parts normalised apart and then together (their
  ``normalize_features``, split at the SD source's width rather than a fixed 3200); the spherical filter
  reads the DINOv2 part only, as their ``preprocess_sph_feats.py`` maps the ``_dino`` files;
- the order of a tuple's 12 ordered pairs is shuffled by a generator seeded per tuple (theirs comes from
  DataLoader worker seeds), so which of a tuple's pairs fill the last places of a category can differ.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from corrbench.datasets.images import load_image, load_mask
from corrbench.errors import ConfigError, DataError
from corrbench.files import UnreadableJSON, read_json, write_json_atomic, write_text_atomic
from corrbench.train.data import sam_mask_path

from . import pseudo_labels as pl
from .features import DINOv2Source, build_sources, check_sources, family_transform
from .prototype_filter import SPHERE_THRESHOLD, load_spherical_mapper
from .pseudo_label_sampling import CHAINING_METRICS, sample_chains, tuples_to_draw

MANIFEST = "pseudo_labels_manifest.json"
FORMAT_VERSION = 1
FOLDER_SUFFIX = "-DIY-SC"
#: ``--subsample`` per split in their README's commands (pairs per category).
DEFAULT_PAIRS = {"trn": 30000, "val": 300}
SEGMENTATION = "segmentation"
BACKBONE = "dinov2_vitb14"
KEYPOINT_DECIMALS = 4  # original-pixel coordinates are written rounded to 1e-4 px
#: ``--sources``: their two feature modes, SD ahead of DINOv2 as their ``normalize_features`` expects.
FEATURE_MODES = {"dino": ("dino",), "sd,dino": ("sd", "dino")}


@dataclass(frozen=True)
class PseudoLabelSettings:
    """Everything that decides the labels (recorded in the manifest; a folder resumes only with equal ones)."""

    source: str = "spair71k"
    pairs: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PAIRS))
    chain_length: int = pl.CHAIN_LENGTH
    chaining: str = "azimuth_bin"
    cycle: str = "relaxed"
    rejection_patches: int = pl.REJECTION_PATCHES
    sphere_filter: bool = True
    sphere_threshold: float = SPHERE_THRESHOLD
    sphere_weights: str | None = None  # None: the released checkpoint; a path; or "random"
    masks: str = SEGMENTATION
    resolution: int = pl.RESOLUTION
    backbone_weights: str | None = None  # None: DINOv2's official weights; a path; or "random"
    seed: int = 42  # their random.seed(42)
    sources: tuple[str, ...] = FEATURE_MODES["dino"]  # their README's displayed command (--only_dino)

    def check(self) -> None:
        if tuple(self.sources) not in FEATURE_MODES.values():
            raise ConfigError(f"--sources {','.join(self.sources)} is not one of DIY-SC's feature modes",
                              hint=f"use {' or '.join(FEATURE_MODES)}")
        bad = sorted(set(self.pairs) - set(DEFAULT_PAIRS))
        if bad:
            raise ConfigError(f"--pairs names split(s) {', '.join(bad)}",
                              hint="pseudo-labels replace the training splits trn and val; test stays the source's")
        if any(int(n) < 1 for n in self.pairs.values()) or not self.pairs:
            raise ConfigError("--pairs needs SPLIT=N with N >= 1, e.g. --pairs trn=30000 --pairs val=300")
        if self.chain_length < 2:
            raise ConfigError(f"--chain-length must be at least 2, got {self.chain_length}")
        if self.chaining not in CHAINING_METRICS:
            raise ConfigError(f"unknown --chaining {self.chaining!r}", hint=f"use one of {', '.join(CHAINING_METRICS)}")
        if self.cycle not in pl.CYCLE_MODES:
            raise ConfigError(f"unknown --cycle {self.cycle!r}", hint=f"use one of {', '.join(pl.CYCLE_MODES)}")
        if self.resolution % pl.PATCH_SIZE:
            raise ConfigError(f"--resolution must be a multiple of the patch size {pl.PATCH_SIZE}, "
                              f"got {self.resolution}")
        if self.masks != SEGMENTATION and not Path(self.masks).is_dir():
            raise ConfigError(f"--masks {self.masks}: no such folder",
                              hint=f"use {SEGMENTATION} or a folder of DIY-SC's SAM masks "
                              "(<folder>/<cat>/<name>_mask.png)")

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "sources": list(self.sources)}

    def feature_config(self) -> "ZeroShotFeatures":
        return ZeroShotFeatures(self.resolution, self.backbone_weights, self.seed)


@dataclass(frozen=True)
class ZeroShotFeatures:
    """The fields the family's feature-source builders read (``features.build_sources``): ``weights`` is
    ``--backbone-weights`` (``random`` also makes SD random; a path names DINOv2's file, SD stays released)."""

    resolution: int
    weights: str | None
    seed: int
    interpolation: str = "pil"  # the authors' LANCZOS canvas


@dataclass
class SourceImage:
    name: str  # file name, e.g. 2008_000001.jpg
    path: Path
    size: tuple[int, int]
    bbox: list[float]
    mask: Path | None
    mask_label: int | None


def canvas_to_original(points_xy: np.ndarray, size: tuple[int, int], resolution: int) -> np.ndarray:
    """Canvas pixels -> original pixels: the inverse of their ``preprocess_kps_pad`` (one scale, centring offset),
    i.e. of the family's keypoint transform."""
    return family_transform(tuple(size), resolution).inverse(np.asarray(points_xy, dtype=np.float64))


def default_folder(data_root: Path, source_data_dir: str) -> Path:
    return Path(data_root) / f"{source_data_dir}{FOLDER_SUFFIX}"


def load_zero_shot_backbone(weights: str | None, device: torch.device) -> torch.nn.Module:
    """DIY-SC's feature network: DINOv2 ViT-B/14 (a seam the tests replace with a tiny one)."""
    from corrbench.backbones import load_dinov2

    return load_dinov2(BACKBONE, weights).to(device).eval()


class PseudoLabelRun:
    """One generation into ``out``: ``run()`` writes what is missing and returns the manifest."""

    def __init__(self, settings: PseudoLabelSettings, adapter: Any, spec: Any, out: Path, device: torch.device,
                 batch_size: int = 8, progress: bool = True):
        from corrbench.datasets.spair import SPairLayout

        settings.check()
        if not isinstance(adapter, SPairLayout):
            raise ConfigError(f"pseudo-labels need a benchmark in SPair-71k's layout (spair71k, synthetic); "
                              f"{spec.name} is read by {type(adapter).__name__}")
        self.settings, self.adapter, self.spec, self.out = settings, adapter, spec, Path(out)
        self.device, self.batch_size, self.progress = device, batch_size, progress
        self.grid = settings.resolution // pl.PATCH_SIZE
        self.corners = pl.patch_corners(self.grid, settings.resolution)
        check_sources(settings.sources, settings.feature_config())  # the diffusion extra, before any download
        self.backbone: DINOv2Source | None = None
        self.sd: torch.nn.Module | None = None  # the family's "sd" source with --sources sd,dino
        self.mapper: torch.nn.Module | None = None
        self.provenance: dict[str, Any] = {}

    # --- the folder -------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        manifest = self._start_manifest()
        self._link_source()
        counts = {split: self._generate_split(split, n) for split, n in self.settings.pairs.items()}
        manifest.update(counts=counts, complete=True, **self.provenance)
        write_json_atomic(self.out / MANIFEST, manifest)
        return manifest

    def _start_manifest(self) -> dict[str, Any]:
        path = self.out / MANIFEST
        manifest = {
            "format": FORMAT_VERSION,
            "generator": "DIY-SC pseudo-labels (corrbench pseudo-labels; odunkel/DIY-SC gen_pseudo_labels.py)",
            "settings": self.settings.to_json(),
            "source": {"benchmark": self.spec.name, "key": self.spec.key, "root": str(self.adapter.root)},
            "segmentation_labels": dict(self.adapter.segmentation_labels),
            "points": "top-left corner of each matched patch (their kps_grid), in original pixels",
            "complete": False,
        }
        if path.is_file():
            try:
                old = read_json(path)
            except UnreadableJSON as exc:
                raise DataError(f"{path}: not valid JSON ({exc})", hint=f"delete {self.out} and run again") from None
            old_settings = {"sources": ["dino"], **old.get("settings", {})}  # folders made before --sources
            if old_settings != manifest["settings"] or old.get("source", {}).get("key") != self.spec.key:
                raise ConfigError(f"{self.out} holds pseudo-labels made with other settings or source",
                                  hint="choose another --out, or delete the folder to start over")
            return {**old, "complete": False}
        if self.out.exists() and any(self.out.iterdir()):
            raise ConfigError(f"{self.out} exists and is not a pseudo-label folder (no {MANIFEST})",
                              hint="choose another --out")
        write_json_atomic(path, manifest)
        return manifest

    def _link_source(self) -> None:
        """The source's images, masks, image annotations and test split, as relative links (and a copy of
        its test list), so the folder is a complete SPair-layout dataset."""
        src = self.adapter
        links = {"JPEGImages": src.images_dir, "Segmentation": src.masks_dir,
                 "ImageAnnotation": src.root / "ImageAnnotation", "PairAnnotation/test": src.pair_folder("test")}
        for name, target in links.items():
            link = self.out / name
            if target.exists() and not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()), target_is_directory=True)
        test_list = self.out / "Layout" / "large" / "test.txt"
        if not test_list.is_file():
            write_text_atomic(test_list, src.layout_file("test").read_text(encoding="utf-8"))

    # --- one split --------------------------------------------------------------------------------------

    def _generate_split(self, split: str, per_category: int) -> dict[str, int]:
        images = self._images(split)
        rng = random.Random(self.settings.seed)  # their script: one process per split, random.seed(42)
        n = self.settings.chain_length
        plan = {cat: sample_chains(self._azimuths(cat, imgs), n, tuples_to_draw(per_category, n), rng,
                                   self.settings.chaining)
                for cat, imgs in sorted(images.items())}
        done_path = self.out / "progress" / f"{split}.jsonl"
        done = _read_progress(done_path)
        stems: dict[str, list[str]] = defaultdict(list)
        for record in done:
            stems[record["category"]].extend(record["stems"])
        finished = {(r["category"], r["tuple"]) for r in done}
        first_id = 0
        total = sum(len(t) for t in plan.values())
        with tqdm(total=total, desc=f"pseudo-labels {split}", unit="tuple", disable=not self.progress) as bar, \
                open(done_path, "a", encoding="utf-8") as log:
            for cat, tuples in plan.items():
                todo = [t for t in range(len(tuples)) if (cat, t) not in finished]
                bar.update(len(tuples) - len(todo))
                if todo and len(stems[cat]) < per_category:
                    state = self._category_state(images[cat], sorted({i for t in todo for i in tuples[t]}))
                    for t in todo:
                        if len(stems[cat]) >= per_category:
                            bar.update(1)
                            continue
                        written = self._write_tuple(split, cat, images[cat], tuples[t], first_id + t, state,
                                                    per_category - len(stems[cat]))
                        stems[cat].extend(written)
                        log.write(json.dumps({"category": cat, "tuple": t, "stems": written}) + "\n")
                        log.flush()
                        bar.update(1)
                else:
                    bar.update(len(todo))
                first_id += len(tuples)
        write_text_atomic(self.out / "Layout" / "large" / f"{split}.txt",
                          "".join(f"{s}\n" for cat in sorted(stems) for s in stems[cat]))
        return {cat: len(stems[cat]) for cat in sorted(images)}

    def _images(self, split: str) -> dict[str, list[SourceImage]]:
        """The split's images per category (those in its pairs; their ``aggregate_spair_data_in_df``),
        sorted by file name as their sampling sorts them."""
        found: dict[str, dict[str, SourceImage]] = defaultdict(dict)
        for pair in self.adapter.pairs(split).pairs:
            label = pair.meta.get("mask_label")
            for path, size, bbox, mask in ((pair.src_image, pair.src_size, pair.src_bbox, pair.src_mask),
                                           (pair.trg_image, pair.trg_size, pair.trg_bbox, pair.trg_mask)):
                found[pair.category].setdefault(path.name, SourceImage(
                    path.name, Path(path), tuple(size), [float(v) for v in bbox], mask, label))
        if not found:
            raise DataError(f"{self.spec.name} has no {split!r} pairs under {self.adapter.root}")
        return {cat: [imgs[k] for k in sorted(imgs)] for cat, imgs in found.items()}

    def _azimuths(self, category: str, images: Sequence[SourceImage]) -> list[int]:
        if self.settings.chaining != "azimuth_bin":
            return [0] * len(images)
        azimuths = []
        for image in images:
            path = self.adapter.root / "ImageAnnotation" / category / f"{Path(image.name).stem}.json"
            try:
                azimuths.append(int(read_json(path)["azimuth_id"]))
            except (UnreadableJSON, KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}: no azimuth_id ({type(exc).__name__}: {exc})",
                                hint="azimuth chaining reads SPair's image annotations; use --chaining random "
                                "for a dataset without them") from None
        return azimuths

    # --- one category and one tuple ---------------------------------------------------------------------

    def _models(self) -> None:
        if self.backbone is None:
            backbone = load_zero_shot_backbone(self.settings.backbone_weights, self.device)
            self.provenance["backbone"] = {"name": BACKBONE, **getattr(backbone, "weights_info", dict)()}
            self.backbone = DINOv2Source(backbone, self.settings.resolution).to(self.device)
        if self.sd is None and "sd" in self.settings.sources:
            (self.sd,) = build_sources(["sd"], self.settings.feature_config())
            self.sd.to(self.device)
            self.provenance["sd"] = self.sd.model.weights_info()
        if self.mapper is None and self.settings.sphere_filter:
            mapper, info = load_spherical_mapper(self.settings.sphere_weights, dim=self.backbone.layer_dims[0],
                                                 progress=self.progress)
            self.mapper = mapper.to(self.device)
            self.provenance["sphere_mapper"] = info

    @torch.no_grad()
    def _category_state(self, images: Sequence[SourceImage], needed: Sequence[int]) -> dict[int, tuple]:
        """Per needed image: unit descriptors ``(N, D)``, object cells, spherical points ``(N, 3)`` or None."""
        self._models()
        state = {}
        for start in range(0, len(needed), self.batch_size):
            chunk = needed[start : start + self.batch_size]
            pixels = [load_image(images[i].path) for i in chunk]
            tokens = self.backbone(pixels).flatten(2).transpose(1, 2)  # (B, N, D), row-major cells
            spheres = self.mapper(tokens) if self.mapper is not None else None  # DINOv2 tokens only, as theirs
            if self.sd is None:
                descriptors = pl.normalize_descriptors(tokens)
            else:
                sd = self.sd(pixels).flatten(2).transpose(1, 2).to(tokens)
                descriptors = pl.normalize_descriptors(torch.cat([sd, tokens], dim=-1), sd_channels=sd.shape[-1])
            for row, i in enumerate(chunk):
                cells = pl.foreground_patches(self._mask(images[i]), self.grid, self.settings.resolution)
                state[i] = (descriptors[row], cells, None if spheres is None else spheres[row])
        return state

    def _mask(self, image: SourceImage) -> np.ndarray:
        if self.settings.masks != SEGMENTATION:
            path = sam_mask_path(image.path, Path(self.settings.masks))
            try:
                with Image.open(path) as mask:
                    return np.asarray(mask.convert("L")) > 0
            except OSError as exc:
                raise DataError(f"cannot read the SAM mask {path}: {exc}",
                                hint="--masks names a folder laid out as DIY-SC's preprocess_mask_sam.py "
                                "writes it") from None
        if image.mask is None:
            raise DataError(f"{self.spec.name} has no segmentation for {image.path}",
                            hint="pass --masks FOLDER with DIY-SC's SAM masks")
        return load_mask(image.mask, image.size, image.mask_label).numpy()

    def _write_tuple(self, split: str, category: str, images: Sequence[SourceImage], members: Sequence[int],
                     tuple_id: int, state: dict[int, tuple], room: int) -> list[str]:
        descriptors = torch.stack([state[i][0] for i in members])
        foreground = [state[i][1] for i in members]
        if any(len(cells) == 0 for cells in foreground):
            return []  # an image without object cells gives nothing to chain
        spheres = torch.stack([state[i][2] for i in members]).cpu() if self.mapper is not None else None
        rng = random.Random(f"{self.settings.seed}:{split}:{category}:{tuple_id}")
        labels = pl.tuple_pseudo_labels(descriptors, foreground, self.corners, rng, spheres=spheres,
                                        sphere_threshold=self.settings.sphere_threshold, mode=self.settings.cycle,
                                        radius=self.settings.rejection_patches * pl.PATCH_SIZE)
        per_tuple = self.settings.chain_length * (self.settings.chain_length - 1)
        stems = []
        for position, (i, j, cells_i, cells_j) in enumerate(labels[:room]):
            src, trg = images[members[i]], images[members[j]]
            pair_id = tuple_id * per_tuple + position
            stem = f"{pair_id:07d}-{Path(src.name).stem}-{Path(trg.name).stem}:{category}"
            write_json_atomic(self.out / "PairAnnotation" / split / f"{stem}.json", {
                "pair_id": pair_id,
                "src_imname": src.name, "trg_imname": trg.name,
                "src_imsize": [*src.size, 3], "trg_imsize": [*trg.size, 3],
                "src_bndbox": src.bbox, "trg_bndbox": trg.bbox,
                "category": category,
                "src_kps": self._points(cells_i, src.size), "trg_kps": self._points(cells_j, trg.size),
                "kps_ids": [str(k) for k in range(len(cells_i))],
                "pseudo_label": {"tuple": [images[m].name for m in members], "tuple_index": tuple_id},
            })
            stems.append(stem)
        return stems

    def _points(self, cells: torch.Tensor, size: tuple[int, int]) -> list[list[float]]:
        canvas_xy = self.corners[cells][:, [1, 0]].numpy()  # (row, col) corners -> (x, y)
        original = canvas_to_original(canvas_xy, size, self.settings.resolution)
        return np.round(original, KEYPOINT_DECIMALS).tolist()


def _read_progress(path: Path) -> list[dict[str, Any]]:
    """Finished tuples; a last line cut off by an interruption is ignored (that tuple is redone)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines) - 1:
                break
            raise DataError(f"{path}: line {number + 1} is not JSON", hint="delete the folder and run again") from None
    # keep the file ending at a line boundary before appending again
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
    return records


def generate_pseudo_labels(settings: PseudoLabelSettings, *, data_root: Path, out: Path | None = None,
                           device: str = "auto", batch_size: int = 8, download: bool = True,
                           progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Write (or finish) the pseudo-label folder for ``settings.source``; returns the folder and its manifest."""
    from corrbench.datasets import make_adapter
    from corrbench.registry import BENCHMARKS
    from corrbench.runtime import resolve_device

    spec = BENCHMARKS.get(settings.source)
    adapter = make_adapter(spec, data_root)
    folder = Path(out) if out is not None else default_folder(data_root, spec.data_dir)
    run = PseudoLabelRun(settings, adapter, spec, folder, resolve_device(device), batch_size, progress)  # checks
    adapter.prepare(progress=progress, download=download)
    return folder, run.run()


def generate_from_options(*, data_root: Path, out: Path | None = None, device: str = "auto", batch_size: int = 8,
                          download: bool = True, progress: bool = True,
                          **settings: Any) -> tuple[Path, dict[str, Any], str]:
    """``corrbench pseudo-labels --method diy-sc``: ``settings`` are ``PseudoLabelSettings`` fields."""
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(PseudoLabelSettings)})
    if unknown:
        raise ConfigError(f"DIY-SC pseudo-labels have no setting(s) {', '.join(unknown)}")
    chosen = PseudoLabelSettings(**{k: v for k, v in settings.items() if v is not None or k.endswith("weights")})
    folder, manifest = generate_pseudo_labels(chosen, data_root=data_root, out=out, device=device,
                                              batch_size=batch_size, download=download, progress=progress)
    return folder, manifest, training_hint(chosen.source, folder, data_root)


def training_hint(source: str, folder: Path, data_root: Path) -> str:
    """How ``corrbench train`` reaches ``folder``: through the ``<source>-diy-sc`` benchmark, which reads
    ``<data root>/<source folder>-DIY-SC``."""
    from corrbench.registry import BENCHMARKS

    name = f"{source}-diy-sc"
    if name not in BENCHMARKS:
        return (f"train on it: no benchmark reads it yet; declare one like benchmarks/diy_sc.py does "
                f"(dataset 'pseudo-labels', data_dir {str(folder)!r})")
    expected = BENCHMARKS.get(name).data_dir
    if Path(folder).resolve() == (Path(data_root) / expected).resolve():
        return f"train on it: corrbench train --method METHOD --benchmark {name}"
    if Path(folder).name == expected:
        return f"train on it: corrbench train --method METHOD --benchmark {name} --data-root {Path(folder).parent}"
    return f"train on it: move it to <data root>/{expected}, then corrbench train --method METHOD --benchmark {name}"


__all__ = ["DEFAULT_PAIRS", "FEATURE_MODES", "MANIFEST", "PseudoLabelSettings", "canvas_to_original", "default_folder",
           "generate_from_options", "generate_pseudo_labels",
           "training_hint"]
