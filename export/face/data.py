"""Face expression data: FER2013 CSV, class-per-folder image sets and synthetic drawn faces.

Every loader returns a :class:`FaceDataset` of uint8 face crops already cut and resized
to the model's input (``[n, H, W]`` grey or ``[n, H, W, 3]`` RGB/BGR as the crop says)
with labels in :data:`~edgemer.frontends.face.EXPRESSIONS` order, split into training
and held-out parts.

Data specs (``edgemer export face --data SPEC``):

``fer2013:FILE.csv``
    The FER2013 CSV (``emotion``, ``pixels``, ``Usage`` columns; 48x48 grey, labels
    0..6 in EXPRESSIONS order). ``Training`` rows train, ``PublicTest`` rows are held
    out (``PrivateTest`` too when ``--use-private-test``). Without a ``Usage`` column
    the rows are split at random.
``folder:DIR``
    One sub-folder per class (``DIR/happy/*.jpg`` ...), names such as ``angry``/``anger``,
    ``happy``/``happiness``, ``surprise``/``surprised``; or ``DIR/train/<class>`` and
    ``DIR/test/<class>`` (also ``val``/``validation``), used as the split. Numbered
    class folders need ``label_map``: ``raf-db`` (1 surprise .. 7 neutral) or
    ``affectnet`` (0 neutral .. 6 anger; 7 contempt is skipped). Images should be face
    crops (FER2013/RAF-DB aligned/AffectNet crops); with ``detect_faces`` each image
    goes through the runtime detector and crop instead, and images without a face are
    skipped and counted.
``synthetic[:N]``
    N (default 4200) drawn faces from :mod:`edgemer.export.face.synth`.

Occlusion (:func:`occlude`): the upper face (brows and eyes, as under a VR headset) or
the lower face (nose and mouth, as under a medical mask) is covered with a flat patch;
used for augmentation in training and for the with/without-occlusion accuracy report.

Real photographs (:func:`installed_photographs`, :func:`photo_face_crops`): the
public-domain portraits that scikit-image and matplotlib ship, cut by the runtime
detector and augmented, for checks that need real faces (INT8 vs FP32 agreement of a
model trained on real faces); never for training.
"""
from __future__ import annotations

import csv
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemer.errors import ConfigError, DatasetError
from edgemer.frontends.face import EXPRESSIONS, CropConfig, face_crop
from edgemer.frontends.face_detector import Detection, create_face_detector, load_cv2

log = logging.getLogger(__name__)

LABEL_ALIASES = {
    "angry": 0, "anger": 0, "disgust": 1, "disgusted": 1, "fear": 2, "fearful": 2, "scared": 2,
    "happy": 3, "happiness": 3, "joy": 3, "sad": 4, "sadness": 4, "surprise": 5, "surprised": 5,
    "neutral": 6, "calm": 6,
}
"""Folder name (lower case) -> index in EXPRESSIONS."""

LABEL_MAPS = {
    # RAF-DB basic: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral
    "raf-db": {"1": 5, "2": 2, "3": 1, "4": 3, "5": 4, "6": 0, "7": 6},
    # AffectNet: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt (skipped)
    "affectnet": {"0": 6, "1": 3, "2": 4, "3": 5, "4": 2, "5": 1, "6": 0},
}
"""Numbered class-folder conventions -> index in EXPRESSIONS."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
SPLIT_TRAIN = ("train", "training")
SPLIT_HELDOUT = ("test", "val", "validation", "publictest")
OCCLUSIONS = ("none", "upper", "lower")
UPPER_ROWS = (0.12, 0.52)
LOWER_ROWS = (0.55, 1.0)


@dataclass(frozen=True)
class FaceDataset:
    """Face crops and labels, split for training and held-out verification.

    x_train / x_heldout: uint8 ``[n, H, W]`` (grey) or ``[n, H, W, 3]``.
    y_train / y_heldout: int64 ``[n]`` indices into ``labels``.
    source: what the data is, for the manifest. synthetic: drawn faces, not people.
    info: loader counters (skipped images and why).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray
    source: str
    synthetic: bool = False
    labels: tuple[str, ...] = EXPRESSIONS
    info: dict[str, Any] = field(default_factory=dict)

    def class_counts(self, part: str = "train") -> list[int]:
        y = self.y_train if part == "train" else self.y_heldout
        return np.bincount(y, minlength=len(self.labels)).astype(int).tolist()


