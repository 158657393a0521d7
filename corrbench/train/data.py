"""Training pairs as corrbench's engine gives them to every trainer: square canvases, scaled keypoints,
object masks, batched.

These are corrbench's rules, the same for every method. They were written to reproduce MARCO's released data
pipeline (visinf/MARCO ``datasets/*.py`` and ``datasets/data_utils.py:collate_fn_train``), the first method
trained here; where another reference code does the same, it is named. What one training item is
(``TrainingPairs[i]``):

images
    Both images resized with PIL's bilinear filter (antialiased when shrinking, as torchvision's ``Resize``
    on a PIL image does) to the training canvas, then normalised with the ImageNet mean and std. Three resize
    rules (``RESIZE_RULES``):

    ``stretch``     ``S x S``, aspect ratio changed;
    ``pad``         longest side to ``S`` (content ``round(W * S / max(W, H))`` x ``round(H * S / max(W, H))``),
                    then zero-padded at the bottom and right to ``S x S``; the padding is zero AFTER
                    normalisation, as in MARCO's ``pad_tensor_no_resize``;
    ``pad-centre``  GeoAware-SC's canvas (``utils_correspondence.resize``), the one the family's inference uses:
                    the same content size, but PIL's LANCZOS filter on the 8-bit image, the content centred
                    (offset ``(S - W') // 2``, ``(S - H') // 2``) and the padding black BEFORE normalisation
                    (``-mean / std`` after). Placement: ``corrbench.geometry.centred_pad_transform``.

    A recipe names one of them, or ``auto``: then the METHOD picks the rule per dataset, through its trainer's
    ``auto_train_resize(dataset)`` (``TrainerBase``: ``stretch`` for every dataset; MARCO's trainer pads
    PF-PASCAL and AP-10K as its authors do). ``resolve_resize`` applies that choice.

keypoints
    Only the keypoints visible in both images (the rows SPair's pair files list; MARCO sets every listed
    keypoint visible). A coordinate is scaled per axis by ``content / original`` (``x' = x * W'/W``, no
    half-pixel shift: MARCO's ``scale`` rule; ``pad-centre``: both axes by ``S / max(W, H)`` plus the offset,
    GeoAware-SC's ``preprocess_kps_pad``) and clamped to ``[1e-4, content - 1 - 1e-4]`` inside the content (MARCO's
    ``regularise_coordinates(eps=1e-4)``; the unified benchmark clamps its training keypoints the same way,
    Visual-AI/Semantic-Correspondence ``dataset/dataset.py``). ``(2, P, 2)``: row 0 the source, row 1 the target.

masks
    Where a trainer may look for matches (METHODS.md "Masks"; MARCO's flow anchoring). ``masks="auto"`` takes
    the dataset's ground-truth segmentation when the adapter gives mask files (SPair-71k, the synthetic
    benchmark; only the pair category's label value counts), else the tight box around the image's visible
    keypoints. ``"segmentation"`` insists on the ground truth, ``"keypoint-box"`` always uses the box, and any
    other value is a folder of SAM masks laid out as MARCO's ``scripts/preprocess_masks_sam.py`` writes them:
    the image ``<dataset>/JPEGImages/<rel>/<name>.jpg`` has its mask at ``<folder>/<rel>/<name>_mask.png``
    (object where the 8-bit value is above 127). A segmentation or SAM mask is brought to the canvas by
    nearest-neighbour resizing (``stretch``; MARCO's ``F.interpolate(mode="nearest")``) or by PIL's
    bilinear filter then a 0.5 threshold (``pad``, ``pad-centre``; MARCO's ``resize_longest_side`` + ``> 0.5``),
    placed on the canvas where the image content is. A
    keypoint box is drawn directly on the canvas: every pixel whose centre lies in
    ``[floor(min), ceil(max)]`` of the scaled visible keypoints. Padding is never object.

Batches (``collate_training``) pad keypoints with zeros to the largest count in the batch and mark real rows
in ``visible``, as MARCO's ``collate_fn_train`` does. Randomness lives only in the order of pairs, which
``EpochBatches`` draws from the run's seed and the epoch.

flip views (``flip_views``, off by default; MARCO's released trainer does not augment)
    GeoAware-SC's pose-aware flip augmentation (Junyi42/GeoAware-SC ``pck_train.py`` with ``PAIR_AUGMENT``,
    ``utils/utils_losses.py`` ``calculate_loss``). It is not random: every pair of every step also comes
    with both images mirrored left-right, and with two keypoint sets on them (``FlipViews``):

    ``pair``  the mirrored source against the mirrored target (their "double flip");
    ``self``  the mirrored source against the source itself (their "self flip").

    A mirrored object's left keypoints are its right ones: keypoint ``k`` of a mirrored image lies at the
    mirror of keypoint ``partner(k)`` of the original, with ``partner`` the dataset's left/right table
    (``flip_partners``: SPair-71k, AP-10K, the synthetic benchmark; a keypoint without a partner is its own),
    and it is visible where ``partner(k)`` is. The ``self`` view keeps the keypoints visible in both the
    mirrored and the original source, as theirs does. Their loss (``corrbench.train.losses.geosc_loss``)
    weighs the views; the third view their code can compute (mirrored source against target, ``ADAPT_FLIP``)
    is a test-time flag their training configs never set, so it is not built. Mirroring: the resized image
    content is mirrored in place (a mirrored image has the same size, so the same placement: the mirror of a
    centred canvas is the centred canvas of the mirrored image); their ``preprocess_map.py`` mirrors the
    original image before resizing, which gives the same pixels (PIL's bilinear and LANCZOS filters are
    symmetric: equal bytes on 200 and 60 random sizes, up and down), without reading the file twice. A keypoint ``x`` becomes ``W - 1 - x`` (the pixel
    column a mirror moves it to: corrbench's pixel-centre convention), then goes through the rules above. GeoAware-SC writes ``840 - x`` on its centred 840-px canvas instead:
    about one canvas pixel (1/14 of a cell) to the right of ours. Limits: SPair-71k's pair files list only
    the keypoints visible in both images, so corrbench's ``self`` view draws on those, where theirs reads
    every keypoint of the source's image file. PF-PASCAL has no table (nor does their code use one for it).

Pairs with no keypoint visible in both images cannot supervise anything and are left out (counted in
``TrainingPairs.dropped``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..backbones import IMAGENET_MEAN, IMAGENET_STD
from ..datasets.images import load_mask
from ..errors import ConfigError, DataError
from ..geometry import ResizeTransform, centred_pad_transform, paste_on_canvas, resize_8bit_pil
from ..protocol import clamp_inside  # the one clamp rule (CLAMP_EPS), shared with the scoring frames
from ..types import Pair

#: How an image is brought to the square training canvas (see the module docstring).
RESIZE_RULES = ("stretch", "pad", "pad-centre")
#: The recipe value (``TrainingRecipe.train_resize``) that leaves the rule to the method, per dataset.
AUTO_RESIZE = "auto"
MASK_SOURCES = ("auto", "segmentation", "keypoint-box")  # or a folder of SAM masks
#: Datasets (``BenchmarkSpec.dataset`` keys) with a left/right keypoint table for ``flip_views``.
FLIP_DATASETS = ("spair", "ap10k", "synthetic")


def flip_partners(dataset: str, category: str) -> dict[str, str]:
    """Keypoint id -> the id it becomes when the image is mirrored (ids without a partner are left out).

    The tables live with their datasets' formats: ``corrbench.datasets.spair_flip``,
    ``corrbench.datasets.ap10k.layout.FLIP_PAIRS`` and ``corrbench.datasets.synthetic.layout.flip_pairs``.
    """
    if dataset == "spair":
        from ..datasets.spair_flip import spair_flip_pairs

        pairs = spair_flip_pairs(category)
    elif dataset == "ap10k":
        from ..datasets.ap10k.layout import FLIP_PAIRS as pairs
    elif dataset == "synthetic":
        from ..datasets.synthetic.layout import flip_pairs

        pairs = flip_pairs(category)
    else:
        raise ConfigError(f"flip_views: no left/right keypoint table for dataset {dataset!r}",
                          hint=f"flip views need one of {', '.join(FLIP_DATASETS)}; use --set flip_views=false")
    return {**{a: b for a, b in pairs}, **{b: a for a, b in pairs}}


def mirrored_rows(points: np.ndarray, visible: np.ndarray, kp_ids: Sequence[str], partners: dict[str, str],
                  width: int) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of the mirrored image, row-aligned with the original's ``kp_ids``.

    Row ``i`` (id ``k``) is the original's keypoint ``partner(k)`` at ``x -> width - 1 - x``, visible where
    that keypoint is; False where the pair does not carry ``partner(k)``. Returns ``(points, visible)``.
    """
    row_of = {str(k): i for i, k in enumerate(kp_ids)}
    source = np.array([row_of.get(partners.get(str(k), str(k)), -1) for k in kp_ids], dtype=np.int64)
    carried = source >= 0
    out = np.array(points, dtype=np.float64)[np.where(carried, source, 0)]
    out[:, 0] = width - 1 - out[:, 0]
    return out, carried & np.asarray(visible, dtype=bool)[np.where(carried, source, 0)]


