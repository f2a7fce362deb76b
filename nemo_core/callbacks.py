"""Callbacks: hooks the train action calls, and the three standard ones.

A callback sees a ``TrainingState`` (step, epoch, the values of the tensors it
asked for, the factory). It asks for tensors through ``tensors_needed``; the
loop evaluates them only on the steps where some callback wants them.

Step numbers: ``state.step`` counts the optimiser steps done (skipped
non-finite steps included); in ``on_step_end`` it is the number of the step
just taken, counted from 1. Every callback reports that number: the loss
logger's "Step N" lines and TensorBoard points, the evaluators' history and
points, checkpoint files (``*-STEP-N.pt``) and the guard's "Step N skipped".
"""
import os
import time

import torch

from . import checkpointing
from .checkpointing import CheckpointError


class ActionCallback:
    """Base class; override any hook. All hooks get the ``TrainingState``.

    ``on_train_end`` runs in ``end_order`` (lower first; checkpoints are 0,
    everything else 1), so the final checkpoint is on disk before the final
    evaluations. ``on_train_interrupted`` runs instead of ``on_train_end`` when
    training stops on a signal or an exception, after the last completed step.
    """

    end_order = 1

    def tensors_needed(self, state):
        """NmTensors whose values this callback wants at the coming step."""
        return ()

    def on_train_start(self, state):
        pass

    def on_train_end(self, state):
        pass

    def on_epoch_start(self, state):
        pass

    def on_epoch_end(self, state):
        pass

    def on_step_start(self, state):
        pass

    def on_step_end(self, state):
        pass

    def on_train_interrupted(self, state, reason):
        """Training stops early (``reason``: the exception, or a signal); return True if state was saved."""
        return False


def _detached(value):
    return value.detach() if torch.is_tensor(value) else value


def _to_python(value):
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    return value


class SimpleLossLoggerCallback(ActionCallback):
    """After step 1 and every ``step_freq``-th step: log the first tensor (the loss), call
    ``print_func(values)`` and write scalars to TensorBoard, at the step's number (from 1).

    ``get_tb_values(values) -> [(tag, scalar), ...]`` chooses what to write
    (default: ``("loss", values[0])``); ``log_to_tb_func(tb_writer, values, step)``
    replaces the writing entirely.
    """

    def __init__(self, tensors, print_func=None, get_tb_values=None, log_to_tb_func=None,
                 step_freq=25, tb_writer=None):
        if not tensors:
            raise ValueError("SimpleLossLoggerCallback needs at least one tensor")
        self.tensors = list(tensors)
        self.print_func = print_func
        self.get_tb_values = get_tb_values
        self.log_to_tb_func = log_to_tb_func
        self.step_freq = max(int(step_freq), 1)
        self.tb_writer = tb_writer
        self._last_time = None

    def _due(self, step):
        """Whether step number ``step`` (from 1) is logged."""
        return step == 1 or step % self.step_freq == 0

    def tensors_needed(self, state):
        return self.tensors if self._due(state.step + 1) else ()  # the coming step's number

    def on_train_start(self, state):
        self._last_time = time.perf_counter()
        self._last_step = state.step

    def on_step_end(self, state):
        step = state.step  # the number of the step just taken
        if not self._due(step):
            return
        values = [_detached(state.values[t.unique_name]) for t in self.tensors]
        now = time.perf_counter()
        step_time = (now - self._last_time) / max(state.step - self._last_step, 1)
        self._last_time, self._last_step = now, state.step
        state.logger.info("Step %d: loss %.5g, lr %.4g, %.3f s/step", step,
                          float(_to_python(values[0])), state.lr, step_time)
        if self.print_func is not None:
            self.print_func(values)
        writer = self.tb_writer if self.tb_writer is not None else state.tb_writer
        if writer is None or not state.is_main:
            return
        if self.log_to_tb_func is not None:
            self.log_to_tb_func(writer, values, step)
            return
        pairs = self.get_tb_values(values) if self.get_tb_values else [("loss", values[0])]
        for tag, value in pairs:
            writer.add_scalar(tag, float(_to_python(value)), step)
        writer.add_scalar("lr", state.lr, step)
        writer.add_scalar("step_time", step_time, step)


