#!/usr/bin/env python
"""Evaluate a trained Jasper/QuartzNet: greedy WER, and with ``--lm_path``
beam search fused with a KenLM n-gram model.

    python examples/asr/jasper_infer.py --model_config examples/asr/configs/quartznet15x5.yaml \\
        --eval_datasets dev_clean.json --load_dir checkpoints/ [--lm_path lm.binary --beam_width 64]

``--save_logprobs out.pt`` stores per-utterance log-probs and references for
``scripts/tune_lm_params.py``. ``--ckpt_pattern NAME`` picks one model in a
folder holding several (an NGC download). Errors are one line on stderr with
exit status 1 (``--debug`` shows the traceback); the config, checkpoints,
manifests, LM and output paths are checked before any inference.
"""
import argparse
import json
import os
import tempfile

import torch

import nemo_core
from nemo_asr.inference import Recognizer, add_pruning_args, beam_decoder, beam_search, pruning_options
from nemo_asr.metrics import word_error_rate
from nemo_asr.model_config import load_model_config
from nemo_asr.parts.manifest import ManifestError, manifest_paths
from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors


def build_parser():
    parser = argparse.ArgumentParser(prog=os.path.basename(__file__), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_config", required=True)
    parser.add_argument("--eval_datasets", nargs="+", required=True)
    parser.add_argument("--load_dir", required=True, help="folder with the module checkpoints")
    parser.add_argument("--ckpt_pattern", default="",
                        help="part of the checkpoint file names that picks one model when --load_dir holds "
                             "several (an NGC download: e.g. quartznet15x5)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--amp_opt_level", default="O0", choices=[f"O{m.value}" for m in nemo_core.Optimization])
    parser.add_argument("--backend", default="framework", choices=["framework", "pytorch", "torchscript", "onnxruntime"],
                        help="all run the same acoustic pipeline; framework: in PyTorch on the run's device at "
                             "--amp_opt_level; the others on the CPU at --precision (torchscript/onnxruntime: "
                             "from the exported file)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="for the pytorch/torchscript backends")
    parser.add_argument("--model_path", default=None, help="ONNX/TorchScript file (default: export to a temp dir)")
    parser.add_argument("--lm_path", default=None, help="ARPA or KenLM binary model "
                                                        "(needs pip install 'nemo-typed-modules[lm]')")
    parser.add_argument("--beam_width", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=0.5, help="LM weight")
    parser.add_argument("--beta", type=float, default=1.0, help="word insertion bonus")
    add_pruning_args(parser)
    parser.add_argument("--num_cpus", type=int, default=max(1, (os.cpu_count() or 1)))
    parser.add_argument("--save_logprobs", default=None, help="write log-probs + references (.pt)")
    parser.add_argument("--output", default=None, help="write per-dataset WERs as JSON")
    nemo_core.add_distributed_args(parser)
    add_debug_flag(parser)
    return parser


def check_writable(path, flag):
    """Raise a ``UserError`` unless ``path`` (given as ``flag``) can be written."""
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"cannot write {flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write {flag} {path}: permission denied")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    with one_line_errors(parser.prog, args.debug):
        return evaluate(args)


def evaluate(args):
    # everything that can be wrong with the command line is found before any inference
    cfg = load_model_config(args.model_config)
    for path in (p for paths in args.eval_datasets for p in manifest_paths(paths)):
        if not os.path.isfile(path):
            raise ManifestError(f"Manifest {path} (--eval_datasets) does not exist")
    for path, flag in ((args.save_logprobs, "--save_logprobs"), (args.output, "--output")):
        if path:
            check_writable(path, flag)
    pruning = pruning_options(args)  # checked with or without --lm_path
    if args.model_path is not None and not os.path.isfile(args.model_path):
        raise UserError(f"--model_path {args.model_path} does not exist")
    decoder = None
    if args.lm_path:
        decoder = beam_decoder(cfg["labels"], args.lm_path, args.beam_width, args.alpha, args.beta,
                               num_cpus=args.num_cpus, pruning=pruning)
    recognizer = Recognizer(cfg)
    recognizer.check_checkpoints(args.load_dir, args.ckpt_pattern)
    nf = nemo_core.NeuralModuleFactory(local_rank=args.local_rank,
                                       optimization_level=nemo_core.Optimization.from_opt_level(args.amp_opt_level))
    results, saved = {}, {}
    workdir = tempfile.TemporaryDirectory()
    runner = None
    if args.backend != "framework":
        recognizer.load(args.load_dir, args.ckpt_pattern)
        runner = recognizer.runner(args.backend, args.precision, args.model_path, workdir.name)
    for path in args.eval_datasets:
        tag = os.path.splitext(os.path.basename(path))[0]
        run = recognizer.run(nf, path, args.batch_size, args.load_dir, runner=runner, ckpt_pattern=args.ckpt_pattern)
        greedy_wer = word_error_rate(run["hypotheses"], run["references"])[0]
        results[tag] = {"utterances": len(run["references"]), "greedy_wer": greedy_wer, "backend": args.backend}
        nf.logger.info("%s: greedy WER %.2f%% over %d utterances", tag, 100 * greedy_wer, len(run["references"]))
        if args.lm_path:
            texts = beam_search(run["log_probs"], recognizer.labels, args.lm_path, args.beam_width,
                                args.alpha, args.beta, decoder=decoder, progress=nf.is_main)
            beam_wer = word_error_rate(texts, run["references"])[0]
            results[tag].update(beam_wer=beam_wer, alpha=args.alpha, beta=args.beta, beam_width=args.beam_width,
                                pruning=pruning)
            nf.logger.info("%s: beam search + LM WER %.2f%% (alpha %.2f, beta %.2f, beam %d)", tag,
                           100 * beam_wer, args.alpha, args.beta, args.beam_width)
        saved[tag] = {"log_probs": run["log_probs"], "references": run["references"], "labels": recognizer.labels}
    if nf.is_main:
        print("\n| dataset | utterances | greedy WER | beam + LM WER |\n|---|---|---|---|")
        for tag, row in results.items():
            beam = f"{row['beam_wer'] * 100:.2f}%" if "beam_wer" in row else "-"
            print(f"| {tag} | {row['utterances']} | {row['greedy_wer'] * 100:.2f}% | {beam} |")
        if args.save_logprobs:
            torch.save(saved, args.save_logprobs)
        if args.output:
            with open(args.output, "w") as handle:
                json.dump(results, handle, indent=1)
    if decoder is not None:
        decoder.close()
    return results


if __name__ == "__main__":
    main()
