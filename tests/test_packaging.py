"""The package installs as one namespace, and the runtime stays slim."""
import ast
import importlib
import json
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _options() -> ConfigParser:
    cfg = ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _source_packages() -> list[str]:
    """Every folder with an ``__init__.py`` below the roots that setup.cfg's package_dir maps, as an import name."""
    mapping = dict(line.split(" = ") for line in _options()["options"]["package_dir"].strip().splitlines())
    names = []
    for name, folder in mapping.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder).parts
            names.append(".".join((name, *rel)))
    return names


SUBPACKAGES = _source_packages()


def test_source_tree_has_the_export_subpackages():
    # guards the walk itself: were it to find nothing, the two tests below would pass vacuously
    assert {"edgemer.export", "edgemer.export.core", "edgemer.export.physio", "edgemer.export.study",
            "edgemer.export.audio", "edgemer.export.face", "edgemer.export.byo"} <= set(SUBPACKAGES)


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_subpackage_imports(name):
    assert importlib.import_module(name).__name__ == name


def test_setup_cfg_lists_every_subpackage():
    # `find:` does not follow package_dir: a folder missing from `packages` would not be installed
    listed = _options()["options"]["packages"].split()
    assert sorted(listed) == sorted(SUBPACKAGES)


MODALITIES = ("physio", "audio", "face", "byo")


def _export_imports(path: Path) -> set[str]:
    """The ``edgemer.export.*`` modules a file imports (at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgemer.export"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("edgemer.export"))
    return found


def test_export_core_imports_no_modality_and_no_modality_imports_another():
    export = ROOT / "export"
    checked = 0
    for path in sorted(export.rglob("*.py")):
        group = path.relative_to(export).parts[0] if path.parent != export else None
        if group not in ("core", *MODALITIES):
            continue
        checked += 1
        for module in _export_imports(path):
            parts = module.split(".")
            target = parts[2] if len(parts) > 2 else None
            if target in MODALITIES and target != group:
                pytest.fail(f"{path.relative_to(ROOT)} imports {module}: the core and each modality import only "
                            f"the core (move the shared piece to export/core/)")
    assert checked > 40


def test_runtime_import_loads_neither_torch_nor_tensorflow():
    code = ("import sys, edgemer, edgemer.pipeline, edgemer.sources, edgemer.cli;"
            "edgemer.cli.build_parser();"
            "import json; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'tensorflow', 'jax', 'litert_torch', 'onnx', 'neurokit2', 'pandas'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_console_script_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "edgemer", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "run", "info", "bench", "data", "export"):
        assert command in out.stdout


def test_shipped_demo_bundle_says_synthetic(demo_bundle):
    m = demo_bundle.manifest
    assert m.trained_on_synthetic_data
    assert "--wesad" in m.provenance["train_on_real_data"]
    assert {mf.file for mf in m.models.values()} >= {"model_fp32.onnx", "model_int8.onnx", "model_int8.tflite"}
