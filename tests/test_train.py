import copy

import pytest
import torch

import nemo_core
from nemo_core import NeuralModuleFactory, Optimization, SimpleLossLoggerCallback
from nemo_core.optim import CosineAnnealing
from nemo_core.precision import cpu_has_native_bf16
from nemo_core.tutorials import L1Loss, MSELoss, RealFunctionDataLayer, TaylorNet


def simplest_dag(n=10000, batch_size=128, shuffle=True, dim=4):
    dl = RealFunctionDataLayer(n=n, batch_size=batch_size, shuffle=shuffle)
    fx = TaylorNet(dim=dim)
    x, y = dl()
    return dl, fx, MSELoss()(predictions=fx(x=x), target=y)


def factory(**kwargs):
    kwargs.setdefault("placement", nemo_core.DeviceType.CPU)
    return NeuralModuleFactory(**kwargs)


@pytest.mark.parametrize("optimizer,lr,threshold", [("sgd", 3e-4, 0.15), ("novograd", 0.01, 0.1)])
def test_simplest_example_learns(optimizer, lr, threshold):
    nf = factory(random_seed=0)
    _, _, loss = simplest_dag()
    history = []
    cb = SimpleLossLoggerCallback(tensors=[loss], print_func=lambda v: history.append(v[0].item()), step_freq=100)
    result = nf.train([loss], callbacks=[cb], optimizer=optimizer,
                      optimization_params={"max_steps": 3000, "lr": lr})
    assert result["step"] == 3000 and len(history) == 31  # after step 1, 100, 200, ..., 3000
    assert history[0] > 0.3  # it started far away ...
    assert result["loss"] < threshold  # ... and got close to the best cubic fit of sin (~0.03)


def test_seeded_cpu_run_is_bit_for_bit_repeatable():
    def run():
        nf = factory(random_seed=123)
        _, fx, loss = simplest_dag(n=256, batch_size=16)
        nf.train([loss], optimizer="novograd", optimization_params={"num_epochs": 3, "lr": 0.01})
        return fx.fc1.weight.detach().clone()

    assert torch.equal(run(), run())


def test_gradient_accumulation_equals_a_bigger_batch():
    def run(batch_size, batches_per_step):
        nf = factory(random_seed=7)
        _, fx, loss = simplest_dag(n=64, batch_size=batch_size, shuffle=False)
        nf.train([loss], optimizer="sgd", batches_per_step=batches_per_step,
                 optimization_params={"max_steps": 4, "lr": 1e-3})
        return fx.fc1.weight.detach().clone()

    assert torch.allclose(run(16, 1), run(8, 2), atol=1e-6)


def test_gradient_accumulation_carries_across_epoch_ends():
    nf = factory(random_seed=7)
    _, fx, loss = simplest_dag(n=40, batch_size=8, shuffle=False)  # 5 batches per epoch
    result = nf.train([loss], optimizer="sgd", batches_per_step=2, optimization_params={"num_epochs": 2, "lr": 1e-3})
    assert result["step"] == 5  # the third step takes the last batch of epoch 0 and the first of epoch 1


def test_several_losses_are_summed_and_frozen_modules_untouched():
    nf = factory(random_seed=0)
    dl = RealFunctionDataLayer(n=64, batch_size=8)
    trained, frozen = TaylorNet(dim=3), TaylorNet(dim=3)
    frozen.freeze()
    before = copy.deepcopy(frozen.state_dict())
    x, y = dl()
    mse = MSELoss()(predictions=trained(x=x), target=y)
    l1 = L1Loss()(predictions=frozen(x=x), target=y)
    seen = []
    cb = SimpleLossLoggerCallback(tensors=[mse, l1], step_freq=1,
                                  print_func=lambda v: seen.append((v[0].item(), v[1].item())))
    result = nf.train([mse, l1], callbacks=[cb], optimizer="adam", optimization_params={"max_steps": 5, "lr": 0.01})
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    # the reported loss is the sum of both tensors
    last_mse, last_l1 = seen[-1]
    assert result["loss"] == pytest.approx(last_mse + last_l1, rel=1e-6)


def test_optimizer_instance_lr_policy_and_errors():
    nf = factory(random_seed=0)
    _, fx, loss = simplest_dag(n=64, batch_size=8)
    lrs = []

    class LrSpy(nemo_core.ActionCallback):
        def on_step_end(self, state):
            lrs.append(state.lr)

    opt = torch.optim.SGD(fx.parameters(), lr=0.001)
    nf.train([loss], callbacks=[LrSpy()], optimizer=opt, lr_policy=CosineAnnealing(warmup_steps=1),
             optimization_params={"num_epochs": 2, "lr": 0.001})
    assert len(lrs) == 16 and lrs[0] == pytest.approx(0.0005) and lrs[1] == pytest.approx(0.001)
    import math

    assert lrs[-1] == pytest.approx(0.001 * 0.5 * (1 + math.cos(math.pi * 14 / 15)))  # step 15 of 16
    with pytest.raises(ValueError, match="Unknown optimizer 'adagrad'; valid optimizers: novograd, sgd, adam, adamw, "
                                         "adam_w, lamb"):
        nf.train([loss], optimizer="adagrad", optimization_params={"max_steps": 1, "lr": 0.1})
    with pytest.raises(ValueError, match="num_epochs or max_steps"):
        nf.train([loss], optimization_params={"lr": 0.1})
    with pytest.raises(ValueError, match="Bad optimization_params for sgd.*momentum"):
        nf.train([loss], optimizer="sgd", optimization_params={"max_steps": 1, "lr": 0.1, "betas": (0.9, 0.9)})


def test_stop_on_nan_loss():
    nf = factory(random_seed=0)
    _, fx, loss = simplest_dag(n=256, batch_size=32)
    with pytest.raises(nemo_core.NonFiniteTrainingError, match="stop_on_nan_loss"):
        nf.train([loss], optimizer="sgd", stop_on_nan_loss=True, optimization_params={"max_steps": 500, "lr": 10.0})
    # the diverging step was not applied: the weights are those of the last good step
    assert all(torch.isfinite(p).all() for p in fx.parameters())


@pytest.mark.parametrize("level", [Optimization.mxprO1, Optimization.mxprO2, Optimization.mxprO3])
def test_mixed_precision_levels_train_on_cpu(level):
    nf = factory(random_seed=0, optimization_level=level)
    _, fx, loss = simplest_dag(n=2048, batch_size=64, dim=2)
    result = nf.train([loss], optimizer="adam", optimization_params={"max_steps": 300, "lr": 0.01})
    # a line fit to sin on [-4, 4] has MSE ~0.33; bf16 must still get there
    assert result["loss"] < 0.45
    expected_dtype = torch.float32 if level == Optimization.mxprO1 else torch.bfloat16
    assert fx.fc1.weight.dtype == expected_dtype


def test_o1_autocast_actually_runs_in_bf16_on_cpu():
    nf = factory(optimization_level=Optimization.mxprO1)
    with nf.precision.autocast():
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("flags, expected", [("fpu sse avx2 avx512f avx512_bf16", True),
                                              ("fpu sse avx2 amx_bf16 amx_tile", True),
                                              ("fpu sse avx2 avx512f avx512bw", False)])
def test_cpu_has_native_bf16_reads_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    assert cpu_has_native_bf16(str(cpuinfo)) is expected
    assert cpu_has_native_bf16(str(tmp_path / "absent")) is False


def test_optimization_from_opt_level():
    assert Optimization.from_opt_level("O2") is Optimization.mxprO2
    with pytest.raises(ValueError, match="valid: O0, O1, O2, O3"):
        Optimization.from_opt_level("O4")