def resolve_resize(resize: str, dataset: str, auto_rule: Callable[[str], str]) -> str:
    """The rule (one of ``RESIZE_RULES``) for training on ``dataset`` (a ``BenchmarkSpec.dataset`` key).

    resize: the recipe's ``train_resize``: a rule, or ``auto`` for the method's per-dataset choice
        ``auto_rule(dataset)`` (a trainer's ``auto_train_resize``).
    """
    choices = (AUTO_RESIZE, *RESIZE_RULES)
    if resize not in choices:
        raise ConfigError(f"unknown training resize rule {resize!r}", hint=f"use one of {', '.join(choices)}")
    if resize != AUTO_RESIZE:
        return resize
    rule = auto_rule(dataset)
    if rule not in RESIZE_RULES:
        raise ConfigError(f"{getattr(auto_rule, '__qualname__', auto_rule)} chose {rule!r} for dataset {dataset!r}",
                          hint=f"auto_train_resize must return one of {', '.join(RESIZE_RULES)}")
    return rule


@dataclass(frozen=True)
class TrainDataOptions:
    """How training pairs are prepared (see the module docstring); a recipe's ``data_options`` builds it.

    resolution: side S of the square training canvas (the recipe's ``train_resolution``).
    resize: ``stretch``, ``pad`` (longest side + bottom/right padding) or ``pad-centre`` (GeoAware-SC's centred
        LANCZOS canvas): a recipe's ``auto`` is resolved to one of them first (``resolve_resize``).
    masks: ``auto``, ``segmentation``, ``keypoint-box`` or a folder of SAM masks.
    flip_dataset: the dataset whose left/right table the flip views use (a ``FLIP_DATASETS`` key), or None for
        no flip views (the recipe's ``flip_views``).
    mean, std: per-channel normalisation of RGB values in [0, 1].
    """

    resolution: int
    resize: str
    masks: str = "auto"
    flip_dataset: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if int(self.resolution) < 2:
            raise ConfigError(f"training resolution must be at least 2 pixels, got {self.resolution}")
        if self.resize not in RESIZE_RULES:
            raise ConfigError(f"unknown training resize rule {self.resize!r}",
                              hint=f"use one of {', '.join(RESIZE_RULES)} (resolve_resize turns a recipe's auto into one)")
        if self.flip_dataset is not None and self.flip_dataset not in FLIP_DATASETS:
            flip_partners(self.flip_dataset, "")  # raises the one-line error naming flip_views


