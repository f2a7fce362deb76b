#!/usr/bin/env python
"""Quantise a trained model (Jasper/QuartzNet/DeepSpeech2) to int8 for CPU inference.

``--method`` (see ``nemo_asr/quantization.py`` for which layers each covers and why):

- ``ort_static`` (default): export to ONNX, quantise with ONNX Runtime (static
  QDQ, calibrated on ``--num_samples`` utterances of ``--calibration_manifest``);
  writes an ONNX file for ``--backend onnxruntime``. The CTC head is int8
  unless ``--keep_decoder_fp32``.
- ``ort_dynamic``: ONNX Runtime dynamic int8 for LSTM layers (DeepSpeech2;
  no calibration); writes an ONNX file like ``ort_static``.
- ``torch_dynamic``: PyTorch dynamic int8 (RNN and Linear layers; no calibration);
- ``torch_static``: PyTorch static int8 convolutions (calibrated) + dynamic RNN/Linear;
  both write a TorchScript pipeline (audio in) for ``--backend torchscript``.
  The CTC head stays float unless ``--quantize_head`` (torch_static).

    python scripts/quantize.py --model_config cfg.yaml --load_dir checkpoints/ \\
        --calibration_manifest train.json --num_samples 100 --output model_int8.onnx
    python scripts/quantize.py --method torch_static --model_config deepspeech2_demo.yaml \\
        --load_dir checkpoints/ --calibration_manifest train.json --output model_int8.ts
"""
import argparse
import json
import logging
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors, require  # noqa: E402

TORCH_METHODS = ("torch_dynamic", "torch_static")  # nemo_asr.quantization.TORCH_METHODS, without importing torch
ORT_METHODS = ("ort_static", "ort_dynamic")
CALIBRATED = ("ort_static", "torch_static")  # methods that calibrate activation ranges

PROG = "quantize.py"


def calibration_batches(manifest, num_samples, sample_rate, batch_size=8, seed=0):
    from nemo_asr.parts.audio import load_audio
    from nemo_asr.parts.manifest import read_manifests

    entries = read_manifests(manifest, require_text=False)
    order = np.random.default_rng(seed).permutation(len(entries))[:num_samples]
    chosen = [entries[i] for i in order]
    batches = []
    for start in range(0, len(chosen), batch_size):
        clips = [load_audio(e.audio_filepath, sample_rate) for e in chosen[start:start + batch_size]]
        audio = np.zeros((len(clips), max(len(c) for c in clips)), np.float32)
        for i, clip in enumerate(clips):
            audio[i, : len(clip)] = clip
        batches.append((audio, np.array([len(c) for c in clips], np.int64)))
    return batches


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_config", required=True)
    parser.add_argument("--load_dir", required=True, help="folder with the encoder and decoder checkpoints")
    parser.add_argument("--method", choices=ORT_METHODS + TORCH_METHODS, default="ort_static")
    parser.add_argument("--calibration_manifest", default=None,
                        help="utterances to calibrate on (JSON lines or CSV); for ort_static and torch_static")
    parser.add_argument("--num_samples", type=int, default=100)
    parser.add_argument("--output", required=True, help="int8 ONNX file (ort_*) or TorchScript file (torch_*)")
    parser.add_argument("--fp32_output", default=None, help="also keep the float32 export here")
    parser.add_argument("--keep_decoder_fp32", action="store_true", help="ort_static: leave the CTC head float")
    parser.add_argument("--quantize_head", action="store_true", help="torch_static: make the CTC head int8 too")
    add_debug_flag(parser)
    return parser


