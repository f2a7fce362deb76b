"""One pass of a DAG over its data layer without gradients (eval and infer)."""
import torch

from ..graph import GraphPlan
from .common import offload, progress, restore_training, set_training, to_device


def evaluation_pass(factory, tensors, desc="eval", verbose=True, batches=None,
                    offload_to_cpu=True, gather=True, batch_sink=None):
    """Run ``tensors``' DAG in eval mode over its whole data set.

    Returns a list of batches, each a list of values in ``tensors`` order;
    with several processes the batches of all ranks are gathered (rank order),
    every sample exactly once. ``batches`` replaces the data layer (infer's
    cache); ``batch_sink`` receives each raw data-layer batch.
    """
    plan = GraphPlan(tensors)
    if batches is None:
        batches = plan.data_layer.make_dataloader(
            seed=factory.random_seed or 0, training=False, distributed=factory.distributed)
    previous = set_training(plan.modules, False)
    results = []
    device, precision = factory.device, factory.precision
    try:
        with torch.no_grad(), precision.autocast():
            for batch in progress(batches, desc, verbose and factory.is_main):
                batch = to_device(batch, device)
                if batch_sink is not None:
                    batch_sink(batch)
                values = plan.evaluate(precision.cast_inputs(batch))
                results.append([offload(v) if offload_to_cpu else v.detach() for v in values])
    finally:
        restore_training(previous)
    if gather and factory.distributed.is_active:
        local = results if offload_to_cpu else [[offload(v) for v in b] for b in results]
        merged = [b for rank in factory.distributed.all_gather_objects(local) for b in rank]
        if not offload_to_cpu:
            merged = [[v.to(device) if torch.is_tensor(v) else v for v in b] for b in merged]
        results = merged
    return results
