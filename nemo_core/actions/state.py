"""TrainingState: what the train loop shares with callbacks, and what a
checkpoint must hold to resume exactly (optimiser, scaler, position, RNGs)."""
import random

import torch

try:
    import numpy as np
except ImportError:  # numpy is optional for nemo_core
    np = None


class TrainingState:
    def __init__(self, factory, optimizer, trainable_modules, evaluate, batches_per_epoch, total_steps):
        self.factory = factory
        self.optimizer = optimizer
        self.trainable_modules = trainable_modules
        self.evaluate = evaluate
        self.batches_per_epoch = batches_per_epoch
        self.total_steps = total_steps
        self.step = 0  # optimiser steps taken
        self.epoch = 0
        self.epoch_step = 0  # batches consumed in the current epoch
        self.lr = None
        self.loss = None
        self.values = {}
        self.should_stop = False

    # conveniences for callbacks
    logger = property(lambda self: self.factory.logger)
    tb_writer = property(lambda self: self.factory.tb_writer)
    is_main = property(lambda self: self.factory.is_main)
    checkpoint_dir = property(lambda self: self.factory.checkpoint_dir)

    def trainer_state(self):
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if np is not None:
            name, keys, pos, has_gauss, cached = np.random.get_state()
            rng["numpy"] = {"name": name, "keys": torch.from_numpy(keys.astype("int64")),
                            "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}
        return {
            "step": self.step,
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "world_size": self.factory.world_size,
            "optimizer": self.optimizer.state_dict(),
            "precision": self.factory.precision.state_dict(),
            "rng": rng,
        }

    def load_trainer_state(self, state, apply_weights=None):
        """Restore a ``trainer_state()``; ``apply_weights`` loads the module files."""
        for key in ("step", "epoch", "epoch_step", "optimizer", "rng"):
            if key not in state:
                raise KeyError(f"trainer checkpoint lacks {key!r}")
        self.optimizer.load_state_dict(state["optimizer"])
        if apply_weights is not None:
            apply_weights()
        precision = self.factory.precision
        precision.refresh_masters()
        precision.load_state_dict(state.get("precision", {}))
        self.step, self.epoch, self.epoch_step = state["step"], state["epoch"], state["epoch_step"]
        if self.epoch_step >= self.batches_per_epoch:
            self.epoch, self.epoch_step = self.epoch + 1, 0
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(_as_tuple(rng["python"]))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if "numpy" in rng and np is not None:
            saved = rng["numpy"]
            np.random.set_state((saved["name"], saved["keys"].numpy().astype("uint32"),
                                 saved["pos"], saved["has_gauss"], saved["cached"]))


def _as_tuple(value):
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
