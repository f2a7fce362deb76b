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


# ------------------------------------------------------------------- LAMB

def reference_lamb(weights, grads_per_step, lr, betas, eps, wd, bias_correction=True):
    """Plain-Python LAMB, one float at a time: Adam moments, decoupled decay, layer-wise trust ratio."""
    beta1, beta2 = betas
    w = [list(map(float, t.flatten())) for t in weights]
    m = [[0.0] * len(t) for t in w]
    v = [[0.0] * len(t) for t in w]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            g = list(map(float, g.flatten()))
            update = []
            for j in range(len(g)):
                m[i][j] = beta1 * m[i][j] + (1 - beta1) * g[j]
                v[i][j] = beta2 * v[i][j] + (1 - beta2) * g[j] ** 2
                m_hat = m[i][j] / (1 - beta1 ** t) if bias_correction else m[i][j]
                v_hat = v[i][j] / (1 - beta2 ** t) if bias_correction else v[i][j]
                update.append(m_hat / (math.sqrt(v_hat) + eps) + wd * w[i][j])
            w_norm = math.sqrt(sum(x * x for x in w[i]))
            u_norm = math.sqrt(sum(x * x for x in update))
            ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
            w[i] = [x - lr * ratio * u for x, u in zip(w[i], update)]
    return w


def test_lamb_first_step_by_hand():
    # one layer w = [1, 2], g = [0.5, -1]; step 1 (bias-corrected): m^ = g, v^ = g^2, so with eps = 0
    # u = sign(g) + wd * w = [1.1, -0.8]; r = ||w|| / ||u|| = sqrt(5) / sqrt(1.85); w -= lr * r * u
    from nemo_core.optim import Lamb

    p = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    p.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    Lamb([p], lr=0.1, eps=0.0, weight_decay=0.1).step()
    ratio = math.sqrt(5) / math.sqrt(1.85)
    expected = torch.tensor([1.0 - 0.1 * ratio * 1.1, 2.0 + 0.1 * ratio * 0.8], dtype=torch.float64)
    assert torch.allclose(p.detach(), expected, atol=1e-12)
    assert abs(p[0].item() - 0.8191611) < 1e-6 and abs(p[1].item() - 2.1315192) < 1e-6


@pytest.mark.parametrize("wd,bias_correction", [(0.0, True), (0.05, True), (0.01, False)])
def test_lamb_matches_hand_computed_reference(wd, bias_correction):
    from nemo_core.optim import Lamb

    gen = torch.Generator().manual_seed(3)
    weights = [torch.randn(2, generator=gen, dtype=torch.float64), torch.randn(1, generator=gen, dtype=torch.float64)]
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    opt = Lamb(params, lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=wd, bias_correction=bias_correction)
    steps = []
    for step in range(5):
        scale = 4.0 if step == 3 else 1.0
        grads = [torch.randn(w.shape, generator=gen, dtype=torch.float64) * scale for w in weights]
        steps.append(grads)
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    expected = reference_lamb(weights, steps, 0.05, (0.8, 0.9), 1e-6, wd, bias_correction)
    for p, e in zip(params, expected):
        assert torch.allclose(p.detach().flatten(), torch.tensor(e, dtype=torch.float64), atol=1e-12)


def test_lamb_trains_a_small_problem_and_keeps_float32_moments_for_half_weights():
    from nemo_core.optim import Lamb

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=gen)
    target = x @ torch.randn(8, 1, generator=gen) + 0.5
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = Lamb(model.parameters(), lr=0.05, weight_decay=0.0)
    first = None
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(model(x), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    half = torch.nn.Parameter(torch.randn(32, 32).half())
    opt = Lamb([half], lr=0.01)
    start = half.detach().clone()
    half.grad = (torch.randn(32, 32) * 300).half()
    opt.step()
    assert opt.state[half]["exp_avg_sq"].dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - start).abs().max() > 1e-3
    with pytest.raises(ValueError, match="betas"):
        Lamb([half], betas=(0.9, 1.0))
