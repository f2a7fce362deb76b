"""A small DDP training run that can be made to fail, used under torchrun by
``test_distributed_failures.py``.

Data: ``n`` points x in [-4, 4], y = sin(x), and a per-sample ``penalty`` (0)
that the loss adds without a gradient path. Unshuffled, so rank r's step k
reads samples r + 2 * (k * batch_size + j) with two processes.

--fail_rank R --fail_step K   rank R raises at the start of step K (0-based)
--nan_sample I --nan_in data  x[I] is NaN: loss and gradients are NaN (DDP spreads the gradients)
--nan_sample I --nan_in loss  penalty[I] is NaN: only that rank's loss is NaN, its gradients are fine
--step_sleep S                sleep S seconds per step (time to send a signal)
--slow_save_s S               every checkpoint file takes S seconds longer to write (a big model, a slow disk)

Each rank appends "step loss unix-time" to ``progress-rank{r}.txt`` in --out after every
step and, when training returns, writes ``rank{r}.pt`` (final state_dict) and
``rank{r}.json`` (the train result). A signal exits with 128 + signum.
"""
import argparse
import collections
import json
import os
import sys
import time

import torch

import nemo_core
from nemo_core import ChannelType, DataLayerNM, LossNM, LossType, NeuralType
from nemo_core.neural_types import RegressionValuesType
from nemo_core.tutorials import TaylorNet


class PenalisedPoints(DataLayerNM):
    def __init__(self, n, batch_size, nan_sample=None, nan_in=None):
        super().__init__(batch_size=batch_size, shuffle=False)
        generator = torch.Generator().manual_seed(11)
        x = torch.rand(n, 1, generator=generator) * 8 - 4
        y, penalty = torch.sin(x), torch.zeros(n, 1)
        if nan_sample is not None:
            (x if nan_in == "data" else penalty)[nan_sample] = float("nan")
        self._dataset = torch.utils.data.TensorDataset(x, y, penalty)

    @property
    def output_ports(self):
        return collections.OrderedDict(x=NeuralType(("B", "D"), ChannelType()),
                                       y=NeuralType(("B", "D"), RegressionValuesType()),
                                       penalty=NeuralType(("B", "D"), ChannelType()))

    @property
    def dataset(self):
        return self._dataset


class PenalisedMSE(LossNM):
    @property
    def input_ports(self):
        return collections.OrderedDict(predictions=NeuralType(("B", "D"), ChannelType()),
                                       target=NeuralType(("B", "D"), RegressionValuesType()),
                                       penalty=NeuralType(("B", "D"), ChannelType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(loss=NeuralType(None, LossType()))

    def forward(self, predictions, target, penalty):
        return torch.nn.functional.mse_loss(predictions, target) + penalty.sum()


class Probe(nemo_core.ActionCallback):
    """Progress file per rank; optionally a failure or a pause at each step."""

    def __init__(self, path, rank, fail_rank, fail_step, step_sleep):
        self.path, self.rank = path, rank
        self.fail_rank, self.fail_step, self.step_sleep = fail_rank, fail_step, step_sleep

    def on_step_start(self, state):
        if self.rank == self.fail_rank and state.step == self.fail_step:
            raise RuntimeError(f"injected failure on rank {self.rank} at step {state.step}")

    def on_step_end(self, state):
        with open(self.path, "a") as handle:
            handle.write(f"{state.step} {float(state.loss)!r} {time.time()!r}\n")
        if self.step_sleep:
            time.sleep(self.step_sleep)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--max_steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--fail_rank", type=int, default=-1)
    parser.add_argument("--fail_step", type=int, default=-1)
    parser.add_argument("--nan_sample", type=int, default=None)
    parser.add_argument("--nan_in", choices=["data", "loss"], default="loss")
    parser.add_argument("--ckpt_dir", default=None)
    parser.add_argument("--step_freq", type=int, default=-1)
    parser.add_argument("--step_sleep", type=float, default=0.0)
    parser.add_argument("--slow_save_s", type=float, default=0.0)
    nemo_core.add_distributed_args(parser)
    args = parser.parse_args()

    if args.slow_save_s:
        from nemo_core import checkpointing

        write = checkpointing.save_atomic

        def slow_write(obj, path):
            time.sleep(args.slow_save_s)
            write(obj, path)

        checkpointing.save_atomic = slow_write
    nf = nemo_core.NeuralModuleFactory(local_rank=args.local_rank, random_seed=1, placement=nemo_core.DeviceType.CPU)
    rank = nf.global_rank
    dl = PenalisedPoints(args.samples, args.batch_size, args.nan_sample, args.nan_in)
    model = TaylorNet(dim=4)
    x, y, penalty = dl()
    loss = PenalisedMSE()(predictions=model(x=x), target=y, penalty=penalty)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"pid-rank{rank}"), "w") as handle:  # for a test that signals one rank
        handle.write(str(os.getpid()))
    callbacks = [Probe(os.path.join(args.out, f"progress-rank{rank}.txt"), rank, args.fail_rank, args.fail_step,
                       args.step_sleep)]
    if args.ckpt_dir:
        callbacks.insert(0, nemo_core.CheckpointCallback(folder=args.ckpt_dir, step_freq=args.step_freq))
    try:
        result = nf.train([loss], callbacks=callbacks, optimizer="adam",
                          optimization_params={"max_steps": args.max_steps, "lr": 0.01})
    except nemo_core.TrainingInterrupted as err:
        nf.logger.error("rank %d: %s", rank, err)
        sys.exit(err.exit_code)
    torch.save(model.state_dict(), os.path.join(args.out, f"rank{rank}.pt"))
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
