"""Front-ends turn a :class:`~edgemer.types.Window` of raw streams into model inputs,
and model outputs into a :class:`~edgemer.types.ModalityEstimate`.

Every parameter comes from the bundle manifest's ``front_end`` section; the runtime
never guesses one. A new modality is one new module implementing :class:`FrontEnd`
plus one line in :data:`FRONT_ENDS`.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

import numpy as np

from edgemer.bundle import Manifest
from edgemer.errors import ManifestError
from edgemer.types import ModalityEstimate, StreamSpec, Window


class FrontEnd(Protocol):
    modality: str
    streams: tuple[StreamSpec, ...]
    window_s: float
    hop_s: float
    min_coverage: float

    def prepare(self, window: Window) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Model feeds (input name -> float32 array) and an info dict of what was done."""
        ...

    def interpret(self, outputs: Mapping[str, np.ndarray], t_end: float, bundle: str) -> ModalityEstimate:
        """Turn raw model outputs into probabilities and physical quantities."""
        ...


def _wrist(manifest: Manifest) -> FrontEnd:
    from edgemer.frontends.physio import WristFrontEnd

    return WristFrontEnd.from_manifest(manifest)


def _face(manifest: Manifest) -> FrontEnd:
    from edgemer.frontends.face import FaceFrontEnd

    return FaceFrontEnd.from_manifest(manifest)


def _speech(manifest: Manifest) -> FrontEnd:
    from edgemer.frontends.audio import AudioFrontEnd

    return AudioFrontEnd.from_manifest(manifest)


FRONT_ENDS = {"wrist_physio": _wrist, "face_expression": _face, "speech_emotion": _speech}
"""manifest ``front_end.type`` -> factory."""


def create_front_end(manifest: Manifest) -> FrontEnd:
    """The front-end the manifest's ``front_end`` table describes; a table of the wrong shape
    (a list where an object belongs, a missing key) is a :class:`ManifestError`."""
    kind = manifest.front_end.get("type")
    if not isinstance(kind, str) or kind not in FRONT_ENDS:
        raise ManifestError(f"bundle '{manifest.name}': unknown front_end.type {str(kind)[:60]!r} "
                            f"(this edgemer knows {sorted(FRONT_ENDS)}); upgrade edgemer or re-export the bundle")
    try:
        return FRONT_ENDS[kind](manifest)
    except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as exc:  # from_dict on a damaged table
        raise ManifestError(f"bundle '{manifest.name}': malformed front_end table ({type(exc).__name__}: "
                            f"{str(exc)[:160]}); re-export the bundle") from exc
