"""The shared export core: what every export path (physio, audio, face, byo) uses.

:mod:`~.config` (option blocks), :mod:`~.atomic` (all-or-nothing output folders),
:mod:`~.progress`, :mod:`~.onnx_export` (torch -> ONNX), :mod:`~.onnx_check`,
:mod:`~.onnx_torch` and :mod:`~.onnx_tflite` (ONNX -> torch -> TFLite), :mod:`~.quantize`
(static INT8 QDQ), :mod:`~.guard` (the accuracy guard), :mod:`~.tflite`, :mod:`~.verify`
(INT8-vs-FP32 through edgemer's backends), :mod:`~.bundle_writer` (bundle files, the trained
classifier's export tail), :mod:`~.training` (the face/speech training loop with hooks),
:mod:`~.targets` (``--target`` presets), :mod:`~.keras` (Keras HDF5 import), :mod:`~.fetch`
(a pinned registry package by ``pip download --no-deps``, sha256 checked). Nothing here
imports a modality package.
"""
