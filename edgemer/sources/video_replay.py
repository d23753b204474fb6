"""Replay of a video file, a folder of images or one image as the ``video`` stream.

Frames (``[H, W, 3]`` uint8 BGR) are emitted on the pipeline clock, faster than real
time with ``speed > 1``, through exactly the pipeline code a live camera uses. Images
are read one at a time as they are played (``cv2.imread``; grey and alpha images become
BGR), so a large folder costs no memory; frames are never written anywhere. A looped
folder (or image) whose decoded frames total at most :data:`MAX_CACHED_IMAGE_BYTES`
(64 MiB) is read and decoded once, on its first pass, and later passes play the frames
kept in memory (so files changed during the run are not read again); a larger one is
read again on every pass. Every emitted frame is its own writable array.

A video plays at its own frame rate unless ``fps`` asks for fewer frames (skipped
frames are grabbed, not decoded). Images play at ``fps`` (default 5 per second).

Bad input: a video OpenCV cannot open or decode, a path that holds no image, raise
:class:`~edgemer.errors.DatasetError` at construction. An image in a folder that
cannot be read is skipped, logged and counted (``health()["unreadable_images"]``).

Images are decoded only after :func:`image_header` has read their size from the header
(PNG, JPEG, BMP, PNM, WebP, TIFF; other content is refused whatever its extension, since
OpenCV picks a decoder by content): one declaring more than :data:`MAX_IMAGE_PIXELS`
pixels or a side over :data:`MAX_IMAGE_SIDE` is refused before anything is allocated
(a 600-byte JPEG can otherwise ask the decoder for gigabytes).
"""
from __future__ import annotations

import logging
import re
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgemer.clock import Clock
from edgemer.errors import ConfigError, DatasetError
from edgemer.sources import Emit, ThreadedSource
from edgemer.types import FLAG_GAP, Chunk, StreamSpec

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
DEFAULT_IMAGE_FPS = 5.0
MAX_IMAGE_PIXELS = 50_000_000
"""Largest image decoded (50 megapixels: 150 MB as BGR)."""
MAX_IMAGE_SIDE = 16384
MAX_CACHED_IMAGE_BYTES = 64 * 1024 * 1024
"""Most bytes of decoded frames (``H * W * 3`` each) a looped image folder keeps in memory
(64 MiB: about 230 frames of 320x240, 73 of 640x480), so that later passes neither read,
parse nor decode the files again; a folder over it is decoded on every pass."""


def _jpeg_size(f) -> tuple[int, int] | None:
    f.seek(2)
    for _ in range(10000):
        marker = f.read(4)
        if len(marker) < 4 or marker[0] != 0xFF:
            return None
        kind, length = marker[1], struct.unpack(">H", marker[2:])[0]
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            body = f.read(5)
            return (struct.unpack(">H", body[3:5])[0], struct.unpack(">H", body[1:3])[0]) if len(body) == 5 else None
        if length < 2:
            return None
        f.seek(length - 2, 1)
    return None


def _pnm_size(head: bytes) -> tuple[int, int] | None:
    if head[1:2] == b"7":  # PAM: WIDTH and HEIGHT lines
        w = re.search(rb"WIDTH\s+(\d{1,9})", head)
        h = re.search(rb"HEIGHT\s+(\d{1,9})", head)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    tokens = re.sub(rb"#[^\n]*", b" ", head[2:]).split()
    if len(tokens) < 2 or not tokens[0].isdigit() or not tokens[1].isdigit() or max(map(len, tokens[:2])) > 9:
        return None
    return int(tokens[0]), int(tokens[1])


def _tiff_size(f, head: bytes) -> tuple[int, int] | None:
    end = "<" if head[:2] == b"II" else ">"
    f.seek(struct.unpack(end + "I", head[4:8])[0])
    count_raw = f.read(2)
    if len(count_raw) < 2:
        return None
    size: dict[int, int] = {}
    for _ in range(min(struct.unpack(end + "H", count_raw)[0], 1000)):
        entry = f.read(12)
        if len(entry) < 12:
            return None
        tag, kind = struct.unpack(end + "HH", entry[:4])
        if tag in (256, 257):
            size[tag] = struct.unpack(end + ("H" if kind == 3 else "I"), entry[8:10] if kind == 3 else entry[8:12])[0]
    return (size[256], size[257]) if len(size) == 2 else None


