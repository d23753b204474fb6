"""Speech export: ``edgemer data synth-speech``, ``edgemer export audio`` and ``edgemer export hf``.

:mod:`~.synth` (synthetic speech), :mod:`~.data` (features), :mod:`~.model` (the speech
CNN), :mod:`~.verify` (dimension checks), :mod:`~.config`, :mod:`~.export` (the CNN
recipe), :mod:`~.transformer` (Hugging Face checkpoints through optimum) and :mod:`~.commands`.
"""
