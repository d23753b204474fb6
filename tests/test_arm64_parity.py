"""The emulated-aarch64 parity script (benchmarks/arm64_parity.py) without qemu: host checks, comparison,
result JSON; the standalone runner runs here on x86-64. The real emulated run is a slow test that needs
root and scripts/install-arm64-emulation.sh."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from edgemer.benchmarks.arm64_parity import (EMULATED_NOTE, INSTALL_SCRIPT, TOOLS, EmulationError, Rootfs,
                                             aarch64_platforms, build_result, check_host, compare_outputs,
                                             compare_runs, format_result, main, prepare_job, requirements,
                                             run_host)
from edgemer.benchmarks.result import check_result, write_json

DEVICE = {"device_id": "x86_64-test-2c", "machine": "x86_64"}
ROOTFS = Rootfs(path="/tmp/rootfs-bookworm", suite="bookworm", method="debootstrap-second-stage", python="3.11",
                glibc="2.36")


def test_not_root_is_refused_with_sudo_hint():
    with pytest.raises(EmulationError, match="needs root.*sudo"):
        check_host(which=lambda tool: "/usr/bin/" + tool, euid=1000)


def test_missing_tool_names_the_install_script():
    with pytest.raises(EmulationError) as exc:
        check_host(which=lambda tool: None if tool == "qemu-aarch64-static" else "/usr/bin/" + tool, euid=0)
    assert "qemu-aarch64-static" in str(exc.value) and INSTALL_SCRIPT in str(exc.value)
    assert "debootstrap" not in str(exc.value).split(":")[0]
    check_host(which=lambda tool: "/usr/bin/" + tool, euid=0)  # everything present: no error
    assert set(TOOLS) == {"debootstrap", "qemu-aarch64-static", "chroot"}


def test_pip_platform_tags_follow_the_rootfs_glibc():
    tags = aarch64_platforms("2.36")
    assert tags[0] == "manylinux_2_36_aarch64" and tags[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert len(tags) == 36 - 17 + 2
    with pytest.raises(EmulationError, match="manylinux2014"):
        aarch64_platforms("2.12")
    assert requirements({"numpy": "2.4.6", "onnxruntime": None}) == ["numpy==2.4.6", "onnxruntime"]


def test_compare_outputs_counts_flipped_argmax_and_errors():
    rng = np.random.default_rng(0)
    ref = {"logits": rng.standard_normal((10, 1, 3)).astype(np.float32), "aux": np.zeros((10, 2), np.float32)}
    test = {k: v.copy() for k, v in ref.items()}
    i = 4
    test["logits"][i, 0] = np.eye(3)[(np.argmax(ref["logits"][i, 0]) + 1) % 3] * 10  # another class wins
    test["aux"][:, 1] += 0.25
    p = compare_outputs(ref, test, "logits")
    assert p["n_inputs"] == 10 and p["argmax_agreement"] == pytest.approx(0.9)
    assert p["disagreeing_windows"] == [i]
    assert p["first_output_max_abs_error"] == pytest.approx(np.max(np.abs(ref["logits"] - test["logits"])))
    assert p["max_abs_error"]["aux"] == pytest.approx(0.25)
    with pytest.raises(EmulationError, match="shape"):
        compare_outputs(ref, {"logits": ref["logits"][:5]}, "logits")


@pytest.fixture(scope="module")
def host_run(tmp_path_factory):
    """The standalone runner on this host over physio-demo (every model file, 64 windows)."""
    pytest.importorskip("ai_edge_litert")
    job_dir = tmp_path_factory.mktemp("arm64") / "job"
    job = prepare_job(["physio-demo"], job_dir)
    report = run_host(job_dir, job_dir / "out-x86_64")
    return job, job_dir, report


def test_prepare_job_copies_models_samples_and_the_runner(host_run):
    job, job_dir, report = host_run
    (bundle,) = job["bundles"]
    assert bundle["inputs"] == [{"name": "signals", "shape": [1, 4, 240], "key": "signals"}]
    assert {m["key"] for m in bundle["models"]} == {"fp32-onnx", "int8-onnx", "fp32-tflite", "int8-tflite"}
    for m in bundle["models"]:
        assert (job_dir / "physio-demo" / m["file"]).is_file()
    assert (job_dir / "arm64_runner.py").is_file() and (job_dir / "physio-demo" / "samples.npz").is_file()
    assert report["machine"] == platform_machine()
    assert all(r["status"] == "ok" and r["n"] == 64 for r in report["models"].values())


def platform_machine() -> str:
    import platform

    return platform.machine()


def test_compare_runs_and_result_json(host_run, tmp_path):
    job, job_dir, report = host_run
    # the "aarch64" side: the host's outputs with one window of the INT8 TFLite model flipped
    arm_dir = tmp_path / "arm"
    shutil.copytree(job_dir / "out-x86_64", arm_dir)
    f = arm_dir / "physio-demo__int8-tflite.npz"
    with np.load(f) as z:
        arrays = {k: z[k].copy() for k in z.files}
    logits = arrays["class_logits"]
    logits[0] = -logits[0]
    np.savez(f, **arrays)
    arm_report = json.loads(json.dumps(report))
    arm_report["machine"] = "aarch64"
    rows = compare_runs(job, job_dir, job_dir / "out-x86_64", arm_dir, report, arm_report, "cortex-a72")
    by_model = {r["model"]: r for r in rows}
    assert by_model["int8-onnx"]["parity"]["argmax_agreement"] == 1.0
    assert by_model["int8-tflite"]["parity"]["disagreeing_windows"] == [0]
    assert by_model["int8-tflite"]["parity"]["argmax_agreement"] == pytest.approx(63 / 64)
    assert by_model["fp32-onnx"]["aarch64_vs_fp32_onnx"] is None
    assert 0 <= by_model["int8-onnx"]["aarch64_vs_fp32_onnx"] <= 1
    acc = by_model["fp32-onnx"]["label_accuracy"]
    assert acc["x86_64"] == acc["aarch64"] and 0 < acc["x86_64"] <= 1
    assert by_model["int8-onnx"]["timing"]["aarch64_emulated"]["note"] == EMULATED_NOTE

    result = build_result(rows, ROOTFS, report, arm_report, "qemu-aarch64 version 7.2", ["cortex-a72"],
                          device=DEVICE, created_utc="2026-12-02T11:00:00+00:00")
    assert result["kind"] == "arm64" and result["emulation"]["timing_note"] == EMULATED_NOTE
    assert check_result(result) == [] and result["settings"] == {"cpus": ["cortex-a72"]}
    assert result["targets"][0]["unit"] == "fraction"
    assert result["summary"]["min_argmax_agreement"] == pytest.approx(63 / 64)
    assert result["summary"]["disagreeing_windows"] == 1 and result["summary"]["compared"] == 4
    assert result["summary"]["min_argmax_agreement_by_cpu"] == {"cortex-a72": pytest.approx(63 / 64)}
    assert {r["cpu"] for r in result["results"]} == {"cortex-a72"}
    assert "Raspberry Pi 4" in result["emulation"]["cpus"]["cortex-a72"]
    assert result["targets"][0]["met"] is False
    path = write_json(result, tmp_path / "results")
    assert path.name == "x86_64-test-2c_arm64_20261202T110000.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    assert "int8-tflite" in format_result(result) and EMULATED_NOTE in format_result(result)

    # a model that fails on aarch64: its row is failed and the target is not met
    arm_report["models"]["physio-demo/int8-onnx"] = {"status": "failed", "error": "RuntimeError: boom"}
    rows = compare_runs(job, job_dir, job_dir / "out-x86_64", job_dir / "out-x86_64", report, arm_report,
                        "cortex-a72")
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["model"] for r in failed] == ["int8-onnx"] and "aarch64: RuntimeError: boom" in failed[0]["reason"]
    result = build_result(rows, ROOTFS, report, arm_report, "qemu", ["cortex-a72"], device=DEVICE,
                          created_utc="2026-12-02T11:00:00")
    assert result["summary"]["min_argmax_agreement"] == 1.0 and result["targets"][0]["met"] is False


def test_schema_md_documents_every_parity_field(host_run, tmp_path):
    from test_bench_schema import SCHEMA_MD, committed, schema_sections

    job, job_dir, report = host_run
    rows = compare_runs(job, job_dir, job_dir / "out-x86_64", job_dir / "out-x86_64", report, report, "cortex-a76")
    generated = build_result(rows, ROOTFS, report, report, "qemu", ["cortex-a76"], device=DEVICE)
    sections = schema_sections(SCHEMA_MD.read_text(encoding="utf-8"))
    top, row_fields = sections["ARM64 parity result (kind `arm64`)"], sections["arm64 `results[]`"]
    assert committed("arm64"), "the emulated aarch64 parity result is committed"
    for result in [generated, *committed("arm64")]:
        assert sorted(set(result) - top - {"_file"}) == []
        for row in result["results"]:
            assert sorted(set(row) - row_fields) == []


def test_report_reads_a_folder_with_a_parity_result(host_run, tmp_path):
    from edgemer.benchmarks.report import collect_results, markdown_report

    job, job_dir, report = host_run
    rows = compare_runs(job, job_dir, job_dir / "out-x86_64", job_dir / "out-x86_64", report, report, "cortex-a76")
    write_json(build_result(rows, ROOTFS, report, report, "qemu", ["cortex-a76"], device=DEVICE,
                            created_utc="2026-12-02T11:00:00+00:00"), tmp_path)
    results = collect_results(tmp_path)
    assert [r["kind"] for r in results] == ["arm64"]
    assert markdown_report(results).startswith("# edgemer benchmark results")


def test_main_reports_a_clear_error_without_root_or_tools(monkeypatch, capsys):
    import edgemer.benchmarks.arm64_parity as mod

    monkeypatch.setattr(mod.os, "geteuid", lambda: 1000)
    from edgemer.benchmarks.commands import run_kind

    assert run_kind("arm64", ["--bundles", "physio-demo"]) == 2
    assert "needs root" in capsys.readouterr().err
    assert run_kind("arm64", ["--cpus", "cortex-a99"]) == 2
    assert "--cpus must name qemu CPU models" in capsys.readouterr().err
    assert main(["--cpus", "cortex-a99"]) == 2  # the old spelling says where it moved, then runs it
    err = capsys.readouterr().err
    assert "is now 'edgemer bench arm64'" in err and "--cpus must name" in err


def _can_emulate() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in TOOLS)


@pytest.mark.slow
@pytest.mark.skipif(not _can_emulate(), reason=f"needs root and {INSTALL_SCRIPT}")
def test_real_emulated_run_agrees_with_x86(tmp_path):
    """Builds (or reuses) the arm64 root filesystem and runs physio-demo under qemu: minutes the first time."""
    from edgemer.benchmarks.commands import run_kind

    assert run_kind("arm64", ["--bundles", "physio-demo", "--json", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*_arm64_*.json")
    result = json.loads(path.read_text())
    assert result["summary"]["min_argmax_agreement"] == 1.0
    assert result["versions"]["aarch64"]["onnxruntime"] is not None
