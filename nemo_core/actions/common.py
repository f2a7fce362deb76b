"""Small helpers shared by the action loops."""
import sys

import torch

from ..graph import GraphPlan


def to_device(batch, device):
    return [b.to(device, non_blocking=True) if torch.is_tensor(b) else b for b in batch]


def offload(value):
    """Detach to CPU; half/bf16 become float32 so numpy and .item() work."""
    if not torch.is_tensor(value):
        return value
    value = value.detach().cpu()
    if value.dtype in (torch.float16, torch.bfloat16):
        value = value.float()
    return value


def set_training(modules, training):
    """Switch torch modules to train/eval; returns their previous modes."""
    previous = {}
    for module in modules:
        if isinstance(module, torch.nn.Module):
            previous[module] = module.training
            module.train(training)
    return previous


def restore_training(previous):
    for module, mode in previous.items():
        module.train(mode)


def progress(iterable, desc, enabled, total=None):
    """tqdm when asked for and attached to a terminal; the iterable itself otherwise."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


class PlanCache:
    """GraphPlans for the base tensors plus whatever extra tensors callbacks want."""

    def __init__(self, base_tensors):
        self.base = list(base_tensors)
        self._plans = {(): GraphPlan(self.base)}

    def get(self, extra=()):
        key = tuple(sorted({t.unique_name: t for t in extra}))
        plan = self._plans.get(key)
        if plan is None:
            by_name = {t.unique_name: t for t in extra}
            plan = GraphPlan(self.base + [by_name[k] for k in key])
            if plan.data_layer is not self._plans[()].data_layer:
                raise ValueError("Callback tensors must come from the training DAG's data layer")
            self._plans[key] = plan
        return plan
