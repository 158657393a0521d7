"""A procedural semantic-correspondence dataset written in SPair-71k's exact on-disk layout.

``synthetic`` is the offline benchmark that tests and demos use; ``synthetic-unseen`` is its held-out
keypoint set, a miniature SPair-U (Jamais Vu layout). Nothing is downloaded: every image is drawn from a
seeded random stream, so the same seed and arguments give byte-identical files on one software stack
(the JPEG and PNG encoders come from Pillow; another libjpeg may encode the same pixels differently).

What is drawn. Five categories of articulated 2-D objects (``CATEGORIES``), each a small kinematic tree of
parts (ellipses, tapered capsules, polygons) posed with random proportions and joint angles, painted with
per-instance colours and textures (stripes, checker, spots, value noise), then placed with a random scale,
in-plane rotation (+-35 degrees), horizontal mirror and position on a textured, cluttered background.
Some clutter is drawn in front of the object, and some objects are cut by the image border, so keypoints
go missing as they do in real photographs. Shapes are rasterised into a label map at 2x resolution; each
output pixel mixes the textures of its four sub-pixels' labels (antialiased edges), and the segmentation
keeps the pixels at least half covered by the object.

Keypoints. Each category has 9-14 named "seen" keypoints (part ends and joints, with left/right
distinctions) that go to ``ImageAnnotation`` / ``PairAnnotation``, and 4 "unseen" keypoints (part
midpoints and the like, never in the seen list) that go to ``ExtraImageAnnotation`` /
``ExtraPairAnnotation`` for the test split only. A mirrored instance keeps its semantic ids: its left paw
is still ``front_left_paw`` when it lands on the image's other side. In the canonical (unmirrored,
unrotated) frame every object faces +x; for the front-facing ``biped`` the figure's left is +x (the
viewer's right). Coordinates follow the project convention (integer = pixel centre, ``(0, 0)`` is the
centre of the top-left pixel) and are rounded to ints as SPair stores them. A keypoint is visible (not
``null``) only when its rounded pixel lies inside the image and at least half of that pixel shows the part
the keypoint belongs to (so neither clutter in front nor another part of the object covers it); visible
keypoints therefore always lie on the segmentation mask and inside the ``bndbox``.

Layout (see ``shared/design/DATASETS.md``)::

    JPEGImages/<cat>/<cat>_0001.jpg
    ImageAnnotation/<cat>/<cat>_0001.json        SPair image keys, kps over the seen keypoints
    Segmentation/<cat>/<cat>_0001.png             uint8, object = 1-based index in CATEGORIES, else 0
    PairAnnotation/{trn,val,test}/<000001>-<src>-<trg>:<cat>.json
    Layout/{large,small}/{trn,val,test}.txt       one pair stem a line
    ExtraImageAnnotation/<cat>/<img>.json         test images; kps over the unseen keypoints
    ExtraPairAnnotation/test/<stem>.json          test stems with >= 1 mutually visible unseen keypoint
    synthetic_manifest.json                       written last; see ``generate_synthetic``

Images are split disjointly per category (about half trn, a sixth val, a third test; at least 2 each) so
the test images are never seen in training. Pairs are distinct ordered pairs of two images of the same
category and split, drawn in a seeded order and kept when at least 3 seen keypoints are visible in both;
when a split has fewer such pairs than requested, all of them are written and the manifest says so.

Pair-level breakdown fields follow SPair-71k: ``mirror`` 1 when exactly one instance is mirrored;
``viewpoint_variation`` 0-2 (2 when the instances face opposite ways, else binned in-plane rotation
difference: < 15, < 35, more degrees); ``scale_variation`` 0-2 (ratio of object sizes < 1.25, < 1.6, more);
``truncation`` / ``occlusion`` 0 none, 1 source only, 2 target only, 3 both (SPair's four levels).
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw

from ...errors import ConfigError, DataError
from ...files import replacing_directory

__all__ = [
    "GENERATOR_VERSION", "CATEGORIES", "MANIFEST_NAME", "category_keypoints", "check_generation_arguments",
    "generate_synthetic",
]

GENERATOR_VERSION: int = 1  # bump whenever the output bytes for a given seed and arguments would change

CATEGORIES: tuple[str, ...] = ("quadruped", "bird", "biped", "lamp", "vehicle")

SPLITS: tuple[str, ...] = ("trn", "val", "test")
DEFAULT_PAIRS: dict[str, int] = {"trn": 24, "val": 6, "test": 12}
MANIFEST_NAME = "synthetic_manifest.json"
SRC_DATABASE = "corrbench-synthetic"
JPEG_QUALITY = 95
MIN_PAIR_KEYPOINTS = 3  # seen keypoints visible in both images
MIN_IMAGE_KEYPOINTS = 4  # an instance with fewer visible seen keypoints is drawn again

# (seen, unseen) keypoint names per category; the index in each tuple is the SPair keypoint id.
_KEYPOINTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "quadruped": (
        (
            "nose", "left_eye", "left_ear_tip", "right_ear_tip", "withers", "tail_base", "tail_tip",
            "front_left_knee", "front_left_paw", "front_right_paw", "back_left_knee", "back_left_paw",
            "back_right_paw",
        ),
        ("tail_mid", "back_mid", "belly_mid", "front_left_shin"),
    ),
    "bird": (
        (
            "beak_tip", "left_eye", "crown", "throat", "left_wrist", "left_wing_tip", "right_wing_tip",
            "tail_tip", "left_knee", "left_foot", "right_foot",
        ),
        ("nape", "breast", "rump", "left_wing_mid"),
    ),
    "biped": (
        (
            "head_top", "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_hand",
            "right_hand", "left_hip", "right_hip", "left_knee", "right_knee", "left_foot", "right_foot",
        ),
        ("nose", "navel", "left_forearm_mid", "right_shin_mid"),
    ),
    "lamp": (
        (
            "base_back", "base_front", "switch", "base_joint", "elbow", "head_joint", "shade_upper_rim",
            "shade_lower_rim", "bulb",
        ),
        ("lower_arm_mid", "upper_arm_mid", "shade_center", "base_top_back"),
    ),
    "vehicle": (
        (
            "headlight", "taillight", "front_bumper", "rear_bumper", "windshield_base", "roof_front",
            "roof_rear", "rear_window_base", "front_left_wheel", "rear_left_wheel", "left_mirror",
            "antenna_tip",
        ),
        ("door_handle", "roof_mid", "hood_mid", "rocker_mid"),
    ),
}

# Independent random streams: one per (category, image) and one per (split, category) for pair sampling.
_IMAGE_STREAM, _PAIR_STREAM = 1, 2

# Label ranges of the 2x label map: 0 background, clutter behind, object parts, clutter in front.
_CLUTTER0, _OBJECT0, _OCCLUDER0 = 1, 100, 200


def category_keypoints(category: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(seen names, unseen names)`` of a category; position in each tuple = keypoint id."""
    try:
        return _KEYPOINTS[category]
    except KeyError:
        raise ConfigError(
            f"unknown synthetic category {category!r}", hint=f"use one of {', '.join(CATEGORIES)}"
        ) from None


# ----------------------------------------------------------------------------------------------------------
# Materials (procedural textures)


@dataclass(frozen=True, eq=False)
class _Material:
    kind: str  # solid | stripes | checker | noise | spots | gradient
    c1: np.ndarray  # (3,) float32 RGB 0..255
    c2: np.ndarray
    period: float  # object materials: canonical units; others: final-image pixels
    angle: float  # radians, same frame as period
    phase: float
    grain: float  # amplitude of the fine modulation


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), np.float32) * 255


def _mat(rng: np.random.Generator, kind: str, c1: np.ndarray, c2: np.ndarray | None = None,
         period: float = 0.1, grain: float = 0.14) -> _Material:
    if c2 is None:
        c2 = c1 * np.float32(rng.uniform(0.5, 0.8))
    return _Material(kind, np.asarray(c1, np.float32), np.asarray(c2, np.float32), float(period),
                     float(rng.uniform(0, math.pi)), float(rng.uniform(0, 2 * math.pi)), float(grain))


def _random_colour(rng: np.random.Generator, sat=(0.25, 0.95), val=(0.25, 0.95)) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(*sat), rng.uniform(*val))


def _clutter_material(rng: np.random.Generator, scale: float) -> _Material:
    kind = ("solid", "stripes", "checker", "noise", "spots", "gradient")[int(rng.integers(6))]
    c1 = _random_colour(rng, (0.1, 0.8), (0.2, 0.95))
    c2 = _random_colour(rng, (0.1, 0.8), (0.2, 0.95)) if rng.random() < 0.6 else None
    return _mat(rng, kind, c1, c2, period=scale * rng.uniform(0.04, 0.2), grain=rng.uniform(0.05, 0.3))


