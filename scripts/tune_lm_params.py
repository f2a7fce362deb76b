#!/usr/bin/env python
"""Grid-search the LM weight (alpha) and word bonus (beta) for beam search
over log-probs saved by ``jasper_infer.py --save_logprobs``; prints every
pair's WER and the best one."""
import argparse
import itertools
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nemo_asr.inference import beam_search  # noqa: E402
from nemo_asr.metrics import word_error_rate  # noqa: E402


def grid(spec):
    start, stop, step = spec
    return [round(v, 4) for v in np.arange(start, stop + step / 2, step)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logprobs", required=True, help="file written by jasper_infer.py --save_logprobs")
    parser.add_argument("--lm_path", required=True)
    parser.add_argument("--dataset", default=None, help="which saved dataset (default: the first)")
    parser.add_argument("--alpha", type=float, nargs=3, default=(0.0, 2.0, 0.5), metavar=("START", "STOP", "STEP"))
    parser.add_argument("--beta", type=float, nargs=3, default=(0.0, 2.0, 0.5), metavar=("START", "STOP", "STEP"))
    parser.add_argument("--beam_width", type=int, default=32)
    parser.add_argument("--num_cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", default=None, help="write the grid as JSON")
    args = parser.parse_args(argv)
    saved = torch.load(args.logprobs, weights_only=False)
    tag = args.dataset or next(iter(saved))
    if tag not in saved:
        parser.error(f"{args.logprobs} holds {', '.join(saved)}, not {tag}")
    data = saved[tag]
    results = []
    for alpha, beta in itertools.product(grid(args.alpha), grid(args.beta)):
        texts = beam_search(data["log_probs"], data["labels"], args.lm_path, args.beam_width, alpha, beta,
                            num_cpus=args.num_cpus)
        wer = word_error_rate(texts, data["references"])[0]
        results.append({"alpha": alpha, "beta": beta, "wer": wer})
        print(f"alpha {alpha:5.2f}  beta {beta:5.2f}  WER {wer * 100:6.2f}%", flush=True)
    best = min(results, key=lambda r: r["wer"])
    print(f"best: alpha {best['alpha']}, beta {best['beta']}, WER {best['wer'] * 100:.2f}% on {tag}")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"dataset": tag, "grid": results, "best": best}, handle, indent=1)
    return best


if __name__ == "__main__":
    main()
