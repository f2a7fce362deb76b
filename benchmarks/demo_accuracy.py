"""Reproduce the README's demo figures: build (or reuse) the synthetic corpus,
train the demo QuartzNet on CPU, and record held-out WER per epoch, the final
dev/test WER and the wall-clock time. Prints a table and writes JSON.

    python benchmarks/demo_accuracy.py                 # the README command-one run
    python benchmarks/demo_accuracy.py --num_epochs 20 # the documented longer run
    python benchmarks/demo_accuracy.py --quick         # tiny smoke run
"""
import argparse
import os
import sys
import time

import torch
from results_file import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples", "asr"))


# the run's settings after the demo filled in its defaults
RESOLVED = ("model_config", "num_epochs", "batch_size", "lr", "lr_policy", "warmup_steps", "beta1", "amp_opt_level",
            "random_seed", "bucketing")


def resolved_settings(args):
    settings = {key: args[key] for key in RESOLVED}
    settings["model_config"] = os.path.relpath(settings["model_config"], os.path.join(HERE, ".."))
    return settings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default=os.path.join(HERE, "..", "work_dir"))
    parser.add_argument("--num_epochs", type=int, default=None, help="default: the demo's")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "demo_accuracy.json"))
    args, extra = parser.parse_known_args(argv)
    import quartznet

    demo_args = ["--work_dir", args.work_dir] + extra
    if args.num_epochs:
        demo_args += ["--num_epochs", str(args.num_epochs), "--exp_name", f"quartznet_demo_{args.num_epochs}ep"]
    if args.quick:
        demo_args += ["--demo_utterances", "16", "4", "4", "--num_epochs", "1", "--batch_size", "8",
                      "--exp_name", "quartznet_demo_quick"]
    started = time.perf_counter()
    summary = quartznet.main(demo_args)
    elapsed = time.perf_counter() - started
    result = {
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "wall_s": elapsed,
        "train_s": summary["train"].get("seconds"), "steps": summary["train"]["step"],
        "epochs": summary["train"]["epoch"],
        "dev_wer": summary["eval"]["dev_manifest"]["wer"], "test_wer": summary["eval"]["test_manifest"]["wer"],
        "dev_wer_per_eval": summary["eval"]["dev_manifest"]["history"], "args": demo_args,
        "resolved": resolved_settings(summary["args"]),
    }
    print("\n| demo | value |\n|---|---|")
    print(f"| epochs / steps | {result['epochs']} / {result['steps']} |")
    print(f"| wall clock (corpus cache + training + eval) | {elapsed / 60:.1f} min |")
    print(f"| held-out dev WER | {result['dev_wer'] * 100:.2f}% |")
    print(f"| held-out test WER | {result['test_wer'] * 100:.2f}% |")
    write_results(args.out, result, indent=1)
    return result


if __name__ == "__main__":
    main()
