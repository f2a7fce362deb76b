#!/usr/bin/env python
"""Grid-search the LM weight (alpha) and word bonus (beta) for beam search
over log-probs saved by ``jasper_infer.py --save_logprobs``; prints every
pair's WER and the best one. While the best pair lies on an edge of the
grid, the grid grows one step beyond that edge (``--grow`` rounds at most;
alpha never below 0). The LM loads once; a progress bar (stderr, on a
terminal) counts the grid. Errors are one line on stderr with exit status 1
(``--debug`` shows the traceback).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nemo_asr.inference import add_pruning_args, beam_decoder, pruning_options  # noqa: E402
from nemo_asr.language_model import DEFAULT_GROW, best_pair, grid_search, load_saved_logprobs, on_edge  # noqa: E402
from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors  # noqa: E402


def grid(spec, flag):
    start, stop, step = spec
    if step <= 0 or stop < start:
        raise UserError(f"{flag} {start:g} {stop:g} {step:g}: give START <= STOP and a positive STEP")
    return [round(v, 4) for v in np.arange(start, stop + step / 2, step)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog=os.path.basename(__file__), description=__doc__)
    parser.add_argument("--logprobs", required=True, help="file written by jasper_infer.py --save_logprobs")
    parser.add_argument("--lm_path", required=True, help="ARPA or KenLM binary model "
                                                         "(needs pip install 'nemo-typed-modules[lm]')")
    parser.add_argument("--dataset", default=None, help="which saved dataset (default: the first)")
    parser.add_argument("--alpha", type=float, nargs=3, default=(0.0, 2.0, 0.5), metavar=("START", "STOP", "STEP"))
    parser.add_argument("--beta", type=float, nargs=3, default=(0.0, 2.0, 0.5), metavar=("START", "STOP", "STEP"))
    parser.add_argument("--grow", type=int, default=DEFAULT_GROW,
                        help="at most this many rounds that extend the grid one STEP beyond an edge while the best "
                             "pair lies on it (0: exactly the grid given; default: %(default)s)")
    parser.add_argument("--beam_width", type=int, default=32)
    parser.add_argument("--num_cpus", type=int, default=os.cpu_count() or 1)
    add_pruning_args(parser)
    parser.add_argument("--output", default=None, help="write the grid as JSON")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    with one_line_errors(parser.prog, args.debug):
        return tune(args)


def tune(args):
    from tqdm import tqdm

    alphas, betas = grid(args.alpha, "--alpha"), grid(args.beta, "--beta")
    if args.grow < 0:
        raise UserError(f"--grow {args.grow}: give 0 (exactly the grid given) or more")
    pruning = pruning_options(args)
    if args.output:
        folder = os.path.dirname(os.path.abspath(args.output))
        if os.path.isdir(args.output) or not os.path.isdir(folder):
            raise UserError(f"cannot write --output {args.output}: "
                            f"{'it is a folder' if os.path.isdir(args.output) else f'folder {folder} does not exist'}")
    saved, tag = load_saved_logprobs(args.logprobs, args.dataset)
    data = saved[tag]
    # one decoder (the LM loads once); each grid point only changes its weights
    decoder = beam_decoder(data["labels"], args.lm_path, args.beam_width, alphas[0], betas[0],
                           num_cpus=args.num_cpus, pruning=pruning)

    def show(row):
        tqdm.write(f"alpha {row['alpha']:5.2f}  beta {row['beta']:5.2f}  WER {row['wer'] * 100:6.2f}%", file=sys.stdout)
        sys.stdout.flush()

    try:
        results = grid_search(decoder, data["log_probs"], data["references"], alphas, betas, on_result=show,
                              grow=args.grow)
    finally:
        decoder.close()
    best = best_pair(results)
    print(f"best: alpha {best['alpha']}, beta {best['beta']}, WER {best['wer'] * 100:.2f}% on {tag}")
    if on_edge(results):
        print(f"note: the best pair lies on an edge of the grid after {args.grow} rounds of growing; better weights "
              "may lie beyond it (raise --grow or move --alpha/--beta)")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"dataset": tag, "grid": results, "best": best, "on_edge": on_edge(results)}, handle, indent=1)
    return best


if __name__ == "__main__":
    main()
