"""Host-side export: data sets, model definitions, training, ONNX/TFLite conversion,
INT8 quantisation, verification and bundle writing (``edgemer data``, ``edgemer export``).

Physiology pipeline, one step per module: :mod:`~edgemer.export.synth_wesad` (synthetic
WESAD-layout data), :mod:`~edgemer.export.datasets` (windows), :mod:`~edgemer.export.pinn`
and :mod:`~edgemer.export.train` (the multi-task PINN), :mod:`~edgemer.export.onnx_export`,
:mod:`~edgemer.export.quantize_onnx`, :mod:`~edgemer.export.tflite`,
:mod:`~edgemer.export.verify`, :mod:`~edgemer.export.bundle_writer` and
:mod:`~edgemer.export.physio` (the whole recipe); :mod:`~edgemer.export.commands` is the
command-line glue. torch, onnx and litert-torch are imported only when a step needs them
(extra ``[export]``).
"""