def quantize(args):
    """Export, calibrate and quantise; returns the summary printed as JSON."""
    import nemo_core
    from nemo_core import runtime
    from nemo_asr.export import ModelIdentity, add_onnx_metadata, export_pipeline
    from nemo_asr.inference import Recognizer
    from nemo_asr.model_config import load_model_config

    torch_method = args.method in TORCH_METHODS
    if not torch_method:
        require("onnxruntime", "deploy", "int8 quantisation")
        require("onnx", "deploy", "ONNX export")
    from nemo_asr.quantization import quantize_pipeline, quantize_pipeline_dynamic

    if args.num_samples < 1:
        raise UserError(f"--num_samples must be at least 1, got {args.num_samples}")
    if args.quantize_head and args.method != "torch_static":
        head = "int8 unless --keep_decoder_fp32" if args.method == "ort_static" else "float"
        raise UserError(f"--quantize_head applies to --method torch_static (with {args.method} the head is {head})")
    if args.keep_decoder_fp32 and args.method != "ort_static":
        raise UserError(f"--keep_decoder_fp32 applies to --method ort_static (with {args.method} the head is float)")
    if args.calibration_manifest is None and args.method in CALIBRATED:
        raise UserError(f"--method {args.method} calibrates activation ranges: pass --calibration_manifest")
    cfg = load_model_config(args.model_config)
    runtime.set_defaults(nemo_core.DeviceType.CPU, None)
    recognizer = Recognizer(cfg).load(args.load_dir)
    identity = ModelIdentity(recognizer.labels, recognizer.preprocessor, recognizer.encoder, recognizer.decoder,
                             ModelIdentity.describe_checkpoint(recognizer.loaded_checkpoint))
    batches = []
    if args.calibration_manifest is not None:
        batches = calibration_batches(args.calibration_manifest, args.num_samples, recognizer.sample_rate)
        if not batches:
            raise UserError(f"--calibration_manifest {args.calibration_manifest} has no utterances to calibrate on")
    metadata = identity.metadata("audio")
    if torch_method:
        return quantize_with_torch(args, recognizer, batches, metadata)
    fp32 = args.fp32_output or args.output + ".fp32.onnx"
    export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder, fp32, metadata=metadata)
    try:
        if args.method == "ort_dynamic":
            quantize_pipeline_dynamic(fp32, args.output)
        else:
            quantize_pipeline(fp32, args.output, batches, quantize_decoder=not args.keep_decoder_fp32)
        add_onnx_metadata(args.output, metadata)  # quantisation drops it; nemo-transcribe --model_path checks it
        sizes = {p: os.path.getsize(p) / 2 ** 20 for p in (fp32, args.output)}
    finally:
        if not args.fp32_output and os.path.exists(fp32):
            os.remove(fp32)
    return {"method": args.method, "fp32": fp32 if args.fp32_output else None, "int8": args.output, "size_mb": sizes,
            "calibration_utterances": sum(len(b[1]) for b in batches)}


def quantize_with_torch(args, recognizer, batches, metadata):
    """torch.ao int8 copies of the encoder and decoder, traced with the float features into a TorchScript
    pipeline (audio in) carrying the float model's identity; returns the summary printed as JSON."""
    from nemo_asr.export import export_pipeline
    from nemo_asr.quantization import feature_batches, quantize_torch, quantized_layers

    pre, enc, dec = recognizer.preprocessor, recognizer.encoder, recognizer.decoder
    q_enc, q_dec = quantize_torch(enc, dec, args.method, feature_batches(pre, batches),
                                  quantize_head=args.quantize_head)
    paths = [args.output] + ([args.fp32_output] if args.fp32_output else [])
    export_pipeline(pre, q_enc, q_dec, args.output, d_format="torchscript", metadata=metadata)
    if args.fp32_output:
        export_pipeline(pre, enc, dec, args.fp32_output, d_format="torchscript", metadata=metadata)
    layers = {"encoder": quantized_layers(q_enc), "decoder": quantized_layers(q_dec)}
    return {"method": args.method, "fp32": args.fp32_output, "int8": args.output, "int8_layers": layers,
            "size_mb": {p: os.path.getsize(p) / 2 ** 20 for p in paths},
            "calibration_utterances": sum(len(b[1]) for b in batches)}


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    with one_line_errors(PROG, args.debug):
        summary = quantize(args)
        print(json.dumps(summary, indent=1))
        return args.output


if __name__ == "__main__":
    main()
