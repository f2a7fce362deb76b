"""Novograd (Ginsburg et al., 2019, "Stochastic Gradient Methods with
Layer-wise Adaptive Moments for Training of Deep Networks").

Per parameter tensor (a "layer") ``l`` at step ``t`` with gradient ``g``::

    v_t = ||g||^2                                 (t = 1)
    v_t = beta2 * v_{t-1} + (1 - beta2) * ||g||^2 (t > 1)
    d   = g / (sqrt(v_t) + eps) + weight_decay * w
    d   = (1 - beta1) * d                         (grad_averaging only)
    m_t = beta1 * m_{t-1} + d
    w   = w - lr * m_t

With ``amsgrad`` the running maximum of ``v`` replaces ``v`` in the
denominator. The second moment is one scalar per tensor, so the state is
about half of Adam's. The step is vectorised with ``torch._foreach_*``.
"""
import torch

from .layerwise import LayerwiseOptimizer


class Novograd(LayerwiseOptimizer):
    def __init__(self, params, lr=1e-3, betas=(0.95, 0.98), eps=1e-8, weight_decay=0.0,
                 grad_averaging=False, amsgrad=False):
        self.check_arguments(lr, betas, eps)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        grad_averaging=grad_averaging, amsgrad=amsgrad)
        super().__init__(params, defaults)

    def _step_params(self, params, group):
        beta1, beta2 = group["betas"]
        moments = torch.float64 if params[0].dtype == torch.float64 else torch.float32
        fresh = [p for p in params if len(self.state[p]) == 0]
        for p in fresh:
            state = self.state[p]
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            # second moments are squared norms: float32 even for half weights (fp16 overflows at a norm of 256)
            state["exp_avg_sq"] = torch.zeros((), device=p.device, dtype=moments)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros((), device=p.device, dtype=moments)
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        norms_sq = torch._foreach_norm(grads, 2.0, dtype=moments)
        torch._foreach_mul_(norms_sq, norms_sq)
        first = [i for i, s in enumerate(states) if s["step"] == 0]
        later = [i for i, s in enumerate(states) if s["step"] > 0]
        if first:
            torch._foreach_copy_([states[i]["exp_avg_sq"] for i in first], [norms_sq[i] for i in first])
        if later:
            second = [states[i]["exp_avg_sq"] for i in later]
            torch._foreach_mul_(second, beta2)
            torch._foreach_add_(second, [norms_sq[i] for i in later], alpha=1.0 - beta2)
        for s in states:
            s["step"] += 1
        if group["amsgrad"]:
            maxima = [s["max_exp_avg_sq"] for s in states]
            torch._foreach_maximum_(maxima, [s["exp_avg_sq"] for s in states])
            denom = torch._foreach_sqrt(maxima)
        else:
            denom = torch._foreach_sqrt([s["exp_avg_sq"] for s in states])
        torch._foreach_add_(denom, group["eps"])
        if grads[0].dtype == moments:
            update = torch._foreach_div(grads, denom)
        else:  # half gradients: divide in float32, the update goes back into the half weights below
            update = [g.to(moments) / d for g, d in zip(grads, denom)]
        if group["weight_decay"] != 0:
            torch._foreach_add_(update, params, alpha=group["weight_decay"])
        if group["grad_averaging"]:
            torch._foreach_mul_(update, 1.0 - beta1)
        exp_avgs = [s["exp_avg"] for s in states]
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, update)
        torch._foreach_add_(params, exp_avgs, alpha=-group["lr"])
