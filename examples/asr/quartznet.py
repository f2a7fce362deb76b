#!/usr/bin/env python
"""Train QuartzNet (time-channel separable Jasper) — or, with no dataset
arguments, run the demo: build a synthetic spoken corpus with espeak-ng and
flite (cached), train a small QuartzNet on CPU, report greedy WER on the
held-out dev set every epoch and on dev + test at the end, next to beam search
with a 3-gram LM estimated from the training transcripts (``--lm_order``;
with the ``lm`` extra installed).

    python examples/asr/quartznet.py                       # the demo
    python examples/asr/quartznet.py --model_config examples/asr/configs/quartznet15x5.yaml \\
        --train_dataset train.json --eval_datasets dev.json --num_epochs 100

Every option of ``jasper.py`` applies.
"""
import argparse
import importlib.util
import os
import time

from ruamel.yaml import YAML

from nemo_asr.synthetic_speech import build_corpus, corpus_ready
from nemo_core.deployment import write_atomic

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_training_script():
    """``examples/asr/jasper.py`` (the training command this one extends), loaded by path: no ``sys.path`` edits."""
    spec = importlib.util.spec_from_file_location("jasper", os.path.join(HERE, "jasper.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


jasper = _load_training_script()

DEMO_UTTERANCES = (3000, 200, 200)
# options that only shape the demo corpus and its augmentation
DEMO_ONLY = ("demo_data_dir", "demo_utterances", "demo_holdout_engine", "demo_voice_set", "demo_augment")
# the demo's training-time audio augmentation (nemo_asr.parts.perturb): speed (tempo and pitch together),
# reverberation with the corpus's synthetic room impulses, white noise; each with its probability
DEMO_PERTURBATIONS = [
    {"type": "speed", "prob": 0.4, "min_speed_rate": 0.9, "max_speed_rate": 1.1},
    {"type": "impulse", "prob": 0.25, "manifest_path": "impulse_manifest.json"},
    {"type": "white_noise", "prob": 0.2, "min_snr_db": 10.0, "max_snr_db": 40.0},
]
# the demo's model and CPU-sized schedule; each applies only where the option was not given
DEMO_DEFAULTS = {"model_config": os.path.join(HERE, "configs", "quartznet_demo.yaml"), "exp_name": "quartznet_demo",
                 "random_seed": 0, "bucketing": True, "num_epochs": 13, "batch_size": 16, "lr": 0.015,
                 "warmup_steps": 200, "beta1": 0.8, "lr_policy": "SquareRootAnnealing", "amp_opt_level": None,
                 "lm_order": 3}


def build_parser():
    """``jasper.py``'s parser plus the demo's options, and the regular defaults of the options the demo sets.

    The options of ``DEMO_DEFAULTS`` default to None ("not given"), so one
    parse tells what the user typed, however abbreviated; ``resolve_defaults``
    then fills them in from the demo's or the regular defaults.
    """
    parser = jasper.build_parser(__doc__, default_config=os.path.join(HERE, "configs", "quartznet15x5.yaml"))
    parser.add_argument("--demo_data_dir", default=None,
                        help="where the demo corpus is cached (default: <work_dir>/demo_corpus)")
    parser.add_argument("--demo_utterances", type=int, nargs=3, default=None, metavar=("TRAIN", "DEV", "TEST"),
                        help=f"corpus size (default: {' '.join(map(str, DEMO_UTTERANCES))})")
    parser.add_argument("--demo_holdout_engine", default=None, choices=["espeak", "flite"],
                        help="robustness split: train on the other synthesis engine, evaluate on this one "
                             "(corpus cached in <work_dir>/demo_corpus_holdout_<engine>)")
    parser.add_argument("--demo_voice_set", default=None, choices=["base", "wide", "recorded", "accented"],
                        help="training voices of the demo corpus: base (14 espeak-ng variants, default), wide "
                             "(49), recorded (wide plus festival's ked, a voice made from recorded speech, for "
                             "20 %% of training) or accented (recorded plus seven Italian, Czech and Finnish "
                             "festival voices speaking English, for another 20 %%); cached in "
                             "<work_dir>/demo_corpus[_holdout_<engine>]_<set>. README: Demo, robustness")
    parser.add_argument("--demo_augment", default=None, action=argparse.BooleanOptionalAction,
                        help="speed, reverberation and noise augmentation in training (default: off; written to "
                             "<demo corpus>/perturb.yaml; --perturb_config replaces it). README: Demo, robustness")
    regular = {key: parser.get_default(key) for key in DEMO_DEFAULTS}
    parser.set_defaults(**dict.fromkeys(DEMO_DEFAULTS))
    return parser, regular


def demo_mixed_precision_pays():
    """O1 on a GPU (fp16) or on a CPU with bf16 hardware. Measured on a 2-core
    AVX512-BF16 CPU: 0.81x the fp32 epoch time at no cost in held-out WER; on
    CPUs that only emulate bf16 the demo stays in float32."""
    import torch
    from nemo_core.precision import cpu_has_native_bf16

    return torch.cuda.is_available() or cpu_has_native_bf16()


def lm_extra_installed():
    """Whether the ``lm`` extra (pyctcdecode, kenlm) is importable, for the demo's beam + LM table."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("pyctcdecode", "kenlm"))


def resolve_defaults(args, regular, demo):
    """Options left unset (None) take the demo's value in a demo run, else the regular default."""
    chosen = dict(DEMO_DEFAULTS, amp_opt_level="O1" if demo_mixed_precision_pays() else regular["amp_opt_level"])
    given = {key for key in DEMO_DEFAULTS if getattr(args, key) is not None}
    for key in DEMO_DEFAULTS:
        if key not in given:
            setattr(args, key, chosen[key] if demo else regular[key])
    if demo and "lm_order" not in given and not lm_extra_installed():
        print("Demo: greedy WER only; pip install -e '.[lm]' adds beam search with an n-gram LM to the final table",
              flush=True)
        args.lm_order = 0
    if demo:
        why = ("given" if "amp_opt_level" in given else
               "half precision in hardware here" if args.amp_opt_level == "O1" else "no half-precision hardware here")
        print(f"Demo: {args.num_epochs} epochs, {args.lr_policy}, --amp_opt_level {args.amp_opt_level} ({why})",
              flush=True)
    return args


def demo_corpus(args):
    """Build (rank 0) or wait for the cached demo corpus; point the run's datasets at it."""
    holdout, voice_set = args.demo_holdout_engine, args.demo_voice_set or "base"
    default_dir = ("demo_corpus" + (f"_holdout_{holdout}" if holdout else "")
                   + ("" if voice_set == "base" else f"_{voice_set}"))
    data_dir = args.demo_data_dir or os.path.join(args.work_dir, default_dir)
    train, dev, test = args.demo_utterances or DEMO_UTTERANCES
    started = time.perf_counter()
    perturb = os.path.join(data_dir, "perturb.yaml")
    options = dict(holdout_engine=holdout, voice_set=voice_set)
    if jasper.nemo_core.distributed.resolve_local_rank(args.local_rank) in (None, 0):
        build_corpus(data_dir, train, dev, test, **options)
        write_yaml(perturb, {"perturbations": DEMO_PERTURBATIONS})  # relative paths: next to the corpus's files
    else:
        # Other ranks wait for rank 0's corpus: one stamped for these very settings (a folder left from
        # another corpus, or one being rebuilt, does not count). They read perturb.yaml only after the
        # process group forms, which rank 0 joins once it has written the file.
        while not corpus_ready(data_dir, train, dev, test, **options):
            time.sleep(1)
    print(f"Demo corpus ready in {time.perf_counter() - started:.1f} s: {data_dir}", flush=True)
    args.train_dataset = os.path.join(data_dir, "train_manifest.json")
    args.eval_datasets = [os.path.join(data_dir, "dev_manifest.json")]
    args.final_eval_datasets = [os.path.join(data_dir, "test_manifest.json")]
    if args.perturb_config is None and args.demo_augment:
        args.perturb_config = perturb
    return args


def write_yaml(path, data):
    """Write ``data`` to ``path`` whole or not at all."""
    def write(tmp):
        with open(tmp, "w") as handle:
            YAML(typ="safe").dump(data, handle)

    write_atomic(path, write)


def main(argv=None):
    parser, regular = build_parser()
    args = parser.parse_args(argv)
    demo = not args.train_dataset
    if not demo:
        given = [f"--{key}" for key in DEMO_ONLY if getattr(args, key) is not None]
        if given:
            parser.error(f"{', '.join(given)} only apply to the demo (no --train_dataset); remove them")
    args = resolve_defaults(args, regular, demo)
    with jasper.one_line_errors("quartznet.py", args.debug):
        if demo:
            args = demo_corpus(args)
        if args.num_epochs is None and args.max_steps is None:
            args.num_epochs = 10
        started = time.perf_counter()
        summary = jasper.train(args, jasper.load_model_config(args.model_config))
    if summary is not None:
        summary["args"] = dict(vars(args))
        print(f"Training + evaluation took {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return summary


if __name__ == "__main__":
    main()
