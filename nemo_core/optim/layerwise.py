"""What the layer-wise optimisers (Novograd, LAMB) share: argument checks and the step driver.

``LayerwiseOptimizer.step`` runs the closure, refuses sparse gradients, and
hands each (device, dtype) group of the parameters that have gradients to the
subclass's ``_step_params(params, group)``, so its ``torch._foreach_*`` calls
see tensors of one kind.
"""
import torch


class LayerwiseOptimizer(torch.optim.Optimizer):
    """Base of ``Novograd`` and ``Lamb``; subclasses implement ``_step_params(params, group)``."""

    @staticmethod
    def check_arguments(lr, betas, eps):
        """``ValueError`` for a negative ``lr`` or ``eps``, or betas outside ``[0, 1)``."""
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid betas: {betas} (each must be in [0, 1))")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon: {eps}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            by_kind = {}
            for p in params:
                by_kind.setdefault((p.device, p.dtype), []).append(p)
            for same in by_kind.values():
                self._step_params(same, group)
        return loss

    def _step_params(self, params, group):
        raise NotImplementedError