def _noise_field(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise in about [0, 1] over an ``h x w`` crop with features ``cell`` pixels across."""
    cell = max(cell, 2.0)
    gh, gw = int(h / cell) + 2, int(w / cell) + 2
    lattice = rng.random((gh, gw), dtype=np.float32)
    return np.asarray(Image.fromarray(lattice, "F").resize((w, h), Image.BICUBIC))


def _texture(m: _Material, rng: np.random.Generator, x0: int, y0: int, h: int, w: int,
             yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """RGB float32 ``(n, 3)`` of material ``m`` at the pixels ``(yy + y0, xx + x0)`` of an ``h x w`` crop."""
    period = max(m.period, 1.0)
    if m.kind in ("stripes", "checker", "gradient"):
        ca, sa = math.cos(m.angle), math.sin(m.angle)
        X = (xx + x0).astype(np.float32)
        Y = (yy + y0).astype(np.float32)
        u = (X * ca + Y * sa) / np.float32(period)
        if m.kind == "stripes":
            t = np.clip(np.sin(u * np.float32(2 * math.pi) + np.float32(m.phase)) * 3.0, -1, 1) * 0.5 + 0.5
        elif m.kind == "checker":
            v = (Y * ca - X * sa) / np.float32(period)
            t = (np.floor(u + np.float32(m.phase)) + np.floor(v)) % 2
        else:
            t = np.sin(u * np.float32(0.6) + np.float32(m.phase)) * 0.5 + 0.5
    elif m.kind == "noise":
        t = _noise_field(rng, h, w, period * 0.8)[yy, xx]
    elif m.kind == "spots":
        t = np.clip((_noise_field(rng, h, w, period * 0.6)[yy, xx] - 0.55) * 10.0, 0, 1)
    else:  # solid
        t = None
    grain = 1.0 + np.float32(m.grain) * (_noise_field(rng, h, w, period / 4.0)[yy, xx] - 0.5) * 2.0
    if t is None:
        return m.c1[None, :] * grain[:, None]
    t = np.asarray(t, np.float32)[:, None]
    return (m.c1 + (m.c2 - m.c1) * t) * grain[:, None]


# ----------------------------------------------------------------------------------------------------------
# Geometry helpers (canonical object frame: x right = the way the object faces, y down)


def _unit(deg: float) -> np.ndarray:
    r = math.radians(deg)
    return np.array([math.cos(r), math.sin(r)])


def _perp_up(d: np.ndarray) -> np.ndarray:
    """``d`` turned 90 degrees towards -y (up on screen when ``d`` points right)."""
    return np.array([d[1], -d[0]])


def _ellipse(c, rx: float, ry: float, deg: float = 0.0, n: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    pts = np.stack([rx * np.cos(t), ry * np.sin(t)], 1)
    r = math.radians(deg)
    rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    return pts @ rot.T + np.asarray(c, float)


def _capsule(p0, p1, r0: float, r1: float, n: int = 8) -> np.ndarray:
    """A tapered segment with round ends (radius ``r0`` at ``p0``, ``r1`` at ``p1``)."""
    p0 = np.asarray(p0, float)
    p1 = np.asarray(p1, float)
    d = p1 - p0
    a = math.atan2(d[1], d[0]) if np.hypot(*d) > 1e-9 else 0.0
    t1 = a + np.linspace(-math.pi / 2, math.pi / 2, n)
    t0 = a + np.linspace(math.pi / 2, 3 * math.pi / 2, n)
    front = p1 + r1 * np.stack([np.cos(t1), np.sin(t1)], 1)
    back = p0 + r0 * np.stack([np.cos(t0), np.sin(t0)], 1)
    return np.concatenate([front, back])


def _poly(*pts) -> np.ndarray:
    return np.asarray(pts, float)


class _Sketch:
    """Parts in drawing order, keypoints with the parts that must show at them, and materials."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, np.ndarray, str, float]] = []
        self.kps: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
        self.materials: dict[str, _Material] = {}

    def part(self, name: str, poly: np.ndarray, material: str, shade: float = 1.0) -> None:
        self.parts.append((name, np.asarray(poly, float), material, shade))

    def kp(self, name: str, point, *owners: str) -> None:
        self.kps[name] = (np.asarray(point, float), owners)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _pick(rng: np.random.Generator, options, weights=None):
    if weights is None:
        return options[int(rng.integers(len(options)))]
    w = np.asarray(weights, float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


# ----------------------------------------------------------------------------------------------------------
# Categories


def _build_quadruped(rng: np.random.Generator) -> _Sketch:
    sk = _Sketch()
    hue = _pick(rng, [0.06, 0.08, 0.1, 0.04, 0.12])
    fur = _hsv(hue + _u(rng, -0.02, 0.02), _u(rng, 0.0, 0.8), _u(rng, 0.2, 0.95))
    fur2 = _hsv(hue + _u(rng, -0.03, 0.03), _u(rng, 0.0, 0.7), _u(rng, 0.1, 0.95))
    kind = _pick(rng, ["solid", "stripes", "spots", "noise"], [0.35, 0.2, 0.25, 0.2])
    sk.materials["fur"] = _mat(rng, kind, fur, fur2, period=_u(rng, 0.07, 0.16))
    socks = rng.random() < 0.35
    sk.materials["paw"] = _mat(rng, "solid", _hsv(0.1, 0.05, 0.95) if socks else fur * 0.9, grain=0.1)
    sk.materials["dark"] = _mat(rng, "solid", _hsv(0.0, _u(rng, 0, 0.5), _u(rng, 0.05, 0.25)), grain=0.05)
    sk.materials["nose"] = _mat(rng, "solid", _hsv(0.98, _u(rng, 0.2, 0.6), _u(rng, 0.15, 0.6)), grain=0.05)

    bl = _u(rng, 0.9, 1.1)
    bh = _u(rng, 0.3, 0.44)
    rx, ry = bl / 2, bh / 2
    leg = _u(rng, 0.42, 0.68)
    leg_r = _u(rng, 0.045, 0.065)
    hs = _u(rng, 0.15, 0.22)

    def add_leg(prefix: str, attach, a_up: float, bend: float, front: bool, shade: float) -> dict:
        d1 = 90.0 - a_up
        knee = attach + leg * 0.5 * _unit(d1)
        d2 = d1 + bend if front else d1 - bend
        paw = knee + leg * 0.5 * _unit(d2)
        upper_r = leg_r * (1.3 if front else 1.9)
        sk.part(prefix + "upper", _capsule(attach, knee, upper_r, leg_r), "fur", shade)
        sk.part(prefix + "lower", _capsule(knee, paw, leg_r, leg_r * 0.8), "fur", shade)
        sk.part(prefix + "paw", _ellipse(paw + np.array([leg_r * 0.5, 0]), leg_r * 1.5, leg_r * 0.9), "paw", shade)
        return {"knee": knee, "paw": paw}

    fa = np.array([rx * 0.62, ry * 0.35])
    ha = np.array([-rx * 0.62, ry * 0.3])
    far = np.array([0.06, -0.04])
    legs = {}
    legs["fr"] = add_leg("fr_", fa + far, _u(rng, -30, 35), _u(rng, 0, 50), True, 0.7)
    legs["br"] = add_leg("br_", ha + far, _u(rng, -35, 30), _u(rng, 0, 45), False, 0.7)

    # head geometry first (the far ear is drawn before the head)
    neck0 = np.array([rx * 0.72, -ry * 0.35])
    neck_dir = _unit(-_u(rng, 25, 70))
    neck_len = _u(rng, 0.14, 0.28)
    head_c = neck0 + neck_dir * neck_len
    head_deg = _u(rng, -25, 35)
    hd = _unit(head_deg)
    up = _perp_up(hd)
    ear_len = _u(rng, 0.07, 0.16)
    ear_deg = -90 + head_deg + _u(rng, -35, 15)

    def ear(base, deg):
        e = _unit(deg)
        side = _perp_up(e)
        tip = base + e * ear_len
        return _poly(base + side * hs * 0.2, tip, base - side * hs * 0.2), base + e * ear_len * 0.78

    far_ear, far_tip = ear(head_c - hd * hs * 0.32 + up * hs * 0.3, ear_deg - 8)
    sk.part("ear_r", far_ear, "fur", 0.72)

    # tail (drawn before the body so that its base tucks under)
    t0 = np.array([-rx * 0.9, -ry * 0.3])
    tail_len = _u(rng, 0.3, 0.6)
    tr = _u(rng, 0.035, 0.065)
    deg = 180 + _u(rng, -15, 60)
    pts = [t0]
    for _ in range(3):
        pts.append(pts[-1] + _unit(deg) * tail_len / 3)
        deg += _u(rng, -25, 25)
    radii = [tr, tr * 0.8, tr * 0.6, tr * 0.4]
    for i in range(3):
        sk.part(f"tail{i + 1}", _capsule(pts[i], pts[i + 1], radii[i], radii[i + 1]), "fur")

    sk.part("body", _ellipse((0, 0), rx, ry), "fur")
    sk.part("haunch", _ellipse((-rx * 0.52, ry * 0.1), rx * 0.42, ry * 1.02, _u(rng, -15, 15)), "fur")
    sk.part("neck", _capsule(neck0, head_c, ry * 0.55, hs * 0.45), "fur")
    sk.part("head", _ellipse(head_c, hs * 0.62, hs * 0.48, head_deg), "fur")
    snout_end = head_c + hd * hs * 0.75
    sk.part("snout", _capsule(head_c, snout_end, hs * 0.3, hs * 0.2), "fur")
    nose_c = snout_end + hd * hs * 0.1
    sk.part("nose", _ellipse(nose_c, hs * 0.13, hs * 0.1, head_deg), "nose")
    eye_c = head_c + hd * hs * 0.12 + up * hs * 0.2
    sk.part("eye", _ellipse(eye_c, hs * 0.09, hs * 0.07, head_deg), "dark")
    near_ear, near_tip = ear(head_c - hd * hs * 0.12 + up * hs * 0.32, ear_deg)
    sk.part("ear_l", near_ear, "fur", 1.08)
    legs["fl"] = add_leg("fl_", fa, _u(rng, -30, 35), _u(rng, 0, 50), True, 1.0)
    legs["bl"] = add_leg("bl_", ha, _u(rng, -35, 30), _u(rng, 0, 45), False, 1.0)

    sk.kp("nose", nose_c, "nose", "snout")
    sk.kp("left_eye", eye_c, "eye")
    sk.kp("left_ear_tip", near_tip, "ear_l")
    sk.kp("right_ear_tip", far_tip, "ear_r")
    sk.kp("withers", np.array([rx * 0.55, -ry * 0.62]), "body", "neck")
    sk.kp("tail_base", t0 + np.array([0.02, 0.0]), "body", "haunch", "tail1")
    sk.kp("tail_tip", pts[3], "tail3")
    sk.kp("front_left_knee", legs["fl"]["knee"], "fl_upper", "fl_lower")
    sk.kp("front_left_paw", legs["fl"]["paw"], "fl_paw", "fl_lower")
    sk.kp("front_right_paw", legs["fr"]["paw"], "fr_paw", "fr_lower")
    sk.kp("back_left_knee", legs["bl"]["knee"], "bl_upper", "bl_lower")
    sk.kp("back_left_paw", legs["bl"]["paw"], "bl_paw", "bl_lower")
    sk.kp("back_right_paw", legs["br"]["paw"], "br_paw", "br_lower")
    sk.kp("tail_mid", (pts[1] + pts[2]) / 2, "tail2")
    sk.kp("back_mid", np.array([-rx * 0.05, -ry * 0.68]), "body")
    sk.kp("belly_mid", np.array([rx * 0.1, ry * 0.7]), "body")
    sk.kp("front_left_shin", (legs["fl"]["knee"] + legs["fl"]["paw"]) / 2, "fl_lower")
    return sk


def _build_bird(rng: np.random.Generator) -> _Sketch:
    sk = _Sketch()
    plum = _random_colour(rng, (0.2, 0.9), (0.3, 0.95))
    sk.materials["body"] = _mat(rng, _pick(rng, ["solid", "noise", "spots"], [0.5, 0.3, 0.2]), plum,
                                period=_u(rng, 0.06, 0.14))
    wing = _random_colour(rng, (0.2, 0.9), (0.15, 0.8)) if rng.random() < 0.6 else plum * 0.7
    sk.materials["wing"] = _mat(rng, _pick(rng, ["stripes", "solid", "noise"]), wing,
                                wing * np.float32(_u(rng, 0.4, 0.75)), period=_u(rng, 0.05, 0.1))
    head_col = _random_colour(rng, (0.3, 1.0), (0.2, 0.95)) if rng.random() < 0.5 else plum
    sk.materials["head"] = _mat(rng, "solid", head_col, grain=0.1)
    sk.materials["beak"] = _mat(rng, "gradient", _pick(rng, [_hsv(0.12, 0.9, 0.95), _hsv(0.07, 0.8, 0.9),
                                                              _hsv(0.0, 0.0, 0.15), _hsv(0.1, 0.2, 0.6)]),
                                period=0.05, grain=0.05)
    sk.materials["leg"] = _mat(rng, "solid", _pick(rng, [_hsv(0.08, 0.7, 0.8), _hsv(0.0, 0.0, 0.35),
                                                         _hsv(0.98, 0.35, 0.75)]), grain=0.05)
    sk.materials["eye"] = _mat(rng, "solid", _hsv(0.0, 0.0, 0.05), grain=0.02)

    rx, ry = _u(rng, 0.32, 0.42), _u(rng, 0.18, 0.26)
    bt = _u(rng, -35, 5)
    db = _unit(bt)
    up = _perp_up(db)
    down = -up
    hr = _u(rng, 0.11, 0.16)
    leg_l = _u(rng, 0.25, 0.42)

    def wing_geom(shoulder, raise_: float, shade: float, prefix: str):
        folded = 180 + bt + 8
        aw = folded + raise_ * (250 - folded)
        wl = wing_len
        wrist = shoulder + _unit(aw) * wl * 0.42
        bend = _u(rng, -15, 20) * (1 - raise_) + _u(rng, -10, 35) * raise_
        tip = wrist + _unit(aw + bend) * wl * 0.68
        sk.part(prefix + "arm", _capsule(shoulder, wrist, ry * 0.55, ry * 0.42), "wing", shade)
        sk.part(prefix + "hand", _capsule(wrist, tip, ry * 0.42, 0.02), "wing", shade)
        return wrist, tip

    wing_len = _u(rng, 0.5, 0.78)
    raised = rng.random() < 0.45
    raise_l = _u(rng, 0.4, 1.0) if raised else _u(rng, 0.0, 0.12)
    raise_r = min(1.0, raise_l + _u(rng, -0.05, 0.15))
    shoulder = db * rx * 0.3 + up * ry * 0.4
    _, r_tip = wing_geom(shoulder + np.array([0.05, -0.03]), raise_r, 0.7, "r_")

    def add_leg(hip, shade, prefix):
        knee = hip + _unit(90 + _u(rng, -25, 25)) * leg_l * 0.5
        foot = knee + _unit(90 + _u(rng, -20, 20)) * leg_l * 0.5
        sk.part(prefix + "thigh", _capsule(hip, knee, 0.05, 0.022), "body", shade)
        sk.part(prefix + "shank", _capsule(knee, foot, 0.02, 0.018), "leg", shade)
        toe_a = _u(rng, -15, 15)
        sk.part(prefix + "toes", np.concatenate([
            _capsule(foot, foot + _unit(toe_a) * 0.09, 0.016, 0.01, 5),
            _capsule(foot, foot + _unit(toe_a + 180) * 0.05, 0.016, 0.01, 5)]), "leg", shade)
        return knee, foot

    hip = db * rx * 0.1 + down * ry * 0.65
    _, r_foot = add_leg(hip + np.array([0.06, -0.02]), 0.7, "r_")
    l_knee, l_foot = add_leg(hip, 1.0, "l_")

    tail0 = -db * rx * 0.8
    ta = 180 + bt + _u(rng, -20, 25)
    td = _unit(ta)
    tl = _u(rng, 0.22, 0.4)
    tw0, tw1 = ry * 0.3, _u(rng, 0.07, 0.14)
    tp = _perp_up(td)
    sk.part("tail", _poly(tail0 + tp * tw0, tail0 + td * tl + tp * tw1, tail0 + td * tl * 1.04,
                          tail0 + td * tl - tp * tw1, tail0 - tp * tw0), "wing")
    sk.part("body", _ellipse((0, 0), rx, ry, bt), "body")

    head_c = db * rx * 0.8 + up * (ry * 0.75 + hr * _u(rng, 0.3, 1.0))
    head_deg = _u(rng, -25, 25)
    dh = _unit(head_deg)
    uh = _perp_up(dh)
    sk.part("neck", _capsule(db * rx * 0.6 + up * ry * 0.2, head_c, ry * 0.6, hr * 0.8), "body")
    sk.part("head", _ellipse(head_c, hr, hr * _u(rng, 0.85, 1.0), head_deg), "head")
    if rng.random() < 0.3:
        c0 = head_c + uh * hr * 0.7 - dh * hr * 0.2
        sk.part("crest", _poly(c0 + dh * hr * 0.35, c0 - dh * hr * 0.7 + uh * hr * _u(rng, 0.5, 0.9),
                               c0 - dh * hr * 0.4), "head", 0.85)
    bk = _u(rng, 0.08, 0.24)
    b0 = head_c + dh * hr * 0.75
    bw = hr * _u(rng, 0.28, 0.4)
    sk.part("beak", _poly(b0 + uh * bw, b0 + dh * bk, b0 - uh * bw * 0.8), "beak")
    eye_c = head_c + dh * hr * 0.3 + uh * hr * 0.22
    sk.part("eye", _ellipse(eye_c, hr * 0.16, hr * 0.16), "eye")
    l_wrist, l_tip = wing_geom(shoulder, raise_l, 1.0, "l_")

    sk.kp("beak_tip", b0 + dh * bk * 0.8, "beak")
    sk.kp("left_eye", eye_c, "eye")
    sk.kp("crown", head_c + uh * hr * 0.72 - dh * hr * 0.1, "head", "crest")
    sk.kp("throat", head_c - uh * hr * 0.62 + dh * hr * 0.25, "head")
    sk.kp("left_wrist", l_wrist, "l_arm", "l_hand")
    sk.kp("left_wing_tip", l_tip - (l_tip - l_wrist) * 0.05, "l_hand")
    sk.kp("right_wing_tip", r_tip, "r_hand")
    sk.kp("tail_tip", tail0 + td * tl * 0.92, "tail")
    sk.kp("left_knee", l_knee, "l_thigh", "l_shank")
    sk.kp("left_foot", l_foot, "l_shank", "l_toes")
    sk.kp("right_foot", r_foot, "r_shank", "r_toes")
    sk.kp("nape", head_c - dh * hr * 0.6 + uh * hr * 0.3, "head", "neck")
    sk.kp("breast", db * rx * 0.55 + down * ry * 0.35, "body")
    sk.kp("rump", -db * rx * 0.62 + up * ry * 0.3, "body")
    sk.kp("left_wing_mid", (l_wrist + l_tip) / 2, "l_hand")
    return sk


def _build_biped(rng: np.random.Generator) -> _Sketch:
    sk = _Sketch()
    skin = _hsv(_u(rng, 0.04, 0.1), _u(rng, 0.25, 0.6), _u(rng, 0.35, 0.95))
    sk.materials["skin"] = _mat(rng, "solid", skin, grain=0.06)
    shirt = _random_colour(rng, (0.2, 0.9), (0.3, 0.95))
    sk.materials["shirt"] = _mat(rng, _pick(rng, ["solid", "stripes", "checker", "noise"], [0.35, 0.3, 0.2, 0.15]),
                                 shirt, _random_colour(rng, (0.0, 0.8), (0.2, 0.95)), period=_u(rng, 0.05, 0.1))
    trou = _pick(rng, [_hsv(0.6, 0.6, 0.45), _hsv(0.6, 0.3, 0.2), _hsv(0.11, 0.35, 0.6), _hsv(0, 0, 0.35),
                       _random_colour(rng)])
    sk.materials["trousers"] = _mat(rng, _pick(rng, ["solid", "noise"]), trou, period=0.05)
    sk.materials["shoe"] = _mat(rng, "solid", _hsv(_u(rng, 0, 1), _u(rng, 0, 0.5), _u(rng, 0.05, 0.5)), grain=0.05)
    hair = _pick(rng, [_hsv(0.08, 0.6, 0.15), _hsv(0.08, 0.7, 0.4), _hsv(0.12, 0.6, 0.85), _hsv(0, 0, 0.6),
                       _hsv(0.04, 0.8, 0.6)])
    sk.materials["hair"] = _mat(rng, "noise", hair, period=0.03)
    sk.materials["dark"] = _mat(rng, "solid", _hsv(0, 0, 0.08), grain=0.02)
    sleeve = "shirt" if rng.random() < 0.5 else "skin"

    lean = _u(rng, -10, 10)
    dup = _unit(-90 + lean)
    dr = _unit(lean)  # towards the figure's left (+x)
    sw, hw, tl = _u(rng, 0.34, 0.48), _u(rng, 0.24, 0.34), _u(rng, 0.5, 0.62)
    pelvis = np.zeros(2)
    neck = pelvis + dup * tl
    shoulders = {s: neck + dr * s * sw / 2 - dup * 0.04 for s in (1, -1)}
    hips = {s: pelvis + dr * s * hw * 0.36 for s in (1, -1)}

    legs = {}
    for s in (1, -1):
        a1 = 90 - s * _u(rng, -5, 30) + lean
        knee = hips[s] + _unit(a1) * _u(rng, 0.3, 0.4)
        a2 = a1 + s * _u(rng, -25, 12)
        foot = knee + _unit(a2) * _u(rng, 0.3, 0.38)
        name = "l_" if s == 1 else "r_"
        sk.part(name + "thigh", _capsule(hips[s], knee, 0.07, 0.055), "trousers")
        sk.part(name + "shin", _capsule(knee, foot, 0.055, 0.045), "trousers")
        sk.part(name + "shoe", _ellipse(foot + dr * s * 0.035 + dup * 0.0, 0.075, 0.04, lean), "shoe")
        legs[s] = (knee, foot)

    m = 0.035
    sk.part("torso", _poly(shoulders[1] + dr * m + dup * m, shoulders[-1] - dr * m + dup * m,
                           pelvis - dr * (hw / 2 + 0.01) + dup * 0.12, pelvis - dr * (hw / 2) - dup * 0.02,
                           pelvis + dr * (hw / 2) - dup * 0.02, pelvis + dr * (hw / 2 + 0.01) + dup * 0.12), "shirt")
    sk.part("pelvis", _poly(pelvis - dr * (hw / 2 + 0.012) + dup * 0.1, pelvis + dr * (hw / 2 + 0.012) + dup * 0.1,
                            pelvis + dr * (hw / 2 + 0.01) - dup * 0.08, pelvis - dr * (hw / 2 + 0.01) - dup * 0.08),
            "trousers", 0.95)
    nl = _u(rng, 0.05, 0.09)
    hr = _u(rng, 0.1, 0.14)
    sk.part("neck", _capsule(neck, neck + dup * (nl + hr * 0.3), 0.045, 0.045), "skin")
    tilt = lean + _u(rng, -15, 15)
    hup = _unit(-90 + tilt)
    hri = _unit(tilt)
    head_c = neck + dup * (nl + hr * 0.9)
    sk.part("head", _ellipse(head_c, hr * 0.85, hr, tilt), "skin")
    if rng.random() < 0.8:
        t = np.linspace(math.pi * 1.05, math.pi * 1.95, 12)
        arc = np.stack([np.cos(t) * hr * 0.95, np.sin(t) * hr * _u(rng, 1.05, 1.3)], 1)
        rot = np.stack([hri, -hup], 1)  # columns: local x -> hri, local y (down) -> -hup
        hair = arc @ rot.T + head_c + hup * hr * 0.05
        sk.part("hair", np.concatenate([hair, (head_c + hup * hr * 0.35)[None]]), "hair")
    for s in (1, -1):
        sk.part(f"eye{s}", _ellipse(head_c + hri * s * hr * 0.35 + hup * hr * 0.1, hr * 0.1, hr * 0.12, tilt), "dark")

    arms = {}
    for s in (1, -1):
        a1 = 90 - s * _u(rng, 5, 160) + lean
        elbow = shoulders[s] + _unit(a1) * _u(rng, 0.2, 0.27)
        a2 = a1 + _u(rng, 0, 120) * (1 if rng.random() < 0.5 else -1)
        hand = elbow + _unit(a2) * _u(rng, 0.2, 0.26)
        name = "l_" if s == 1 else "r_"
        sk.part(name + "upper", _capsule(shoulders[s], elbow, 0.05, 0.042), sleeve)
        sk.part(name + "lower", _capsule(elbow, hand, 0.042, 0.034), "skin")
        sk.part(name + "hand", _ellipse(hand, 0.048, 0.048), "skin", 0.95)
        arms[s] = (elbow, hand)

    sk.kp("head_top", head_c + hup * hr * 0.85, "head", "hair")
    sk.kp("neck", neck, "neck", "torso")
    for s, side in ((1, "left"), (-1, "right")):
        name = "l_" if s == 1 else "r_"
        sk.kp(f"{side}_shoulder", shoulders[s], name + "upper", "torso")
        sk.kp(f"{side}_elbow", arms[s][0], name + "upper", name + "lower")
        sk.kp(f"{side}_hand", arms[s][1], name + "hand", name + "lower")
        sk.kp(f"{side}_hip", hips[s], "pelvis", "torso", name + "thigh")
        sk.kp(f"{side}_knee", legs[s][0], name + "thigh", name + "shin")
        sk.kp(f"{side}_foot", legs[s][1], name + "shin", name + "shoe")
    sk.kp("nose", head_c - hup * hr * 0.2, "head")
    sk.kp("navel", pelvis + dup * tl * 0.35, "torso")
    sk.kp("left_forearm_mid", (arms[1][0] + arms[1][1]) / 2, "l_lower")
    sk.kp("right_shin_mid", (legs[-1][0] + legs[-1][1]) / 2, "r_shin")
    return sk


def _build_lamp(rng: np.random.Generator) -> _Sketch:
    sk = _Sketch()
    paint = _random_colour(rng, (0.3, 0.95), (0.3, 0.95))
    sk.materials["paint"] = _mat(rng, _pick(rng, ["gradient", "solid"]), paint, paint * 0.6, period=0.15, grain=0.06)
    base_col = paint if rng.random() < 0.5 else _random_colour(rng, (0.0, 0.5), (0.1, 0.7))
    sk.materials["base"] = _mat(rng, _pick(rng, ["gradient", "solid", "noise"]), base_col, base_col * 0.6,
                                period=0.1, grain=0.08)
    sk.materials["metal"] = _mat(rng, "gradient", _hsv(0.6, 0.05, 0.85), _hsv(0.6, 0.08, 0.45), period=0.03,
                                 grain=0.04)
    sk.materials["bulb"] = _mat(rng, "solid", _hsv(0.14, _u(rng, 0.1, 0.5), 1.0), grain=0.03)
    sk.materials["dark"] = _mat(rng, "solid", _hsv(0, 0, 0.08), grain=0.03)
    sk.materials["switch"] = _mat(rng, "solid", _random_colour(rng, (0.6, 1.0), (0.5, 1.0)), grain=0.03)

    bw, bh = _u(rng, 0.4, 0.65), _u(rng, 0.07, 0.13)
    j0 = np.array([_u(rng, -0.15, 0.05) * bw, 0.0])
    jr = _u(rng, 0.04, 0.06)
    a1 = -90 + _u(rng, -35, 30)
    elbow = j0 + _unit(a1) * _u(rng, 0.4, 0.6)
    a2 = a1 + _u(rng, 50, 150)
    head = elbow + _unit(a2) * _u(rng, 0.35, 0.55)
    d3 = _unit(_u(rng, 10, 120))
    p3 = _perp_up(d3)
    sl, ow, aw = _u(rng, 0.18, 0.3), _u(rng, 0.1, 0.16), _u(rng, 0.03, 0.05)
    arm_r = _u(rng, 0.016, 0.028)

    cord = [np.array([-bw / 2 + 0.02, bh * 0.6])]
    cdeg = 180 + _u(rng, -20, 30)
    for _ in range(3):
        cord.append(cord[-1] + _unit(cdeg) * _u(rng, 0.06, 0.12))
        cdeg += _u(rng, -40, 40)
    for i in range(3):
        sk.part(f"cord{i}", _capsule(cord[i], cord[i + 1], 0.009, 0.009, 4), "dark")
    sk.part("base", _poly((-bw / 2, bh), (bw / 2, bh), (bw / 2 * 0.96, bh * 0.3), (bw / 2 * 0.8, 0.0),
                          (-bw / 2 * 0.8, 0.0), (-bw / 2 * 0.96, bh * 0.3)), "base")
    sw = np.array([bw / 2 * 0.55, -0.012])
    sk.part("switch", _ellipse(sw, 0.028, 0.022), "switch")
    sk.part("lower_arm", _capsule(j0, elbow, arm_r, arm_r), "paint")
    sk.part("upper_arm", _capsule(elbow, head, arm_r, arm_r * 0.9), "paint")
    apex = head + d3 * 0.01
    rim = head + d3 * sl
    dome = _ellipse(apex, aw * 1.6, aw * 1.3, math.degrees(math.atan2(d3[1], d3[0])), 16)
    sk.part("shade", np.concatenate([_poly(rim + p3 * ow, apex + p3 * aw, apex - p3 * aw, rim - p3 * ow),
                                     ]), "paint", 1.05)
    sk.part("shade_back", dome, "paint", 0.9)
    sk.part("bulb", _ellipse(rim + d3 * 0.015, ow * 0.25, ow * 0.6, math.degrees(math.atan2(d3[1], d3[0]))), "bulb")
    sk.part("base_joint", _ellipse(j0, jr, jr), "metal")
    sk.part("elbow", _ellipse(elbow, jr * 0.8, jr * 0.8), "metal")
    sk.part("head_joint", _ellipse(head, jr * 0.7, jr * 0.7), "metal")

    sk.kp("base_back", (-bw / 2 * 0.85, bh * 0.6), "base")
    sk.kp("base_front", (bw / 2 * 0.85, bh * 0.6), "base")
    sk.kp("switch", sw, "switch")
    sk.kp("base_joint", j0, "base_joint")
    sk.kp("elbow", elbow, "elbow")
    sk.kp("head_joint", head, "head_joint")
    sk.kp("shade_upper_rim", head + d3 * sl * 0.92 + p3 * ow * 0.8, "shade")
    sk.kp("shade_lower_rim", head + d3 * sl * 0.92 - p3 * ow * 0.8, "shade")
    sk.kp("bulb", rim + d3 * 0.015, "bulb")
    sk.kp("lower_arm_mid", (j0 + elbow) / 2, "lower_arm")
    sk.kp("upper_arm_mid", (elbow + head) / 2, "upper_arm")
    sk.kp("shade_center", head + d3 * sl * 0.55, "shade")
    sk.kp("base_top_back", (-bw / 2 * 0.45, bh * 0.35), "base")
    return sk


def _build_vehicle(rng: np.random.Generator) -> _Sketch:
    sk = _Sketch()
    paint = _random_colour(rng, (0.4, 1.0), (0.3, 0.95))
    kind = _pick(rng, ["solid", "gradient", "stripes"], [0.55, 0.3, 0.15])
    sk.materials["paint"] = _mat(rng, kind, paint, paint * 0.55 if kind != "stripes" else _random_colour(rng),
                                 period=_u(rng, 0.25, 0.5) if kind == "stripes" else 0.3, grain=0.05)
    sk.materials["glass"] = _mat(rng, "gradient", _hsv(0.58, 0.35, 0.5), _hsv(0.6, 0.4, 0.15), period=0.1,
                                 grain=0.05)
    sk.materials["tyre"] = _mat(rng, "noise", _hsv(0, 0, 0.12), _hsv(0, 0, 0.05), period=0.03, grain=0.05)
    sk.materials["hub"] = _mat(rng, "gradient", _pick(rng, [_hsv(0.6, 0.05, 0.85), _hsv(0.12, 0.5, 0.8),
                                                            _hsv(0, 0, 0.25)]), _hsv(0.6, 0.05, 0.4), period=0.04,
                               grain=0.04)
    sk.materials["head"] = _mat(rng, "solid", _hsv(0.13, 0.25, 1.0), grain=0.02)
    sk.materials["tail"] = _mat(rng, "solid", _hsv(0.0, 0.9, 0.85), grain=0.02)
    sk.materials["trim"] = _mat(rng, "solid", _pick(rng, [_hsv(0, 0, 0.15), _hsv(0, 0, 0.6), paint * 0.8]),
                                grain=0.04)
    sk.materials["dark"] = _mat(rng, "solid", _hsv(0, 0, 0.08), grain=0.02)

    L = 1.0
    wr = _u(rng, 0.09, 0.13)
    wb = _u(rng, 0.55, 0.7)
    off = _u(rng, -0.03, 0.03)
    wf = np.array([wb / 2 + off, 0.0])
    wrr = np.array([-wb / 2 + off, 0.0])
    h1 = _u(rng, 0.17, 0.26)
    yb = wr * _u(rng, 0.15, 0.4)
    yt = yb - h1
    h2 = _u(rng, 0.13, 0.24)
    yr = yt - h2
    x_cr = -L / 2 + _u(rng, 0.03, 0.25)
    x_cf = L / 2 - _u(rng, 0.22, 0.38)
    x_rf = x_cf - _u(rng, 0.1, 0.2)
    x_rr = x_cr + _u(rng, 0.03, 0.16)
    pitch = _u(rng, -3, 3)
    c, s = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    R = np.array([[c, -s], [s, c]])

    def body(p) -> np.ndarray:  # body parts pitch about the car's centre (suspension)
        return np.asarray(p, float) @ R.T

    far = np.array([0.05, -0.035])
    for i, w in enumerate((wf, wrr)):
        sk.part(f"far_tyre{i}", _ellipse(w + far, wr, wr), "tyre", 0.6)
    ant_a = _u(rng, -150, -100)
    ant0 = np.array([x_rr + 0.03, yr + 0.01])
    ant1 = ant0 + _unit(ant_a) * _u(rng, 0.08, 0.2)
    sk.part("antenna", body(_capsule(ant0, ant1, 0.007, 0.006, 4)), "dark")
    nose_h = _u(rng, 0.3, 0.6)
    sk.part("body", body(_poly((-L / 2, yb), (L / 2 - 0.02, yb), (L / 2, yb - 0.03), (L / 2, yt + h1 * nose_h),
                               (L / 2 - 0.08, yt), (-L / 2 + 0.04, yt), (-L / 2, yt + 0.04))), "paint")
    sk.part("cabin", body(_poly((x_cf, yt + 0.01), (x_rf, yr), (x_rr, yr), (x_cr, yt + 0.01))), "paint")
    xm = (x_rf + x_rr) / 2
    m = 0.022
    sk.part("win_front", body(_poly((x_cf - m * 1.8, yt), (x_rf - m * 0.3, yr + m), (xm + m * 0.4, yr + m),
                                    (xm + m * 0.4, yt))), "glass")
    sk.part("win_rear", body(_poly((xm - m * 0.4, yt), (xm - m * 0.4, yr + m), (x_rr + m * 0.3, yr + m),
                                   (x_cr + m * 1.8, yt))), "glass")
    handle = np.array([xm + 0.05, yt + h1 * 0.28])
    sk.part("handle", body(_ellipse(handle, 0.03, 0.01, 0, 10)), "dark")
    mirror = np.array([x_cf - 0.035, yt - 0.02])
    sk.part("mirror", body(_poly(mirror + (-0.03, -0.022), mirror + (0.02, -0.025), mirror + (0.025, 0.018),
                                 mirror + (-0.025, 0.02))), "paint", 0.8)
    hl = np.array([L / 2 - 0.035, yt + h1 * nose_h * 0.5 + 0.02])
    sk.part("headlight", body(_ellipse(hl, 0.032, 0.02, -15, 16)), "head")
    tl = np.array([-L / 2 + 0.022, yt + 0.05])
    sk.part("taillight", body(_poly(tl + (-0.018, -0.022), tl + (0.02, -0.022), tl + (0.02, 0.025),
                                    tl + (-0.018, 0.025))), "tail")
    fb = np.array([L / 2 - 0.025, yb - 0.025])
    rb = np.array([-L / 2 + 0.025, yb - 0.025])
    sk.part("front_bumper", body(_capsule(fb - (0.07, 0), fb + (0.012, 0), 0.026, 0.026, 6)), "trim")
    sk.part("rear_bumper", body(_capsule(rb + (0.07, 0), rb - (0.012, 0), 0.026, 0.026, 6)), "trim")
    spin = _u(rng, 0, 360)
    n_spokes = int(rng.integers(3, 7))
    for i, w in enumerate((wf, wrr)):
        sk.part(f"tyre{i}", _ellipse(w, wr, wr), "tyre")
        hub_r = wr * _u(rng, 0.5, 0.65) if i == 0 else wr * 0.58
        sk.part(f"hub{i}", _ellipse(w, hub_r, hub_r, 0, 20), "hub")
        for k in range(n_spokes):
            a = spin + k * 360 / n_spokes + i * 17
            sk.part(f"slot{i}_{k}", _ellipse(w + _unit(a) * hub_r * 0.6, hub_r * 0.22, hub_r * 0.13, a, 10),
                    "dark")
        sk.part(f"cap{i}", _ellipse(w, hub_r * 0.25, hub_r * 0.25, 0, 12), "hub", 1.2)

    sk.kp("headlight", body(hl), "headlight")
    sk.kp("taillight", body(tl), "taillight")
    sk.kp("front_bumper", body(fb), "front_bumper")
    sk.kp("rear_bumper", body(rb), "rear_bumper")
    sk.kp("windshield_base", body((x_cf - 0.03, yt - 0.004)), "cabin", "body", "win_front")
    sk.kp("roof_front", body((x_rf - 0.005, yr + 0.006)), "cabin", "win_front")
    sk.kp("roof_rear", body((x_rr + 0.006, yr + 0.006)), "cabin", "win_rear")
    sk.kp("rear_window_base", body((x_cr + 0.03, yt - 0.004)), "cabin", "body", "win_rear")
    sk.kp("front_left_wheel", wf, "cap0", "hub0")
    sk.kp("rear_left_wheel", wrr, "cap1", "hub1")
    sk.kp("left_mirror", body(mirror), "mirror")
    sk.kp("antenna_tip", body(ant1 - _unit(ant_a) * 0.006), "antenna")
    sk.kp("door_handle", body(handle), "handle")
    sk.kp("roof_mid", body((xm, yr + 0.006)), "cabin", "win_front", "win_rear")
    sk.kp("hood_mid", body(((x_cf + L / 2) / 2, yt + 0.012)), "body")
    sk.kp("rocker_mid", body(((wf[0] + wrr[0]) / 2, yb - 0.015)), "body")
    return sk


_BUILDERS: dict[str, Callable[[np.random.Generator], _Sketch]] = {
    "quadruped": _build_quadruped,
    "bird": _build_bird,
    "biped": _build_biped,
    "lamp": _build_lamp,
    "vehicle": _build_vehicle,
}


# ----------------------------------------------------------------------------------------------------------
# Rendering one instance


@dataclass
class _Instance:
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


def _to_canvas(p: np.ndarray) -> np.ndarray:
    """Final-image pixel coordinates -> drawing coordinates of the 2x canvas.

    Final pixel ``x`` (its centre, project convention) is the centre of 2x pixels ``2x`` and ``2x + 1``,
    i.e. 2x pixel-centre coordinate ``2x + 0.5``; PIL's drawing coordinates put pixel ``i``'s centre at
    ``i + 0.5`` (corner-based), hence ``2x + 1``.
    """
    return np.asarray(p, float) * 2.0 + 1.0


def _random_blob(rng: np.random.Generator, c: np.ndarray, r: float) -> np.ndarray:
    kind = int(rng.integers(4))
    if kind == 0:
        return _ellipse(c, r, r * _u(rng, 0.3, 1.0), _u(rng, 0, 180))
    if kind == 1:  # star-convex polygon
        n = int(rng.integers(3, 9))
        t = np.sort(rng.uniform(0, 2 * math.pi, n))
        rad = r * rng.uniform(0.5, 1.0, n)
        return np.stack([c[0] + rad * np.cos(t), c[1] + rad * np.sin(t)], 1)
    if kind == 2:  # rotated rectangle
        a = _u(rng, 0, 180)
        d, p = _unit(a), _perp_up(_unit(a))
        w, h = r, r * _u(rng, 0.2, 0.8)
        return _poly(c + d * w + p * h, c - d * w + p * h, c - d * w - p * h, c + d * w - p * h)
    a = _u(rng, 0, 180)  # branch / thick line
    return _capsule(c - _unit(a) * r * 1.5, c + _unit(a) * r * 1.5, r * _u(rng, 0.08, 0.2), r * _u(rng, 0.05, 0.15))


def _render_instance(rng: np.random.Generator, category: str, cat_value: int) -> _Instance:
    seen_names, unseen_names = _KEYPOINTS[category]
    for attempt in range(60):
        easy = attempt >= 30  # after many rejections, no truncation and no occluders
        inst = _try_render(rng, category, cat_value, seen_names, unseen_names, easy)
        if inst is not None:
            return inst
    raise RuntimeError(f"synthetic {category}: could not draw an instance with {MIN_IMAGE_KEYPOINTS} visible keypoints")


def _try_render(rng, category, cat_value, seen_names, unseen_names, easy) -> _Instance | None:
    W = int(rng.integers(176, 257))
    H = int(rng.integers(160, 241))
    sk = _BUILDERS[category](rng)
    missing = set(seen_names + unseen_names) - set(sk.kps)
    if missing:  # a programming error in a builder
        raise AssertionError(f"{category} builder lacks keypoints {sorted(missing)}")

    # ---- pose: mirror, rotate, scale, place
    mirrored = bool(rng.random() < 0.5)
    rotation = _u(rng, -35, 35)
    th = math.radians(rotation)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    A = rot @ np.diag([-1.0 if mirrored else 1.0, 1.0])  # canonical -> image directions
    canonical = np.concatenate([p for _, p, _, _ in sk.parts])
    verts = canonical @ A.T
    lo, hi = verts.min(0), verts.max(0)
    ext = hi - lo
    s = _u(rng, 0.5, 0.9) * min((W - 4) / ext[0], (H - 4) / ext[1])
    size = ext * s
    origin = np.array([_u(rng, 2, max(2.0, W - 2 - size[0])), _u(rng, 2, max(2.0, H - 2 - size[1]))])
    if not easy and rng.random() < 0.2:  # push the object partly out of the frame
        side = int(rng.integers(4))
        frac = _u(rng, 0.1, 0.35)
        if side == 0:
            origin[0] = -frac * size[0]
        elif side == 1:
            origin[0] = W - (1 - frac) * size[0]
        elif side == 2:
            origin[1] = -frac * size[1]
        else:
            origin[1] = H - (1 - frac) * size[1]
    t = origin - lo * s

    def place(q: np.ndarray) -> np.ndarray:  # canonical -> final-image pixels
        return (np.asarray(q, float) @ A.T) * s + t

    amodal = place(canonical)  # every object vertex, in image pixels
    truncated = int(amodal[:, 0].min() < -0.5 or amodal[:, 1].min() < -0.5
                    or amodal[:, 0].max() > W - 0.5 or amodal[:, 1].max() > H - 0.5)

    def pose_material(m: _Material) -> _Material:
        d = A @ np.array([math.cos(m.angle), math.sin(m.angle)])
        return replace(m, period=m.period * s, angle=math.atan2(d[1], d[0]))

    materials = {k: pose_material(m) for k, m in sk.materials.items()}
    obj_mats = list(materials.values())

    # ---- shapes: (label, polygon on the 2x canvas, material, shade)
    W2, H2 = 2 * W, 2 * H
    diag = math.hypot(W, H)
    shapes: list[tuple[int, np.ndarray, _Material, float]] = []
    label = _CLUTTER0
    if rng.random() < 0.5:  # a ground plane / table top
        y0, y1 = H * _u(rng, 0.55, 0.9), H * _u(rng, 0.55, 0.9)
        ground = _poly((-2, y0), (W + 2, y1), (W + 2, H + 2), (-2, H + 2))
        shapes.append((label, _to_canvas(ground), _clutter_material(rng, diag), 1.0))
        label += 1
    for _ in range(int(rng.integers(3, 9))):
        c = np.array([_u(rng, -0.1, 1.1) * W, _u(rng, -0.1, 1.1) * H])
        poly = _random_blob(rng, c, _u(rng, 0.06, 0.3) * diag)
        mat = (replace(obj_mats[int(rng.integers(len(obj_mats)))], angle=_u(rng, 0, math.pi))
               if rng.random() < 0.25 else _clutter_material(rng, diag))
        shapes.append((label, _to_canvas(poly), mat, _u(rng, 0.8, 1.1)))
        label += 1
    part_labels: dict[str, int] = {}
    for i, (name, poly, mat, shade) in enumerate(sk.parts):
        part_labels[name] = _OBJECT0 + i
        shapes.append((_OBJECT0 + i, _to_canvas(place(poly)), materials[mat], shade))
    n_front = 0 if easy or rng.random() < 0.5 else int(rng.integers(1, 3))
    obj_size = float(math.sqrt(max(size[0] * size[1], 1.0)))
    occluders: list[tuple[int, np.ndarray, _Material, float]] = []
    kp_pts = [place(sk.kps[n][0]) for n in seen_names]
    for j in range(n_front):
        target = kp_pts[int(rng.integers(len(kp_pts)))] + rng.normal(0, 0.08 * obj_size, 2)
        if rng.random() < 0.3:  # a pole or branch across the frame
            a = _u(rng, 45, 135) if rng.random() < 0.7 else _u(rng, -30, 30)
            d = _unit(a)
            poly = _capsule(target - d * 2 * diag, target + d * 2 * diag, *(2 * [_u(rng, 0.03, 0.07) * obj_size]))
        else:
            poly = _random_blob(rng, target, _u(rng, 0.07, 0.16) * obj_size)
        mat = (replace(obj_mats[int(rng.integers(len(obj_mats)))], angle=_u(rng, 0, math.pi))
               if rng.random() < 0.2 else _clutter_material(rng, diag))
        occluders.append((_OCCLUDER0 + j, _to_canvas(poly), mat, _u(rng, 0.85, 1.1)))

    # ---- label map on the 2x canvas, in painter's order
    canvas = Image.new("L", (W2, H2), 0)
    draw = ImageDraw.Draw(canvas)
    for lab, poly, _, _ in shapes:
        draw.polygon(poly.ravel().tolist(), fill=lab)
    before = np.asarray(canvas)
    obj_before = int(((before >= _OBJECT0) & (before < _OCCLUDER0)).sum())
    for lab, poly, _, _ in occluders:
        draw.polygon(poly.ravel().tolist(), fill=lab)
    labels = np.asarray(canvas)
    obj = (labels >= _OBJECT0) & (labels < _OCCLUDER0)

    # ---- keypoints and visibility
    def keypoint(q: np.ndarray, owners: tuple[str, ...]) -> tuple[list[int] | None, bool]:
        p = place(q)
        x, y = int(math.floor(p[0] + 0.5)), int(math.floor(p[1] + 0.5))
        if not (0 <= x < W and 0 <= y < H):
            return None, False
        block = labels[2 * y: 2 * y + 2, 2 * x: 2 * x + 2]
        own = [part_labels[o] for o in owners if o in part_labels]
        if int(np.isin(block, own).sum()) >= 2:
            return [x, y], False
        return None, bool((block >= _OCCLUDER0).sum() >= 2)

    kps, hidden_by_occluder = [], False
    for n in seen_names:
        v, occ = keypoint(*sk.kps[n])
        kps.append(v)
        hidden_by_occluder |= occ
    if sum(v is not None for v in kps) < MIN_IMAGE_KEYPOINTS:
        return None
    unseen = [keypoint(*sk.kps[n])[0] for n in unseen_names]
    occluded = int(hidden_by_occluder or (obj_before - int(obj.sum())) >= 0.05 * max(obj_before, 1))

    # ---- colour, at the final resolution: each label's texture weighted by the share of the pixel's four
    # 2x sub-pixels that carry the label (antialiased edges without texturing the 2x canvas)
    bg = _clutter_material(rng, diag)
    bg = replace(bg, period=bg.period * 2.0, kind=_pick(rng, ["noise", "gradient", "stripes", "checker", "spots"],
                                                         [0.35, 0.25, 0.15, 0.1, 0.15]))
    small = np.zeros((H, W, 3), np.float32)
    for lab, poly, mat, shade in [(0, None, bg, 1.0)] + shapes + occluders:
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
        tex = _texture(mat, rng, x0, y0, h, w, yy, xx)
        light = np.float32(shade) * (np.float32(1.12) - np.float32(0.3 / h) * yy.astype(np.float32))
        weight = light * (cover[mask].astype(np.float32) * np.float32(0.25))
        small[y0:y1, x0:x1][mask] += tex * weight[:, None]
    # dark outlines where the object or an occluder meets anything else (drawn on the 2x grid)
    fg = labels >= _OBJECT0
    edge = np.zeros(fg.shape, np.uint8)
    d = (labels[:, 1:] != labels[:, :-1]) & (fg[:, 1:] | fg[:, :-1])
    edge[:, 1:] |= d
    edge[:, :-1] |= d
    d = (labels[1:] != labels[:-1]) & (fg[1:] | fg[:-1])
    edge[1:] |= d
    edge[:-1] |= d
    share = edge.reshape(H, 2, W, 2).sum(axis=(1, 3), dtype=np.uint8).astype(np.float32) * np.float32(0.25)
    small *= (np.float32(1.0) - np.float32(0.55) * share)[..., None]
    small *= np.float32(_u(rng, 0.85, 1.12))
    small += rng.normal(0.0, 3.0, small.shape).astype(np.float32)
    image = np.clip(np.rint(small), 0, 255).astype(np.uint8)

    seg_mask = obj.reshape(H, 2, W, 2).sum(axis=(1, 3)) >= 2
    seg = seg_mask.astype(np.uint8) * np.uint8(cat_value)
    ys, xs = np.nonzero(seg_mask)
    bndbox = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    return _Instance(image, seg, bndbox, kps, unseen, truncated, occluded, mirrored, round(rotation, 3),
                     round(obj_size, 3))


# ----------------------------------------------------------------------------------------------------------
# Writing


def _split_sizes(n: int) -> dict[str, int]:
    n_test = max(2, round(n / 3))
    n_val = max(2, round(n / 6))
    return {"trn": n - n_test - n_val, "val": n_val, "test": n_test}


def _azimuth_id(rotation: float) -> int:
    """In-plane rotation binned in 10-degree steps over [-40, 40): 0..7 (SPair's azimuth_id has 8 bins)."""
    return int(min(7, max(0, math.floor((rotation + 40.0) / 10.0))))


def _image_json(name: str, category: str, inst: _Instance, kps: list) -> dict:
    W, H = inst.size
    return {
        "filename": f"{name}.jpg",
        "src_database": SRC_DATABASE,
        "src_annotation": SRC_DATABASE,
        "src_image": f"{name}.jpg",
        "image_width": W,
        "image_height": H,
        "image_depth": 3,
        "category": category,
        "pose": "Unspecified",
        "truncated": inst.truncated,
        "occluded": inst.occluded,
        "difficult": 0,
        "bndbox": list(inst.bndbox),
        "kps": {str(i): (None if p is None else list(p)) for i, p in enumerate(kps)},
        "azimuth_id": _azimuth_id(inst.rotation),
    }


def _mutual(a: list, b: list) -> list[int]:
    return [i for i, (p, q) in enumerate(zip(a, b)) if p is not None and q is not None]


def _pair_json(pair_id: int, category: str, src: str, trg: str, a: _Instance, b: _Instance, ids: list[int],
               a_kps: list, b_kps: list) -> dict:
    if a.mirrored != b.mirrored:
        view = 2
    else:
        dr = abs(a.rotation - b.rotation)
        view = 0 if dr < 15 else 1 if dr < 35 else 2
    ratio = max(a.object_size, b.object_size) / max(min(a.object_size, b.object_size), 1e-6)
    return {
        "pair_id": pair_id,
        "src_imname": f"{src}.jpg",
        "trg_imname": f"{trg}.jpg",
        "src_imsize": [*a.size, 3],
        "trg_imsize": [*b.size, 3],
        "src_bndbox": list(a.bndbox),
        "trg_bndbox": list(b.bndbox),
        "src_pose": "Unspecified",
        "trg_pose": "Unspecified",
        "src_kps": [list(a_kps[i]) for i in ids],
        "trg_kps": [list(b_kps[i]) for i in ids],
        "kps_ids": [str(i) for i in ids],
        "category": category,
        "mirror": int(a.mirrored != b.mirrored),
        "viewpoint_variation": view,
        "scale_variation": 0 if ratio < 1.25 else 1 if ratio < 1.6 else 2,
        "truncation": a.truncated + 2 * b.truncated,
        "occlusion": a.occluded + 2 * b.occluded,
    }


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=False).encode("utf-8")


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(array, "RGB").save(buf, "JPEG", quality=JPEG_QUALITY, subsampling="4:2:0", optimize=False)
    else:
        Image.fromarray(array, "L").save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def check_generation_arguments(seed, images_per_category, pairs_per_category) -> dict[str, int]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"synthetic seed must be a non-negative integer, got {seed!r}")
    if isinstance(images_per_category, bool) or not isinstance(images_per_category, (int, np.integer)) \
            or images_per_category < 6:
        raise ConfigError(
            f"images_per_category must be an integer >= 6, got {images_per_category!r}",
            hint="each category needs at least 2 images in each of trn, val and test",
        )
    pairs = dict(DEFAULT_PAIRS)
    if pairs_per_category is not None:
        unknown = set(pairs_per_category) - set(SPLITS)
        if unknown:
            raise ConfigError(f"pairs_per_category has unknown splits {sorted(unknown)}", hint="use trn, val, test")
        for k, v in pairs_per_category.items():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ConfigError(f"pairs_per_category[{k!r}] must be a non-negative integer, got {v!r}")
            pairs[k] = int(v)
    return pairs


