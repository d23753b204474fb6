"""Synthetic drawn faces whose brows, eyes and mouth follow one of seven expressions.

Used to train the shipped ``face-demo`` bundle and to test the face path without
photographs. They are cartoons: a model trained on them shows the pipeline working and
nothing about real faces (every bundle trained on them says ``synthetic_data: true``).

Each face is drawn on a grey-level scene (``[H, W, 3]`` uint8 BGR) with a random
background, lighting gradient, skin tone, hair, size, position, in-plane rotation,
blur and sensor noise. The expression sets continuous shape parameters (brow tilt and
height, eye opening, mouth curve, opening and width) around a per-class prototype with
random spread, so neighbouring classes overlap a little, as real ones do.
:func:`draw_scene` returns the scene with the face's box in the convention of OpenCV's
frontal-face Haar cascade (a square from the brows to below the mouth), so training
crops are cut exactly as the runtime cuts detector boxes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemer.errors import ConfigError
from edgemer.frontends.face import EXPRESSIONS
from edgemer.frontends.face_detector import load_cv2

# Per-expression prototypes: brow_tilt (inner ends down > 0), brow_raise, eye_open,
# mouth_curve (smile > 0), mouth_open, mouth_width, sneer (one-sided upper-lip raise).
_PROTOTYPES: dict[str, tuple[float, ...]] = {
    "angry":    (0.45, -0.12, 0.55, -0.10, 0.05, 0.80, 0.0),
    "disgust":  (0.25, -0.05, 0.45, -0.20, 0.12, 0.85, 1.0),
    "fear":     (-0.35, 0.22, 1.45, -0.12, 0.40, 1.20, 0.0),
    "happy":    (0.00, 0.05, 0.55, 0.55, 0.22, 1.30, 0.0),
    "sad":      (-0.40, 0.05, 0.70, -0.45, 0.00, 0.90, 0.0),
    "surprise": (0.00, 0.40, 1.60, 0.00, 0.85, 0.65, 0.0),
    "neutral":  (0.00, 0.00, 1.00, 0.00, 0.00, 1.00, 0.0),
}
_SPREAD = (0.12, 0.07, 0.15, 0.10, 0.08, 0.10, 0.25)


@dataclass(frozen=True)
class SynthOptions:
    """Scene and variation ranges for :func:`draw_scene`.

    size: scene ``(width, height)``, pixels. face_px: range of the face box side, pixels.
    max_roll_deg: largest in-plane head rotation, degrees. spread: multiplier of the
    per-class shape variation (0 = prototypes only). noise: sensor noise std, grey levels.
    supersample: drawing scale before shrinking to ``size`` (smoother edges, slower), 1..8.
    """

    size: tuple[int, int] = (640, 480)
    face_px: tuple[int, int] = (110, 240)
    max_roll_deg: float = 8.0
    spread: float = 1.0
    noise: float = 4.0
    supersample: int = 4

    def __post_init__(self) -> None:
        w, h = self.size
        lo, hi = self.face_px
        if w < 64 or h < 64:
            raise ConfigError(f"SynthOptions.size must be at least 64x64 px, got {self.size}")
        if not 24 <= lo <= hi <= 0.8 * min(w, h):
            raise ConfigError(f"SynthOptions.face_px must satisfy 24 <= min <= max <= 0.8 * min(size), got {self.face_px}")
        if not 0 <= self.max_roll_deg <= 45:
            raise ConfigError(f"SynthOptions.max_roll_deg must be in [0, 45] degrees, got {self.max_roll_deg}")
        if not 1 <= self.supersample <= 8:
            raise ConfigError(f"SynthOptions.supersample must be in 1..8, got {self.supersample}")
        if self.spread < 0 or self.noise < 0:
            raise ConfigError("SynthOptions.spread and noise must be >= 0")


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    base = rng.uniform(40, 200)
    gx, gy = rng.uniform(-60, 60, size=2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = base + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    coarse = rng.normal(0, rng.uniform(5, 25), size=(h // 32 + 2, w // 32 + 2)).astype(np.float32)
    cv2 = load_cv2()
    img += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return img


def _shape_params(expression: str, rng: np.random.Generator, spread: float) -> np.ndarray:
    proto = np.asarray(_PROTOTYPES[expression], np.float64)
    return proto + rng.normal(0, 1, size=proto.size) * np.asarray(_SPREAD) * spread


def draw_scene(expression: str, rng: np.random.Generator, options: SynthOptions = SynthOptions()
               ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """One scene with one drawn face.

    Returns ``(image [H, W, 3] uint8 BGR, box (x, y, w, h) px)``; the box follows the
    Haar cascade's framing of a face (brows to below the mouth, square).
    """
    if expression not in _PROTOTYPES:
        raise ConfigError(f"unknown expression {expression!r}; choose one of {EXPRESSIONS}")
    cv2 = load_cv2("Drawing synthetic faces")
    w, h = options.size
    brow_tilt, brow_raise, eye_open, curve, mouth_open, mouth_w, sneer = _shape_params(expression, rng,
                                                                                         options.spread)
    eye_open = max(0.15, eye_open)
    mouth_open = max(0.0, mouth_open)
    side = rng.uniform(*options.face_px)  # side of the face box a Haar cascade would report
    a = side * 0.40  # face half-width
    b = a * rng.uniform(1.25, 1.4)  # face half-height
    margin = a * 1.5
    cx = rng.uniform(margin, max(margin + 1, w - margin))
    cy = rng.uniform(b * 1.1, max(b * 1.1 + 1, h - b * 1.1))
    k = options.supersample  # draw at k x the size, then shrink: smooth edges
    big = cv2.resize(_background(rng, w, h), (w * k, h * k), interpolation=cv2.INTER_LINEAR)
    S = float(k)

    def P(x: float, y: float) -> tuple[int, int]:
        return int(round(x * S)), int(round(y * S))

    def L(v: float) -> int:
        return max(1, int(round(v * S)))

    skin = rng.uniform(120, 215)
    hair = rng.uniform(10, max(12, skin - 70))
    dark = max(0.0, skin - rng.uniform(95, 130))
    # neck and face
    cv2.rectangle(big, P(cx - 0.45 * a, cy + 0.7 * b), P(cx + 0.45 * a, h + 10), skin * 0.85, -1, cv2.LINE_AA)
    cv2.ellipse(big, P(cx, cy), (L(a), L(b)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    # hair cap
    if rng.random() < 0.85:
        cv2.ellipse(big, P(cx, cy - 0.45 * b), (L(a * 1.06), L(b * 0.62)), 0, 180, 360, hair, -1, cv2.LINE_AA)
    # soft shading: eye sockets darker, nose bridge lighter (what a frontal-face detector keys on)
    eye_y = cy - 0.18 * b
    ex = 0.40 * a
    for sgn in (-1, 1):
        cv2.ellipse(big, P(cx + sgn * ex, eye_y), (L(0.28 * a), L(0.19 * a)), 0, 0, 360, skin * 0.62, -1,
                    cv2.LINE_AA)
    cv2.rectangle(big, P(cx - 0.07 * a, eye_y - 0.2 * a), P(cx + 0.07 * a, cy + 0.2 * b), min(255, skin * 1.08), -1,
                  cv2.LINE_AA)
    # eyes: white, iris, pupil, lids
    open_px = 0.085 * a * eye_open
    for sgn in (-1, 1):
        c = (cx + sgn * ex, eye_y)
        cv2.ellipse(big, P(*c), (L(0.16 * a), L(open_px)), 0, 0, 360, min(255, skin + 40), -1, cv2.LINE_AA)
        cv2.circle(big, P(*c), L(min(0.075 * a, open_px * 1.05)), dark + 25, -1, cv2.LINE_AA)
        cv2.circle(big, P(*c), L(min(0.035 * a, open_px * 0.6)), dark, -1, cv2.LINE_AA)
        cv2.ellipse(big, P(*c), (L(0.17 * a), L(open_px + 0.01 * a)), 0, 180, 360, dark + 10, L(0.025 * a),
                    cv2.LINE_AA)
    # brows: inner end lowered by brow_tilt, both raised by brow_raise
    brow_y = eye_y - 0.27 * a - brow_raise * 0.35 * a
    for sgn in (-1, 1):
        inner = (cx + sgn * 0.14 * a, brow_y + brow_tilt * 0.22 * a)
        outer = (cx + sgn * 0.62 * a, brow_y - brow_tilt * 0.10 * a)
        mid = ((inner[0] + outer[0]) / 2, (inner[1] + outer[1]) / 2 - 0.05 * a * (1 + brow_raise))
        pts = np.array([P(*inner), P(*mid), P(*outer)], np.int32)
        cv2.polylines(big, [pts], False, hair * 0.8, L(0.07 * a), cv2.LINE_AA)
    # nose
    nose_y = cy + 0.22 * b
    cv2.line(big, P(cx - 0.02 * a, eye_y + 0.1 * a), P(cx - 0.08 * a, nose_y), skin * 0.78, L(0.03 * a), cv2.LINE_AA)
    for sgn in (-1, 1):
        cv2.circle(big, P(cx + sgn * 0.1 * a, nose_y + 0.02 * a), L(0.035 * a), skin * 0.55, -1, cv2.LINE_AA)
    if sneer > 0.5:  # disgust: nose wrinkles
        for dy in (0.0, 0.06):
            cv2.line(big, P(cx - 0.18 * a, eye_y + (0.18 + dy) * a), P(cx - 0.06 * a, eye_y + (0.22 + dy) * a),
                     skin * 0.7, L(0.02 * a), cv2.LINE_AA)
    # mouth: a curve (smile > 0) with an optional dark opening
    mouth_y = cy + 0.52 * b
    half = 0.28 * a * mouth_w
    n = 24
    xs = np.linspace(-1, 1, n)
    lift = sneer * 0.06 * a * np.clip(-xs, 0, 1)  # one-sided upper-lip raise
    upper = mouth_y - curve * 0.16 * a * (xs ** 2) - lift
    lower = upper + mouth_open * 0.32 * a * (1 - xs ** 2) ** 0.6
    upper_pts = np.array([P(cx + x * half, y) for x, y in zip(xs, upper)], np.int32)
    lower_pts = np.array([P(cx + x * half, y) for x, y in zip(xs, lower)], np.int32)
    lip = skin * rng.uniform(0.55, 0.7)
    if mouth_open > 0.06:
        poly = np.concatenate([upper_pts, lower_pts[::-1]])
        cv2.fillPoly(big, [poly], dark, cv2.LINE_AA)
        if expression in ("happy", "angry") and mouth_open > 0.1:  # teeth
            teeth = np.concatenate([upper_pts, (upper_pts + lower_pts)[::-1] // 2])
            cv2.fillPoly(big, [teeth], min(255, skin + 30), cv2.LINE_AA)
    cv2.polylines(big, [upper_pts], False, lip, L(0.045 * a), cv2.LINE_AA)
    if mouth_open > 0.06:
        cv2.polylines(big, [lower_pts], False, lip, L(0.045 * a), cv2.LINE_AA)
    # whole head roll, then back to size, blur and noise
    roll = rng.uniform(-options.max_roll_deg, options.max_roll_deg)
    m = cv2.getRotationMatrix2D(P(cx, cy), roll, 1.0)
    big = cv2.warpAffine(big, m, (w * k, h * k), borderMode=cv2.BORDER_REFLECT)
    img = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img + rng.normal(0, options.noise, size=img.shape).astype(np.float32)
    grey = np.clip(img, 0, 255).astype(np.uint8)
    # Haar framing (measured on these drawings): a square of side `side` centred on the
    # face's midline 0.13 * side below the eyes; it turns with the head about the face centre
    bx, by = cx, eye_y + 0.13 * side
    t = math.radians(roll)
    dx, dy = bx - cx, by - cy
    rx, ry = cx + dx * math.cos(t) + dy * math.sin(t), cy - dx * math.sin(t) + dy * math.cos(t)
    box = (rx - side / 2, ry - side / 2, side, side)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), box


def synth_scenes(n: int, seed: int = 0, options: SynthOptions = SynthOptions()
                 ) -> tuple[list[np.ndarray], list[tuple[float, float, float, float]], np.ndarray]:
    """``n`` scenes with balanced expressions: ``(images, boxes, labels [n] int64)`` (label = index in EXPRESSIONS)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(EXPRESSIONS)
    rng.shuffle(labels)
    images, boxes = [], []
    for lab in labels:
        img, box = draw_scene(EXPRESSIONS[int(lab)], rng, options)
        images.append(img)
        boxes.append(box)
    return images, boxes, labels.astype(np.int64)


def write_scene_folder(out_dir: str | Path, count: int = 14, seed: int = 0, blank: bool = True,
                       options: SynthOptions = SynthOptions()) -> list[Path]:
    """Write ``count`` drawn-face scenes (``NN_expression.png``) and, with ``blank``, one empty frame.

    Makes a replayable image folder (``--source replay:DIR``). Returns the files written.

    Raises
    ------
    ConfigError: ``out_dir`` exists and is not an empty folder, or ``count`` < 1.
    """
    cv2 = load_cv2("Writing synthetic face scenes")
    if count < 1:
        raise ConfigError(f"count must be >= 1, got {count}")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not an empty folder; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        expression = EXPRESSIONS[i % len(EXPRESSIONS)]
        img, _ = draw_scene(expression, rng, options)
        f = out / f"{i:03d}_{expression}.png"
        cv2.imwrite(str(f), img)
        files.append(f)
    if blank:
        f = out / f"{count:03d}_blank.png"
        w, h = options.size
        cv2.imwrite(str(f), np.full((h, w, 3), 128, np.uint8))
        files.append(f)
    return files
