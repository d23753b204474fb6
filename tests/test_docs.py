"""The documentation site builds strictly: a broken link, a page missing from the nav or a
docstring the API reference cannot parse fails the suite (issue: docs as a site)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_mkdocs_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs comes with the [dev] extra: pip install -e '.[dev]'")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index.html", "runtime/index.html", "benchmarks/index.html", "api/export/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    api = (tmp_path / "site" / "api" / "runtime" / "index.html").read_text(encoding="utf-8")
    assert "Pipeline" in api and "EdgemerError" in api


def test_readme_is_a_front_page_that_links_the_site():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for page in ("docs/runtime.md", "docs/export.md", "docs/benchmarks.md"):
        assert page in readme, page
        assert (REPO / page).is_file(), page
