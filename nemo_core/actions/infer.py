"""The infer action: values of tensors over a whole data set."""
from .. import checkpointing
from ..graph import GraphPlan
from ..neural_module import TrainableNM
from .evaluate import evaluation_pass


def infer(factory, tensors, checkpoint_dir=None, ckpt_pattern="", verbose=True, cache=False,
          use_cache=False, offload_to_cpu=True):
    """Per tensor, the list of its per-batch values.

    ``checkpoint_dir``: first load the trainable modules from the newest
    complete checkpoint set there (``checkpointing.restore_modules``: every
    module from the same step; module file names containing ``ckpt_pattern``). ``cache=True`` keeps the data
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
    trainable = [m for m in modules if isinstance(m, TrainableNM)]
    checkpointing.restore_modules(trainable, folder, pattern, strict=True, logger=logger)