@dataclass(frozen=True, eq=False)
class FlipViews:
    """The flip views of a batch (module docstring, "flip views"); B pairs, P / Q = the largest counts.

    images: ``(B, 2, 3, S, S)``: ``[:, 0]`` the mirrored source, ``[:, 1]`` the mirrored target.
    pair_keypoints: ``(B, 2, P, 2)``: mirrored source (row 0) against mirrored target (row 1).
    pair_visible: ``(B, P)`` bool, real rows.
    self_keypoints: ``(B, 2, Q, 2)``: mirrored source (row 0) against the original source (row 1).
    self_visible: ``(B, Q)`` bool.
    """

    images: torch.Tensor
    pair_keypoints: torch.Tensor
    pair_visible: torch.Tensor
    self_keypoints: torch.Tensor
    self_visible: torch.Tensor

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "FlipViews":
        return FlipViews(*(fn(getattr(self, f.name)) for f in fields(self)))


@dataclass(frozen=True, eq=False)
class TrainingBatch:
    """A batch of B training pairs on one canvas size S (P = the largest keypoint count in the batch).

    images: ``(B, 2, 3, S, S)`` normalised; ``[:, 0]`` source, ``[:, 1]`` target.
    keypoints: ``(B, 2, P, 2)`` ``(x, y)`` canvas pixels; ``[:, 0]`` source, ``[:, 1]`` target; padding rows 0.
    visible: ``(B, P)`` bool, True on real keypoint rows.
    num_points: ``(B,)`` int64, the real rows per pair.
    masks: ``(B, 2, S, S)`` bool object masks on the canvas.
    content_sizes: ``(B, 2, 2)`` int64 ``(W', H')`` of the image content inside the canvas (= S, S when
        stretched); it starts at the top left (``pad``) or is centred (``pad-centre``); the rest is padding.
    pair_ids, categories: B strings each.
    flip: the flip views (``FlipViews``), or None when the recipe has no ``flip_views``.
    kp_ids: per pair, the keypoint ids (``Pair.kp_ids``) of its real rows, in row order (empty when the
        dataset names none), for objectives that know keypoints by id (Jamais Vu's category prototypes).
    image_paths: per pair, ``(source, target)`` image files (per-image side data such as point maps).
    box_sides: ``(B, 2)`` float32, the longer side of each image's object box on the canvas (box sides scaled
        per axis like the keypoints), NaN where the dataset gives no box (GeoAware-SC's flow-noise scale).
    """

    images: torch.Tensor
    keypoints: torch.Tensor
    visible: torch.Tensor
    num_points: torch.Tensor
    masks: torch.Tensor
    content_sizes: torch.Tensor
    pair_ids: Sequence[str]
    categories: Sequence[str]
    flip: FlipViews | None = None
    kp_ids: Sequence[Sequence[str]] = ()
    image_paths: Sequence[tuple[str, str]] = ()
    box_sides: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.pair_ids)

    @property
    def canvas_size(self) -> tuple[int, int]:
        """``(H, W)`` of the canvas."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "TrainingBatch":
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return replace(self, images=move(self.images), keypoints=move(self.keypoints), visible=move(self.visible),
                       num_points=move(self.num_points), masks=move(self.masks),
                       content_sizes=move(self.content_sizes), flip=self.flip and self.flip.apply(move),
                       box_sides=None if self.box_sides is None else move(self.box_sides))

    def pin_memory(self) -> "TrainingBatch":  # DataLoader(pin_memory=True) calls this on custom batches
        return replace(self, images=self.images.pin_memory(), keypoints=self.keypoints.pin_memory(),
                       visible=self.visible.pin_memory(), num_points=self.num_points.pin_memory(),
                       masks=self.masks.pin_memory(), content_sizes=self.content_sizes.pin_memory(),
                       flip=self.flip and self.flip.apply(torch.Tensor.pin_memory))


def canvas_geometry(size: tuple[int, int], resolution: int, resize: str) -> tuple[int, int]:
    """``(W', H')`` of an image's content on the canvas."""
    w, h = size
    if resize == "stretch":
        return resolution, resolution
    scale = resolution / max(w, h)  # at least one pixel, as ResizePolicy's longest_side_pad (a 2000 x 1 image)
    return max(1, int(round(w * scale))), max(1, int(round(h * scale)))


