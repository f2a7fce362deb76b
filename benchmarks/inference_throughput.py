"""Acoustic-model inference throughput over batch sizes x audio lengths for
each available backend/precision, laid out like the Jasper-TensorRT README:
per cell the 90/95/99th latency percentiles, mean throughput (sequences/s)
and speed-up over PyTorch fp32 eager. Prints markdown, writes JSON.

Backends: pytorch fp32, pytorch bf16 (CPU autocast) / fp16 (CUDA), torchscript
fp32, onnxruntime fp32, onnxruntime int8 (static QDQ, calibrated on AN4 audio).
Weights are random unless --load_dir is given (speed does not depend on them).
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
from ruamel.yaml import YAML

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import nemo_core  # noqa: E402
from nemo_asr.export import export_pipeline  # noqa: E402
from nemo_asr.inference import Recognizer  # noqa: E402
from nemo_asr.inference_runner import InferenceRunner  # noqa: E402
from nemo_asr.quantization import quantize_pipeline  # noqa: E402
from results_file import write_results  # noqa: E402

AN4_TEST = os.path.join(HERE, "..", "tests", "data", "an4_subset", "test_manifest.json")


def an4_calibration(sample_rate=16000, batch=4):
    sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
    from quantize import calibration_batches

    return calibration_batches(AN4_TEST, 8, sample_rate, batch_size=batch)


def build_runners(recognizer, tmp, device, names):
    runners = {}
    half = "fp16" if device == "cuda" else "bf16"
    if "pytorch_fp32" in names:
        runners["pytorch_fp32"] = recognizer.runner("pytorch", "fp32")
    if f"pytorch_{half}" in names:  # bf16 on CPU, fp16 on CUDA
        runners[f"pytorch_{half}"] = recognizer.runner("pytorch", half)
    if "torchscript_fp32" in names:
        path = export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder,
                               os.path.join(tmp, "model.ts"), "torchscript")
        runners["torchscript_fp32"] = InferenceRunner("torchscript", path=path, device=device)
    if {"onnxruntime_fp32", "onnxruntime_int8"} & set(names):
        fp32 = export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder,
                               os.path.join(tmp, "model.onnx"))
        if "onnxruntime_fp32" in names:
            runners["onnxruntime_fp32"] = InferenceRunner("onnxruntime", path=fp32, device=device)
        if "onnxruntime_int8" in names:
            int8 = quantize_pipeline(fp32, os.path.join(tmp, "model_int8.onnx"), an4_calibration())
            runners["onnxruntime_int8"] = InferenceRunner("onnxruntime", path=int8, device=device)
    return runners


def measure(runner, batch, seconds, iterations, warmup, budget_s):
    samples = int(seconds * 16000)
    audio = torch.randn(batch, samples) * 0.1
    lengths = torch.full((batch,), samples, dtype=torch.long)
    for _ in range(warmup):
        runner(audio, lengths)
    latencies = []
    started = time.perf_counter()
    while len(latencies) < iterations and (len(latencies) < 3 or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        runner(audio, lengths)
        latencies.append(time.perf_counter() - t0)
    lat = np.array(latencies) * 1000
    return {"p90_ms": float(np.percentile(lat, 90)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)), "mean_ms": float(lat.mean()),
            "throughput_seq_s": batch / (lat.mean() / 1000), "iterations": len(latencies)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_config", default=os.path.join(HERE, "..", "examples", "asr", "configs", "quartznet15x5.yaml"))
    parser.add_argument("--load_dir", default=None)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds", type=float, nargs="+", default=[2.0, 7.0, 16.7])
    parser.add_argument("--backends", nargs="+", default=["pytorch_fp32", "pytorch_bf16", "pytorch_fp16",
                                                          "torchscript_fp32", "onnxruntime_fp32", "onnxruntime_int8"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget_s", type=float, default=8.0, help="max seconds of timing per cell")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "inference_throughput.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.seconds, args.iterations, args.warmup = [1, 2], [2.0], 3, 1
        args.model_config = os.path.join(HERE, "..", "tests", "data", "configs", "tiny_quartznet.yaml")
    with open(args.model_config) as handle:
        cfg = YAML(typ="safe").load(handle)
    nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0)
    recognizer = Recognizer(cfg)
    if args.load_dir:
        recognizer.load(args.load_dir)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        runners = build_runners(recognizer, tmp, args.device, args.backends)
        for seconds in args.seconds:
            for batch in args.batch_sizes:
                base = None
                for name, runner in runners.items():
                    cell = measure(runner, batch, seconds, args.iterations, args.warmup, args.budget_s)
                    base = base or cell["throughput_seq_s"]
                    cell.update(backend=name, batch=batch, seconds=seconds, speedup=cell["throughput_seq_s"] / base)
                    results.append(cell)
                    print(f"{name:18s} batch {batch:2d} {seconds:5.1f}s  {cell['throughput_seq_s']:8.2f} seq/s  "
                          f"x{cell['speedup']:.2f}", file=sys.stderr, flush=True)
    print("| backend | batch | audio (s) | p90 (ms) | p95 (ms) | p99 (ms) | throughput (seq/s) | speed-up vs pytorch fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['batch']} | {r['seconds']} | {r['p90_ms']:.1f} | {r['p95_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['throughput_seq_s']:.2f} | {r['speedup']:.2f} |")
    write_results(args.out, {"model_config": os.path.basename(args.model_config), "device": args.device,
                             "threads": torch.get_num_threads(), "cells": results}, indent=1)
    return results


if __name__ == "__main__":
    main()
