import math

import pytest

from nemo_core.optim import (
    CosineAnnealing, InverseSquareRootAnnealing, PolynomialDecayAnnealing, SquareAnnealing,
    SquareRootAnnealing, WarmupAnnealing, WarmupHoldPolicy, get_lr_policy,
)


def test_warmup_is_linear_and_reaches_peak():
    policy = CosineAnnealing(total_steps=110, warmup_steps=9, min_lr=0.0)
    assert policy(1.0, 0) == pytest.approx(0.1)
    assert policy(1.0, 8) == pytest.approx(0.9)
    assert policy(1.0, 9) == pytest.approx(1.0)


def test_decays_hit_their_formulas():
    total, warm, lr = 100, 10, 2.0
    assert CosineAnnealing(total, warm)(lr, 55) == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert WarmupAnnealing(total, warm)(lr, 55) == pytest.approx(lr * 0.5)
    assert SquareAnnealing(total, warm, min_lr=0.0)(lr, 55) == pytest.approx(lr * 0.25)
    assert SquareRootAnnealing(total, warm)(lr, 55) == pytest.approx(lr * math.sqrt(0.5))
    assert PolynomialDecayAnnealing(total, warm, power=3.0)(lr, 55) == pytest.approx(lr * 0.125)
    assert InverseSquareRootAnnealing(total, warm)(lr, 43) == pytest.approx(lr * math.sqrt(11 / 44))
    hold = WarmupHoldPolicy(total, warm, hold_steps=20, power=1.0)
    assert hold(lr, 25) == lr and hold(lr, 65) == pytest.approx(lr * 0.5)


def test_min_lr_ratio_and_end_of_schedule():
    policy = SquareAnnealing(total_steps=100, warmup_ratio=0.1, min_lr=0.01)
    assert policy._warmup == 10
    assert policy(1.0, 100) == pytest.approx(0.01) and policy(1.0, 500) == pytest.approx(0.01)
    assert InverseSquareRootAnnealing(100, 0, min_lr=0.05)(1.0, 10 ** 6) == 0.05


def test_total_steps_filled_in_by_the_loop_and_errors():
    policy = CosineAnnealing(warmup_steps=2)
    with pytest.raises(ValueError, match="total_steps"):
        policy(1.0, 5)
    assert policy.with_total_steps(10)(1.0, 10) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="either warmup_steps or warmup_ratio"):
        CosineAnnealing(10, warmup_steps=1, warmup_ratio=0.1)
    with pytest.raises(ValueError, match="valid: .*CosineAnnealing"):
        get_lr_policy("Nope")
    assert isinstance(get_lr_policy("CosineAnnealing", total_steps=5), CosineAnnealing)
