"""WESAD subject files are read without ever running code from them."""
import os
import pickle

import numpy as np
import pytest

from edgemer.errors import DatasetError, UnsafePickleError
from edgemer.wesad import find_subjects, load_subject


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "S2").mkdir()
    path = tmp_path / "S2" / "S2.pkl"
    path.write_bytes(pickle.dumps({"signal": _Evil(marker)}))
    with pytest.raises(UnsafePickleError, match="system"):
        load_subject(path)
    assert not marker.exists()


def test_reads_the_wesad_layout(small_wesad):
    s = load_subject(small_wesad / "S2" / "S2.pkl")
    assert s.subject == "S2"
    assert s.wrist["eda"].shape == (960, 1) and s.wrist["bvp"].shape == (15360, 1)
    assert s.wrist["acc"].shape == (7680, 3) and s.wrist["eda"].dtype == np.float32
    assert s.label.shape == (168000,) and set(np.unique(s.label)) <= {0, 1, 2, 3, 4}
    assert s.duration_s == pytest.approx(240.0)


def test_python2_style_latin1_pickle(tmp_path):
    arr = np.arange(8, dtype=np.float64).reshape(-1, 1)
    data = {"subject": "S9", "label": np.zeros(700, np.int32),
            "signal": {"wrist": {"EDA": arr[:4], "BVP": arr, "TEMP": arr[:4], "ACC": np.zeros((32, 3))}}}
    (tmp_path / "S9").mkdir()
    with open(tmp_path / "S9" / "S9.pkl", "wb") as f:
        pickle.dump(data, f, protocol=2)
    assert load_subject(tmp_path / "S9" / "S9.pkl").wrist["eda"].shape == (4, 1)


def test_truncated_file(tmp_path, small_wesad):
    (tmp_path / "S2").mkdir()
    bad = tmp_path / "S2" / "S2.pkl"
    bad.write_bytes((small_wesad / "S2" / "S2.pkl").read_bytes()[:5000])
    with pytest.raises(DatasetError, match="truncated"):
        load_subject(bad)


def test_wrong_layout(tmp_path):
    (tmp_path / "S2").mkdir()
    with open(tmp_path / "S2" / "S2.pkl", "wb") as f:
        pickle.dump({"signal": {}}, f)
    with pytest.raises(DatasetError, match="WESAD layout"):
        load_subject(tmp_path / "S2" / "S2.pkl")


def test_folder_problems_are_named(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        find_subjects(tmp_path / "nope")
    with pytest.raises(DatasetError, match="synth-wesad"):
        find_subjects(tmp_path)
    (tmp_path / "S4").mkdir()
    with pytest.raises(DatasetError, match="S4.pkl"):
        find_subjects(tmp_path)