def occlude(images: np.ndarray, region: str, fill: np.ndarray | float | None = None,
            rows: tuple[float, float] | None = None) -> np.ndarray:
    """A copy of ``images`` (uint8 ``[n, H, W(, C)]``) with a face region covered.

    region: ``"upper"`` (rows 12-52 % of the crop: brows and eyes), ``"lower"`` (rows
    55-100 %: nose tip, mouth, chin) or ``"none"``. fill: grey level per image ``[n]``
    or one value (default: each image's mean, a flat patch). rows: override the row
    fractions ``(top, bottom)``.
    """
    if region not in OCCLUSIONS:
        raise ConfigError(f"occlusion region must be one of {OCCLUSIONS}, got {region!r}")
    out = np.array(images, copy=True)
    if region == "none" or out.size == 0:
        return out
    top, bottom = rows or (UPPER_ROWS if region == "upper" else LOWER_ROWS)
    h = out.shape[1]
    r0, r1 = int(round(top * h)), int(round(bottom * h))
    if fill is None:
        fill = out.reshape(len(out), -1).mean(axis=1)
    fill = np.broadcast_to(np.asarray(fill, np.float32), (len(out),))
    for i in range(len(out)):
        out[i, r0:r1] = np.uint8(np.clip(fill[i], 0, 255))
    return out


def _to_crop_format(img: np.ndarray, crop: CropConfig) -> np.ndarray:
    """An image (grey or BGR) as the crop's colour and size (whole image resized)."""
    cv2 = load_cv2()
    if crop.colour == "grey":
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    else:
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        if crop.colour == "rgb":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    w, h = crop.size
    if img.shape[1] != w or img.shape[0] != h:
        shrink = img.shape[1] > w
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return img


