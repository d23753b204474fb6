"""A looped image folder is read and decoded once and then played from memory, within a size bound;
what is emitted (frames, timestamps, seq numbers, flags, unreadable-image counts) does not change.
The images are synthetic (random pixels written with OpenCV)."""
from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="image replay needs opencv-python-headless (edgemer[camera])")

import edgemer.sources.video_replay as video_replay  # noqa: E402
from edgemer.sources.video_replay import VideoReplay  # noqa: E402
from edgemer.types import FLAG_GAP  # noqa: E402


class InstantClock:
    """A clock whose every ``sleep_until`` returns at once (stream time is only the timestamps)."""

    start = 100.0

    def sleep_until(self, t: float, stop: threading.Event) -> bool:
        return not stop.is_set()


@pytest.fixture
def folder(tmp_path):
    """Three synthetic 48x64 images (a PNG and two JPEGs) and one broken file, third in play order."""
    d = tmp_path / "frames"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("1_a.png", "2_b.jpg", "4_d.jpg"):
        cv2.imwrite(str(d / name), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    (d / "3_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return d


@pytest.fixture
def reads(monkeypatch):
    """Counts read_image calls per file name."""
    counts: dict[str, int] = {}
    real = video_replay.read_image

    def counting(cv2_module, path):
        counts[path.name] = counts.get(path.name, 0) + 1
        return real(cv2_module, path)

    monkeypatch.setattr(video_replay, "read_image", counting)
    return counts


def _passes(src: VideoReplay, n_passes: int) -> list[np.ndarray | None]:
    gen = src._frames(cv2, threading.Event())
    out = [next(gen) for _ in range(n_passes * len(src.images))]
    gen.close()
    return out


def test_a_looped_folder_is_decoded_once_and_replays_equal_writable_frames(folder, reads, caplog):
    src = VideoReplay(folder, loop=True)
    with caplog.at_level(logging.WARNING, logger="edgemer.sources.video_replay"):
        frames = _passes(src, 3)
    assert reads == {"1_a.png": 1, "2_b.jpg": 1, "3_broken.jpg": 1, "4_d.jpg": 1}
    fresh = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in src.images]
    for k, frame in enumerate(frames):
        expected = fresh[k % 4]
        if expected is None:
            assert frame is None
        else:
            assert frame.dtype == np.uint8 and np.array_equal(frame, expected) and frame.flags.writeable
    # the unreadable image is still counted and logged on every pass
    assert src.health()["unreadable_images"] == 3
    assert sum("3_broken.jpg" in r.getMessage() for r in caplog.records) == 3
    # a consumer writing into a frame changes neither the kept frame nor the next pass's frame
    frames[4][:] = 0
    assert not np.shares_memory(frames[0], frames[4]) and not np.shares_memory(frames[4], frames[8])
    assert np.array_equal(frames[8], fresh[0])


def test_past_the_size_bound_every_pass_reads_the_files_again(folder, reads, monkeypatch):
    monkeypatch.setattr(video_replay, "MAX_CACHED_IMAGE_BYTES", 48 * 64 * 3)  # room for one frame of three
    src = VideoReplay(folder, loop=True)
    frames = _passes(src, 3)
    assert reads == {"1_a.png": 3, "2_b.jpg": 3, "3_broken.jpg": 3, "4_d.jpg": 3}
    assert all(np.array_equal(a, b) for a, b in zip(frames[:4], frames[4:8]) if a is not None)
    assert src.health()["unreadable_images"] == 3


def test_a_folder_played_once_keeps_nothing(folder, reads):
    src = VideoReplay(folder, loop=False)
    assert len(list(src._frames(cv2, threading.Event()))) == 4
    assert reads == {"1_a.png": 1, "2_b.jpg": 1, "3_broken.jpg": 1, "4_d.jpg": 1}


def test_a_looped_single_image_is_decoded_only_when_it_is_checked(folder, reads):
    src = VideoReplay(folder / "2_b.jpg", loop=True)
    frames = _passes(src, 3)
    assert reads == {"2_b.jpg": 1}  # the check at construction
    expected = cv2.imread(str(folder / "2_b.jpg"), cv2.IMREAD_COLOR)
    assert all(np.array_equal(f, expected) and f.flags.writeable for f in frames)
    assert not np.shares_memory(frames[0], frames[1])


def _emitted(folder, **kw) -> list[tuple]:
    src = VideoReplay(folder, fps=4.0, loop=True, duration_s=5.0, **kw)
    chunks = []
    src._run(InstantClock(), chunks.append, threading.Event())
    return [(c.t0, c.seq, c.flags, c.samples.shape, c.samples.tobytes()) for c in chunks], src.health()


def test_emitted_chunks_are_the_same_with_and_without_kept_frames(folder, monkeypatch):
    kept, kept_health = _emitted(folder)
    monkeypatch.setattr(video_replay, "MAX_CACHED_IMAGE_BYTES", 0)
    read, read_health = _emitted(folder)
    assert kept == read and kept_health == read_health
    assert len(kept) == 15 and kept_health == {"frames": 15, "unreadable_images": 5, "decode_failures": 0}
    assert [c[1] for c in kept[:4]] == [0, 1, 3, 4] and [c[2] for c in kept[:4]] == [0, 0, FLAG_GAP, 0]
    assert kept[3][0] == pytest.approx(100.0 + 4 * 0.25)
