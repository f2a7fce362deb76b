"""LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes"): Adam's moments with a layer-wise trust ratio.

Per parameter tensor (a "layer") ``w`` at step ``t`` with gradient ``g``::

    m_t = beta1 * m_{t-1} + (1 - beta1) * g
    v_t = beta2 * v_{t-1} + (1 - beta2) * g^2
    m^  = m_t / (1 - beta1^t),  v^ = v_t / (1 - beta2^t)     (bias_correction only)
    u   = m^ / (sqrt(v^) + eps) + weight_decay * w           (decay decoupled from the moments)
    r   = ||w|| / ||u||   (1 when either norm is 0; at most max_trust_ratio when given)
    w   = w - lr * r * u

The trust ratio makes each layer's step ``lr * ||w||`` long whatever the
scale of its gradient. Moments are float32 (float64 for float64 weights),
also for half weights. Unlike apex's ``FusedLAMB`` there is no built-in
global gradient clipping: use the train loop's ``grad_norm_clip``.
"""
import torch

from .layerwise import LayerwiseOptimizer


class Lamb(LayerwiseOptimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, bias_correction=True,
                 max_trust_ratio=None):
        self.check_arguments(lr, betas, eps)
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        if max_trust_ratio is not None and max_trust_ratio <= 0:
            raise ValueError(f"Invalid max_trust_ratio: {max_trust_ratio} (must be > 0 or None)")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction, max_trust_ratio=max_trust_ratio)
        super().__init__(params, defaults)

    def _step_params(self, params, group):
        beta1, beta2 = group["betas"]
        moments = torch.float64 if params[0].dtype == torch.float64 else torch.float32
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, dtype=moments, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, dtype=moments, memory_format=torch.preserve_format)
        states = [self.state[p] for p in params]
        grads = [p.grad if p.grad.dtype == moments else p.grad.to(moments) for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        for s in states:
            s["step"] += 1
        denom = torch._foreach_sqrt(exp_avg_sqs)
        update = list(exp_avgs)
        if group["bias_correction"]:
            torch._foreach_div_(denom, [(1.0 - beta2 ** s["step"]) ** 0.5 for s in states])
            update = torch._foreach_div(exp_avgs, [1.0 - beta1 ** s["step"] for s in states])
        torch._foreach_add_(denom, group["eps"])
        update = torch._foreach_div(update, denom)
        weights = [p if p.dtype == moments else p.to(moments) for p in params]
        if group["weight_decay"] != 0:
            torch._foreach_add_(update, weights, alpha=group["weight_decay"])
        weight_norms = torch._foreach_norm(weights)
        update_norms = torch._foreach_norm(update)
        limit = group["max_trust_ratio"]
        for p, u, w_norm, u_norm in zip(params, update, weight_norms, update_norms):
            ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
            if limit is not None:
                ratio = ratio.clamp(max=limit)
            u.mul_(ratio * group["lr"])
            p.sub_(u if u.dtype == p.dtype else u.to(p.dtype))