def _split(n: int, heldout_fraction: float, seed: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random split: indices (train, held out)."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        rng.shuffle(idx)
        k = int(round(len(idx) * heldout_fraction))
        if len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def load_fer2013_csv(path: str | Path, crop: CropConfig = CropConfig(size=(48, 48)), heldout_fraction: float = 0.1,
                     seed: int = 0, use_private_test: bool = False, max_rows: int | None = None) -> FaceDataset:
    """Read the FER2013 CSV (see module docstring) into crops of ``crop``'s size and colour.

    Raises
    ------
    DatasetError: the file is missing, not a FER2013 CSV, or holds no usable row.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; give the FER2013 CSV (fer2013.csv with emotion, pixels, Usage)")
    xs: list[np.ndarray] = []
    ys: list[int] = []
    usage: list[str] = []
    bad = 0
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = [c.strip().lower() for c in (reader.fieldnames or [])]
            if "emotion" not in fields or "pixels" not in fields:
                raise DatasetError(f"{path}: not a FER2013 CSV (columns {reader.fieldnames}; need 'emotion' and "
                                   f"'pixels', optionally 'Usage')")
            for row in reader:
                row = {k.strip().lower(): v for k, v in row.items() if k is not None}
                try:
                    label = int(row["emotion"])
                    pix = np.array(row["pixels"].split(), dtype=np.float32)
                    side = int(round(np.sqrt(pix.size)))
                    if not 0 <= label < len(EXPRESSIONS) or side * side != pix.size or side < 8:
                        raise ValueError
                except (ValueError, AttributeError, KeyError):
                    bad += 1
                    continue
                img = np.clip(pix, 0, 255).astype(np.uint8).reshape(side, side)
                xs.append(_to_crop_format(img, crop))
                ys.append(label)
                usage.append((row.get("usage") or "").strip().lower())
                if max_rows is not None and len(xs) >= max_rows:
                    break
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read the CSV ({exc})") from exc
    if not xs:
        raise DatasetError(f"{path}: no usable row ({bad} malformed); check the file is the FER2013 CSV")
    x, y = np.stack(xs), np.asarray(ys, np.int64)
    u = np.asarray(usage)
    held_names = {"publictest"} | ({"privatetest"} if use_private_test else set())
    if (u == "training").any() and np.isin(u, list(held_names)).any():
        tr, he = np.nonzero(u == "training")[0], np.nonzero(np.isin(u, list(held_names)))[0]
        split = "Usage column (" + ", ".join(sorted(held_names)) + " held out)"
    else:
        tr, he = _split(len(y), heldout_fraction, seed, y)
        split = f"random, {heldout_fraction:.0%} held out (seed {seed})"
    return FaceDataset(x[tr], y[tr], x[he], y[he], source=f"FER2013 CSV '{path.name}' ({len(y)} faces; split: {split})",
                       info={"malformed_rows": bad, "split": split})


def _class_of(name: str, label_map: str | None) -> int | None:
    key = name.strip().lower()
    if label_map is not None:
        if label_map not in LABEL_MAPS:
            raise ConfigError(f"label_map must be one of {sorted(LABEL_MAPS)}, got {label_map!r}")
        if key in LABEL_MAPS[label_map]:
            return LABEL_MAPS[label_map][key]
    return LABEL_ALIASES.get(key)


def _class_dirs(root: Path, label_map: str | None) -> tuple[list[tuple[Path, int]], list[str]]:
    dirs, skipped = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        c = _class_of(d.name, label_map)
        if c is None:
            skipped.append(d.name)
        else:
            dirs.append((d, c))
    return dirs, skipped


def load_image_folder(path: str | Path, crop: CropConfig = CropConfig(size=(48, 48)), heldout_fraction: float = 0.1,
                      seed: int = 0, label_map: str | None = None, detect_faces: bool = False,
                      max_per_class: int | None = None) -> FaceDataset:
    """Read a class-per-folder image set (see module docstring).

    Raises
    ------
    DatasetError: no class folder is recognised, or no image could be read.
    """
    cv2 = load_cv2("Reading face images")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; give a folder with one sub-folder per expression")
    subs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    train_dir = next((subs[n] for n in SPLIT_TRAIN if n in subs), None)
    held_dir = next((subs[n] for n in SPLIT_HELDOUT if n in subs), None)
    parts = [("train", train_dir), ("heldout", held_dir)] if train_dir and held_dir else [("all", root)]
    detector = None
    if detect_faces:
        detector = create_face_detector()
    counts = {"images": 0, "unreadable": 0, "no_face": 0}
    skipped_dirs: list[str] = []
    loaded: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    for part, folder in parts:
        dirs, skipped = _class_dirs(folder, label_map)
        skipped_dirs += [f"{folder.name}/{s}" if part != "all" else s for s in skipped]
        xs: list[np.ndarray] = []
        ys: list[int] = []
        for d, c in dirs:
            files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if max_per_class is not None:
                files = files[:max_per_class]
            for f in files:
                img = cv2.imread(str(f), cv2.IMREAD_COLOR if (detect_faces or crop.colour != "grey")
                                 else cv2.IMREAD_GRAYSCALE)
                if img is None:
                    counts["unreadable"] += 1
                    log.warning("%s: cannot read this image; skipped", f)
                    continue
                if detector is not None:
                    found = detector.detect(img)
                    if not found:
                        counts["no_face"] += 1
                        continue
                    det = max(found, key=lambda dd: dd.area)
                    img = face_crop(img, det, crop)
                else:
                    img = _to_crop_format(img, crop)
                xs.append(img)
                ys.append(c)
                counts["images"] += 1
        loaded[part] = (xs, ys)
    if counts["images"] == 0:
        known = ", ".join(sorted(set(LABEL_ALIASES)))
        raise DatasetError(f"{root}: no usable face image found (class folders recognised: "
                           f"{'none' if skipped_dirs and not counts['unreadable'] else 'some'}; skipped folders "
                           f"{skipped_dirs}; {counts['unreadable']} unreadable, {counts['no_face']} without a face). "
                           f"Name class folders {known}, or pass label_map='raf-db'/'affectnet' for numbered ones.")
    if skipped_dirs:
        log.warning("%s: folders not recognised as expressions, skipped: %s", root, skipped_dirs)
    if "all" in loaded:
        x, y = np.stack(loaded["all"][0]), np.asarray(loaded["all"][1], np.int64)
        tr, he = _split(len(y), heldout_fraction, seed, y)
        xtr, ytr, xhe, yhe = x[tr], y[tr], x[he], y[he]
        split = f"random, {heldout_fraction:.0%} held out (seed {seed})"
    else:
        if not loaded["train"][0] or not loaded["heldout"][0]:
            raise DatasetError(f"{root}: the train or test/val folder holds no usable image")
        xtr, ytr = np.stack(loaded["train"][0]), np.asarray(loaded["train"][1], np.int64)
        xhe, yhe = np.stack(loaded["heldout"][0]), np.asarray(loaded["heldout"][1], np.int64)
        split = f"folders {train_dir.name}/ and {held_dir.name}/"  # type: ignore[union-attr]
    return FaceDataset(xtr, ytr, xhe, yhe, source=f"class-per-folder images '{root.name}' ({counts['images']} "
                       f"faces; split: {split})", info={**counts, "skipped_folders": skipped_dirs, "split": split})


def synthetic_faces(n: int, crop: CropConfig = CropConfig(size=(48, 48)), heldout_fraction: float = 0.15,
                    seed: int = 0) -> FaceDataset:
    """``n`` drawn faces cut with the runtime crop from their Haar-convention boxes."""
    from edgemer.export.face.synth import SynthOptions, synth_scenes

    if n < 2 * len(EXPRESSIONS):
        raise ConfigError(f"synthetic data needs at least {2 * len(EXPRESSIONS)} faces, got {n}")
    images, boxes, labels = synth_scenes(n, seed=seed, options=SynthOptions(size=(160, 128), face_px=(64, 100), supersample=2))
    x = np.stack([face_crop(img, Detection(box), crop) for img, box in zip(images, boxes)])
    tr, he = _split(n, heldout_fraction, seed + 1, labels)
    return FaceDataset(x[tr], labels[tr], x[he], labels[he], synthetic=True,
                       source=f"synthetic drawn faces from 'edgemer.export.face.synth' ({n} faces, seed {seed})",
                       info={"split": f"random, {heldout_fraction:.0%} held out"})


PHOTOGRAPHS = (("skimage", "data/astronaut.png", "astronaut (scikit-image, NASA, public domain)"),
               ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "Grace Hopper (matplotlib, public domain)"))
"""Real photographs with one frontal face that ship inside installed packages: (package, file, description)."""
REAL_PHOTOS = "real photographs (all)"
"""Name of the set of all photographs' crops together: the face crops the fer agreement target is judged on."""


def installed_photographs() -> list[tuple[str, np.ndarray]]:
    """``(description, [H, W, 3] uint8 BGR image)`` for each of :data:`PHOTOGRAPHS` whose package is installed."""
    cv2 = load_cv2("Reading the bundled photographs")
    found = []
    for package, member, description in PHOTOGRAPHS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        image = cv2.imread(str(Path(list(spec.submodule_search_locations)[0]) / member), cv2.IMREAD_COLOR)
        if image is not None:
            found.append((description, image))
    return found


def photo_face_crops(image: np.ndarray, n: int, crop: CropConfig, seed: int = 1) -> np.ndarray:
    """``n`` augmented crops ``[n, H, W(, 3)]`` uint8 of the one face the runtime detector finds in ``image``.

    Each crop varies the photograph as a camera would: roll (+-12 degrees), light (gain
    0.6-1.3, offset +-30 grey levels), mirror (half of them); the runtime detector then
    finds the face in the varied frame and its detection (box and keypoints) is jittered
    as detections jitter: scale 0.85-1.2 and shift +-10 % of the face side about its
    centre. The crop is cut as the runtime cuts it (``crop.align`` applies; a frame whose
    face the detector misses uses the photograph's box, moved with the frame). Raises
    :class:`DatasetError` when no face is found in ``image``.
    """
    cv2 = load_cv2("Augmenting photographs")
    detector = create_face_detector()
    faces = detector.detect(image)
    if not faces:
        raise DatasetError("no face found in the photograph; give an image with one frontal face")
    x, y, w, h = faces[0].box
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), rng.uniform(-12, 12), 1.0)
        f = cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT)
        f = np.clip(f.astype(np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
        bx = x
        if rng.random() < 0.5:
            f, bx = f[:, ::-1].copy(), image.shape[1] - x - w
        s = rng.uniform(0.85, 1.2)
        dx, dy = rng.uniform(-0.1, 0.1, 2) * w
        cx, cy = bx + w / 2, y + h / 2
        near = [d for d in detector.detect(f) if abs(d.center[0] - cx) < w / 2 and abs(d.center[1] - cy) < h / 2]
        det = near[0] if near else Detection((bx, y, w, h))
        ox, oy = det.center

        def jitter(px: float, py: float) -> tuple[float, float]:
            return ox + (px - ox) * s + dx, oy + (py - oy) * s + dy

        (x0, y0), (x1, y1) = jitter(det.box[0], det.box[1]), jitter(det.box[0] + det.box[2], det.box[1] + det.box[3])
        marks = None if det.landmarks is None else tuple(jitter(px, py) for px, py in det.landmarks)
        out.append(face_crop(f, Detection((x0, y0, x1 - x0, y1 - y0), det.score, marks), crop))
    return np.stack(out)


def load_face_data(spec: str, crop: CropConfig = CropConfig(size=(48, 48)), heldout_fraction: float = 0.1,
                   seed: int = 0, label_map: str | None = None, detect_faces: bool = False,
                   max_per_class: int | None = None) -> FaceDataset:
    """Load data from a spec: ``fer2013:FILE.csv``, ``folder:DIR`` or ``synthetic[:N]``."""
    kind, _, arg = spec.partition(":")
    if kind == "fer2013" and arg:
        return load_fer2013_csv(arg, crop, heldout_fraction, seed)
    if kind == "folder" and arg:
        return load_image_folder(arg, crop, heldout_fraction, seed, label_map, detect_faces, max_per_class)
    if kind == "synthetic":
        try:
            n = int(arg) if arg else 4200
        except ValueError:
            raise ConfigError(f"data spec {spec!r}: synthetic:N needs a number of faces") from None
        return synthetic_faces(n, crop, max(heldout_fraction, 0.1), seed)
    raise ConfigError(f"data spec {spec!r}: use fer2013:FILE.csv, folder:DIR or synthetic[:N]")
