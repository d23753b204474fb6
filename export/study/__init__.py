"""``edgemer study physio``: the multi-task PINN as a study (:mod:`~.run`), its report
(:mod:`~.report`) and command-line glue (:mod:`~.commands`). Built on :mod:`edgemer.export.physio`.
"""
