"""The train action's loop. Precision (and the non-finite step decision),
distribution and files are delegated to ``precision.py``, ``distributed.py``
and the callbacks/``checkpointing.py``; resuming to ``TrainingState``.

What a run survives (README "Reliability"): a step with a non-finite loss or
gradients is skipped on every rank (``guard.py``); SIGTERM/SIGINT finish the
step, save and raise ``TrainingInterrupted`` (``interrupts.py``); any other
exception saves the last completed step through the callbacks'
``on_train_interrupted`` before it propagates.
"""
import collections
import contextlib
import functools
import math
import signal
import time

import torch

from ..callbacks import ActionCallback
from ..checkpointing import CheckpointError, ResumeError
from ..distributed import no_sync_all
from ..enums import Optimization
from ..neural_module import TrainableNM
from ..optim import get_optimizer
from .common import PlanCache, progress, set_training, to_device
from .evaluate import evaluation_pass
from .guard import DEFAULT_MAX_CONSECUTIVE_SKIPS, NonFiniteTrainingError, StepGuard
from .interrupts import StopSignals, TrainingInterrupted
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
          lr_policy=None, batches_per_step=1, stop_on_nan_loss=False, gradient_predivide=False,
          max_consecutive_skips=DEFAULT_MAX_CONSECUTIVE_SKIPS):
    params = dict(optimization_params or {})
    callbacks = list(callbacks or [])
    tensors_to_optimize = list(tensors_to_optimize)
    _check_args(tensors_to_optimize, callbacks, params, batches_per_step)
    batches_per_step = int(batches_per_step)

    plans = PlanCache(tensors_to_optimize)
    base_plan = plans.get()
    data_layer = base_plan.data_layer
    trainable = [m for m in base_plan.modules if isinstance(m, TrainableNM)]
    precision, dist_ctx = factory.precision, factory.distributed
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

    state = TrainingState(factory, optimizer=opt, trainable_modules=trainable,
                          evaluate=functools.partial(evaluation_pass, factory),
                          batches_per_epoch=batches_per_epoch, total_steps=total_steps, modules=base_plan.modules)
    guard = StepGuard(base_plan.modules, factory.logger, max_consecutive_skips=max_consecutive_skips,
                      stop_on_nan_loss=stop_on_nan_loss, describe=getattr(data_layer, "describe_samples", None))
    set_training(base_plan.modules, True)
    factory.logger.info("Training %d module(s), %s weights, for %d steps (%d batches/epoch) with %s",
                        len(trainable), f"{sum(p.numel() for p in weights):,}", total_steps,
                        batches_per_epoch, type(opt).__name__)
    started = time.perf_counter()
    loop = _Loop(factory, state, plans, callbacks, opt, weights, guard, lr_policy, params.get("grad_norm_clip"),
                 batches_per_step, [t.unique_name for t in tensors_to_optimize], callables, wrappers)
    with StopSignals(factory.logger) as signals:
        loop.signals = signals
        try:
            for cb in callbacks:
                cb.on_train_start(state)
            _check_same_start(dist_ctx, state)
            loop.run(loader, data_layer, num_epochs)
        except BaseException as err:
            _save_after_failure(state, callbacks, loop, err)
            if isinstance(err, NonFiniteTrainingError):  # raised on every rank at the same step
                dist_ctx.barrier()  # nobody exits (and makes the launcher stop rank 0) before the set is written
            raise
        finally:
            if factory.tb_writer is not None:
                factory.tb_writer.flush()
        if loop.stopped_by is not None:
            saved = _save_after_failure(state, callbacks, loop, None)
            dist_ctx.barrier()  # no rank exits (and makes the launcher stop the others) before the set is written
            raise TrainingInterrupted(loop.stopped_by, state.step, saved)
    for cb in sorted(callbacks, key=lambda c: c.end_order):  # checkpoints before final evaluations
        cb.on_train_end(state)
    if factory.tb_writer is not None:
        factory.tb_writer.flush()
    loss_value = None if state.loss is None else float(state.loss)
    factory.logger.info("Training done: %d steps (%d skipped), %d epochs, last loss %s", state.step,
                        state.skipped_steps, state.epoch,
                        "n/a" if loss_value is None or math.isnan(loss_value) else f"{loss_value:.5g}")
    return {"step": state.step, "epoch": state.epoch, "loss": loss_value, "skipped_steps": state.skipped_steps,
            "seconds": time.perf_counter() - started}


