"""The infer action: values of tensors over a whole data set."""
import os

from .. import checkpointing
from ..checkpointing import CheckpointError
from ..graph import GraphPlan
from ..neural_module import TrainableNM
from .evaluate import evaluation_pass


def infer(factory, tensors, checkpoint_dir=None, ckpt_pattern="", verbose=True, cache=False,
          use_cache=False, offload_to_cpu=True):
    """Per tensor, the list of its per-batch values.

    ``checkpoint_dir``: first load each module's newest ``*{Name}-STEP-{n}.pt``
    (file name containing ``ckpt_pattern``). ``cache=True`` keeps the data
    layer's batches; ``use_cache=True`` feeds those instead of reading the data
    layer again, so several DAGs over one (e.g. random) data layer see the same inputs.
    """
    tensors = list(tensors)
    plan = GraphPlan(tensors)
    if checkpoint_dir is not None:
        _restore_modules(plan.modules, checkpoint_dir, ckpt_pattern, factory.logger)
    batches, sink = None, None
    if use_cache:
        cached = factory._infer_cache
        if cached is None:
            raise ValueError("infer(use_cache=True) needs an earlier infer(cache=True)")
        if cached[0] is not plan.data_layer:
            raise ValueError(
                f"The cache holds batches of {cached[0].name}, but these tensors come from {plan.data_layer.name}"
            )
        batches = cached[1]
    elif cache:
        store = []
        factory._infer_cache = (plan.data_layer, store)
        sink = store.append
    results = evaluation_pass(factory, tensors, desc="infer", verbose=verbose, batches=batches,
                              offload_to_cpu=offload_to_cpu, batch_sink=sink)
    return [[batch[i] for batch in results] for i in range(len(tensors))]


def _restore_modules(modules, folder, pattern, logger):
    if not os.path.isdir(folder):
        raise CheckpointError(f"Checkpoint folder {folder} does not exist")
    names = checkpointing.checkpoint_names([m for m in modules if isinstance(m, TrainableNM)])
    for module, name in names.items():
        path = checkpointing.latest_module_file(folder, name, pattern)
        if path is None:
            raise CheckpointError(f"No checkpoint for {name} (pattern {pattern!r}) in {folder}")
        module.restore_from(path)
        logger.info("Restored %s from %s", name, path)
