import json
import os
import subprocess
import sys

import pytest

from conftest import PYTHON, REPO, subprocess_env

sys.path.insert(0, os.path.join(REPO, "benchmarks"))


def test_framework_overhead_quick_mode_writes_json(tmp_path):
    import framework_overhead

    out = tmp_path / "fo.json"
    result = framework_overhead.main(["--quick", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["quartznet15x5_weights"] == result["quartznet15x5_weights"] > 18_000_000
    assert saved["overhead_ratio"] > 0 and saved["novograd_vs_adamw_ratio"] > 0


def test_bucketing_benchmark_quick_mode(tmp_path):
    import bucketing_padding

    summary = bucketing_padding.main(["--quick", "--out", str(tmp_path / "b.json")])
    assert json.loads((tmp_path / "b.json").read_text())["plain"]["padding_fraction"] == summary["plain"]["padding_fraction"]
    assert summary["bucketed"]["padding_fraction"] <= summary["plain"]["padding_fraction"]


def test_simplest_example_script_runs():
    cmd = [PYTHON, os.path.join(REPO, "examples", "simplest_example.py"), "--max_steps", "1500"]
    run = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    final = float(run.stdout.strip().splitlines()[-1].split()[-1])
    assert final < 0.15
    help_run = subprocess.run(cmd[:2] + ["--help"], env=subprocess_env(), capture_output=True, text=True)
    assert "--optimizer" in help_run.stdout


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(REPO, "README.rst")) as handle:
        readme = handle.read()
    with open(os.path.join(REPO, ".ci", "run")) as handle:
        ci_lines = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    test_command = ci_lines[-1]
    assert "pytest" in test_command and test_command in readme


def test_demo_accuracy_benchmark_quick_mode(tmp_path):
    import shutil

    if not (shutil.which("espeak-ng") or shutil.which("flite")):
        pytest.skip("needs espeak-ng or flite (scripts/install_system_deps.sh)")
    import demo_accuracy

    result = demo_accuracy.main(["--quick", "--work_dir", str(tmp_path), "--out", str(tmp_path / "demo.json")])
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["epochs"] == 1 and 0.0 <= saved["dev_wer"] and saved["test_wer"] == result["test_wer"]


def test_inference_throughput_quick_mode(tmp_path):
    pytest.importorskip("onnxruntime")
    import inference_throughput

    cells = inference_throughput.main(["--quick", "--out", str(tmp_path / "t.json")])
    wanted = {"pytorch_fp32", "pytorch_bf16", "torchscript_fp32", "onnxruntime_fp32", "onnxruntime_int8"}
    shapes = {(c["batch"], c["seconds"]) for c in cells}
    assert shapes == {(1, 2.0), (2, 2.0)}  # --quick: batches 1 and 2 of 2 s, every backend for each
    assert all(wanted <= {c["backend"] for c in cells if (c["batch"], c["seconds"]) == shape} for shape in shapes)
    for cell in cells:
        assert cell["iterations"] >= 3
        assert cell["throughput_seq_s"] == pytest.approx(cell["batch"] * 1000 / cell["mean_ms"])
        (base,) = [c for c in cells if c["backend"] == "pytorch_fp32" and c["batch"] == cell["batch"]]
        assert cell["speedup"] == pytest.approx(cell["throughput_seq_s"] / base["throughput_seq_s"])
    assert json.loads((tmp_path / "t.json").read_text())["cells"] == cells


def test_rtf_wer_quick_mode(tmp_path):
    pytest.importorskip("onnxruntime")
    import rtf_wer

    an4 = os.path.join(REPO, "tests", "data", "an4_subset")
    results = rtf_wer.main(["--quick", "--model_config", os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml"),
                            "--load_dir", str(tmp_path / "none"), "--manifest", os.path.join(an4, "test_manifest.json"),
                            "--calibration_manifest", os.path.join(an4, "train_manifest.json"),
                            "--out", str(tmp_path / "r.json")])
    assert set(results) == {"pytorch_fp32", "pytorch_bf16", "onnxruntime_fp32", "onnxruntime_int8"}
    assert all(r["rtf"] > 0 and 0 <= r["wer"] for r in results.values())