def generate_synthetic(root: Path, *, seed: int = 0, images_per_category: int = 12,
                       pairs_per_category: dict[str, int] | None = None, progress: bool = False) -> dict:
    """Write the synthetic benchmark under ``root`` (which must not exist or be empty) and return its manifest.

    The dataset is built in a hidden sibling folder and moved into place at the end
    (``files.replacing_directory``), so an interrupted run never leaves a partial dataset at ``root``.

    Manifest (``root/synthetic_manifest.json``, written last): ``generator_version``, ``seed``,
    ``arguments`` (``images_per_category``, requested ``pairs_per_category``), ``categories`` (per category
    ``keypoints`` = seen names and ``unseen`` names, in id order), ``splits`` (image names per split and
    category), ``images`` (per image: ``category``, ``split``, ``mirrored``, ``rotation_deg`` (positive =
    clockwise on screen), ``object_size`` (sqrt of the amodal object box area, px), ``truncated``,
    ``occluded``), ``counts`` (``images``, ``pairs`` per split, ``pairs_requested`` per split,
    ``extra_pairs``, ``files``) and ``sha256``: the SHA-256 over every other written file, taken in sorted
    relative-path order as ``path NUL size NUL bytes``.
    """
    pairs_wanted = check_generation_arguments(seed, images_per_category, pairs_per_category)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(
            f"synthetic dataset root {root} already exists and is not an empty folder",
            hint="pass a new path, or remove the old dataset first",
        )
    with replacing_directory(root) as tmp:
        manifest = _generate_into(tmp, int(seed), int(images_per_category), pairs_wanted, progress)
    return manifest


