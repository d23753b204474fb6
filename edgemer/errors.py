"""One exception hierarchy for edgemer.

Every message says what was wrong, where (file, stream, port) and what to do.
Catch :class:`EdgemerError` to handle anything edgemer raises on purpose.
"""
from __future__ import annotations


class EdgemerError(Exception):
    """Base class of every error edgemer raises on purpose."""


class MissingExtraError(EdgemerError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, extra: str, module: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python module '{module}', which is not installed. "
            f"Install it with: pip install 'edgemer[{extra}]'"
        )
        self.extra = extra
        self.module = module


class BundleError(EdgemerError):
    """A bundle folder cannot be used (missing, corrupt, wrong schema)."""


class BundleNotFoundError(BundleError, FileNotFoundError):
    """No bundle at the given path and no shipped bundle of that name."""


class ManifestError(BundleError):
    """manifest.json is missing, unreadable or lacks a required field."""


class SchemaVersionError(ManifestError):
    """The manifest was written for another bundle schema version."""


class UnsafeBundleError(ManifestError):
    """A bundle names a file outside its folder (absolute path, ``..``, a symlink leaving it, an
    ONNX external-data location elsewhere) or declares an absurd size or rate; refused before
    anything is read or allocated. The message names the file and the field."""


class IntegrityError(BundleError):
    """A bundle file is missing, truncated or its sha256 does not match the manifest."""


class ModelLoadError(BundleError):
    """The inference runtime refused to load a model file."""


class BackendUnavailableError(EdgemerError):
    """The requested backend (or execution provider / precision) cannot run here."""


class InputError(EdgemerError, ValueError):
    """Data handed to a model or front-end does not match what the manifest says."""


class InputShapeError(InputError):
    """An input array has the wrong shape or dtype for the model."""


class SampleRateError(InputError):
    """A stream's sample rate differs from the rate the bundle was trained on."""


class NothingDetectedError(InputError):
    """The front-end found nothing to analyse in this window (no face in the frame).

    Expected, not a fault: the pipeline counts the window as empty, reports the
    modality as absent with :attr:`reason` in that estimate, and logs at debug level.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NoFaceError(NothingDetectedError):
    """The face detector found no face in the frame; ``reason`` is ``"no face"``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "no face")


class NoSpeechError(NothingDetectedError):
    """The voice-activity gate found no speech in the audio window; ``reason`` is ``"no speech"``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "no speech")


class SourceError(EdgemerError):
    """A sensor source failed to open or stopped delivering data."""


class DatasetError(EdgemerError):
    """A data set folder or file is missing, unreadable or malformed."""


class UnsafePickleError(DatasetError):
    """A pickle asked for a global outside the allow-list; nothing in it was executed."""


class ExportError(EdgemerError):
    """Training, conversion, quantisation or verification of a bundle failed."""


class ConfigError(EdgemerError, ValueError):
    """A configuration value is out of range; the message names the field."""


class ResultSchemaError(EdgemerError, ValueError):
    """A benchmark result file has a schema version this edgemer cannot read or migrate."""


class ModelCheckError(ExportError):
    """A model brought to ``edgemer export onnx`` cannot be used as it is (corrupt file, failed
    checker, dynamic shape that cannot be fixed, unsupported op); the message says what to change."""


class CalibrationDataError(DatasetError):
    """A calibration or evaluation folder is empty or does not match the model (image size,
    channel count, sample rate, window length)."""


class AccuracyGuardError(ExportError):
    """``--strict``: INT8 lost more than ``--max-drop`` points against FP32."""
