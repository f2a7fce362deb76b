"""Trains TaylorNet on a fixed data set; used single- and multi-process by the
DDP test. Rank 0 writes the final weights and an eval summary to --out."""
import argparse
import json


import nemo_core
from nemo_core.tutorials import MSELoss, RealFunctionDataLayer, TaylorNet


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_steps", type=int, default=20)
    parser.add_argument("--batches_per_step", type=int, default=1)
    parser.add_argument("--gradient_predivide", action="store_true")
    nemo_core.add_distributed_args(parser)
    args = parser.parse_args(argv)

    nf = nemo_core.NeuralModuleFactory(local_rank=args.local_rank, random_seed=3,
                                       placement=nemo_core.DeviceType.CPU)
    dl = RealFunctionDataLayer(n=96, batch_size=args.batch_size, shuffle=False)
    eval_dl = RealFunctionDataLayer(n=11, batch_size=2, shuffle=False)
    fx = TaylorNet(dim=4)
    mse = MSELoss()
    x, y = dl()
    loss = mse(predictions=fx(x=x), target=y)
    ex, ey = eval_dl()
    eval_loss = mse(predictions=fx(x=ex), target=ey)

    def per_batch(tensors, global_vars):
        (xs,) = [v for k, v in tensors.items() if k.startswith("x~~~")]
        global_vars.setdefault("x", []).extend(t.flatten().tolist() for t in xs)

    def done(global_vars):
        flat = sorted(v for batch in global_vars["x"] for v in batch)
        return {"count": len(flat), "x": flat}

    evaluator = nemo_core.EvaluatorCallback([eval_loss, ex], per_batch, done)
    nf.train([loss], callbacks=[evaluator], optimizer="novograd", batches_per_step=args.batches_per_step,
             gradient_predivide=args.gradient_predivide,
             optimization_params={"max_steps": args.max_steps, "lr": 0.01, "weight_decay": 0.001})
    if nf.global_rank == 0:
        _, summary = evaluator.history[-1]
        with open(args.out, "w") as handle:
            json.dump({"world_size": nf.world_size, "weight": fx.fc1.weight.flatten().tolist(),
                       "bias": fx.fc1.bias.tolist(), "eval": summary}, handle)


if __name__ == "__main__":
    main()
