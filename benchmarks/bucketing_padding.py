"""How much sort-by-length bucketing saves: padded samples and forward time.

Writes a temporary corpus of noise clips whose durations follow a wide,
LibriSpeech-like spread (uniform 1-16.7 s), reads it through
``AudioToTextDataLayer`` with and without ``bucketing``, and for each pass
counts padding and times mel features + a QuartzNet 5x5 encoder forward
(eval mode, no gradients). Passes alternate to share machine noise.
Prints a markdown table and writes JSON.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import soundfile as sf
import torch
from ruamel.yaml import YAML

import nemo_core
import nemo_asr
from results_file import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "examples", "asr", "configs", "quartznet5x5.yaml")


def write_corpus(folder, count, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i, seconds in enumerate(rng.uniform(1.0, 16.7, size=count)):
        samples = (0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        sf.write(os.path.join(folder, f"{i}.wav"), samples, 16000)
        rows.append({"audio_filepath": f"{i}.wav", "duration": float(seconds), "text": "noise"})
    manifest = os.path.join(folder, "manifest.json")
    with open(manifest, "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    return manifest


def one_pass(layer, pre, encoder):
    padded = valid = 0
    start = time.perf_counter()
    with torch.no_grad():
        for audio, audio_len, _, _ in layer.make_dataloader(seed=0):
            padded += audio.numel()
            valid += int(audio_len.sum())
            spec, spec_len = pre(input_signal=audio, length=audio_len)
            encoder(audio_signal=spec, length=spec_len)
    return 1.0 - valid / padded, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--bucket_batches", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "bucketing_padding.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.utterances, args.rounds, args.bucket_batches, args.batch_size = 8, 1, 2, 2

    nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0)
    with open(CONFIG) as handle:
        cfg = YAML(typ="safe").load(handle)
    pre = nemo_asr.AudioToMelSpectrogramPreprocessor(dither=0.0)
    encoder = nemo_asr.JasperEncoder(feat_in=64, **cfg["JasperEncoder"])
    pre.eval()
    encoder.eval()
    results = {"plain": [], "bucketed": []}
    with tempfile.TemporaryDirectory() as folder:
        manifest = write_corpus(folder, args.utterances, seed=0)
        layers = {
            "plain": nemo_asr.AudioToTextDataLayer(manifest_filepath=manifest, labels=cfg["labels"],
                                                   batch_size=args.batch_size, max_duration=None),
            "bucketed": nemo_asr.AudioToTextDataLayer(manifest_filepath=manifest, labels=cfg["labels"],
                                                      batch_size=args.batch_size, max_duration=None,
                                                      bucketing=True, bucket_batches=args.bucket_batches),
        }
        for _ in range(args.rounds):
            for name, layer in layers.items():
                results[name].append(one_pass(layer, pre, encoder))
    summary = {name: {"padding_fraction": runs[0][0], "seconds_median": statistics.median(t for _, t in runs)}
               for name, runs in results.items()}
    summary["time_ratio_bucketed_over_plain"] = summary["bucketed"]["seconds_median"] / summary["plain"]["seconds_median"]
    summary.update(utterances=args.utterances, batch_size=args.batch_size, bucket_batches=args.bucket_batches,
                   rounds=args.rounds)
    print("| reading | padded share of samples | features + QuartzNet 5x5 forward (median) |")
    print("|---|---|---|")
    for name in ("plain", "bucketed"):
        print(f"| {name} | {summary[name]['padding_fraction']:.1%} | {summary[name]['seconds_median']:.2f} s |")
    print(f"| **bucketed / plain time** | | **{summary['time_ratio_bucketed_over_plain']:.2f}** |")
    write_results(args.out, summary)
    return summary


if __name__ == "__main__":
    main()
