"""The train loop's non-finite step guard: what it keeps, counts and reports.

``Precision.step`` decides whether a step is taken (loss and gradients
finite on every rank). This guard makes a skipped step leave no trace --
BatchNorm running statistics, which the forward pass updates before anyone
can know the loss is bad, are put back -- counts skips, names the utterances
of the batch, and stops the run after too many skips in a row.
"""
import torch

DEFAULT_MAX_CONSECUTIVE_SKIPS = 25


class NonFiniteTrainingError(RuntimeError):
    """Training stopped on non-finite losses/gradients; the weights are those of the last good step."""


class StepGuard:
    def __init__(self, modules, logger, max_consecutive_skips=DEFAULT_MAX_CONSECUTIVE_SKIPS,
                 stop_on_nan_loss=False, describe=None):
        self.buffers = [b for m in modules if isinstance(m, torch.nn.Module)
                        for sub in m.modules() if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm)
                        for b in (sub.running_mean, sub.running_var, sub.num_batches_tracked) if b is not None]
        self.snapshot = [b.detach().clone() for b in self.buffers]
        self.logger = logger
        self.max_consecutive_skips = max_consecutive_skips
        self.stop_on_nan_loss = stop_on_nan_loss
        self.describe = describe  # sample indices -> list of strings (audio paths...), or None
        self.step_indices = []

    def begin_step(self):
        """Remember the BatchNorm statistics before this step's forward passes."""
        if self.buffers:
            torch._foreach_copy_(self.snapshot, self.buffers)
        self.step_indices = []

    def add_batch(self, indices):
        if indices is not None:
            self.step_indices.extend(indices)

    def rollback(self):
        """Put the BatchNorm statistics back to what they were before this step."""
        if self.buffers:
            torch._foreach_copy_(self.buffers, self.snapshot)

    def after_step(self, state, outcome, loss):
        """Count a taken or skipped step; raises ``NonFiniteTrainingError`` when the run must stop."""
        if outcome.taken:
            state.consecutive_skips = 0
            return
        self.rollback()
        state.skipped_steps += 1
        state.consecutive_skips += 1
        what = {"loss": "loss is not finite" if loss is None else f"loss is {float(loss):.4g}",
                "gradients": f"gradient norm is {float(outcome.grad_norm):.4g}",
                "another rank": "another process had a non-finite loss or gradients"}[outcome.reason]
        samples = self._samples() if outcome.reason != "another rank" else ""  # only this rank's own bad batch
        step = state.step  # the number of the step just attempted (from 1, as every callback counts)
        state.logger.warning("Step %d skipped: %s; weights, optimizer state and BatchNorm statistics unchanged "
                             "(%d skipped so far, %d in a row)%s%s", step, what, state.skipped_steps,
                             state.consecutive_skips, _scale_note(state), samples)
        if self.stop_on_nan_loss and not outcome.loss_finite:
            raise NonFiniteTrainingError(
                f"Loss is not finite at step {step} (stop_on_nan_loss); the weights are those of the last "
                f"good step{samples}")
        if self.max_consecutive_skips and state.consecutive_skips >= self.max_consecutive_skips:
            raise NonFiniteTrainingError(
                f"{state.consecutive_skips} steps in a row had non-finite loss or gradients (last: step {step}, "
                f"{what}); stopping. The weights are those of the last good step. Check the data named in the "
                f"log, lower the learning rate, or train in float32 (O0)")

    def _samples(self):
        if not self.step_indices:
            return ""
        shown = self.step_indices[:16]
        names = self.describe(shown) if self.describe is not None else None
        names = names or [f"sample #{i}" for i in shown]
        more = f" and {len(self.step_indices) - len(shown)} more" if len(self.step_indices) > len(shown) else ""
        return "; batch: " + ", ".join(names) + more


def _scale_note(state):
    scale = state.factory.precision.loss_scale
    return "" if scale is None else f"; loss scale now {scale:g}"
