"""Training run used by the kill-and-resume test.

Has dropout (so RNG state matters), shuffling over several epochs, Novograd
state and an LR policy. Appends "step loss" lines to --losses; with
--kill_at_step it SIGKILLs itself right after that step (no clean-up at all).
"""
import argparse
import collections
import os
import signal

import torch

import nemo_core
from nemo_core import ChannelType, NeuralType, TrainableNM
from nemo_core.optim import CosineAnnealing
from nemo_core.tutorials import MSELoss, RealFunctionDataLayer


class DropoutMLP(TrainableNM):
    def __init__(self, hidden=16):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(1, hidden), torch.nn.Tanh(),
                                       torch.nn.Dropout(0.3), torch.nn.Linear(hidden, 1))

    @property
    def input_ports(self):
        return collections.OrderedDict(x=NeuralType(("B", "D"), ChannelType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(y=NeuralType(("B", "D"), ChannelType()))

    def forward(self, x):
        return self.net(x)


class LossRecorder(nemo_core.ActionCallback):
    def __init__(self, path, kill_at_step):
        self.path, self.kill_at_step = path, kill_at_step

    def on_step_end(self, state):
        with open(self.path, "a") as handle:
            handle.write(f"{state.step} {state.loss.item()!r}\n")
        if state.step == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt_dir", required=True)
    parser.add_argument("--losses", required=True)
    parser.add_argument("--max_steps", type=int, default=30)
    parser.add_argument("--kill_at_step", type=int, default=-1)
    parser.add_argument("--step_freq", type=int, default=5)
    args = parser.parse_args()

    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=42)
    dl = RealFunctionDataLayer(n=100, batch_size=8)
    model = DropoutMLP()
    # a second module of the same class: both need distinct, stable checkpoint names
    head = DropoutMLP()
    x, y = dl()
    loss = MSELoss()(predictions=head(x=model(x=x)), target=y)
    nf.train(
        [loss],
        callbacks=[
            nemo_core.CheckpointCallback(folder=args.ckpt_dir, step_freq=args.step_freq, checkpoints_to_keep=2),
            LossRecorder(args.losses, args.kill_at_step),
        ],
        optimizer="novograd",
        lr_policy=CosineAnnealing(warmup_steps=3),
        optimization_params={"max_steps": args.max_steps, "lr": 0.05, "weight_decay": 0.001},
    )


if __name__ == "__main__":
    main()
