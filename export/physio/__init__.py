"""Physiology export: ``edgemer data synth-wesad`` and ``edgemer export physio``.

:mod:`~.synth` (synthetic WESAD-layout data), :mod:`~.questionnaires` (WESAD self-reports),
:mod:`~.windows` (WESAD windows for training), :mod:`~.pinn` and :mod:`~.train` (the
multi-task PINN), :mod:`~.config`, :mod:`~.verify` (INT8-vs-FP32 checks with the EDA
forecast), :mod:`~.export` (the whole recipe) and :mod:`~.commands`.
"""
