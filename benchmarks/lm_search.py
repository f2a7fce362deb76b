"""Beam search + n-gram LM settings side by side on one model's saved log-probs:
for each beam width and grid-growing limit, alpha/beta tuned on one dataset
(``nemo_asr.language_model.evaluate_with_lm``, the code behind ``jasper.py
--lm_order``) and the WER that pair gives on every dataset, with the pairs
decoded and the seconds taken. Prints a markdown table and writes JSON.

    python examples/asr/jasper_infer.py ... --save_logprobs lp.pt
    python benchmarks/lm_search.py --logprobs lp.pt --lm_path exp/train_text_3gram.arpa \\
        --beam_widths 16 32 64 --grow 0 3 --out benchmarks/results/lm_search_mymodel.json

The tuning set's WER is optimistic (its own tuning set); the other sets' are not.
Seconds depend on the machine and its load: compare rows of one run only.
"""
import argparse
import os
import sys
import time

from results_file import machine_info, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from nemo_asr.language_model import evaluate_with_lm, load_saved_logprobs  # noqa: E402
from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog=os.path.basename(__file__), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logprobs", required=True, help="file written by jasper_infer.py --save_logprobs")
    parser.add_argument("--lm_path", required=True, help="ARPA or KenLM binary model")
    parser.add_argument("--tune_on", default=None, help="dataset to tune alpha/beta on (default: the first saved)")
    parser.add_argument("--beam_widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--grow", type=int, nargs="+", default=[0, 3],
                        help="grid-growing limits to compare (0: the fixed 3 x 3 grid)")
    parser.add_argument("--num_cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--label", default="", help="what the log-probs are, for the JSON (e.g. the model's run)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "lm_search.json"))
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    with one_line_errors(parser.prog, args.debug):
        return run(args)


def run(args):
    from tqdm import tqdm

    if not os.path.isfile(args.lm_path):
        raise UserError(f"--lm_path {args.lm_path} does not exist")
    if min(args.beam_widths) < 1:
        raise UserError(f"--beam_widths {min(args.beam_widths)}: give widths of 1 or more")
    if min(args.grow) < 0:
        raise UserError(f"--grow {min(args.grow)}: give 0 (the fixed grid) or more")
    if os.path.isdir(args.out):
        raise UserError(f"cannot write --out {args.out}: it is a folder; give a file name")
    saved, tune_on = load_saved_logprobs(args.logprobs, args.tune_on, flag="--tune_on")
    labels = saved[tune_on]["labels"]
    rows = []
    settings = [(beam, grow) for beam in args.beam_widths for grow in args.grow]
    for beam, grow in tqdm(settings, desc="settings", unit="setting", disable=None):
        started = time.perf_counter()
        result = evaluate_with_lm(saved, labels, args.lm_path, tune_on, beam_width=beam, grow=grow,
                                  num_cpus=args.num_cpus, progress=False)
        rows.append({"beam_width": beam, "grow": grow, "alpha": result["alpha"], "beta": result["beta"],
                     "pairs": len(result["grid"]), "on_edge": result["on_edge"],
                     "seconds": time.perf_counter() - started,
                     "wer": result["wer"], "pruning": result["pruning"], "grid": result["grid"]})
    tags = list(saved)
    print(f"\n| beam | grow | alpha | beta | pairs | {' | '.join(f'{t} WER' for t in tags)} | seconds |")
    print("|---|---|---|---|---|" + "---|" * len(tags) + "---|")
    for row in rows:
        wers = " | ".join(f"{row['wer'][t] * 100:.2f}%{' (tuned here)' if t == tune_on else ''}" for t in tags)
        edge = " (on the edge)" if row["on_edge"] else ""
        print(f"| {row['beam_width']} | {row['grow']} | {row['alpha']:g} | {row['beta']:g}{edge} | {row['pairs']} "
              f"| {wers} | {row['seconds']:.0f} |")
    write_results(args.out, {"label": args.label, "logprobs": os.path.abspath(args.logprobs),
                             "lm_path": os.path.abspath(args.lm_path), "tuned_on": tune_on,
                             "machine": machine_info(), "rows": rows})
    print(f"JSON: {args.out}")
    return rows


if __name__ == "__main__":
    main()