def _generate_into(tmp: Path, seed: int, n_images: int, pairs_wanted: dict[str, int], progress: bool) -> dict:
    files: dict[str, bytes] = {}

    def write(rel: str, data: bytes) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = data

    sizes = _split_sizes(n_images)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_images * len(CATEGORIES), desc="synthetic images", unit="img")

    instances: dict[str, list[_Instance]] = {}
    names: dict[str, list[str]] = {}
    manifest_images: dict[str, dict] = {}
    split_images: dict[str, dict[str, list[str]]] = {sp: {} for sp in SPLITS}
    for ci, cat in enumerate(CATEGORIES):
        instances[cat], names[cat] = [], []
        bounds = {"trn": (0, sizes["trn"]), "val": (sizes["trn"], sizes["trn"] + sizes["val"]),
                  "test": (sizes["trn"] + sizes["val"], n_images)}
        for ii in range(n_images):
            rng = np.random.default_rng([seed, _IMAGE_STREAM, ci, ii])
            inst = _render_instance(rng, cat, ci + 1)
            name = f"{cat}_{ii + 1:04d}"
            split = next(sp for sp, (a, b) in bounds.items() if a <= ii < b)
            instances[cat].append(inst)
            names[cat].append(name)
            split_images[split].setdefault(cat, []).append(name)
            write(f"JPEGImages/{cat}/{name}.jpg", _encode(inst.image, "JPEG"))
            write(f"Segmentation/{cat}/{name}.png", _encode(inst.seg, "PNG"))
            write(f"ImageAnnotation/{cat}/{name}.json", _dumps(_image_json(name, cat, inst, inst.kps)))
            if split == "test":
                write(f"ExtraImageAnnotation/{cat}/{name}.json", _dumps(_image_json(name, cat, inst, inst.unseen)))
            manifest_images[name] = {
                "category": cat, "split": split, "mirrored": inst.mirrored, "rotation_deg": inst.rotation,
                "object_size": inst.object_size, "truncated": inst.truncated, "occluded": inst.occluded,
            }
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()

    pair_counts, extra_count = {}, 0
    for si, split in enumerate(SPLITS):
        stems: list[str] = []
        for ci, cat in enumerate(CATEGORIES):
            idx = [names[cat].index(n) for n in split_images[split].get(cat, [])]
            candidates = [(a, b) for a in idx for b in idx if a != b]
            order = np.random.default_rng([seed, _PAIR_STREAM, si, ci]).permutation(len(candidates))
            taken = 0
            for k in order:
                if taken >= pairs_wanted[split]:
                    break
                a, b = candidates[int(k)]
                A, B = instances[cat][a], instances[cat][b]
                ids = _mutual(A.kps, B.kps)
                if len(ids) < MIN_PAIR_KEYPOINTS:
                    continue
                taken += 1
                pid = len(stems) + 1
                src, trg = names[cat][a], names[cat][b]
                stem = f"{pid:06d}-{src}-{trg}:{cat}"
                stems.append(stem)
                write(f"PairAnnotation/{split}/{stem}.json",
                      _dumps(_pair_json(pid, cat, src, trg, A, B, ids, A.kps, B.kps)))
                if split == "test":
                    uids = _mutual(A.unseen, B.unseen)
                    if uids:
                        extra_count += 1
                        write(f"ExtraPairAnnotation/test/{stem}.json",
                              _dumps(_pair_json(pid, cat, src, trg, A, B, uids, A.unseen, B.unseen)))
        pair_counts[split] = len(stems)
        layout = "".join(f"{s}\n" for s in stems).encode("utf-8")
        write(f"Layout/large/{split}.txt", layout)
        write(f"Layout/small/{split}.txt", layout)

    digest = hashlib.sha256()
    for rel in sorted(files):
        data = files[rel]
        digest.update(rel.encode("utf-8") + b"\0" + str(len(data)).encode("ascii") + b"\0")
        digest.update(data)
    manifest = {
        "name": "synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "arguments": {
            "images_per_category": n_images,
            "pairs_per_category": {sp: pairs_wanted[sp] for sp in SPLITS},
        },
        "categories": {
            cat: {"id": ci + 1, "keypoints": list(_KEYPOINTS[cat][0]), "unseen": list(_KEYPOINTS[cat][1])}
            for ci, cat in enumerate(CATEGORIES)
        },
        "splits": {sp: {cat: list(split_images[sp].get(cat, [])) for cat in CATEGORIES} for sp in SPLITS},
        "images": manifest_images,
        "counts": {
            "images": n_images * len(CATEGORIES),
            "pairs": pair_counts,
            "pairs_requested": {sp: pairs_wanted[sp] * len(CATEGORIES) for sp in SPLITS},
            "extra_pairs": extra_count,
            "files": len(files),
        },
        "sha256": digest.hexdigest(),
    }
    write(MANIFEST_NAME, json.dumps(manifest, sort_keys=False, indent=1).encode("utf-8") + b"\n")
    return manifest