class _Loop:
    """The epoch/batch/step loop of one ``train`` call (kept apart so failures can be handled around it)."""

    def __init__(self, factory, state, plans, callbacks, opt, weights, guard, lr_policy, clip, batches_per_step,
                 loss_names, callables, wrappers):
        self.factory, self.state, self.plans, self.callbacks = factory, state, plans, callbacks
        self.opt, self.weights, self.guard, self.lr_policy, self.clip = opt, weights, guard, lr_policy, clip
        self.batches_per_step, self.loss_names = batches_per_step, loss_names
        self.callables, self.wrappers = callables, wrappers
        self.signals = None
        self.stopped_by = None
        self.started = False  # on_train_start (resume) went through
        self.step_open = False  # between the first batch of a step and its completed update
        self.in_update = False  # True while weights change: a failure there leaves no consistent state

    def run(self, loader, data_layer, num_epochs):
        state, callbacks = self.state, self.callbacks
        self.started = True
        state.committed = (state.epoch, state.epoch_step)
        sampler = loader.batch_sampler.sampler
        done = state.step >= state.total_steps
        accumulated = 0  # micro-batches of the current step; accumulation carries across epoch ends
        while not done and (num_epochs is None or state.epoch < num_epochs):
            sampler.set_epoch(state.epoch)
            sampler.skip = state.epoch_step * data_layer.batch_size
            if state.epoch_step == 0:
                for cb in callbacks:
                    cb.on_epoch_start(state)
            for batch in progress(loader, f"epoch {state.epoch}", True, total=len(loader)):
                if accumulated == 0:
                    plan = self._begin_step()
                    loss_finite = torch.ones((), dtype=torch.bool, device=self.factory.device)
                self.guard.add_batch(loader.batch_sampler.take())
                accumulated += 1
                syncing = accumulated == self.batches_per_step
                loss, values = self._forward_backward(plan, batch, syncing)
                loss_finite = loss_finite & torch.isfinite(loss.detach()).all()
                state.epoch_step += 1
                if not syncing:
                    continue
                accumulated = 0
                self._update(loss, values, loss_finite)
                if self._stop_requested() or state.step >= state.total_steps:
                    done = True
                    break
            if state.epoch_step >= state.batches_per_epoch:
                for cb in callbacks:
                    cb.on_epoch_end(state)
                state.epoch += 1
                state.epoch_step = 0
                if accumulated == 0:  # a step open across the epoch end keeps its start as the position
                    state.committed = (state.epoch, 0)
            if state.should_stop or self.stopped_by is not None:
                break

    def _begin_step(self):
        needed = [t for cb in self.callbacks for t in cb.tensors_needed(self.state)]
        plan = self.plans.get(needed)
        for cb in self.callbacks:
            cb.on_step_start(self.state)
        self.guard.begin_step()
        self.step_open = True
        return plan

    def _forward_backward(self, plan, batch, syncing):
        precision = self.factory.precision
        batch = precision.cast_inputs(to_device(batch, self.factory.device))
        with contextlib.nullcontext() if syncing else no_sync_all(self.wrappers):
            with precision.autocast():
                values = plan.run(batch, self.callables)
                loss = values[self.loss_names[0]]
                for name in self.loss_names[1:]:
                    loss = loss + values[name]
            precision.backward(loss / self.batches_per_step if self.batches_per_step > 1 else loss)
        return loss, values

    def _update(self, loss, values, loss_finite):
        state, opt = self.state, self.opt
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] if self.lr_policy is None else self.lr_policy(group["initial_lr"], state.step)
        state.lr = opt.param_groups[0]["lr"]
        self.in_update = True
        outcome = self.factory.precision.step(opt, self.weights, loss_finite, self.clip,
                                              agree=self.factory.distributed.any_rank)
        opt.zero_grad(set_to_none=True)
        state.step += 1
        state.committed = (state.epoch, state.epoch_step)
        self.step_open = False
        self.in_update = False
        state.loss, state.values = loss.detach(), values
        # with accumulation the last micro-batch's loss may be finite although an earlier one was not
        self.guard.after_step(state, outcome, loss.detach() if self.batches_per_step == 1 else None)
        for cb in self.callbacks:
            cb.on_step_end(state)
        state.values = {}

    def _stop_requested(self):
        """Signals and ``should_stop``, agreed across ranks: every rank stops after the same step."""
        state = self.state
        signalled = self.signals is not None and self.signals.requested is not None
        signal_any, stop_any = (bool(v) for v in self.factory.distributed.any_rank([signalled, state.should_stop]))
        if signal_any:
            self.stopped_by = self.signals.requested if signalled else signal.SIGTERM  # as its launcher does
        state.should_stop = state.should_stop or stop_any
        return signal_any or stop_any


def _check_same_start(dist_ctx, state):
    """Every rank must continue from the same step (each resumed on its own: a stale listing or an
    unreadable file on one node would make replicas diverge)."""
    if not dist_ctx.is_active:
        return
    steps = dist_ctx.all_gather_objects(state.step)
    if len(set(steps)) > 1:
        raise ResumeError(f"The processes resumed from different steps (by rank: {steps}); check that every node "
                          "sees the same, intact checkpoint folder")


def _save_after_failure(state, callbacks, loop, err):
    """Write the last completed step through the callbacks; True when something was saved.

    Nothing is saved before training started (a failed resume), when the
    failure hit while weights were changing, or when a checkpoint write was
    what failed. BatchNorm statistics touched by an unfinished step are put
    back first, and the position goes back to the last completed step.
    """
    if not loop.started or loop.in_update or isinstance(err, CheckpointError):
        return False
    if loop.step_open:  # undo what the unfinished step did to BatchNorm statistics and the position
        loop.guard.rollback()
        state.epoch, state.epoch_step = state.committed
    reason = err if err is not None else TrainingInterrupted.__name__
    saved = False
    for cb in callbacks:
        try:
            saved = bool(cb.on_train_interrupted(state, reason)) or saved
        except Exception as save_err:  # the original failure is what the user must see
            state.logger.error("Could not save after the failure: %s", save_err)
    return saved
