#!/usr/bin/env python
"""Export a trained Jasper/QuartzNet to ONNX and quantise it to int8 (static,
calibrated on ``--num_samples`` utterances of ``--calibration_manifest``).

    python scripts/quantize.py --model_config cfg.yaml --load_dir checkpoints/ \\
        --calibration_manifest train.json --num_samples 100 --output model_int8.onnx
"""
import argparse
import json
import logging
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_config", required=True)
    parser.add_argument("--load_dir", required=True, help="folder with JasperEncoder/JasperDecoderForCTC checkpoints")
    parser.add_argument("--calibration_manifest", required=True)
    parser.add_argument("--num_samples", type=int, default=100)
    parser.add_argument("--output", required=True, help="int8 ONNX file")
    parser.add_argument("--fp32_output", default=None, help="also keep the float32 ONNX here")
    parser.add_argument("--keep_decoder_fp32", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from ruamel.yaml import YAML

    import nemo_core
    from nemo_asr.export import export_pipeline
    from nemo_asr.inference import Recognizer
    from nemo_asr.quantization import quantize_pipeline

    with open(args.model_config) as handle:
        cfg = YAML(typ="safe").load(handle)
    nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)
    recognizer = Recognizer(cfg)
    recognizer.load(args.load_dir)
    fp32 = args.fp32_output or args.output + ".fp32.onnx"
    export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder, fp32)
    batches = calibration_batches(args.calibration_manifest, args.num_samples, recognizer.sample_rate)
    quantize_pipeline(fp32, args.output, batches, quantize_decoder=not args.keep_decoder_fp32)
    sizes = {p: os.path.getsize(p) / 2 ** 20 for p in (fp32, args.output)}
    print(json.dumps({"fp32": fp32, "int8": args.output, "size_mb": sizes,
                      "calibration_utterances": sum(len(b[1]) for b in batches)}, indent=1))
    if not args.fp32_output:
        os.remove(fp32)
    return args.output


if __name__ == "__main__":
    main()