class EvaluatorCallback(ActionCallback):
    """Runs an eval DAG every ``eval_step`` steps and/or ``eval_epoch`` epochs,
    and once at the end of training.

    For each batch, ``user_iter_callback(tensors, global_vars)`` gets a dict
    ``unique_name -> [value]``; then ``user_epochs_done_callback(global_vars)``
    may return ``{tag: scalar}`` to log. With several processes the batches of
    all ranks are gathered first (each sample exactly once) and the user
    callbacks run on rank 0.
    """

    def __init__(self, eval_tensors, user_iter_callback, user_epochs_done_callback,
                 tb_writer=None, eval_step=None, eval_epoch=None, eval_at_end=True):
        if not eval_tensors:
            raise ValueError("EvaluatorCallback needs eval_tensors")
        self.eval_tensors = list(eval_tensors)
        self.user_iter_callback = user_iter_callback
        self.user_epochs_done_callback = user_epochs_done_callback
        self.tb_writer = tb_writer
        self.eval_step = eval_step
        self.eval_epoch = eval_epoch
        self.eval_at_end = eval_at_end
        self._last_evaluated_step = None
        self.history = []  # (step, results dict) on rank 0

    def run(self, state):
        """Evaluate now; returns the epochs-done results (rank 0) or None."""
        self._last_evaluated_step = state.step
        batches = state.evaluate(self.eval_tensors)
        if not state.is_main:
            return None
        global_vars = {}
        names = [t.unique_name for t in self.eval_tensors]
        for batch in batches:
            self.user_iter_callback(dict(zip(names, ([v] for v in batch))), global_vars)
        results = self.user_epochs_done_callback(global_vars) or {}
        writer = self.tb_writer if self.tb_writer is not None else state.tb_writer
        if writer is not None:
            for tag, value in results.items():
                writer.add_scalar(tag, float(_to_python(value)), state.step)
        self.history.append((state.step, results))
        return results

    def on_step_end(self, state):
        if self.eval_step and state.step % self.eval_step == 0:
            self.run(state)

    def on_epoch_end(self, state):
        if self.eval_epoch and (state.epoch + 1) % self.eval_epoch == 0 and self._last_evaluated_step != state.step:
            self.run(state)

    def on_train_end(self, state):
        if self.eval_at_end and self._last_evaluated_step != state.step:
            self.run(state)


class CheckpointCallback(ActionCallback):
    """Saves ``{Name}-STEP-{step}.pt`` per trainable module plus
    ``trainer-STEP-{step}.pt`` every ``step_freq`` steps / ``epoch_freq``
    epochs, at the end (before any final evaluation), and when training stops
    on a signal or an exception (the last completed step). At the start it
    resumes through ``TrainingState.resume_from``.

    ``load_from_folder`` (e.g. ``--load_dir``): must exist and hold a usable
    set -- complete with trainer state to resume, or weights only to
    initialise from (the log says it does not resume). Once the callback's
    own ``folder`` holds sets of this run, they win (the same command run
    again after a stop continues the run, it does not start it over).
    Without ``load_from_folder`` the callback resumes from its own ``folder``
    when that holds a set, else starts fresh. A set that is unreadable or does not fit the modules is
    skipped with a warning naming the file and the next older one is used
    (``force_load=True``: an error instead). Only the files this run wrote are
    rotated (``checkpoints_to_keep``), so nothing older is ever deleted.
    """

    end_order = 0

    def __init__(self, folder=None, load_from_folder=None, step_freq=-1, epoch_freq=-1,
                 checkpoints_to_keep=4, force_load=False):
        self.folder = folder
        self.load_from_folder = load_from_folder
        self.step_freq = step_freq
        self.epoch_freq = epoch_freq
        self.checkpoints_to_keep = checkpoints_to_keep
        self.force_load = force_load
        self._written = []
        self._last_saved_step = None

    def on_train_start(self, state):
        if self.folder is None:
            self.folder = state.checkpoint_dir or "."
        explicit = self.load_from_folder is not None
        source = self.load_from_folder if explicit else self.folder
        if not explicit and not os.path.isdir(source):
            if self.force_load:
                raise CheckpointError(f"Checkpoint folder {source} does not exist")
            return
        if explicit and not os.path.isdir(source):
            raise CheckpointError(f"Checkpoint folder {source} (load_from_folder) "
                                  f"{'is not a folder' if os.path.exists(source) else 'does not exist'}")
        if explicit and self._own_sets(state):  # the same command run again after a stop: continue this run
            state.logger.info("%s holds this run's own checkpoints: resuming from there (load_from_folder %s "
                              "only starts a run)", self.folder, source)
            source = self.folder
        step = state.resume_from(source, required=explicit, force_load=self.force_load)
        if step is not None:
            self._last_saved_step = state.step

    def _own_sets(self, state):
        """Complete sets with trainer state in this callback's own folder (when it is another folder)."""
        if not os.path.isdir(self.folder) or os.path.abspath(self.folder) == os.path.abspath(self.load_from_folder):
            return []
        sets = checkpointing.find_sets(self.folder, list(state.checkpoint_names().values()))
        return [s for s in sets if s.trainer_file is not None]

    @property
    def _saves(self):
        return self.step_freq > 0 or self.epoch_freq > 0

    def _save(self, state):
        if self._last_saved_step == state.step:
            return True  # this step is on disk already
        if not state.is_main:
            self._last_saved_step = state.step
            return False
        named = state.checkpoint_names()
        checkpointing.save_checkpoint(self.folder, state.step, named, state.trainer_state())
        self._last_saved_step = state.step
        self._written.append(state.step)
        state.logger.info("Saved checkpoint for step %d to %s", state.step, self.folder)
        while self.checkpoints_to_keep > 0 and len(self._written) > self.checkpoints_to_keep:
            checkpointing.delete_checkpoint(self.folder, self._written.pop(0), named.values())
        return True

    def on_step_end(self, state):
        if self.step_freq > 0 and state.step % self.step_freq == 0:
            self._save(state)

    def on_epoch_end(self, state):
        if self.epoch_freq > 0 and (state.epoch + 1) % self.epoch_freq == 0:
            self._save(state)

    def on_train_end(self, state):
        if self._saves:
            self._save(state)

    def on_train_interrupted(self, state, reason):
        if not self._saves or state.step == 0 or self.folder is None:
            return False
        return self._save(state)
