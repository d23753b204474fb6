"""edgemer.export.core.fetch.download_package: the one pinned-package fetch (pip download --no-deps).

No test here needs network: a cached file is used as it is, and pip is given a requirement
it rejects before asking any registry.
"""
from __future__ import annotations

import hashlib

import pytest

from edgemer.errors import DatasetError, ExportError
from edgemer.export.core.fetch import download_package


def test_a_file_already_in_the_cache_is_used_when_its_sha256_is_the_pinned_one(tmp_path):
    archive = tmp_path / "pkg-1.0-py3-none-any.whl"
    archive.write_bytes(b"copied in by hand")
    digest = hashlib.sha256(b"copied in by hand").hexdigest()
    assert download_package("pkg", "1.0", tmp_path, sha256=digest) == archive
    assert download_package("pkg", "1.0", tmp_path, filename=archive.name, sha256=None) == archive


def test_a_wrong_sha256_raises_the_callers_error_naming_the_file(tmp_path):
    (tmp_path / "some_pkg-2.0-py3-none-any.whl").write_bytes(b"altered")
    with pytest.raises(DatasetError, match=r"some_pkg-2\.0-py3-none-any\.whl: sha256 [0-9a-f]{64} is not the pinned "
                                           r"0{64} for some-pkg 2\.0.*Delete it"):
        download_package("some-pkg", "2.0", tmp_path, sha256="0" * 64, error=DatasetError)


def test_a_failed_pip_download_says_which_file_to_copy_where(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ExportError, match=r"'pip download --no-deps no-such-pkg==not a version' failed \(.+\)\. "
                                          r"Without network, copy no_such_pkg-not a version-py3-none-any\.whl into "
                                          r".*cache \(or pass --keras-file x\.hdf5\)\.$"):
        download_package("no-such-pkg", "not a version", cache, hint="or pass --keras-file x.hdf5")
    assert cache.is_dir() and not any(cache.iterdir())