def image_header(path: Path) -> tuple[str, int, int] | None:
    """``(kind, width, height)`` read from the image's header, or None when the content is not a
    PNG, JPEG, BMP, PNM, WebP or TIFF image whose size can be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                return ("png", *struct.unpack(">II", head[16:24]))
            if head[:2] == b"\xff\xd8":
                size = _jpeg_size(f)
                return ("jpeg", *size) if size else None
            if head[:2] == b"BM" and len(head) >= 26:
                if struct.unpack("<I", head[14:18])[0] == 12:
                    return ("bmp", *struct.unpack("<HH", head[18:22]))
                w, h = struct.unpack("<ii", head[18:26])
                return ("bmp", abs(w), abs(h))
            if head[:1] == b"P" and head[1:2] in b"1234567" and len(head) > 2:
                size = _pnm_size(head + f.read(1024))
                return ("pnm", *size) if size else None
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
                chunk = head[12:16]
                if chunk == b"VP8 ":
                    return ("webp", struct.unpack("<H", head[26:28])[0] & 0x3FFF,
                            struct.unpack("<H", head[28:30])[0] & 0x3FFF)
                if chunk == b"VP8L":
                    bits = struct.unpack("<I", head[21:25])[0]
                    return ("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
                if chunk == b"VP8X":
                    return ("webp", int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1)
                return None
            if head[:4] in (b"II*\x00", b"MM\x00*") and len(head) >= 8:
                size = _tiff_size(f, head)
                return ("tiff", *size) if size else None
    except (OSError, struct.error):
        return None
    return None


def read_image(cv2, path: Path) -> tuple[np.ndarray | None, str]:
    """``(BGR image [H, W, 3] uint8, "")``, or ``(None, why)`` for a file that is refused
    (unknown content, absurd declared size) or that OpenCV cannot decode."""
    header = image_header(path)
    if header is None:
        return None, "not a PNG, JPEG, BMP, PNM, WebP or TIFF image (or its header is damaged)"
    kind, width, height = header
    if not 0 < width <= MAX_IMAGE_SIDE or not 0 < height <= MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        return None, (f"its {kind} header declares {width} x {height} pixels (at most {MAX_IMAGE_SIDE} a side and "
                      f"{MAX_IMAGE_PIXELS} in all); refused before decoding")
    try:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except Exception as exc:  # noqa: BLE001 - cv2.error for a few damaged files
        return None, f"OpenCV cannot decode it ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"
    return (img, "") if img is not None else (None, "corrupt, or a format OpenCV does not read")


def _read_only_copy(frame: np.ndarray | None) -> np.ndarray | None:
    """A copy of ``frame`` that cannot be written to (None stays None): a kept frame no consumer can alter."""
    if frame is None:
        return None
    kept = frame.copy()
    kept.setflags(write=False)
    return kept


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix), in natural order (img2 before img10)."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=_natural_key)


def is_video_or_images(path: str | Path) -> bool:
    """True if ``path`` is a video file, an image file, or a folder that directly holds images."""
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
    if p.is_dir():
        return any(f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir())
    return False


def _cv2():
    from edgemer.frontends.face_detector import load_cv2

    return load_cv2("Video and image replay")


class VideoReplay(ThreadedSource):
    """Replays a video file, an image folder or one image as ``video`` frames.

    Parameters
    ----------
    path: video file (``.mp4``, ``.avi``, ...), folder of images, or one image.
    speed: stream seconds per wall second (``inf``: as fast as the pipeline consumes, on the
        :class:`~edgemer.clock.LockstepClock`).
    fps: frames per second to play: images default 5; a video defaults to its own rate
        and is thinned to ``fps`` if lower.
    duration_s: stream seconds to play (None: to the end).
    loop: start again at the end (until ``duration_s`` or stop).
    stream: name of the stream the frames go to.
    """

    live = False
    steppable = True

    def __init__(self, path: str | Path, speed: float = 1.0, fps: float | None = None,
                 duration_s: float | None = None, loop: bool = False, stream: str = "video") -> None:
        super().__init__(speed)
        if fps is not None and not 0.1 <= fps <= 480:
            raise ConfigError(f"VideoReplay.fps must be 0.1..480 frames/s, got {fps}")
        if duration_s is not None and duration_s <= 0:
            raise ConfigError(f"VideoReplay.duration_s must be > 0 s or None, got {duration_s}")
        if "\x00" in str(path):
            raise DatasetError(f"{str(path)!r}: a path cannot hold a NUL character")
        self.path = Path(path).expanduser()
        self.duration_s = duration_s
        self.loop = loop
        self._counters = {"frames": 0, "unreadable_images": 0, "decode_failures": 0}
        self._lock = threading.Lock()
        cv2 = _cv2()
        if self.path.is_dir():
            self.images = list_images(self.path)
            if not self.images:
                raise DatasetError(f"{self.path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder; "
                                   f"give a folder of images, an image or a video file")
            self.kind = "images"
        elif self.path.is_file() and self.path.suffix.lower() in IMAGE_SUFFIXES:
            self.images = [self.path]
            self.kind = "images"
        elif self.path.is_file():
            self.images = []
            self.kind = "video"
        else:
            raise DatasetError(f"{self.path}: no such file or folder; give a video file, an image or a folder "
                               f"of images")
        self._first_image: np.ndarray | None = None  # a looped single image, decoded here to check it
        if self.kind == "images":
            if not self.path.is_dir():
                img, why = read_image(cv2, self.path)
                if img is None:
                    raise DatasetError(f"{self.images[0]}: cannot read this image ({why}); convert it to PNG or JPEG")
                if loop and img.nbytes <= MAX_CACHED_IMAGE_BYTES:
                    self._first_image = img
            self.fps = float(fps or DEFAULT_IMAGE_FPS)
            self.native_fps = self.fps
            self.step = 1
        else:
            cap = cv2.VideoCapture(str(self.path))
            ok, frame = (cap.read() if cap.isOpened() else (False, None))
            native = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap.isOpened() else 0.0
            cap.release()
            if not ok or frame is None:
                raise DatasetError(f"{self.path}: OpenCV cannot open or decode this video (corrupt, not a video, "
                                   f"or a codec this OpenCV build lacks); convert it, e.g. "
                                   f"ffmpeg -i '{self.path.name}' -c:v mjpeg out.avi")
            if not 0.5 <= native <= 480:
                log.warning("%s: the video reports no usable frame rate (%s); playing it at 30 frames/s",
                            self.path, native)
                native = 30.0
            self.native_fps = native
            self.step = max(1, int(round(native / fps))) if fps is not None and fps < native else 1
            self.fps = native / self.step
        self.name = f"replay:{self.path.name}"
        self.streams = (StreamSpec(stream, self.fps, channels=3, unit="bgr8", media=True, frames=True),)

    def health(self) -> dict:
        with self._lock:
            return dict(self._counters)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counters[key] += 1

    def _frames(self, cv2, stop: threading.Event):
        """Yield each frame (``[H, W, 3]`` uint8, or None for an unreadable image) in play order."""
        if self.kind == "images":
            yield from self._images(cv2, stop)
            return
        while not stop.is_set():
            cap = cv2.VideoCapture(str(self.path))
            try:
                i = 0
                while not stop.is_set():
                    if i % self.step == 0:
                        ok, frame = cap.read()
                    else:
                        ok, frame = cap.grab(), None
                    if not ok:
                        break
                    if i % self.step == 0:
                        yield frame
                    i += 1
            finally:
                cap.release()
            if not self.loop:
                return

    def _images(self, cv2, stop: threading.Event):
        """Yield the images' frames (None for an unreadable one, counted and logged on every
        pass), pass after pass while looping.

        A looped replay keeps the first pass's results (frames read-only, or why a file was
        refused) while their frames total at most :data:`MAX_CACHED_IMAGE_BYTES`, and plays
        later passes from them; past the bound it keeps nothing and reads every pass. Each
        frame yielded is a fresh writable copy or a fresh decode, never the kept array.
        """
        kept: list[tuple[np.ndarray | None, str]] | None = [] if self.loop else None
        kept_bytes = 0
        if kept is not None and self._first_image is not None:  # a single image, decoded at construction
            kept.append((_read_only_copy(self._first_image), ""))
            kept_bytes = self._first_image.nbytes
        self._first_image = None
        while not stop.is_set():
            for i, p in enumerate(self.images):
                if kept is not None and i < len(kept):
                    img, why = kept[i]
                    frame = None if img is None else img.copy()
                else:
                    frame, why = read_image(cv2, p)
                    if kept is not None:
                        kept_bytes += 0 if frame is None else frame.nbytes
                        if kept_bytes > MAX_CACHED_IMAGE_BYTES:
                            log.info("%s: the decoded images exceed %d MiB; reading them again on every pass",
                                     self.path, MAX_CACHED_IMAGE_BYTES >> 20)
                            kept = None
                        else:
                            kept.append((_read_only_copy(frame), why))
                if frame is None:
                    self._count("unreadable_images")
                    log.warning("%s: cannot read this image (%s); skipped", p, why)
                yield frame
            if not self.loop:
                return

    def _run(self, clock: Clock, emit: Emit, stop: threading.Event) -> None:
        cv2 = _cv2()
        spec = self.streams[0]
        period = 1.0 / self.fps
        end = None if self.duration_s is None else self.duration_s
        k = 0
        gap = False
        for frame in self._frames(cv2, stop):
            t_rel = k * period
            if end is not None and t_rel >= end - 1e-9:
                return
            t0 = clock.start + t_rel
            if not clock.sleep_until(t0 + period, stop):
                return
            k += 1
            if frame is None:
                gap = True
                continue
            self._count("frames")
            emit(Chunk(spec.name, spec.rate_hz, t0, np.ascontiguousarray(frame)[None], seq=k - 1,
                       flags=FLAG_GAP if gap else 0, arrival=time.monotonic()))
            gap = False

    def describe(self) -> dict[str, Any]:
        """What is being replayed: kind, count of images, rates."""
        return {"path": str(self.path), "kind": self.kind, "images": len(self.images), "fps": self.fps,
                "native_fps": self.native_fps}
