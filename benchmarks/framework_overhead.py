"""Framework overhead and optimiser cost, measured side by side on CPU.

1. The same small 1-D conv model and data trained for N steps through
   ``nf.train`` and through a hand-written PyTorch loop; runs alternate
   (A, B, A, B, ...) so machine noise hits both alike. Target: ratio <= 1.02.
2. One optimiser step over QuartzNet-15x5-shaped parameters (shapes from the
   NGC state_dict layout): Novograd vs ``torch.optim.AdamW(foreach=True)``.
   Target: ratio <= 1.5.

Prints a markdown table and writes JSON (``--out``).
"""
import argparse
import collections
import json
import os
import statistics
import sys
import time

import torch

import nemo_core
from nemo_core import ChannelType, LossType, NeuralType, RegressionValuesType
from nemo_core.optim import Novograd
from results_file import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
LAYOUT = os.path.join(HERE, "..", "tests", "data", "ngc_compat", "state_dict_layout.json")


def conv_model(channels=64, hidden=128, layers=4):
    parts, width = [], channels
    for _ in range(layers):
        parts += [torch.nn.Conv1d(width, hidden, 11, padding=5), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU()]
        width = hidden
    parts.append(torch.nn.Conv1d(width, 1, 1))
    return torch.nn.Sequential(*parts)


class ConvNM(nemo_core.TrainableNM):
    def __init__(self):
        super().__init__()
        self.model = conv_model()

    @property
    def input_ports(self):
        return collections.OrderedDict(x=NeuralType(("B", "D", "T"), ChannelType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(y=NeuralType(("B", "D", "T"), ChannelType()))

    def forward(self, x):
        return self.model(x)


class MSE(nemo_core.LossNM):
    @property
    def input_ports(self):
        return collections.OrderedDict(predictions=NeuralType(("B", "D", "T"), ChannelType()),
                                       target=NeuralType(("B", "D", "T"), RegressionValuesType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(loss=NeuralType(None, LossType()))

    def forward(self, predictions, target):
        return torch.nn.functional.mse_loss(predictions, target)


class TensorLayer(nemo_core.DataLayerNM):
    def __init__(self, n, batch_size, frames):
        super().__init__(batch_size=batch_size, shuffle=False)
        gen = torch.Generator().manual_seed(0)
        self._data = torch.utils.data.TensorDataset(torch.randn(n, 64, frames, generator=gen),
                                                    torch.randn(n, 1, frames, generator=gen))

    @property
    def output_ports(self):
        return collections.OrderedDict(x=NeuralType(("B", "D", "T"), ChannelType()),
                                       y=NeuralType(("B", "D", "T"), RegressionValuesType()))

    @property
    def dataset(self):
        return self._data


def time_nemo(nf, steps, batch_size, frames):
    torch.manual_seed(0)
    dl, model, loss_nm = TensorLayer(steps * batch_size, batch_size, frames), ConvNM(), MSE()
    x, y = dl()
    loss = loss_nm(predictions=model(x=x), target=y)
    start = time.perf_counter()
    nf.train([loss], optimizer="sgd", optimization_params={"max_steps": steps, "lr": 1e-3, "momentum": 0.9})
    return time.perf_counter() - start


def time_plain(steps, batch_size, frames):
    torch.manual_seed(0)
    dl = TensorLayer(steps * batch_size, batch_size, frames)
    model = conv_model()
    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(dl.dataset, batch_size=batch_size, shuffle=False)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()
    for x, y in loader:
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def quartznet_parameters():
    with open(LAYOUT) as handle:
        layout = json.load(handle)["quartznet15x5"]
    shapes = [s for part in ("JasperEncoder", "JasperDecoderForCTC") for k, s in layout[part].items()
              if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.01) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 0.01
    return params


def time_optimizer_steps(make, params, steps):
    opt = make(params)
    opt.step()  # state allocation outside the timing
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - start) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="training steps per timed run")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (median reported)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--optimizer_steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI smoke runs")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "framework_overhead.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.optimizer_steps, args.frames = 5, 2, 2, 32

    import logging

    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0)
    nf.logger.setLevel(logging.WARNING)
    time_plain(2, args.batch_size, args.frames)  # warm-up both paths
    time_nemo(nf, 2, args.batch_size, args.frames)
    nemo_times, plain_times = [], []
    for _ in range(args.rounds):
        nemo_times.append(time_nemo(nf, args.steps, args.batch_size, args.frames))
        plain_times.append(time_plain(args.steps, args.batch_size, args.frames))
    overhead = statistics.median(nemo_times) / statistics.median(plain_times)

    params = quartznet_parameters()
    n_weights = sum(p.numel() for p in params)
    nov, adamw = [], []
    for _ in range(3):
        nov.append(time_optimizer_steps(lambda p: Novograd(p, lr=0.01, weight_decay=0.001), params, args.optimizer_steps))
        adamw.append(time_optimizer_steps(lambda p: torch.optim.AdamW(p, lr=0.01, foreach=True), params, args.optimizer_steps))
    opt_ratio = statistics.median(nov) / statistics.median(adamw)

    result = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "steps": args.steps,
        "rounds": args.rounds, "batch_size": args.batch_size, "frames": args.frames,
        "nemo_train_s_median": statistics.median(nemo_times), "plain_loop_s_median": statistics.median(plain_times),
        "nemo_train_s": nemo_times, "plain_loop_s": plain_times, "overhead_ratio": overhead,
        "quartznet15x5_weights": n_weights, "novograd_step_ms": 1e3 * statistics.median(nov),
        "adamw_foreach_step_ms": 1e3 * statistics.median(adamw), "novograd_vs_adamw_ratio": opt_ratio,
    }
    print("| measurement | value | target |")
    print("|---|---|---|")
    print(f"| nf.train, {args.steps} steps (median of {args.rounds}) | {result['nemo_train_s_median']:.3f} s | |")
    print(f"| hand-written loop, same work | {result['plain_loop_s_median']:.3f} s | |")
    print(f"| **overhead ratio** nf.train / loop | {overhead:.3f} | <= 1.02 |")
    print(f"| Novograd step, QuartzNet-15x5 ({n_weights / 1e6:.1f} M weights) | {result['novograd_step_ms']:.1f} ms | |")
    print(f"| AdamW(foreach) step, same weights | {result['adamw_foreach_step_ms']:.1f} ms | |")
    print(f"| **Novograd / AdamW** | {opt_ratio:.2f} | <= 1.5 |")
    write_results(args.out, result)
    print(f"wrote {args.out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
