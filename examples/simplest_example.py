"""NeMo's "simplest example": fit sin(x) on [-4, 4] with a degree-3 polynomial.

Run: python examples/simplest_example.py [--optimizer novograd|sgd|adam|adamw|...]
"""
import argparse

import nemo_core
from nemo_core.tutorials import MSELoss, RealFunctionDataLayer, TaylorNet
from nemo_core.utils.cli import add_debug_flag, one_line_errors

OPTIMIZER_NAMES = list(getattr(nemo_core.optim, "OPTIMIZER_NAMES", sorted(nemo_core.optim.OPTIMIZERS)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizer", default="novograd", choices=OPTIMIZER_NAMES, help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=None,
                        help="default 3e-4 for sgd (x^3 reaches 64, larger steps diverge), else 0.01")
    parser.add_argument("--max_steps", type=int, default=3000)
    parser.add_argument("--random_seed", type=int, default=0)
    add_debug_flag(parser)
    nemo_core.add_distributed_args(parser)
    args = parser.parse_args(argv)
    if args.lr is None:
        args.lr = 3e-4 if args.optimizer == "sgd" else 0.01
    with one_line_errors("simplest_example.py", args.debug):
        return fit(args)


def fit(args):
    nf = nemo_core.NeuralModuleFactory(local_rank=args.local_rank, random_seed=args.random_seed,
                                       placement=nemo_core.DeviceType.CPU)
    dl = RealFunctionDataLayer(n=10000, batch_size=128)
    fx = TaylorNet(dim=4)
    loss_fn = MSELoss()

    x, y = dl()
    p = fx(x=x)
    loss = loss_fn(predictions=p, target=y)

    callback = nemo_core.SimpleLossLoggerCallback(
        tensors=[loss], print_func=lambda values: print(f"Train loss: {values[0].item():.4f}"),
        step_freq=500)
    result = nf.train([loss], callbacks=[callback], optimizer=args.optimizer,
                      optimization_params={"max_steps": args.max_steps, "lr": args.lr})
    print(f"Final loss after {result['step']} steps: {result['loss']:.4f}")
    return result


if __name__ == "__main__":
    main()
