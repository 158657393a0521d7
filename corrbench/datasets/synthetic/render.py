"""Rendering one instance: a category's sketch posed, placed among clutter and occluders, rasterised on a 2x
label map, coloured at the final resolution, with its keypoints' visibility worked out from the label map."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from .layout import KEYPOINTS, MIN_IMAGE_KEYPOINTS
from .sketches import (
    SKETCHES,
    Material,
    Sketch,
    capsule,
    clutter_material,
    ellipse,
    perp_up,
    pick,
    polygon,
    texture,
    uniform,
    unit,
)

# Label ranges of the 2x label map: 0 background, clutter behind, object parts, clutter in front.
_CLUTTER0, _OBJECT0, _OCCLUDER0 = 1, 100, 200


@dataclass
class Instance:
    image: np.ndarray  # (H, W, 3) uint8
    seg: np.ndarray  # (H, W) uint8
    bndbox: list[int]
    kps: list[list[int] | None]  # seen
    unseen: list[list[int] | None]
    truncated: int
    occluded: int
    mirrored: bool
    rotation: float  # degrees, positive = clockwise on screen (y points down)
    object_size: float  # sqrt of the amodal object box area, pixels

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])


def to_canvas(p: np.ndarray) -> np.ndarray:
    """Final-image pixel coordinates -> drawing coordinates of the 2x canvas.

    Final pixel ``x`` (its centre, project convention) is the centre of 2x pixels ``2x`` and ``2x + 1``,
    i.e. 2x pixel-centre coordinate ``2x + 0.5``; PIL's drawing coordinates put pixel ``i``'s centre at
    ``i + 0.5`` (corner-based), hence ``2x + 1``.
    """
    return np.asarray(p, float) * 2.0 + 1.0


def _random_blob(rng: np.random.Generator, c: np.ndarray, r: float) -> np.ndarray:
    kind = int(rng.integers(4))
    if kind == 0:
        return ellipse(c, r, r * uniform(rng, 0.3, 1.0), uniform(rng, 0, 180))
    if kind == 1:  # star-convex polygon
        n = int(rng.integers(3, 9))
        t = np.sort(rng.uniform(0, 2 * math.pi, n))
        rad = r * rng.uniform(0.5, 1.0, n)
        return np.stack([c[0] + rad * np.cos(t), c[1] + rad * np.sin(t)], 1)
    if kind == 2:  # rotated rectangle
        a = uniform(rng, 0, 180)
        d, p = unit(a), perp_up(unit(a))
        w, h = r, r * uniform(rng, 0.2, 0.8)
        return polygon(c + d * w + p * h, c - d * w + p * h, c - d * w - p * h, c + d * w - p * h)
    a = uniform(rng, 0, 180)  # branch / thick line
    return capsule(c - unit(a) * r * 1.5, c + unit(a) * r * 1.5,
                   r * uniform(rng, 0.08, 0.2), r * uniform(rng, 0.05, 0.15))


def render_instance(rng: np.random.Generator, category: str, cat_value: int) -> Instance:
    seen_names, unseen_names = KEYPOINTS[category]
    for attempt in range(60):
        easy = attempt >= 30  # after many rejections, no truncation and no occluders
        inst = _try_render(rng, category, cat_value, seen_names, unseen_names, easy)
        if inst is not None:
            return inst
    raise RuntimeError(f"synthetic {category}: could not draw an instance with {MIN_IMAGE_KEYPOINTS} visible keypoints")


#: (label, polygon on the 2x canvas, material, shade): one filled shape of the label map, in painter's order.
Shape = tuple[int, np.ndarray, Material, float]


def _try_render(rng, category, cat_value, seen_names, unseen_names, easy) -> Instance | None:
    """One attempt; None when fewer than ``MIN_IMAGE_KEYPOINTS`` seen keypoints stay visible. The random draws
    happen in a fixed order (size, sketch, pose, clutter, occluders, then colour): the output bytes depend on it."""
    W = int(rng.integers(176, 257))
    H = int(rng.integers(160, 241))
    sk = SKETCHES[category](rng)
    missing = set(seen_names + unseen_names) - set(sk.kps)
    if missing:  # a programming error in a builder
        raise AssertionError(f"{category} builder lacks keypoints {sorted(missing)}")
    pose = _Pose.draw(rng, sk, W, H, easy)
    diag = math.hypot(W, H)
    materials = {k: pose.material(m) for k, m in sk.materials.items()}
    shapes, part_labels = _scene(rng, sk, pose, materials, W, H, diag)
    kp_pts = [pose.place(sk.kps[n][0]) for n in seen_names]
    occluders = _occluders(rng, kp_pts, list(materials.values()), pose.object_size, diag, easy)
    labels, obj_before = _label_map(W, H, shapes, occluders)
    visible = _Visibility(pose, labels, part_labels)
    kps, hidden_by_occluder = [], False
    for n in seen_names:
        v, occ = visible.keypoint(*sk.kps[n])
        kps.append(v)
        hidden_by_occluder |= occ
    if sum(v is not None for v in kps) < MIN_IMAGE_KEYPOINTS:
        return None
    unseen = [visible.keypoint(*sk.kps[n])[0] for n in unseen_names]
    obj = (labels >= _OBJECT0) & (labels < _OCCLUDER0)
    occluded = int(hidden_by_occluder or (obj_before - int(obj.sum())) >= 0.05 * max(obj_before, 1))
    image = _paint(rng, labels, shapes + occluders, W, H, diag)
    seg_mask = obj.reshape(H, 2, W, 2).sum(axis=(1, 3)) >= 2
    seg = seg_mask.astype(np.uint8) * np.uint8(cat_value)
    ys, xs = np.nonzero(seg_mask)
    bndbox = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    return Instance(image, seg, bndbox, kps, unseen, pose.truncated, occluded, pose.mirrored,
                    round(pose.rotation, 3), round(pose.object_size, 3))


@dataclass
class _Pose:
    """Where the canonical sketch lands: mirror, in-plane rotation, scale and offset (canonical -> pixels)."""

    A: np.ndarray  # canonical -> image directions (rotation after the mirror)
    s: float
    t: np.ndarray
    mirrored: bool
    rotation: float  # degrees
    size: np.ndarray  # the object's box in pixels (width, height)
    truncated: int  # 1 when some of the object lies outside the image

    @classmethod
    def draw(cls, rng: np.random.Generator, sk: Sketch, W: int, H: int, easy: bool) -> "_Pose":
        mirrored = bool(rng.random() < 0.5)
        rotation = uniform(rng, -35, 35)
        th = math.radians(rotation)
        rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        A = rot @ np.diag([-1.0 if mirrored else 1.0, 1.0])
        canonical = np.concatenate([p for _, p, _, _ in sk.parts])
        verts = canonical @ A.T
        lo, hi = verts.min(0), verts.max(0)
        ext = hi - lo
        s = uniform(rng, 0.5, 0.9) * min((W - 4) / ext[0], (H - 4) / ext[1])
        size = ext * s
        origin = np.array([uniform(rng, 2, max(2.0, W - 2 - size[0])), uniform(rng, 2, max(2.0, H - 2 - size[1]))])
        if not easy and rng.random() < 0.2:  # push the object partly out of the frame
            side = int(rng.integers(4))
            frac = uniform(rng, 0.1, 0.35)
            if side == 0:
                origin[0] = -frac * size[0]
            elif side == 1:
                origin[0] = W - (1 - frac) * size[0]
            elif side == 2:
                origin[1] = -frac * size[1]
            else:
                origin[1] = H - (1 - frac) * size[1]
        pose = cls(A, s, origin - lo * s, mirrored, rotation, size, 0)
        amodal = pose.place(canonical)  # every object vertex, in image pixels
        pose.truncated = int(amodal[:, 0].min() < -0.5 or amodal[:, 1].min() < -0.5
                             or amodal[:, 0].max() > W - 0.5 or amodal[:, 1].max() > H - 0.5)
        return pose

    @property
    def object_size(self) -> float:
        return float(math.sqrt(max(self.size[0] * self.size[1], 1.0)))

    def place(self, q: np.ndarray) -> np.ndarray:
        """Canonical coordinates -> final-image pixels."""
        return (np.asarray(q, float) @ self.A.T) * self.s + self.t

    def material(self, m: Material) -> Material:
        """An object material turned and scaled with the object."""
        d = self.A @ np.array([math.cos(m.angle), math.sin(m.angle)])
        return replace(m, period=m.period * self.s, angle=math.atan2(d[1], d[0]))


def _scene(rng: np.random.Generator, sk: Sketch, pose: _Pose, materials: dict[str, Material], W: int, H: int,
           diag: float) -> tuple[list[Shape], dict[str, int]]:
    """Clutter behind the object (maybe a ground plane), then the object's parts; and each part's label."""
    obj_mats = list(materials.values())
    shapes: list[Shape] = []
    label = _CLUTTER0
    if rng.random() < 0.5:  # a ground plane / table top
        y0, y1 = H * uniform(rng, 0.55, 0.9), H * uniform(rng, 0.55, 0.9)
        ground = polygon((-2, y0), (W + 2, y1), (W + 2, H + 2), (-2, H + 2))
        shapes.append((label, to_canvas(ground), clutter_material(rng, diag), 1.0))
        label += 1
    for _ in range(int(rng.integers(3, 9))):
        c = np.array([uniform(rng, -0.1, 1.1) * W, uniform(rng, -0.1, 1.1) * H])
        poly = _random_blob(rng, c, uniform(rng, 0.06, 0.3) * diag)
        mat = (replace(obj_mats[int(rng.integers(len(obj_mats)))], angle=uniform(rng, 0, math.pi))
               if rng.random() < 0.25 else clutter_material(rng, diag))
        shapes.append((label, to_canvas(poly), mat, uniform(rng, 0.8, 1.1)))
        label += 1
    part_labels: dict[str, int] = {}
    for i, (name, poly, mat, shade) in enumerate(sk.parts):
        part_labels[name] = _OBJECT0 + i
        shapes.append((_OBJECT0 + i, to_canvas(pose.place(poly)), materials[mat], shade))
    return shapes, part_labels


def _occluders(rng: np.random.Generator, kp_pts: list[np.ndarray], obj_mats: list[Material], obj_size: float,
               diag: float, easy: bool) -> list[Shape]:
    """Clutter in front of the object, aimed near its keypoints: none, one or two (none when ``easy``)."""
    n_front = 0 if easy or rng.random() < 0.5 else int(rng.integers(1, 3))
    occluders: list[Shape] = []
    for j in range(n_front):
        target = kp_pts[int(rng.integers(len(kp_pts)))] + rng.normal(0, 0.08 * obj_size, 2)
        if rng.random() < 0.3:  # a pole or branch across the frame
            a = uniform(rng, 45, 135) if rng.random() < 0.7 else uniform(rng, -30, 30)
            d = unit(a)
            width = 2 * [uniform(rng, 0.03, 0.07) * obj_size]
            poly = capsule(target - d * 2 * diag, target + d * 2 * diag, *width)
        else:
            poly = _random_blob(rng, target, uniform(rng, 0.07, 0.16) * obj_size)
        mat = (replace(obj_mats[int(rng.integers(len(obj_mats)))], angle=uniform(rng, 0, math.pi))
               if rng.random() < 0.2 else clutter_material(rng, diag))
        occluders.append((_OCCLUDER0 + j, to_canvas(poly), mat, uniform(rng, 0.85, 1.1)))
    return occluders


def _label_map(W: int, H: int, shapes: list[Shape], occluders: list[Shape]) -> tuple[np.ndarray, int]:
    """The 2x label map in painter's order, and how many object sub-pixels showed before the occluders."""
    canvas = Image.new("L", (2 * W, 2 * H), 0)
    draw = ImageDraw.Draw(canvas)
    for lab, poly, _, _ in shapes:
        draw.polygon(poly.ravel().tolist(), fill=lab)
    before = np.asarray(canvas)
    obj_before = int(((before >= _OBJECT0) & (before < _OCCLUDER0)).sum())
    for lab, poly, _, _ in occluders:
        draw.polygon(poly.ravel().tolist(), fill=lab)
    return np.asarray(canvas), obj_before