def canvas_placement(size: tuple[int, int], resolution: int, resize: str) -> ResizeTransform:
    """Where an image's content lies on the canvas and how its keypoints follow (``forward``): top left with
    per-axis scaling (``stretch``, ``pad``), or GeoAware-SC's centred canvas (``pad-centre``)."""
    if resize == "pad-centre":
        return centred_pad_transform(tuple(size), resolution)
    return ResizeTransform(tuple(size), (resolution, resolution), canvas_geometry(size, resolution, resize), (0, 0),
                           rule="scale")


def place_keypoints(points: np.ndarray, placement: ResizeTransform) -> np.ndarray:
    """Original pixels -> canvas pixels by ``placement``, clamped inside the content (module docstring)."""
    offset = np.asarray(placement.offset, dtype=np.float64)
    moved = placement.forward(np.asarray(points, dtype=np.float64)) - offset
    return clamp_inside(moved, *placement.resized_size) + offset


def box_side(bbox: np.ndarray | None, size: tuple[int, int], content: tuple[int, int]) -> float:
    """The longer side of an ``[x1, y1, x2, y2]`` box on the canvas (sides scaled per axis), NaN without a box."""
    if bbox is None:
        return float("nan")
    (w, h), (cw, ch) = size, content
    return float(max((bbox[2] - bbox[0]) * cw / w, (bbox[3] - bbox[1]) * ch / h))


