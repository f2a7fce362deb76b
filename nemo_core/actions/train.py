"""The train action's loop. Precision, distribution and files are delegated
to ``precision.py``, ``distributed.py`` and the callbacks/``checkpointing.py``."""
import collections
import contextlib
import functools
import math
import time

import torch

from ..callbacks import ActionCallback
from ..distributed import no_sync_all
from ..enums import Optimization
from ..neural_module import TrainableNM
from ..optim import get_optimizer
from .common import PlanCache, progress, set_training, to_device
from .evaluate import evaluation_pass
from .state import TrainingState


def _check_args(tensors_to_optimize, callbacks, params, batches_per_step):
    if not tensors_to_optimize:
        raise ValueError("train() needs tensors_to_optimize (e.g. [loss])")
    for cb in callbacks:
        if not isinstance(cb, ActionCallback):
            raise TypeError(f"{cb!r} is not an ActionCallback")
    if params.get("num_epochs") is None and params.get("max_steps") is None:
        raise ValueError("optimization_params must give num_epochs or max_steps")
    if int(batches_per_step) < 1:
        raise ValueError(f"batches_per_step must be >= 1, got {batches_per_step}")


def _build_optimizer(optimizer, params, precision, trainable):
    weights = list(dict.fromkeys(p for m in trainable for p in m.parameters() if p.requires_grad))
    if isinstance(optimizer, torch.optim.Optimizer):
        if precision.level == Optimization.mxprO2:
            raise ValueError("mxprO2 keeps float32 master weights, so pass the optimizer by name")
        return optimizer, weights
    if not weights:
        raise ValueError("Nothing to train: the DAG has no trainable, unfrozen weights")
    return get_optimizer(optimizer, precision.optimizer_parameters(weights), params), weights


def train(factory, tensors_to_optimize, callbacks=None, optimizer="novograd", optimization_params=None,
          lr_policy=None, batches_per_step=1, stop_on_nan_loss=False, gradient_predivide=False):
    params = dict(optimization_params or {})
    callbacks = list(callbacks or [])
    tensors_to_optimize = list(tensors_to_optimize)
    _check_args(tensors_to_optimize, callbacks, params, batches_per_step)
    batches_per_step = int(batches_per_step)

    plans = PlanCache(tensors_to_optimize)
    base_plan = plans.get()
    data_layer = base_plan.data_layer
    trainable = [m for m in base_plan.modules if isinstance(m, TrainableNM)]
    precision, dist_ctx, device = factory.precision, factory.distributed, factory.device
    precision.prepare_modules(trainable)
    opt, weights = _build_optimizer(optimizer, params, precision, trainable)
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])

    calls_per_module = collections.Counter(c.module for c in base_plan.calls)
    callables = {}
    if dist_ctx.is_active:
        for module in trainable:
            if any(p.requires_grad for p in module.parameters()):
                callables[module] = dist_ctx.wrap(module, calls_per_module[module] > 1, gradient_predivide)
    wrappers = list(callables.values())

    loader = data_layer.make_dataloader(seed=factory.random_seed or 0, training=True, distributed=dist_ctx)
    batches_per_epoch = len(loader)
    if batches_per_epoch == 0:
        raise ValueError(f"{data_layer.name} yields no batches (dataset of {len(data_layer)} samples, "
                         f"batch_size {data_layer.batch_size}, drop_last {data_layer.drop_last})")
    num_epochs, max_steps = params.get("num_epochs"), params.get("max_steps")
    steps_from_epochs = None if num_epochs is None else (num_epochs * batches_per_epoch) // batches_per_step
    total_steps = min(s for s in (max_steps, steps_from_epochs) if s is not None)
    if lr_policy is not None and hasattr(lr_policy, "with_total_steps"):
        lr_policy.with_total_steps(total_steps)
    clip = params.get("grad_norm_clip")

    state = TrainingState(factory, opt, trainable, functools.partial(evaluation_pass, factory),
                          batches_per_epoch, total_steps)
    set_training(base_plan.modules, True)
    factory.logger.info("Training %d module(s), %s weights, for %d steps (%d batches/epoch) with %s",
                        len(trainable), f"{sum(p.numel() for p in weights):,}", total_steps,
                        batches_per_epoch, type(opt).__name__)
    started = time.perf_counter()
    for cb in callbacks:
        cb.on_train_start(state)

    loss_names = [t.unique_name for t in tensors_to_optimize]
    sampler = loader.sampler
    accumulated = 0
    done = state.step >= total_steps
    while not done and (num_epochs is None or state.epoch < num_epochs):
        sampler.set_epoch(state.epoch)
        sampler.skip = state.epoch_step * data_layer.batch_size
        if state.epoch_step == 0:
            for cb in callbacks:
                cb.on_epoch_start(state)
        for batch in progress(loader, f"epoch {state.epoch}", True, total=len(loader)):
            if accumulated == 0:
                needed = [t for cb in callbacks for t in cb.tensors_needed(state)]
                plan = plans.get(needed)
                for cb in callbacks:
                    cb.on_step_start(state)
            accumulated += 1
            syncing = accumulated == batches_per_step
            batch = precision.cast_inputs(to_device(batch, device))
            with contextlib.nullcontext() if syncing else no_sync_all(wrappers):
                with precision.autocast():
                    values = plan.run(batch, callables)
                    loss = values[loss_names[0]]
                    for name in loss_names[1:]:
                        loss = loss + values[name]
                if stop_on_nan_loss and not torch.isfinite(loss).all():
                    factory.logger.error("Loss is %s at step %d; stopping (stop_on_nan_loss)", loss.item(), state.step)
                    state.should_stop = True
                    break
                precision.backward(loss / batches_per_step if batches_per_step > 1 else loss)
            state.epoch_step += 1
            if not syncing:
                continue
            accumulated = 0
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] if lr_policy is None else lr_policy(group["initial_lr"], state.step)
            state.lr = opt.param_groups[0]["lr"]
            precision.unscale_and_clip(opt, weights, clip)
            if not precision.step(opt):
                factory.logger.warning("Step %d skipped: inf/nan gradients (loss scale lowered)", state.step)
            opt.zero_grad(set_to_none=True)
            state.loss, state.values = loss.detach(), values
            state.step += 1
            for cb in callbacks:
                cb.on_step_end(state)
            state.values = {}
            if state.step >= total_steps or state.should_stop:
                done = True
                break
        if state.epoch_step >= batches_per_epoch:
            for cb in callbacks:
                cb.on_epoch_end(state)
            state.epoch += 1
            state.epoch_step = 0
        if state.should_stop:
            break
    for cb in callbacks:
        cb.on_train_end(state)
    if factory.tb_writer is not None:
        factory.tb_writer.flush()
    loss_value = None if state.loss is None else float(state.loss)
    factory.logger.info("Training done: %d steps, %d epochs, last loss %s", state.step, state.epoch,
                        "n/a" if loss_value is None or math.isnan(loss_value) else f"{loss_value:.5g}")
    return {"step": state.step, "epoch": state.epoch, "loss": loss_value, "seconds": time.perf_counter() - started}
