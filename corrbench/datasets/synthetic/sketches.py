"""What the synthetic images show: procedural materials, the canonical-frame geometry, and the five categories.

What is drawn. Five categories of articulated 2-D objects (``CATEGORIES``), each a small kinematic tree of
parts (ellipses, tapered capsules, polygons) posed with random proportions and joint angles, painted with
per-instance colours and textures (stripes, checker, spots, value noise), then placed with a random scale,
in-plane rotation (+-35 degrees), horizontal mirror and position on a textured, cluttered background.
Some clutter is drawn in front of the object, and some objects are cut by the image border, so keypoints
go missing as they do in real photographs. Shapes are rasterised into a label map at 2x resolution; each
output pixel mixes the textures of its four sub-pixels' labels (antialiased edges), and the segmentation
keeps the pixels at least half covered by the object.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

# ----------------------------------------------------------------------------------------------------------
# Materials (procedural textures)


@dataclass(frozen=True, eq=False)
class Material:
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
         period: float = 0.1, grain: float = 0.14) -> Material:
    if c2 is None:
        c2 = c1 * np.float32(rng.uniform(0.5, 0.8))
    return Material(kind, np.asarray(c1, np.float32), np.asarray(c2, np.float32), float(period),
                     float(rng.uniform(0, math.pi)), float(rng.uniform(0, 2 * math.pi)), float(grain))


def _random_colour(rng: np.random.Generator, sat=(0.25, 0.95), val=(0.25, 0.95)) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(*sat), rng.uniform(*val))


def clutter_material(rng: np.random.Generator, scale: float) -> Material:
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


def texture(m: Material, rng: np.random.Generator, x0: int, y0: int, h: int, w: int,
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


def unit(deg: float) -> np.ndarray:
    r = math.radians(deg)
    return np.array([math.cos(r), math.sin(r)])


def perp_up(d: np.ndarray) -> np.ndarray:
    """``d`` turned 90 degrees towards -y (up on screen when ``d`` points right)."""
    return np.array([d[1], -d[0]])


def ellipse(c, rx: float, ry: float, deg: float = 0.0, n: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    pts = np.stack([rx * np.cos(t), ry * np.sin(t)], 1)
    r = math.radians(deg)
    rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    return pts @ rot.T + np.asarray(c, float)


def capsule(p0, p1, r0: float, r1: float, n: int = 8) -> np.ndarray:
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


def polygon(*pts) -> np.ndarray:
    return np.asarray(pts, float)


class Sketch:
    """Parts in drawing order, keypoints with the parts that must show at them, and materials."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, np.ndarray, str, float]] = []
        self.kps: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
        self.materials: dict[str, Material] = {}

    def part(self, name: str, poly: np.ndarray, material: str, shade: float = 1.0) -> None:
        self.parts.append((name, np.asarray(poly, float), material, shade))

    def kp(self, name: str, point, *owners: str) -> None:
        self.kps[name] = (np.asarray(point, float), owners)


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def pick(rng: np.random.Generator, options, weights=None):
    if weights is None:
        return options[int(rng.integers(len(options)))]
    w = np.asarray(weights, float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


# ----------------------------------------------------------------------------------------------------------
# Categories


def _build_quadruped(rng: np.random.Generator) -> Sketch:
    sk = Sketch()
    hue = pick(rng, [0.06, 0.08, 0.1, 0.04, 0.12])
    fur = _hsv(hue + uniform(rng, -0.02, 0.02), uniform(rng, 0.0, 0.8), uniform(rng, 0.2, 0.95))
    fur2 = _hsv(hue + uniform(rng, -0.03, 0.03), uniform(rng, 0.0, 0.7), uniform(rng, 0.1, 0.95))
    kind = pick(rng, ["solid", "stripes", "spots", "noise"], [0.35, 0.2, 0.25, 0.2])
    sk.materials["fur"] = _mat(rng, kind, fur, fur2, period=uniform(rng, 0.07, 0.16))
    socks = rng.random() < 0.35
    sk.materials["paw"] = _mat(rng, "solid", _hsv(0.1, 0.05, 0.95) if socks else fur * 0.9, grain=0.1)
    sk.materials["dark"] = _mat(rng, "solid", _hsv(0.0, uniform(rng, 0, 0.5), uniform(rng, 0.05, 0.25)), grain=0.05)
    sk.materials["nose"] = _mat(rng, "solid", _hsv(0.98, uniform(rng, 0.2, 0.6), uniform(rng, 0.15, 0.6)), grain=0.05)

    bl = uniform(rng, 0.9, 1.1)
    bh = uniform(rng, 0.3, 0.44)
    rx, ry = bl / 2, bh / 2
    leg = uniform(rng, 0.42, 0.68)
    leg_r = uniform(rng, 0.045, 0.065)
    hs = uniform(rng, 0.15, 0.22)

    def add_leg(prefix: str, attach, a_up: float, bend: float, front: bool, shade: float) -> dict:
        d1 = 90.0 - a_up
        knee = attach + leg * 0.5 * unit(d1)
        d2 = d1 + bend if front else d1 - bend
        paw = knee + leg * 0.5 * unit(d2)
        upper_r = leg_r * (1.3 if front else 1.9)
        sk.part(prefix + "upper", capsule(attach, knee, upper_r, leg_r), "fur", shade)
        sk.part(prefix + "lower", capsule(knee, paw, leg_r, leg_r * 0.8), "fur", shade)
        sk.part(prefix + "paw", ellipse(paw + np.array([leg_r * 0.5, 0]), leg_r * 1.5, leg_r * 0.9), "paw", shade)
        return {"knee": knee, "paw": paw}

    fa = np.array([rx * 0.62, ry * 0.35])
    ha = np.array([-rx * 0.62, ry * 0.3])
    far = np.array([0.06, -0.04])
    legs = {}
    legs["fr"] = add_leg("fr_", fa + far, uniform(rng, -30, 35), uniform(rng, 0, 50), True, 0.7)
    legs["br"] = add_leg("br_", ha + far, uniform(rng, -35, 30), uniform(rng, 0, 45), False, 0.7)

    # head geometry first (the far ear is drawn before the head)
    neck0 = np.array([rx * 0.72, -ry * 0.35])
    neck_dir = unit(-uniform(rng, 25, 70))
    neck_len = uniform(rng, 0.14, 0.28)
    head_c = neck0 + neck_dir * neck_len
    head_deg = uniform(rng, -25, 35)
    hd = unit(head_deg)
    up = perp_up(hd)
    ear_len = uniform(rng, 0.07, 0.16)
    ear_deg = -90 + head_deg + uniform(rng, -35, 15)

    def ear(base, deg):
        e = unit(deg)
        side = perp_up(e)
        tip = base + e * ear_len
        return polygon(base + side * hs * 0.2, tip, base - side * hs * 0.2), base + e * ear_len * 0.78

    far_ear, far_tip = ear(head_c - hd * hs * 0.32 + up * hs * 0.3, ear_deg - 8)
    sk.part("ear_r", far_ear, "fur", 0.72)

    # tail (drawn before the body so that its base tucks under)
    t0 = np.array([-rx * 0.9, -ry * 0.3])
    tail_len = uniform(rng, 0.3, 0.6)
    tr = uniform(rng, 0.035, 0.065)
    deg = 180 + uniform(rng, -15, 60)
    pts = [t0]
    for _ in range(3):
        pts.append(pts[-1] + unit(deg) * tail_len / 3)
        deg += uniform(rng, -25, 25)
    radii = [tr, tr * 0.8, tr * 0.6, tr * 0.4]
    for i in range(3):
        sk.part(f"tail{i + 1}", capsule(pts[i], pts[i + 1], radii[i], radii[i + 1]), "fur")

    sk.part("body", ellipse((0, 0), rx, ry), "fur")
    sk.part("haunch", ellipse((-rx * 0.52, ry * 0.1), rx * 0.42, ry * 1.02, uniform(rng, -15, 15)), "fur")
    sk.part("neck", capsule(neck0, head_c, ry * 0.55, hs * 0.45), "fur")
    sk.part("head", ellipse(head_c, hs * 0.62, hs * 0.48, head_deg), "fur")
    snout_end = head_c + hd * hs * 0.75
    sk.part("snout", capsule(head_c, snout_end, hs * 0.3, hs * 0.2), "fur")
    nose_c = snout_end + hd * hs * 0.1
    sk.part("nose", ellipse(nose_c, hs * 0.13, hs * 0.1, head_deg), "nose")
    eye_c = head_c + hd * hs * 0.12 + up * hs * 0.2
    sk.part("eye", ellipse(eye_c, hs * 0.09, hs * 0.07, head_deg), "dark")
    near_ear, near_tip = ear(head_c - hd * hs * 0.12 + up * hs * 0.32, ear_deg)
    sk.part("ear_l", near_ear, "fur", 1.08)
    legs["fl"] = add_leg("fl_", fa, uniform(rng, -30, 35), uniform(rng, 0, 50), True, 1.0)
    legs["bl"] = add_leg("bl_", ha, uniform(rng, -35, 30), uniform(rng, 0, 45), False, 1.0)

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


def _build_bird(rng: np.random.Generator) -> Sketch:
    sk = Sketch()
    plum = _random_colour(rng, (0.2, 0.9), (0.3, 0.95))
    sk.materials["body"] = _mat(rng, pick(rng, ["solid", "noise", "spots"], [0.5, 0.3, 0.2]), plum,
                                period=uniform(rng, 0.06, 0.14))
    wing = _random_colour(rng, (0.2, 0.9), (0.15, 0.8)) if rng.random() < 0.6 else plum * 0.7
    sk.materials["wing"] = _mat(rng, pick(rng, ["stripes", "solid", "noise"]), wing,
                                wing * np.float32(uniform(rng, 0.4, 0.75)), period=uniform(rng, 0.05, 0.1))
    head_col = _random_colour(rng, (0.3, 1.0), (0.2, 0.95)) if rng.random() < 0.5 else plum
    sk.materials["head"] = _mat(rng, "solid", head_col, grain=0.1)
    sk.materials["beak"] = _mat(rng, "gradient", pick(rng, [_hsv(0.12, 0.9, 0.95), _hsv(0.07, 0.8, 0.9),
                                                              _hsv(0.0, 0.0, 0.15), _hsv(0.1, 0.2, 0.6)]),
                                period=0.05, grain=0.05)
    sk.materials["leg"] = _mat(rng, "solid", pick(rng, [_hsv(0.08, 0.7, 0.8), _hsv(0.0, 0.0, 0.35),
                                                         _hsv(0.98, 0.35, 0.75)]), grain=0.05)
    sk.materials["eye"] = _mat(rng, "solid", _hsv(0.0, 0.0, 0.05), grain=0.02)

    rx, ry = uniform(rng, 0.32, 0.42), uniform(rng, 0.18, 0.26)
    bt = uniform(rng, -35, 5)
    db = unit(bt)
    up = perp_up(db)
    down = -up
    hr = uniform(rng, 0.11, 0.16)
    leg_l = uniform(rng, 0.25, 0.42)

    def wing_geom(shoulder, raise_: float, shade: float, prefix: str):
        folded = 180 + bt + 8
        aw = folded + raise_ * (250 - folded)
        wl = wing_len
        wrist = shoulder + unit(aw) * wl * 0.42
        bend = uniform(rng, -15, 20) * (1 - raise_) + uniform(rng, -10, 35) * raise_
        tip = wrist + unit(aw + bend) * wl * 0.68
        sk.part(prefix + "arm", capsule(shoulder, wrist, ry * 0.55, ry * 0.42), "wing", shade)
        sk.part(prefix + "hand", capsule(wrist, tip, ry * 0.42, 0.02), "wing", shade)
        return wrist, tip

    wing_len = uniform(rng, 0.5, 0.78)
    raised = rng.random() < 0.45
    raise_l = uniform(rng, 0.4, 1.0) if raised else uniform(rng, 0.0, 0.12)
    raise_r = min(1.0, raise_l + uniform(rng, -0.05, 0.15))
    shoulder = db * rx * 0.3 + up * ry * 0.4
    _, r_tip = wing_geom(shoulder + np.array([0.05, -0.03]), raise_r, 0.7, "r_")

    def add_leg(hip, shade, prefix):
        knee = hip + unit(90 + uniform(rng, -25, 25)) * leg_l * 0.5
        foot = knee + unit(90 + uniform(rng, -20, 20)) * leg_l * 0.5
        sk.part(prefix + "thigh", capsule(hip, knee, 0.05, 0.022), "body", shade)
        sk.part(prefix + "shank", capsule(knee, foot, 0.02, 0.018), "leg", shade)
        toe_a = uniform(rng, -15, 15)
        sk.part(prefix + "toes", np.concatenate([
            capsule(foot, foot + unit(toe_a) * 0.09, 0.016, 0.01, 5),
            capsule(foot, foot + unit(toe_a + 180) * 0.05, 0.016, 0.01, 5)]), "leg", shade)
        return knee, foot

    hip = db * rx * 0.1 + down * ry * 0.65
    _, r_foot = add_leg(hip + np.array([0.06, -0.02]), 0.7, "r_")
    l_knee, l_foot = add_leg(hip, 1.0, "l_")

    tail0 = -db * rx * 0.8
    ta = 180 + bt + uniform(rng, -20, 25)
    td = unit(ta)
    tl = uniform(rng, 0.22, 0.4)
    tw0, tw1 = ry * 0.3, uniform(rng, 0.07, 0.14)
    tp = perp_up(td)
    sk.part("tail", polygon(tail0 + tp * tw0, tail0 + td * tl + tp * tw1, tail0 + td * tl * 1.04,
                          tail0 + td * tl - tp * tw1, tail0 - tp * tw0), "wing")
    sk.part("body", ellipse((0, 0), rx, ry, bt), "body")

    head_c = db * rx * 0.8 + up * (ry * 0.75 + hr * uniform(rng, 0.3, 1.0))
    head_deg = uniform(rng, -25, 25)
    dh = unit(head_deg)
    uh = perp_up(dh)
    sk.part("neck", capsule(db * rx * 0.6 + up * ry * 0.2, head_c, ry * 0.6, hr * 0.8), "body")
    sk.part("head", ellipse(head_c, hr, hr * uniform(rng, 0.85, 1.0), head_deg), "head")
    if rng.random() < 0.3:
        c0 = head_c + uh * hr * 0.7 - dh * hr * 0.2
        sk.part("crest", polygon(c0 + dh * hr * 0.35, c0 - dh * hr * 0.7 + uh * hr * uniform(rng, 0.5, 0.9),
                               c0 - dh * hr * 0.4), "head", 0.85)
    bk = uniform(rng, 0.08, 0.24)
    b0 = head_c + dh * hr * 0.75
    bw = hr * uniform(rng, 0.28, 0.4)
    sk.part("beak", polygon(b0 + uh * bw, b0 + dh * bk, b0 - uh * bw * 0.8), "beak")
    eye_c = head_c + dh * hr * 0.3 + uh * hr * 0.22
    sk.part("eye", ellipse(eye_c, hr * 0.16, hr * 0.16), "eye")
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


def _build_biped(rng: np.random.Generator) -> Sketch:
    sk = Sketch()
    skin = _hsv(uniform(rng, 0.04, 0.1), uniform(rng, 0.25, 0.6), uniform(rng, 0.35, 0.95))
    sk.materials["skin"] = _mat(rng, "solid", skin, grain=0.06)
    shirt = _random_colour(rng, (0.2, 0.9), (0.3, 0.95))
    sk.materials["shirt"] = _mat(rng, pick(rng, ["solid", "stripes", "checker", "noise"], [0.35, 0.3, 0.2, 0.15]),
                                 shirt, _random_colour(rng, (0.0, 0.8), (0.2, 0.95)), period=uniform(rng, 0.05, 0.1))
    trou = pick(rng, [_hsv(0.6, 0.6, 0.45), _hsv(0.6, 0.3, 0.2), _hsv(0.11, 0.35, 0.6), _hsv(0, 0, 0.35),
                       _random_colour(rng)])
    sk.materials["trousers"] = _mat(rng, pick(rng, ["solid", "noise"]), trou, period=0.05)
    shoe = _hsv(uniform(rng, 0, 1), uniform(rng, 0, 0.5), uniform(rng, 0.05, 0.5))
    sk.materials["shoe"] = _mat(rng, "solid", shoe, grain=0.05)
    hair = pick(rng, [_hsv(0.08, 0.6, 0.15), _hsv(0.08, 0.7, 0.4), _hsv(0.12, 0.6, 0.85), _hsv(0, 0, 0.6),
                       _hsv(0.04, 0.8, 0.6)])
    sk.materials["hair"] = _mat(rng, "noise", hair, period=0.03)
    sk.materials["dark"] = _mat(rng, "solid", _hsv(0, 0, 0.08), grain=0.02)
    sleeve = "shirt" if rng.random() < 0.5 else "skin"

    lean = uniform(rng, -10, 10)
    dup = unit(-90 + lean)
    dr = unit(lean)  # towards the figure's left (+x)
    sw, hw, tl = uniform(rng, 0.34, 0.48), uniform(rng, 0.24, 0.34), uniform(rng, 0.5, 0.62)
    pelvis = np.zeros(2)
    neck = pelvis + dup * tl
    shoulders = {s: neck + dr * s * sw / 2 - dup * 0.04 for s in (1, -1)}
    hips = {s: pelvis + dr * s * hw * 0.36 for s in (1, -1)}

    legs = {}
    for s in (1, -1):
        a1 = 90 - s * uniform(rng, -5, 30) + lean
        knee = hips[s] + unit(a1) * uniform(rng, 0.3, 0.4)
        a2 = a1 + s * uniform(rng, -25, 12)
        foot = knee + unit(a2) * uniform(rng, 0.3, 0.38)
        name = "l_" if s == 1 else "r_"
        sk.part(name + "thigh", capsule(hips[s], knee, 0.07, 0.055), "trousers")
        sk.part(name + "shin", capsule(knee, foot, 0.055, 0.045), "trousers")
        sk.part(name + "shoe", ellipse(foot + dr * s * 0.035 + dup * 0.0, 0.075, 0.04, lean), "shoe")
        legs[s] = (knee, foot)

    m = 0.035
    sk.part("torso", polygon(shoulders[1] + dr * m + dup * m, shoulders[-1] - dr * m + dup * m,
                           pelvis - dr * (hw / 2 + 0.01) + dup * 0.12, pelvis - dr * (hw / 2) - dup * 0.02,
                           pelvis + dr * (hw / 2) - dup * 0.02, pelvis + dr * (hw / 2 + 0.01) + dup * 0.12), "shirt")
    sk.part("pelvis", polygon(pelvis - dr * (hw / 2 + 0.012) + dup * 0.1, pelvis + dr * (hw / 2 + 0.012) + dup * 0.1,
                            pelvis + dr * (hw / 2 + 0.01) - dup * 0.08, pelvis - dr * (hw / 2 + 0.01) - dup * 0.08),
            "trousers", 0.95)
    nl = uniform(rng, 0.05, 0.09)
    hr = uniform(rng, 0.1, 0.14)
    sk.part("neck", capsule(neck, neck + dup * (nl + hr * 0.3), 0.045, 0.045), "skin")
    tilt = lean + uniform(rng, -15, 15)
    hup = unit(-90 + tilt)
    hri = unit(tilt)
    head_c = neck + dup * (nl + hr * 0.9)
    sk.part("head", ellipse(head_c, hr * 0.85, hr, tilt), "skin")
    if rng.random() < 0.8:
        t = np.linspace(math.pi * 1.05, math.pi * 1.95, 12)
        arc = np.stack([np.cos(t) * hr * 0.95, np.sin(t) * hr * uniform(rng, 1.05, 1.3)], 1)
        rot = np.stack([hri, -hup], 1)  # columns: local x -> hri, local y (down) -> -hup
        hair = arc @ rot.T + head_c + hup * hr * 0.05
        sk.part("hair", np.concatenate([hair, (head_c + hup * hr * 0.35)[None]]), "hair")
    for s in (1, -1):
        sk.part(f"eye{s}", ellipse(head_c + hri * s * hr * 0.35 + hup * hr * 0.1, hr * 0.1, hr * 0.12, tilt), "dark")

    arms = {}
    for s in (1, -1):
        a1 = 90 - s * uniform(rng, 5, 160) + lean
        elbow = shoulders[s] + unit(a1) * uniform(rng, 0.2, 0.27)
        a2 = a1 + uniform(rng, 0, 120) * (1 if rng.random() < 0.5 else -1)
        hand = elbow + unit(a2) * uniform(rng, 0.2, 0.26)
        name = "l_" if s == 1 else "r_"
        sk.part(name + "upper", capsule(shoulders[s], elbow, 0.05, 0.042), sleeve)
        sk.part(name + "lower", capsule(elbow, hand, 0.042, 0.034), "skin")
        sk.part(name + "hand", ellipse(hand, 0.048, 0.048), "skin", 0.95)
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


def _build_lamp(rng: np.random.Generator) -> Sketch:
    sk = Sketch()
    paint = _random_colour(rng, (0.3, 0.95), (0.3, 0.95))
    sk.materials["paint"] = _mat(rng, pick(rng, ["gradient", "solid"]), paint, paint * 0.6, period=0.15, grain=0.06)
    base_col = paint if rng.random() < 0.5 else _random_colour(rng, (0.0, 0.5), (0.1, 0.7))
    sk.materials["base"] = _mat(rng, pick(rng, ["gradient", "solid", "noise"]), base_col, base_col * 0.6,
                                period=0.1, grain=0.08)
    sk.materials["metal"] = _mat(rng, "gradient", _hsv(0.6, 0.05, 0.85), _hsv(0.6, 0.08, 0.45), period=0.03,
                                 grain=0.04)
    sk.materials["bulb"] = _mat(rng, "solid", _hsv(0.14, uniform(rng, 0.1, 0.5), 1.0), grain=0.03)
    sk.materials["dark"] = _mat(rng, "solid", _hsv(0, 0, 0.08), grain=0.03)
    sk.materials["switch"] = _mat(rng, "solid", _random_colour(rng, (0.6, 1.0), (0.5, 1.0)), grain=0.03)

    bw, bh = uniform(rng, 0.4, 0.65), uniform(rng, 0.07, 0.13)
    j0 = np.array([uniform(rng, -0.15, 0.05) * bw, 0.0])
    jr = uniform(rng, 0.04, 0.06)
    a1 = -90 + uniform(rng, -35, 30)
    elbow = j0 + unit(a1) * uniform(rng, 0.4, 0.6)
    a2 = a1 + uniform(rng, 50, 150)
    head = elbow + unit(a2) * uniform(rng, 0.35, 0.55)
    d3 = unit(uniform(rng, 10, 120))
    p3 = perp_up(d3)
    sl, ow, aw = uniform(rng, 0.18, 0.3), uniform(rng, 0.1, 0.16), uniform(rng, 0.03, 0.05)
    arm_r = uniform(rng, 0.016, 0.028)

    cord = [np.array([-bw / 2 + 0.02, bh * 0.6])]
    cdeg = 180 + uniform(rng, -20, 30)
    for _ in range(3):
        cord.append(cord[-1] + unit(cdeg) * uniform(rng, 0.06, 0.12))
        cdeg += uniform(rng, -40, 40)
    for i in range(3):
        sk.part(f"cord{i}", capsule(cord[i], cord[i + 1], 0.009, 0.009, 4), "dark")
    sk.part("base", polygon((-bw / 2, bh), (bw / 2, bh), (bw / 2 * 0.96, bh * 0.3), (bw / 2 * 0.8, 0.0),
                          (-bw / 2 * 0.8, 0.0), (-bw / 2 * 0.96, bh * 0.3)), "base")
    sw = np.array([bw / 2 * 0.55, -0.012])
    sk.part("switch", ellipse(sw, 0.028, 0.022), "switch")
    sk.part("lower_arm", capsule(j0, elbow, arm_r, arm_r), "paint")
    sk.part("upper_arm", capsule(elbow, head, arm_r, arm_r * 0.9), "paint")
    apex = head + d3 * 0.01
    rim = head + d3 * sl
    dome = ellipse(apex, aw * 1.6, aw * 1.3, math.degrees(math.atan2(d3[1], d3[0])), 16)
    sk.part("shade", np.concatenate([polygon(rim + p3 * ow, apex + p3 * aw, apex - p3 * aw, rim - p3 * ow),
                                     ]), "paint", 1.05)
    sk.part("shade_back", dome, "paint", 0.9)
    sk.part("bulb", ellipse(rim + d3 * 0.015, ow * 0.25, ow * 0.6, math.degrees(math.atan2(d3[1], d3[0]))), "bulb")
    sk.part("base_joint", ellipse(j0, jr, jr), "metal")
    sk.part("elbow", ellipse(elbow, jr * 0.8, jr * 0.8), "metal")
    sk.part("head_joint", ellipse(head, jr * 0.7, jr * 0.7), "metal")

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


def _build_vehicle(rng: np.random.Generator) -> Sketch:
    sk = Sketch()
    paint = _random_colour(rng, (0.4, 1.0), (0.3, 0.95))
    kind = pick(rng, ["solid", "gradient", "stripes"], [0.55, 0.3, 0.15])
    sk.materials["paint"] = _mat(rng, kind, paint, paint * 0.55 if kind != "stripes" else _random_colour(rng),
                                 period=uniform(rng, 0.25, 0.5) if kind == "stripes" else 0.3, grain=0.05)
    sk.materials["glass"] = _mat(rng, "gradient", _hsv(0.58, 0.35, 0.5), _hsv(0.6, 0.4, 0.15), period=0.1,
                                 grain=0.05)
    sk.materials["tyre"] = _mat(rng, "noise", _hsv(0, 0, 0.12), _hsv(0, 0, 0.05), period=0.03, grain=0.05)
    sk.materials["hub"] = _mat(rng, "gradient", pick(rng, [_hsv(0.6, 0.05, 0.85), _hsv(0.12, 0.5, 0.8),
                                                            _hsv(0, 0, 0.25)]), _hsv(0.6, 0.05, 0.4), period=0.04,
                               grain=0.04)
    sk.materials["head"] = _mat(rng, "solid", _hsv(0.13, 0.25, 1.0), grain=0.02)
    sk.materials["tail"] = _mat(rng, "solid", _hsv(0.0, 0.9, 0.85), grain=0.02)
    sk.materials["trim"] = _mat(rng, "solid", pick(rng, [_hsv(0, 0, 0.15), _hsv(0, 0, 0.6), paint * 0.8]),
                                grain=0.04)
    sk.materials["dark"] = _mat(rng, "solid", _hsv(0, 0, 0.08), grain=0.02)

    L = 1.0
    wr = uniform(rng, 0.09, 0.13)
    wb = uniform(rng, 0.55, 0.7)
    off = uniform(rng, -0.03, 0.03)
    wf = np.array([wb / 2 + off, 0.0])
    wrr = np.array([-wb / 2 + off, 0.0])
    h1 = uniform(rng, 0.17, 0.26)
    yb = wr * uniform(rng, 0.15, 0.4)
    yt = yb - h1
    h2 = uniform(rng, 0.13, 0.24)
    yr = yt - h2
    x_cr = -L / 2 + uniform(rng, 0.03, 0.25)
    x_cf = L / 2 - uniform(rng, 0.22, 0.38)
    x_rf = x_cf - uniform(rng, 0.1, 0.2)
    x_rr = x_cr + uniform(rng, 0.03, 0.16)
    pitch = uniform(rng, -3, 3)
    c, s = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    R = np.array([[c, -s], [s, c]])

    def body(p) -> np.ndarray:  # body parts pitch about the car's centre (suspension)
        return np.asarray(p, float) @ R.T

    far = np.array([0.05, -0.035])
    for i, w in enumerate((wf, wrr)):
        sk.part(f"far_tyre{i}", ellipse(w + far, wr, wr), "tyre", 0.6)
    ant_a = uniform(rng, -150, -100)
    ant0 = np.array([x_rr + 0.03, yr + 0.01])
    ant1 = ant0 + unit(ant_a) * uniform(rng, 0.08, 0.2)
    sk.part("antenna", body(capsule(ant0, ant1, 0.007, 0.006, 4)), "dark")
    nose_h = uniform(rng, 0.3, 0.6)
    sk.part("body", body(polygon((-L / 2, yb), (L / 2 - 0.02, yb), (L / 2, yb - 0.03), (L / 2, yt + h1 * nose_h),
                               (L / 2 - 0.08, yt), (-L / 2 + 0.04, yt), (-L / 2, yt + 0.04))), "paint")
    sk.part("cabin", body(polygon((x_cf, yt + 0.01), (x_rf, yr), (x_rr, yr), (x_cr, yt + 0.01))), "paint")
    xm = (x_rf + x_rr) / 2
    m = 0.022
    sk.part("win_front", body(polygon((x_cf - m * 1.8, yt), (x_rf - m * 0.3, yr + m), (xm + m * 0.4, yr + m),
                                    (xm + m * 0.4, yt))), "glass")
    sk.part("win_rear", body(polygon((xm - m * 0.4, yt), (xm - m * 0.4, yr + m), (x_rr + m * 0.3, yr + m),
                                   (x_cr + m * 1.8, yt))), "glass")
    handle = np.array([xm + 0.05, yt + h1 * 0.28])
    sk.part("handle", body(ellipse(handle, 0.03, 0.01, 0, 10)), "dark")
    mirror = np.array([x_cf - 0.035, yt - 0.02])
    sk.part("mirror", body(polygon(mirror + (-0.03, -0.022), mirror + (0.02, -0.025), mirror + (0.025, 0.018),
                                 mirror + (-0.025, 0.02))), "paint", 0.8)
    hl = np.array([L / 2 - 0.035, yt + h1 * nose_h * 0.5 + 0.02])
    sk.part("headlight", body(ellipse(hl, 0.032, 0.02, -15, 16)), "head")
    tl = np.array([-L / 2 + 0.022, yt + 0.05])
    sk.part("taillight", body(polygon(tl + (-0.018, -0.022), tl + (0.02, -0.022), tl + (0.02, 0.025),
                                    tl + (-0.018, 0.025))), "tail")
    fb = np.array([L / 2 - 0.025, yb - 0.025])
    rb = np.array([-L / 2 + 0.025, yb - 0.025])
    sk.part("front_bumper", body(capsule(fb - (0.07, 0), fb + (0.012, 0), 0.026, 0.026, 6)), "trim")
    sk.part("rear_bumper", body(capsule(rb + (0.07, 0), rb - (0.012, 0), 0.026, 0.026, 6)), "trim")
    spin = uniform(rng, 0, 360)
    n_spokes = int(rng.integers(3, 7))
    for i, w in enumerate((wf, wrr)):
        sk.part(f"tyre{i}", ellipse(w, wr, wr), "tyre")
        hub_r = wr * uniform(rng, 0.5, 0.65) if i == 0 else wr * 0.58
        sk.part(f"hub{i}", ellipse(w, hub_r, hub_r, 0, 20), "hub")
        for k in range(n_spokes):
            a = spin + k * 360 / n_spokes + i * 17
            sk.part(f"slot{i}_{k}", ellipse(w + unit(a) * hub_r * 0.6, hub_r * 0.22, hub_r * 0.13, a, 10),
                    "dark")
        sk.part(f"cap{i}", ellipse(w, hub_r * 0.25, hub_r * 0.25, 0, 12), "hub", 1.2)

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
    sk.kp("antenna_tip", body(ant1 - unit(ant_a) * 0.006), "antenna")
    sk.kp("door_handle", body(handle), "handle")
    sk.kp("roof_mid", body((xm, yr + 0.006)), "cabin", "win_front", "win_rear")
    sk.kp("hood_mid", body(((x_cf + L / 2) / 2, yt + 0.012)), "body")
    sk.kp("rocker_mid", body(((wf[0] + wrr[0]) / 2, yb - 0.015)), "body")
    return sk


SKETCHES: dict[str, Callable[[np.random.Generator], Sketch]] = {
    "quadruped": _build_quadruped,
    "bird": _build_bird,
    "biped": _build_biped,
    "lamp": _build_lamp,
    "vehicle": _build_vehicle,
}
