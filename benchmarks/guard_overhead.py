"""What the non-finite step guard costs, side by side in one run.

The same training (a QuartzNet from ``examples/asr/configs``, real AN4 audio
from ``tests/data/an4_subset``, batch 16) runs through ``nf.train`` with the
guard (the framework as shipped) and without it: the benchmark swaps in the
step of the framework before the guard existed (no gradient-norm pass, no
BatchNorm snapshot, no decision). Runs alternate guarded / unguarded, each
from the same seed and weights, so machine noise hits both alike.
Target: guarded / unguarded step time <= 1.02.

Prints a markdown table and writes JSON (``--out``).
"""
import argparse
import os
import platform
import statistics
import time

import torch
from ruamel.yaml import YAML

import nemo_core
import nemo_asr
from nemo_asr.model_config import modules_from_config
from nemo_core.actions import train as train_action
from nemo_core.precision import Precision, StepOutcome
from results_file import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
AN4 = os.path.join(REPO, "tests", "data", "an4_subset", "train_manifest.json")


class UnguardedPrecision(Precision):
    """The step as it was before the guard: unscale only to clip, no norm, no check."""

    def step(self, optimizer, params, loss_finite=True, max_norm=None, agree=None):
        self._grads_to_masters()
        self.scaler.step(optimizer)
        self.scaler.update()
        return StepOutcome(True, None, True)


class NoGuard:
    def __init__(self, *args, **kwargs):
        pass

    def begin_step(self):
        pass

    def add_batch(self, indices):
        pass

    def rollback(self):
        pass

    def after_step(self, state, outcome, loss):
        state.consecutive_skips = 0


class StepTimer(nemo_core.ActionCallback):
    def __init__(self):
        self.times, self._last = [], None

    def on_step_start(self, state):
        self._last = time.perf_counter()

    def on_step_end(self, state):
        self.times.append(time.perf_counter() - self._last)


def run(cfg, guarded, steps, seed=0):
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=seed)
    if not guarded:
        nf.precision = UnguardedPrecision(nf.precision.level, nf.device)
    layer = nemo_asr.AudioToTextDataLayer(manifest_filepath=AN4, labels=cfg["labels"], batch_size=16)
    pre, enc, dec = modules_from_config(cfg)
    ctc = nemo_asr.CTCLossNM(num_classes=len(cfg["labels"]))
    audio, audio_len, text, text_len = layer()
    spec, spec_len = pre(input_signal=audio, length=audio_len)
    encoded, enc_len = enc(audio_signal=spec, length=spec_len)
    loss = ctc(log_probs=dec(encoder_output=encoded), targets=text, input_length=enc_len, target_length=text_len)
    timer = StepTimer()
    original = train_action.StepGuard
    train_action.StepGuard = original if guarded else NoGuard
    try:
        nf.train([loss], callbacks=[timer], optimizer="novograd",
                 optimization_params={"max_steps": steps, "lr": 0.01, "betas": (0.8, 0.5)})
    finally:
        train_action.StepGuard = original
    return timer.times[2:]  # the first steps warm up allocators and oneDNN


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["quartznet_demo", "quartznet5x5"])
    parser.add_argument("--steps", type=int, default=12, help="steps per run (the first 2 are not timed)")
    parser.add_argument("--rounds", type=int, default=4, help="guarded/unguarded pairs per config")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "guard_overhead.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for name in args.configs:
        with open(os.path.join(REPO, "examples", "asr", "configs", f"{name}.yaml")) as handle:
            cfg = YAML(typ="safe").load(handle)
        times = {True: [], False: []}
        for round_index in range(args.rounds):
            order = (True, False) if round_index % 2 == 0 else (False, True)
            for guarded in order:
                times[guarded].extend(run(cfg, guarded, args.steps))
        on, off = statistics.median(times[True]), statistics.median(times[False])
        rows.append({"config": name, "guarded_s": on, "unguarded_s": off, "ratio": on / off,
                     "steps_timed": len(times[True])})
    print("\n| model | guarded step (s) | unguarded step (s) | ratio |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['config']} | {row['guarded_s']:.4f} | {row['unguarded_s']:.4f} | {row['ratio']:.3f} |")
    write_results(args.out, {"machine": {"cpu": _cpu_model(), "threads": torch.get_num_threads(),
                                         "torch": torch.__version__, "python": platform.python_version()},
                             "batch_size": 16, "data": "tests/data/an4_subset (30 real utterances)",
                             "rows": rows})


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
