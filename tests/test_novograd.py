import math

import pytest
import torch

from nemo_core.optim import Novograd


def reference_novograd(weights, grads_per_step, lr, betas, eps, wd, grad_averaging, amsgrad):
    """Plain-Python Novograd, one float at a time, straight from the paper's update."""
    beta1, beta2 = betas
    w = [list(map(float, t.flatten())) for t in weights]
    m = [[0.0] * len(t) for t in w]
    v = [None] * len(w)
    v_max = [0.0] * len(w)
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            g = list(map(float, g.flatten()))
            norm_sq = sum(x * x for x in g)
            v[i] = norm_sq if v[i] is None else beta2 * v[i] + (1 - beta2) * norm_sq
            v_max[i] = max(v_max[i], v[i])
            denom = math.sqrt(v_max[i] if amsgrad else v[i]) + eps
            for j in range(len(g)):
                d = g[j] / denom + wd * w[i][j]
                if grad_averaging:
                    d *= 1 - beta1
                m[i][j] = beta1 * m[i][j] + d
                w[i][j] -= lr * m[i][j]
    return w


@pytest.mark.parametrize("grad_averaging,amsgrad,wd", [(False, False, 0.0), (True, False, 0.01), (False, True, 0.1)])
def test_matches_hand_computed_reference(grad_averaging, amsgrad, wd):
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(3, 2, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)]
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    opt = Novograd(params, lr=0.1, betas=(0.9, 0.5), eps=1e-6, weight_decay=wd,
                   grad_averaging=grad_averaging, amsgrad=amsgrad)
    steps = []
    for step in range(4):
        grads = [torch.randn(w.shape, generator=gen, dtype=torch.float64) * (3.0 if step == 2 else 1.0) for w in weights]
        steps.append(grads)
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    expected = reference_novograd(weights, steps, 0.1, (0.9, 0.5), 1e-6, wd, grad_averaging, amsgrad)
    for p, e in zip(params, expected):
        assert torch.allclose(p.detach().flatten(), torch.tensor(e, dtype=torch.float64), atol=1e-12)


def test_first_step_by_hand():
    # one weight [3, 4]: ||g||^2 = 25, v = 25, step = lr * g / 5
    p = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    p.grad = torch.tensor([3.0, 4.0])
    Novograd([p], lr=0.5, eps=0.0).step()
    assert torch.allclose(p.detach(), torch.tensor([1.0 - 0.5 * 0.6, 1.0 - 0.5 * 0.8]))


def test_skips_params_without_grad_and_rejects_bad_args():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    a.grad = torch.ones(2)
    Novograd([a, b], lr=0.1).step()
    assert torch.equal(b.detach(), torch.ones(2)) and not torch.equal(a.detach(), torch.ones(2))
    with pytest.raises(ValueError, match="betas"):
        Novograd([a], betas=(1.0, 0.5))
    with pytest.raises(ValueError, match="learning rate"):
        Novograd([a], lr=-1)


def test_half_weights_keep_float32_moments():
    """Under O3 the weights are fp16; a gradient norm above 256 squared overflows fp16, so the
    second moment must be float32 or the layer silently stops learning (inf denominator)."""
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(64, 64).half())
    opt = Novograd([weight], lr=0.01)
    start = weight.detach().clone()
    for _ in range(3):
        weight.grad = (torch.randn(64, 64) * 300).half()  # norm ~19,000
        opt.step()
    assert opt.state[weight]["exp_avg_sq"].dtype == torch.float32
    assert torch.isfinite(opt.state[weight]["exp_avg_sq"]) and torch.isfinite(weight).all()
    assert (weight - start).abs().max() > 1e-3  # it still learns
