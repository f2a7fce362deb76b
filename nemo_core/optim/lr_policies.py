"""Learning-rate policies, applied once per optimiser step.

Each policy is a callable ``policy(initial_lr, step) -> lr`` built with the
run's ``total_steps`` (the train action fills it in from epochs x steps per
epoch when it is not given). ``step`` counts from 0. Warm-up is linear from
``initial_lr / (warmup_steps + 1)`` up to ``initial_lr``; afterwards each
policy anneals towards ``min_lr``.
"""
import math


class WarmupPolicy:
    """Base class: linear warm-up, then ``_decay`` (constant here)."""

    def __init__(self, total_steps=None, warmup_steps=None, warmup_ratio=None, min_lr=0.0):
        if warmup_steps is not None and warmup_ratio is not None:
            raise ValueError("Give either warmup_steps or warmup_ratio, not both")
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.warmup_ratio = warmup_ratio
        self.min_lr = min_lr

    def with_total_steps(self, total_steps):
        if self.total_steps is None:
            self.total_steps = total_steps
        return self

    @property
    def _warmup(self):
        if self.warmup_steps is not None:
            return int(self.warmup_steps)
        if self.warmup_ratio is not None:
            return int(self.warmup_ratio * self._total)
        return 0

    @property
    def _total(self):
        if self.total_steps is None:
            raise ValueError(f"{type(self).__name__} needs total_steps (max_steps or num_epochs)")
        return int(self.total_steps)

    def __call__(self, initial_lr, step):
        warmup = self._warmup
        if step < warmup:
            return initial_lr * (step + 1) / (warmup + 1)
        return self._decay(initial_lr, step, warmup)

    def _progress(self, step, start):
        span = max(self._total - start, 1)
        return min(max(step - start, 0) / span, 1.0)

    def _decay(self, initial_lr, step, warmup):
        return initial_lr

    def __repr__(self):
        return (f"{type(self).__name__}(total_steps={self.total_steps}, warmup={self.warmup_steps or self.warmup_ratio}, "
                f"min_lr={self.min_lr})")


class _PowerAnnealing(WarmupPolicy):
    power = 1.0

    def _decay(self, initial_lr, step, warmup):
        remaining = 1.0 - self._progress(step, warmup)
        return self.min_lr + (initial_lr - self.min_lr) * remaining ** self.power


class WarmupAnnealing(_PowerAnnealing):
    """Linear decay to ``min_lr`` after warm-up."""

    power = 1.0


class SquareAnnealing(_PowerAnnealing):
    """``(1 - progress)^2`` decay (NeMo's default min_lr 1e-5)."""

    power = 2.0

    def __init__(self, total_steps=None, warmup_steps=None, warmup_ratio=None, min_lr=1e-5):
        super().__init__(total_steps, warmup_steps, warmup_ratio, min_lr)


class SquareRootAnnealing(_PowerAnnealing):
    """``sqrt(1 - progress)`` decay."""

    power = 0.5


class CosineAnnealing(WarmupPolicy):
    """Half-cosine from ``initial_lr`` to ``min_lr`` after warm-up."""

    def _decay(self, initial_lr, step, warmup):
        progress = self._progress(step, warmup)
        return self.min_lr + (initial_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class PolynomialDecayAnnealing(WarmupPolicy):
    """``(1 - progress)^power`` decay; with ``cycle`` the horizon restarts at multiples."""

    def __init__(self, total_steps=None, warmup_steps=None, warmup_ratio=None, min_lr=0.0,
                 power=1.0, cycle=False):
        super().__init__(total_steps, warmup_steps, warmup_ratio, min_lr)
        self.power = power
        self.cycle = cycle

    def _decay(self, initial_lr, step, warmup):
        span = max(self._total - warmup, 1)
        done = step - warmup
        if self.cycle:
            span = span * max(math.ceil(done / span), 1)
        remaining = 1.0 - min(done / span, 1.0)
        return self.min_lr + (initial_lr - self.min_lr) * remaining ** self.power


class InverseSquareRootAnnealing(WarmupPolicy):
    """``initial_lr * sqrt((warmup + 1) / (step + 1))`` after warm-up, floored at ``min_lr``."""

    def _decay(self, initial_lr, step, warmup):
        return max(initial_lr * math.sqrt((warmup + 1) / (step + 1)), self.min_lr)


class WarmupHoldPolicy(WarmupPolicy):
    """Warm up, hold ``initial_lr`` for ``hold_steps`` (or ``hold_ratio``), then
    decay as ``(1 - progress)^power`` to ``min_lr`` over the remaining steps."""

    def __init__(self, total_steps=None, warmup_steps=None, warmup_ratio=None, min_lr=0.0,
                 hold_steps=None, hold_ratio=None, power=2.0):
        super().__init__(total_steps, warmup_steps, warmup_ratio, min_lr)
        if hold_steps is not None and hold_ratio is not None:
            raise ValueError("Give either hold_steps or hold_ratio, not both")
        self.hold_steps = hold_steps
        self.hold_ratio = hold_ratio
        self.power = power

    def _decay(self, initial_lr, step, warmup):
        if self.hold_steps is not None:
            hold = int(self.hold_steps)
        elif self.hold_ratio is not None:
            hold = int(self.hold_ratio * self._total)
        else:
            hold = 0
        start = warmup + hold
        if step < start:
            return initial_lr
        remaining = 1.0 - self._progress(step, start)
        return self.min_lr + (initial_lr - self.min_lr) * remaining ** self.power


POLICIES = {cls.__name__: cls for cls in (
    WarmupPolicy, WarmupAnnealing, SquareAnnealing, SquareRootAnnealing, CosineAnnealing,
    PolynomialDecayAnnealing, InverseSquareRootAnnealing, WarmupHoldPolicy,
)}


def get_lr_policy(name, **kwargs):
    """Build a policy by class name (for CLIs)."""
    try:
        return POLICIES[name](**kwargs)
    except KeyError:
        raise ValueError(f"Unknown lr policy {name!r}; valid: {', '.join(POLICIES)}") from None
