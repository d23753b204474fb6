"""Rebuild the replay files that ``examples/full.toml`` plays (package data under edgemer/data/).

- ``edgemer/data/physio-example/``: a 120 s recording of the simulated wrist wearable (50 s
  baseline, then stress), written by edgemer's own recorder (``Pipeline(record=...)``), so
  ``replay:physio-example`` replays it bit-exact through ``RecordingReplay``.
- ``edgemer/data/face-example/``: 7 drawn faces (one per expression, 192x144 JPEG) from
  :func:`edgemer.export.face.synth.draw_scene`: synthetic, not photographs.

``edgemer/data/speech-example.wav`` comes from ``scripts/build_audio_demo.sh``.

Run from the repository root: ``python scripts/make_multimodal_examples.py`` (needs the
``[camera]`` extra for writing JPEGs). Existing example folders are replaced.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgemer.pipeline import Pipeline
from edgemer.sources import SimulatedWearable

DATA = Path(__file__).resolve().parent.parent / "edgemer" / "data"
PHYSIO_SECONDS = 120.0
SCENARIO = ((1, 50.0), (2, 70.0))  # WESAD codes: baseline, then stress
FACE_SIZE = (192, 144)  # width, height in pixels: faces of 80-110 px, above the Haar detector's 64 px minimum


def make_physio(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    src = SimulatedWearable(speed=1000, duration_s=PHYSIO_SECONDS, chunk_s=2.0, seed=7, scenario=SCENARIO)
    with Pipeline([src], ["physio-demo"], record=out) as pipe:
        pipe.wait()
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1024:.0f} KiB)")


def make_faces(out: Path) -> None:
    import cv2

    from edgemer.export.face.synth import EXPRESSIONS, SynthOptions, draw_scene

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = np.random.default_rng(11)
    options = SynthOptions(size=FACE_SIZE, face_px=(80, 110))
    for i, expression in enumerate(EXPRESSIONS):
        img, _ = draw_scene(expression, rng, options)
        cv2.imwrite(str(out / f"{i:02d}_{expression}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1024:.0f} KiB)")


if __name__ == "__main__":
    make_physio(DATA / "physio-example")
    make_faces(DATA / "face-example")
