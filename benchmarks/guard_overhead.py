"""What the non-finite step guard costs, side by side in one run.

One training run (a QuartzNet from ``examples/asr/configs``, real AN4 audio
from ``tests/data/an4_subset``, batch 15 so both batches of an epoch have the
same size) alternates, in pairs of steps, between the framework's guarded
step and the step as it was before the guard (no gradient-norm pass, no
decision, no BatchNorm snapshot): steps 0-1 guarded, 2-3 unguarded, 4-5
guarded... so both variants see the same batches, the same process and the
same memory state. Target: guarded / unguarded step time <= 1.02. The
guard's own work is also timed in isolation on the same model and reported
as a share of a step.

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
from nemo_core.actions.guard import StepGuard
from nemo_core.precision import Precision, StepOutcome, total_norm
from results_file import cpu_model, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
AN4 = os.path.join(REPO, "tests", "data", "an4_subset", "train_manifest.json")


class AlternatingPrecision(Precision):
    """The shipped step when ``guarded`` is set, else the step before the guard existed."""

    guarded = True

    def step(self, optimizer, params, loss_finite=True, max_norm=None, agree=None):
        if self.guarded:
            return super().step(optimizer, params, loss_finite, max_norm, agree)
        self._grads_to_masters()
        self.scaler.step(optimizer)
        self.scaler.update()
        return StepOutcome(True, None, True)


def alternating_guard(precision):
    class AlternatingGuard(StepGuard):
        def begin_step(self):
            if precision.guarded:
                super().begin_step()

        def after_step(self, state, outcome, loss):
            if precision.guarded:
                super().after_step(state, outcome, loss)

    return AlternatingGuard


class StepTimer(nemo_core.ActionCallback):
    """Chooses the variant of each step (pairs of steps alternate) and times it."""

    def __init__(self, precision):
        self.precision, self.times, self._last = precision, {True: [], False: []}, None

    def on_step_start(self, state):
        self.precision.guarded = (state.step // 2) % 2 == 0
        self._last = time.perf_counter()

    def on_step_end(self, state):
        if state.step > 4:  # the first steps warm up allocators and oneDNN
            self.times[self.precision.guarded].append(time.perf_counter() - self._last)


def run(cfg, steps, seed=0):
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=seed)
    nf.precision = AlternatingPrecision(nf.precision.level, nf.device)
    layer = nemo_asr.AudioToTextDataLayer(manifest_filepath=AN4, labels=cfg["labels"], batch_size=15)
    pre, enc, dec = modules_from_config(cfg)
    ctc = nemo_asr.CTCLossNM(num_classes=len(cfg["labels"]))
    audio, audio_len, text, text_len = layer()
    spec, spec_len = pre(input_signal=audio, length=audio_len)
    encoded, enc_len = enc(audio_signal=spec, length=spec_len)
    loss = ctc(log_probs=dec(encoder_output=encoded), targets=text, input_length=enc_len, target_length=text_len)
    timer = StepTimer(nf.precision)
    original = train_action.StepGuard
    train_action.StepGuard = alternating_guard(nf.precision)
    try:
        nf.train([loss], callbacks=[timer], optimizer="novograd",
                 optimization_params={"max_steps": steps, "lr": 0.01, "betas": (0.8, 0.5)})
    finally:
        train_action.StepGuard = original
    return timer.times, [pre, enc, dec]


def guard_work_seconds(modules, repeats=50):
    """The guard's own work per step, timed in isolation on the model's real shapes: the float32
    gradient-norm pass with its finiteness decision, and the BatchNorm snapshot."""
    weights = [p for m in modules for p in m.parameters() if p.requires_grad]
    grads = [torch.randn_like(p) for p in weights]
    guard = StepGuard(modules, logger=None)
    start = time.perf_counter()
    for _ in range(repeats):
        guard.begin_step()
        bool(~torch.isfinite(total_norm(grads, "cpu")))
    return (time.perf_counter() - start) / repeats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["quartznet_demo", "quartznet5x5"])
    parser.add_argument("--steps", type=int, default=85, help="steps per model (the first 5 are not timed)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "guard_overhead.json"))
    args = parser.parse_args(argv)
    rows = []
    for name in args.configs:
        with open(os.path.join(REPO, "examples", "asr", "configs", f"{name}.yaml")) as handle:
            cfg = YAML(typ="safe").load(handle)
        times, modules = run(cfg, args.steps)
        on, off = statistics.median(times[True]), statistics.median(times[False])
        work = guard_work_seconds(modules)
        rows.append({"config": name, "guarded_s": on, "unguarded_s": off, "ratio": on / off,
                     "steps_timed_each": len(times[True]), "guard_work_s": work, "guard_work_share": work / off})
    print("\n| model | guarded step (s) | unguarded step (s) | ratio | guard's own work (ms) | share of a step |"
          "\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['config']} | {row['guarded_s']:.4f} | {row['unguarded_s']:.4f} | {row['ratio']:.3f} | "
              f"{row['guard_work_s'] * 1000:.2f} | {row['guard_work_share'] * 100:.2f} % |")
    write_results(args.out, {"machine": {"cpu": cpu_model(), "threads": torch.get_num_threads(),
                                         "torch": torch.__version__, "python": platform.python_version()},
                             "batch_size": 15, "data": "tests/data/an4_subset (30 real utterances)",
                             "method": "one run per model; pairs of steps alternate guarded/unguarded",
                             "rows": rows})


if __name__ == "__main__":
    main()
