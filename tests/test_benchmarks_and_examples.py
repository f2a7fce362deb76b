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
    assert set(results) == {"pytorch_fp32", "pytorch_bf16", "onnxruntime_fp32", "onnxruntime_int8",
                            "pytorch_int8_static", "pytorch_int8_dynamic"}
    assert all(r["rtf"] > 0 and 0 <= r["wer"] for r in results.values())


def test_train_step_benchmark_compares_equal_models_and_counts_flops(tmp_path):
    import torch
    import train_step

    result = train_step.main(["--models", "demo", "--batch_sizes", "2", "--steps", "1", "--warmup", "0",
                              "--dtypes", "fp32", "--out", str(tmp_path / "ts.json")])
    row, = result["rows"]
    assert json.loads((tmp_path / "ts.json").read_text())["rows"][0]["model"] == "demo"
    # the reference really is the same model: same loss and gradients within float rounding
    assert row["loss_rel_diff"] < 1e-5 and row["grad_rel_diff_max"] < 1e-4
    assert row["ours_s"] > 0 and row["reference_s"] > 0
    if result["nemo_toolkit"] is None:  # NeMo's own model is optional: skipped with the reason
        assert row["nemo"].startswith("nemo_toolkit not importable") and "nemo_s" not in row
    else:
        assert row["nemo_loss_rel_diff"] < 1e-5 and row["nemo_grad_rel_diff_max"] < 1e-4 and row["nemo_s"] > 0
    assert row["speedup_vs_reference"] == pytest.approx(row["reference_s"] / row["ours_s"])
    assert {op["op"] for op in row["top_ops_ours"]} and 0 < sum(op["share"] for op in row["top_ops_ours"]) <= 1
    # FLOPs: 3x a hand count of the forward convolutions (2 * out frames * batch * weights per conv)
    blocks = train_step.load_blocks(train_step.CONFIGS["demo"])
    reference = train_step.ReferenceQuartzNet(blocks, train_step.FEATURES, train_step.LABELS)
    x, frames, _, _ = train_step.make_batch(2)
    flops = []
    hooks = [m.register_forward_hook(lambda m, i, o: flops.append(2 * o.shape[0] * o.shape[-1] * m.weight.numel()))
             for m in reference.modules() if isinstance(m, torch.nn.Conv1d)]
    with torch.no_grad():
        reference(x, frames)
    for hook in hooks:
        hook.remove()
    assert row["flops_per_step"] == 3 * sum(flops)