@dataclass
class _Visibility:
    """Which keypoints show: a keypoint is visible when at least half of its pixel shows one of its parts."""

    pose: _Pose
    labels: np.ndarray  # the 2x label map
    part_labels: dict[str, int]

    def keypoint(self, q: np.ndarray, owners: tuple[str, ...]) -> tuple[list[int] | None, bool]:
        """``([x, y], False)`` when visible, else ``(None, hidden by an occluder)``."""
        H, W = self.labels.shape[0] // 2, self.labels.shape[1] // 2
        p = self.pose.place(q)
        x, y = int(math.floor(p[0] + 0.5)), int(math.floor(p[1] + 0.5))
        if not (0 <= x < W and 0 <= y < H):
            return None, False
        block = self.labels[2 * y: 2 * y + 2, 2 * x: 2 * x + 2]
        own = [self.part_labels[o] for o in owners if o in self.part_labels]
        if int(np.isin(block, own).sum()) >= 2:
            return [x, y], False
        return None, bool((block >= _OCCLUDER0).sum() >= 2)


def _paint(rng: np.random.Generator, labels: np.ndarray, shapes: list[Shape], W: int, H: int,
           diag: float) -> np.ndarray:
    """Colour at the final resolution: each label's texture weighted by the share of the pixel's four 2x
    sub-pixels that carry the label (antialiased edges without texturing the 2x canvas), then outlines,
    exposure and sensor noise."""
    bg = clutter_material(rng, diag)
    bg = replace(bg, period=bg.period * 2.0, kind=pick(rng, ["noise", "gradient", "stripes", "checker", "spots"],
                                                        [0.35, 0.25, 0.15, 0.1, 0.15]))
    small = np.zeros((H, W, 3), np.float32)
    for lab, poly, mat, shade in [(0, None, bg, 1.0)] + shapes:
        if poly is None:
            x0, y0, x1, y1 = 0, 0, W, H
        else:
            x0, y0 = np.floor(poly.min(0) / 2).astype(int) - 1
            x1, y1 = np.ceil(poly.max(0) / 2).astype(int) + 2
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        if x1 <= x0 or y1 <= y0:
            continue
        h, w = y1 - y0, x1 - x0
        cover = (labels[2 * y0:2 * y1, 2 * x0:2 * x1] == lab).reshape(h, 2, w, 2).sum(axis=(1, 3), dtype=np.uint8)
        mask = cover > 0
        yy, xx = np.nonzero(mask)  # row-major, the order boolean indexing uses
        if yy.size == 0:
            continue
        tex = texture(mat, rng, x0, y0, h, w, yy, xx)
        light = np.float32(shade) * (np.float32(1.12) - np.float32(0.3 / h) * yy.astype(np.float32))
        weight = light * (cover[mask].astype(np.float32) * np.float32(0.25))
        small[y0:y1, x0:x1][mask] += tex * weight[:, None]
    small *= (np.float32(1.0) - np.float32(0.55) * _outline_share(labels, W, H))[..., None]
    small *= np.float32(uniform(rng, 0.85, 1.12))
    small += rng.normal(0.0, 3.0, small.shape).astype(np.float32)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def _outline_share(labels: np.ndarray, W: int, H: int) -> np.ndarray:
    """Per final pixel, the share of its 2x sub-pixels on an edge where the object or an occluder meets
    anything else (where dark outlines are drawn)."""
    fg = labels >= _OBJECT0
    edge = np.zeros(fg.shape, np.uint8)
    d = (labels[:, 1:] != labels[:, :-1]) & (fg[:, 1:] | fg[:, :-1])
    edge[:, 1:] |= d
    edge[:, :-1] |= d
    d = (labels[1:] != labels[:-1]) & (fg[1:] | fg[:-1])
    edge[1:] |= d
    edge[:-1] |= d
    return edge.reshape(H, 2, W, 2).sum(axis=(1, 3), dtype=np.uint8).astype(np.float32) * np.float32(0.25)
