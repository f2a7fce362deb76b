"""Optimisers (by name or instance) and learning-rate policies."""
import torch

from .lr_policies import (
    POLICIES,
    CosineAnnealing,
    InverseSquareRootAnnealing,
    PolynomialDecayAnnealing,
    SquareAnnealing,
    SquareRootAnnealing,
    WarmupAnnealing,
    WarmupHoldPolicy,
    WarmupPolicy,
    get_lr_policy,
)
from .lamb import Lamb
from .novograd import Novograd

# keys of optimization_params that the train loop consumes itself
LOOP_KEYS = ("num_epochs", "max_steps", "lr", "grad_norm_clip")


def _sgd(params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov, dampening=dampening)


def _adam(params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps,
                            weight_decay=weight_decay, amsgrad=amsgrad, foreach=True)


def _adamw(params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False):
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps,
                             weight_decay=weight_decay, amsgrad=amsgrad, foreach=True)


def _novograd(params, lr, betas=(0.95, 0.98), eps=1e-8, weight_decay=0.0,
              grad_averaging=False, amsgrad=False):
    return Novograd(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                    grad_averaging=grad_averaging, amsgrad=amsgrad)


def _lamb(params, lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, bias_correction=True,
          max_trust_ratio=None):
    return Lamb(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                bias_correction=bias_correction, max_trust_ratio=max_trust_ratio)


# "adam_w" is NeMo 0.x's spelling of "adamw"; both build the same optimiser
OPTIMIZERS = {"novograd": _novograd, "sgd": _sgd, "adam": _adam, "adamw": _adamw, "adam_w": _adamw,
              "lamb": _lamb}
# the valid names, e.g. for argparse ``choices=OPTIMIZER_NAMES``
OPTIMIZER_NAMES = tuple(OPTIMIZERS)


def get_optimizer(name, params, optimization_params):
    """Build optimiser ``name`` (one of ``OPTIMIZER_NAMES``, any case) from the
    optimiser-specific keys of ``optimization_params``."""
    builder = OPTIMIZERS.get(str(name).lower())
    if builder is None:
        raise ValueError(f"Unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZER_NAMES)}")
    kwargs = {k: v for k, v in optimization_params.items() if k not in LOOP_KEYS}
    if "lr" not in optimization_params:
        raise ValueError("optimization_params must give 'lr'")
    try:
        return builder(params, lr=optimization_params["lr"], **kwargs)
    except TypeError as err:
        import inspect

        valid = [p for p in inspect.signature(builder).parameters if p not in ("params", "lr")]
        raise ValueError(
            f"Bad optimization_params for {name}: {err}. Optimizer keys for {name}: "
            f"{', '.join(valid)}; loop keys: {', '.join(LOOP_KEYS)}"
        ) from err


__all__ = [
    "Novograd", "Lamb", "get_optimizer", "OPTIMIZERS", "OPTIMIZER_NAMES", "LOOP_KEYS", "get_lr_policy", "POLICIES",
    "WarmupPolicy", "WarmupAnnealing", "SquareAnnealing", "SquareRootAnnealing", "CosineAnnealing",
    "PolynomialDecayAnnealing", "InverseSquareRootAnnealing", "WarmupHoldPolicy",
]
