"""Training run used by the kill-and-resume test.

Has dropout (so RNG state matters), shuffling over several epochs, Novograd
state and an LR policy. Appends "step loss" lines to --losses; with
--kill_at_step it SIGKILLs itself right after that step (no clean-up at all);
with --signal_at_step it sends itself --signal (TERM or INT) there, as a
scheduler or Ctrl-C would, and exits with the framework's status (128 + signal).
"""
import argparse
import os
import signal
import sys

import nemo_core
from nemo_core.optim import CosineAnnealing
from nemo_core.tutorials import MLP, MSELoss, RealFunctionDataLayer


class LossRecorder(nemo_core.ActionCallback):
    def __init__(self, path, kill_at_step, signal_at_step=-1, signum=signal.SIGTERM):
        self.path, self.kill_at_step = path, kill_at_step
        self.signal_at_step, self.signum = signal_at_step, signum

    def on_step_end(self, state):
        with open(self.path, "a") as handle:
            handle.write(f"{state.step} {state.loss.item()!r}\n")
        if state.step == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        if state.step == self.signal_at_step:
            os.kill(os.getpid(), self.signum)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt_dir", required=True)
    parser.add_argument("--losses", required=True)
    parser.add_argument("--max_steps", type=int, default=30)
    parser.add_argument("--kill_at_step", type=int, default=-1)
    parser.add_argument("--step_freq", type=int, default=5)
    parser.add_argument("--signal_at_step", type=int, default=-1)
    parser.add_argument("--signal", choices=["TERM", "INT"], default="TERM")
    args = parser.parse_args()

    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=42)
    dl = RealFunctionDataLayer(n=100, batch_size=8)
    model = MLP(dropout=0.3)
    # a second module of the same class: both need distinct, stable checkpoint names
    head = MLP(dropout=0.3)
    x, y = dl()
    loss = MSELoss()(predictions=head(x=model(x=x)), target=y)
    recorder = LossRecorder(args.losses, args.kill_at_step, args.signal_at_step, getattr(signal, "SIG" + args.signal))
    try:
        nf.train(
            [loss],
            callbacks=[
                nemo_core.CheckpointCallback(folder=args.ckpt_dir, step_freq=args.step_freq, checkpoints_to_keep=2),
                recorder,
            ],
            optimizer="novograd",
            lr_policy=CosineAnnealing(warmup_steps=3),
            optimization_params={"max_steps": args.max_steps, "lr": 0.05, "weight_decay": 0.001},
        )
    except nemo_core.TrainingInterrupted as err:
        print(err, file=sys.stderr)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
