"""Physiology front-ends on real recordings (heartpy's and systole's, fetched at test time)
and the import cost of the runtime."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np


def _scipy_modules_after(code: str) -> list[str]:
    code = ("import sys, json\n" + code
            + "\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_scipy_signal_is_imported_where_used_not_by_import_edgemer():
    # importing the runtime and its physiology front-end maps no scipy; a heart rate brings scipy.signal
    assert _scipy_modules_after("import edgemer, edgemer.config, edgemer.frontends.physio, edgemer.frontends.heart") == []
    loaded = _scipy_modules_after(
        "import numpy as np\nfrom edgemer.frontends.physio import heart_rate_from_bvp\n"
        "hr, beats = heart_rate_from_bvp(np.sin(2 * np.pi * 1.2 * np.arange(3840) / 64.0), 64.0, 240)\n"
        "assert 70 <= beats <= 73 and abs(float(np.nanmedian(hr)) - 72.0) < 0.5, (beats, hr)")
    assert "scipy.signal" in loaded
