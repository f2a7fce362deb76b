"""TrainingState: what the train loop shares with callbacks, what a checkpoint
holds to continue a run exactly, and the ONE owner of resuming.

Resuming (``resume_from``) finds the newest complete set through
``checkpointing.find_sets`` and hands it to ``restore``, which first checks
everything it is about to apply and then applies, always in this order:

1. module weights;
2. precision: loss-scaler state and O2's float32 master weights;
3. loop position: step, epoch, batches consumed in the epoch (the data
   loader skips those, see ``actions/train.py``);
4. optimiser state, keeping this run's hyper-parameters (lr, weight decay,
   betas... given now win; the log names each one that changed);
5. RNG states (torch, CUDA, Python, NumPy, and the modules' own generators,
   e.g. SpecAugment's), last, so nothing above draws random numbers after them.
"""
import random

import torch

from .. import checkpointing
from ..checkpointing import CheckpointError, ResumeError

try:
    import numpy as np
except ImportError:  # numpy is optional for nemo_core
    np = None

_TRAINER_KEYS = ("step", "epoch", "epoch_step", "optimizer", "rng")


class TrainingState:
    """Loop position and shared values of one ``train`` (or ``eval``) action."""

    def __init__(self, factory, optimizer=None, trainable_modules=(), evaluate=None, batches_per_epoch=1,
                 total_steps=0, modules=None):
        self.factory = factory
        self.optimizer = optimizer
        self.trainable_modules = list(trainable_modules)
        self.modules = list(modules) if modules is not None else list(self.trainable_modules)  # the whole DAG
        self.evaluate = evaluate
        self.batches_per_epoch = batches_per_epoch
        self.total_steps = total_steps
        self.step = 0  # optimiser steps done (skipped non-finite steps included)
        self.epoch = 0
        self.epoch_step = 0  # batches consumed in the current epoch
        self.lr = None
        self.loss = None
        self.values = {}
        self.should_stop = False
        self.skipped_steps = 0  # steps whose update was skipped (non-finite loss or gradients)
        self.consecutive_skips = 0
        self.committed = None  # (epoch, epoch_step) after the last completed step: what a checkpoint records

    # conveniences for callbacks
    logger = property(lambda self: self.factory.logger)
    tb_writer = property(lambda self: self.factory.tb_writer)
    is_main = property(lambda self: self.factory.is_main)
    checkpoint_dir = property(lambda self: self.factory.checkpoint_dir)

    def checkpoint_names(self):
        return checkpointing.checkpoint_names(self.trainable_modules)

    # ----------------------------------------------------------- saving
    def trainer_state(self):
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if np is not None:
            name, keys, pos, has_gauss, cached = np.random.get_state()
            rng["numpy"] = {"name": name, "keys": torch.from_numpy(keys.astype("int64")),
                            "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}
        epoch, epoch_step = self.committed or (self.epoch, self.epoch_step)
        return {
            "step": self.step,
            "epoch": epoch,
            "epoch_step": epoch_step,
            "world_size": self.factory.world_size,
            "optimizer_class": type(self.optimizer).__name__,
            "optimizer": self.optimizer.state_dict(),
            "precision": self.factory.precision.state_dict(),
            "skipped_steps": self.skipped_steps,
            "rng": rng,
            "module_rng": self._module_rngs(),
        }

    def _module_rngs(self):
        """Own generators of DAG modules (augmentation), by checkpoint name."""
        states = {name: module.rng_state() for module, name in checkpointing.checkpoint_names(self.modules).items()}
        return {name: state for name, state in states.items() if state is not None}

    # --------------------------------------------------------- resuming
    def resume_from(self, folder, required=False, force_load=False):
        """Continue from the newest usable complete set in ``folder``; returns its step or None.

        A set that cannot be read or does not fit the modules is skipped with a
        warning naming the file (``force_load``: raised instead) and the next
        older one is tried. A folder without trainer files initialises the
        weights only (the log says so) and training starts at step 0.
        ``required`` (an explicitly given folder): finding nothing usable is an
        error, not a fresh start.
        """
        named = self.checkpoint_names()
        names = list(named.values())
        sets = checkpointing.find_sets(folder, names)
        if not sets:
            message = checkpointing.describe_folder(folder, names)
            if required or force_load:
                raise CheckpointError(message[0].upper() + message[1:])
            self.logger.info("Starting from scratch: %s", message)
            return None
        for ckpt_set in reversed(sets):
            try:
                loaded = checkpointing.read_set(ckpt_set, named)
                self.restore(loaded)
            except ResumeError:
                raise
            except Exception as err:
                if force_load:
                    raise
                self.logger.warning("Cannot resume from %s step %d: %s", folder, ckpt_set.step, err)
                continue
            if loaded.trainer_state is None:
                self.logger.warning("Initialised the weights from %s step %d; not resuming: the folder holds no "
                                    "trainer state (optimizer, position), so training starts at step 0",
                                    folder, ckpt_set.step)
            else:
                self.logger.info("Resumed from %s at step %d (epoch %d)", folder, self.step, self.epoch)
            return ckpt_set.step
        message = f"No usable checkpoint set in {folder} (every complete set was unreadable, see above)"
        if required:
            raise CheckpointError(message)
        self.logger.warning("%s; training starts from scratch", message)
        return None

    def restore(self, loaded):
        """Apply a ``checkpointing.LoadedCheckpoint`` in the documented order.

        Everything is checked before anything changes, so a set that does not
        fit leaves the run untouched. A weights-only set restores the weights.
        """
        trainer = loaded.trainer_state
        if trainer is not None:
            self._check_trainer_state(trainer, loaded.set.trainer_file)
        try:
            loaded.apply_weights()
            if trainer is None:
                self.factory.precision.refresh_masters()
                return
            self.factory.precision.load_state_dict(trainer.get("precision") or {})
            self.step, self.epoch, self.epoch_step = trainer["step"], trainer["epoch"], trainer["epoch_step"]
            if self.epoch_step >= self.batches_per_epoch:
                self.epoch, self.epoch_step = self.epoch + 1, 0
            self.skipped_steps = int(trainer.get("skipped_steps", 0))
            self._restore_optimizer(trainer["optimizer"])
            _restore_rng(trainer["rng"])
            saved = trainer.get("module_rng") or {}
            for module, name in checkpointing.checkpoint_names(self.modules).items():
                if name in saved and module.rng_state() is not None:
                    module.load_rng_state(saved[name])
        except Exception as err:  # part of the set is applied: no older set may be tried on top of it
            raise ResumeError(f"Resuming from {loaded.folder} step {loaded.step} failed half-way ({err}); "
                              "the run stops rather than continue from a mixed state") from err
        saved_world = trainer.get("world_size", self.factory.world_size)
        if saved_world != self.factory.world_size:
            self.logger.warning("Checkpoint step %d was written by %d process(es), this run has %d: the data "
                                "position in the epoch is approximate", loaded.step, saved_world,
                                self.factory.world_size)

    def _check_trainer_state(self, trainer, path):
        missing = [k for k in _TRAINER_KEYS if k not in trainer]
        if missing:
            raise CheckpointError(f"Trainer checkpoint {path} lacks {', '.join(missing)}")
        rng = trainer["rng"]
        if not isinstance(rng, dict) or "torch" not in rng or "python" not in rng:
            raise CheckpointError(f"Trainer checkpoint {path} holds no usable RNG state")
        saved_class = trainer.get("optimizer_class")
        ours = type(self.optimizer).__name__
        saved_groups = trainer["optimizer"].get("param_groups", [])
        ours_keys = [set(g) - {"params"} for g in self.optimizer.param_groups]
        saved_keys = [set(g) - {"params"} for g in saved_groups]
        if saved_class is None and saved_keys != ours_keys:  # files written before the class was recorded
            saved_class = "another optimizer"
        if saved_class is not None and saved_class != ours:
            raise ResumeError(f"Checkpoint {path} was trained with {saved_class}, but this run uses {ours}: "
                              f"resume with the same optimizer, or start a new experiment folder")
        sizes = [len(g["params"]) for g in saved_groups]
        if sizes != [len(g["params"]) for g in self.optimizer.param_groups]:
            raise CheckpointError(f"Trainer checkpoint {path} holds optimizer state for {sizes} weights per group, "
                                  f"this run has {[len(g['params']) for g in self.optimizer.param_groups]}")

    def _restore_optimizer(self, saved):
        """Load the optimiser state but keep this run's hyper-parameters; log what changed."""
        ours = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(saved)
        changes = []
        for index, (group, settings) in enumerate(zip(self.optimizer.param_groups, ours)):
            for key, value in settings.items():
                old = group.get(key)
                if key != "lr" and not _same(old, value):
                    label = "lr" if key == "initial_lr" else key
                    changes.append(f"{label} {_fmt(old)} -> {_fmt(value)}" + (f" (group {index})" if index else ""))
                group[key] = value
        if changes:
            self.logger.info("Resume: this run's settings replace the checkpoint's: %s", "; ".join(changes))


def _same(a, b):
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    return a == b


def _fmt(value):
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def _restore_rng(rng):
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuple(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():  # as many devices as this machine has
        for index, cuda_state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    if "numpy" in rng and np is not None:
        saved = rng["numpy"]
        np.random.set_state((saved["name"], saved["keys"].numpy().astype("uint32"),
                             saved["pos"], saved["has_gauss"], saved["cached"]))


def _as_tuple(value):
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value