def keypoint_box_mask(points: np.ndarray, resolution: int) -> torch.Tensor:
    """``(S, S)`` bool: pixels whose centres lie in the box ``[floor(min), ceil(max)]`` of canvas points."""
    mask = torch.zeros(resolution, resolution, dtype=torch.bool)
    if len(points) == 0:
        return mask
    x1, y1 = np.floor(points.min(axis=0)).astype(int).clip(0, resolution - 1)
    x2, y2 = np.ceil(points.max(axis=0)).astype(int).clip(0, resolution - 1)
    mask[y1 : y2 + 1, x1 : x2 + 1] = True
    return mask


def sam_mask_path(image: Path, folder: Path) -> Path:
    """Where MARCO's SAM preprocessing script puts the mask of ``image`` (see the module docstring)."""
    parts = image.parts
    if "JPEGImages" in parts:
        rel = Path(*parts[len(parts) - parts[::-1].index("JPEGImages") :])
    else:
        rel = Path(image.parent.name) / image.name
    return folder / rel.parent / f"{rel.stem}_mask.png"


class TrainingPairs(torch.utils.data.Dataset):
    """The training items of a list of ``Pair`` records (see the module docstring for every rule)."""

    def __init__(self, pairs: Sequence[Pair], options: TrainDataOptions):
        self.options = options
        self.resize = options.resize  # recorded in the run's train.json
        usable = [p for p in pairs if p.valid.any()]
        self.dropped = len(pairs) - len(usable)
        self.pairs = usable
        if not usable:
            raise DataError(
                f"none of the {len(pairs)} training pairs has a keypoint visible in both images",
                hint="check the training split of the benchmark's dataset",
            )
        masks = options.masks
        self.sam_folder: Path | None = None
        if masks not in MASK_SOURCES:
            self.sam_folder = Path(masks).expanduser()
            if not self.sam_folder.is_dir():
                raise ConfigError(
                    f"mask source {masks!r} is neither {', '.join(MASK_SOURCES)} nor an existing folder of SAM masks",
                    hint="pass masks=auto, masks=keypoint-box, or the folder your SAM preprocessing wrote",
                )
        elif masks == "segmentation":
            missing = [p.pair_id for p in usable if p.src_mask is None or p.trg_mask is None]
            if missing:
                raise ConfigError(
                    f"masks=segmentation, but {len(missing)} training pairs have no segmentation files "
                    f"(first: {missing[0]!r})",
                    hint="use masks=auto (keypoint boxes where segmentation is missing), masks=keypoint-box, or a "
                    "folder of SAM masks",
                )
        self._mean = np.asarray(options.mean, dtype=np.float32).reshape(3, 1, 1)
        self._std = np.asarray(options.std, dtype=np.float32).reshape(3, 1, 1)

    def __len__(self) -> int:
        return len(self.pairs)

    def mask_source(self, pair: Pair) -> str:
        """What this pair's masks come from: ``sam``, ``segmentation`` or ``keypoint-box``."""
        if self.sam_folder is not None:
            return "sam"
        if self.options.masks == "keypoint-box" or pair.src_mask is None or pair.trg_mask is None:
            return "keypoint-box"
        return "segmentation"

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        valid = pair.valid
        source = self.mask_source(pair)
        images, keypoints, masks, contents, box_sides, placements = [], [], [], [], [], []
        for side in ("src", "trg"):
            path: Path = getattr(pair, f"{side}_image")
            size = getattr(pair, f"{side}_size")
            placement = canvas_placement(size, self.options.resolution, self.resize)
            content = placement.resized_size
            images.append(self._image(path, placement))
            keypoints.append(place_keypoints(getattr(pair, f"{side}_kps")[valid], placement))
            if source == "keypoint-box":
                seen = getattr(pair, f"{side}_visible") & np.isfinite(getattr(pair, f"{side}_kps")).all(axis=1)
                box_points = place_keypoints(getattr(pair, f"{side}_kps")[seen], placement)
                masks.append(keypoint_box_mask(box_points, self.options.resolution))
            else:
                masks.append(self._mask(pair, side, placement, sam=source == "sam"))
            placements.append(placement)
            contents.append(content)
            box_sides.append(box_side(getattr(pair, f"{side}_bbox"), size, content))
        item = {
            "pair_id": pair.pair_id,
            "category": pair.category,
            "images": torch.stack(images),
            "keypoints": torch.from_numpy(np.stack(keypoints)).float(),
            "masks": torch.stack(masks),
            "content_sizes": torch.tensor(contents, dtype=torch.int64),
            "kp_ids": tuple(str(k) for k, v in zip(pair.kp_ids, valid) if v) if pair.kp_ids else (),
            "image_paths": (str(pair.src_image), str(pair.trg_image)),
            "box_sides": torch.tensor(box_sides, dtype=torch.float32),
        }
        if self.options.flip_dataset is not None:
            item["flip"] = self._flip_views(pair, images, placements)
        return item

    def _flip_views(self, pair: Pair, canvases: list[torch.Tensor],
                    placements: list[ResizeTransform]) -> dict[str, torch.Tensor]:
        """The mirrored canvases and the ``pair`` / ``self`` keypoint sets (module docstring, "flip views")."""
        partners = flip_partners(self.options.flip_dataset, pair.category)
        images, original, mirrored = [], [], []
        for side, canvas, placement in zip(("src", "trg"), canvases, placements):
            size = getattr(pair, f"{side}_size")
            (ox, oy), (cw, ch) = placement.offset, placement.resized_size
            flipped = canvas.clone()  # the padding stays; the content is mirrored where it lies
            flipped[:, oy : oy + ch, ox : ox + cw] = canvas[:, oy : oy + ch, ox : ox + cw].flip(-1)
            images.append(flipped)
            visible = getattr(pair, f"{side}_visible") & np.isfinite(getattr(pair, f"{side}_kps")).all(axis=1)
            points = np.nan_to_num(getattr(pair, f"{side}_kps"))
            original.append((points, visible))
            mirrored.append(mirrored_rows(points, visible, pair.kp_ids or [str(i) for i in range(len(points))],
                                          partners, size[0]))
        (src_flip, src_flip_vis), (trg_flip, trg_flip_vis) = mirrored
        src, src_vis = original[0]
        in_pair, in_self = src_flip_vis & trg_flip_vis, src_flip_vis & src_vis
        on_src, on_trg = placements
        pair_view = [place_keypoints(src_flip[in_pair], on_src), place_keypoints(trg_flip[in_pair], on_trg)]
        self_view = [place_keypoints(src_flip[in_self], on_src), place_keypoints(src[in_self], on_src)]
        return {
            "images": torch.stack(images),
            "pair_keypoints": torch.from_numpy(np.stack(pair_view)).float(),
            "self_keypoints": torch.from_numpy(np.stack(self_view)).float(),
        }

    # -- pixels (numpy: these run in loader workers, where torch's intra-op threads only contend) ----------
    def _image(self, path: Path, placement: ResizeTransform) -> torch.Tensor:
        size, content = placement.in_size, placement.resized_size
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except FileNotFoundError:
            raise DataError(f"image not found: {path}", hint="check the dataset is complete under the data root") from None
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}", hint="the file is corrupt; re-download the dataset") from None
        if rgb.size != tuple(size):
            raise DataError(f"image {path} is {rgb.size[0]}x{rgb.size[1]} but its annotation says {size[0]}x{size[1]}")
        if self.resize == "pad-centre":  # the family's canvas, black before normalisation: family_canvas's pieces
            pixels = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float().div_(255.0)
            canvas = paste_on_canvas(resize_8bit_pil(pixels, content, "lanczos"), placement).numpy()
            return torch.from_numpy((canvas - self._mean) / self._std)
        pixels = np.asarray(rgb.resize(content, Image.BILINEAR), dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
        normalised = (pixels - self._mean) / self._std  # float32 throughout, as ToTensor + Normalize
        return torch.from_numpy(paste_on_canvas(normalised, placement))

    def _mask(self, pair: Pair, side: str, placement: ResizeTransform, *, sam: bool) -> torch.Tensor:
        size, content = placement.in_size, placement.resized_size
        if sam:
            path = sam_mask_path(getattr(pair, f"{side}_image"), self.sam_folder)
            if not path.is_file():
                raise DataError(f"SAM mask not found: {path}", hint="run the SAM mask preprocessing for every training image")
            with Image.open(path) as image:
                gray = image.convert("L")
            if self.resize != "stretch":
                resized = np.asarray(gray.resize(content, Image.BILINEAR), dtype=np.float32) / np.float32(255) > 0.5
                return torch.from_numpy(paste_on_canvas(resized, placement))
            mask = np.asarray(gray) > 127
        else:
            mask = load_mask(getattr(pair, f"{side}_mask"), size, pair.meta.get("mask_label")).numpy()
        return torch.from_numpy(paste_on_canvas(nearest_resize(mask, content), placement))


def nearest_resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` -> ``(H', W')`` for ``size = (W', H')``, picking exactly what ``F.interpolate(mode="nearest")``
    picks: source index ``floor(i * (in / out))`` in float32, clamped to the last row or column."""

    def indices(n_in: int, n_out: int) -> np.ndarray:
        scale = np.float32(n_in) / np.float32(n_out)
        return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)

    return array[indices(array.shape[0], size[1])[:, None], indices(array.shape[1], size[0])[None, :]]


def collate_training(items: Sequence[dict[str, Any]]) -> TrainingBatch:
    """Stack items; keypoints padded with zeros to the largest count (``visible`` marks real rows)."""
    keypoints, visible, counts = _pad_keypoints([item["keypoints"] for item in items])
    flip = None
    if "flip" in items[0]:
        views = [item["flip"] for item in items]
        pair_keypoints, pair_visible, _ = _pad_keypoints([v["pair_keypoints"] for v in views])
        self_keypoints, self_visible, _ = _pad_keypoints([v["self_keypoints"] for v in views])
        flip = FlipViews(torch.stack([v["images"] for v in views]), pair_keypoints, pair_visible, self_keypoints,
                         self_visible)
    return TrainingBatch(
        images=torch.stack([item["images"] for item in items]),
        keypoints=keypoints,
        visible=visible,
        num_points=torch.tensor(counts, dtype=torch.int64),
        masks=torch.stack([item["masks"] for item in items]),
        content_sizes=torch.stack([item["content_sizes"] for item in items]),
        pair_ids=[item["pair_id"] for item in items],
        categories=[item["category"] for item in items],
        flip=flip,
        kp_ids=[item["kp_ids"] for item in items],
        image_paths=[item["image_paths"] for item in items],
        box_sides=torch.stack([item["box_sides"] for item in items]),
    )


def _pad_keypoints(sets: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``(2, n_i, 2)`` sets -> ``(B, 2, P, 2)`` zero-padded, ``(B, P)`` real rows, the counts."""
    counts = [int(points.shape[1]) for points in sets]
    most = max(counts)
    keypoints = torch.zeros(len(sets), 2, most, 2, dtype=torch.float32)
    visible = torch.zeros(len(sets), most, dtype=torch.bool)
    for b, (points, n) in enumerate(zip(sets, counts)):
        keypoints[b, :, :n] = points
        visible[b, :n] = True
    return keypoints, visible, counts


class EpochBatches(torch.utils.data.Sampler):
    """Batches of indices for one process: a seeded permutation per epoch, identical on every world size.

    The permutation of epoch ``e`` is ``torch.randperm(n)`` from a generator seeded with ``seed + e`` (what
    ``DistributedSampler`` does); it is cut into global batches of ``batch_size`` (the last incomplete batch
    is dropped, as MARCO's ``BatchSampler(drop_last=True)``), and process ``rank`` of ``world_size``
    takes every ``world_size``-th index of each global batch. So the union over processes of step ``k``'s
    batches is exactly the single-process batch ``k``, whatever the number of processes.

    ``start_batch`` skips the first batches of the epoch, to resume a run stopped in the middle of one.
    """

    def __init__(self, size: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ConfigError(
                f"batch size {batch_size} is not divisible by the {world_size} processes",
                hint="the batch size is the effective batch over all processes; pick a multiple of the process count",
            )
        if size < batch_size:
            raise ConfigError(
                f"the training split has {size} usable pairs, fewer than one batch of {batch_size}",
                hint="lower --batch-size",
            )
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def batches_per_epoch(self) -> int:
        return self.size // self.batch_size

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        for k in range(self.start_batch, self.batches_per_epoch()):
            global_batch = order[k * self.batch_size : (k + 1) * self.batch_size]
            yield global_batch[self.rank :: self.world_size]
