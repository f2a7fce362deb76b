"""fp16 with dynamic loss scaling, run for real on the CPU (``amp_dtype=torch.float16``).

A GPU run uses exactly this code path (``torch.amp.GradScaler`` + the
non-finite guard), so these tests cover it on every machine: autocast really
computes in float16, the loss scale grows after clean steps, an overflow skips
the step without a trace and halves the scale, O2 keeps float32 masters, O3
trains in pure half without scaling, the scaler state survives a resume, and
a small QuartzNet overfits AN4 at O1/O2 fp16 as it does in float32.
"""
import collections
import functools
import logging
import math

import pytest
import torch

import nemo_core
import nemo_asr
from nemo_asr.ctc_graph import ctc_graph
from nemo_asr.helpers import process_evaluation_batch, process_evaluation_epoch
from nemo_core import ChannelType, LossNM, LossType, NeuralModuleFactory, NeuralType, Optimization, TrainableNM
from nemo_core.neural_types import RegressionValuesType
from nemo_core.precision import Precision
from nemo_core.tutorials import MSELoss, RealFunctionDataLayer, TaylorNet

from test_asr_overfit import AN4, LABELS, tiny_quartznet

O1, O2, O3 = Optimization.mxprO1, Optimization.mxprO2, Optimization.mxprO3


def fp16_factory(level, seed=0, **scaler_args):
    """A CPU factory at ``level`` in float16; ``scaler_args`` (init_scale, growth_interval)
    replace its Precision by one with those loss-scaler settings (the factory has no such arguments)."""
    nf = NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=seed, optimization_level=level,
                             amp_dtype=torch.float16)
    if scaler_args:
        nf.precision = Precision(level, nf.device, amp_dtype=torch.float16, **scaler_args)
    return nf


class NormMLP(TrainableNM):
    """Linear -> BatchNorm -> tanh -> Linear: one normalisation layer for O2 to keep in float32."""

    input_ports, output_ports = TaylorNet.input_ports, TaylorNet.output_ports  # x -> y_pred

    def __init__(self, hidden=16):
        super().__init__()
        self.inp = torch.nn.Linear(1, hidden)
        self.norm = torch.nn.BatchNorm1d(hidden)
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.norm(self.inp(x))))


class AmplifiedMSE(LossNM):
    """MSE times ``factor`` plus ``offset``: a test turns the factor up for one step to make fp16 gradients
    overflow, or makes the offset NaN (a non-finite loss whose gradients are finite)."""

    def __init__(self):
        super().__init__()
        self.factor, self.offset = 1.0, 0.0

    @property
    def input_ports(self):
        return collections.OrderedDict(predictions=NeuralType(("B", "D"), ChannelType()),
                                       target=NeuralType(("B", "D"), RegressionValuesType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(loss=NeuralType(None, LossType()))

    def forward(self, predictions, target):
        return torch.nn.functional.mse_loss(predictions, target) * self.factor + self.offset


class Recorder(nemo_core.ActionCallback):
    """Per completed step: the loss (repr, exact) and the scaler's state right after the step."""

    def __init__(self, nf):
        self.nf = nf
        self.optimizer = None
        self.losses, self.scaler_states = {}, {}

    def on_train_start(self, state):
        self.optimizer = state.optimizer

    def on_step_end(self, state):
        self.losses[state.step] = repr(float(state.loss))
        scaler = self.nf.precision.scaler
        self.scaler_states[state.step] = scaler.state_dict() if scaler.is_enabled() else None

    def scales(self):
        return [self.scaler_states[s]["scale"] for s in sorted(self.scaler_states)]


class LogCapture(logging.Handler):
    """The factory logger does not propagate, so caplog cannot see it: attach this instead."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        logging.getLogger("nemo_core").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("nemo_core").removeHandler(self)


def regression_dag(model, n=512, batch_size=32, loss=None):
    dl = RealFunctionDataLayer(n=n, batch_size=batch_size)
    x, y = dl()
    loss = loss or MSELoss()
    return loss(predictions=model(x=x), target=y)


def cloned(value):
    """Deep copy of a (nested) state dict with every tensor cloned."""
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: cloned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cloned(v) for v in value)
    return value


def bit_identical(a, b):
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(bit_identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(bit_identical(x, y) for x, y in zip(a, b))
    return a == b


# ----------------------------------------------------------------------------- O1: autocast and the scaler
def test_o1_fp16_on_cpu_autocasts_to_float16_and_scales_the_loss():
    nf = fp16_factory(O1)
    assert nf.precision.half_dtype == torch.float16
    assert nf.precision.scaler.is_enabled() and nf.precision.loss_scale == 2.0 ** 16
    layer, x = torch.nn.Linear(4, 1), torch.randn(8, 4) * 0.01  # small: x 2**16 must not overflow fp16
    with nf.precision.autocast():
        out = layer(x)
    assert out.dtype == torch.float16  # the matmul ran in float16, not bfloat16 or float32
    assert layer.weight.dtype == torch.float32  # O1 keeps float32 weights
    # backward goes through the scaler: gradients are the float32 ones times 2**16 (to fp16 precision, 2%)
    nf.precision.backward(out.float().pow(2).mean())
    reference = torch.autograd.grad(layer(x).pow(2).mean(), layer.weight)[0]
    assert torch.isfinite(layer.weight.grad).all()
    torch.testing.assert_close(layer.weight.grad, reference * 2.0 ** 16, rtol=2e-2, atol=0.0)

    # the string spelling works too; the CPU default stays bf16, which needs no scaler
    assert NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, optimization_level=O1,
                               amp_dtype="float16").precision.scaler.is_enabled()
    bf16 = NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, optimization_level=O1)
    assert bf16.precision.half_dtype == torch.bfloat16
    assert not bf16.precision.scaler.is_enabled() and bf16.precision.loss_scale is None


def test_loss_scale_doubles_after_growth_interval_clean_steps():
    nf = fp16_factory(O1, init_scale=16.0, growth_interval=5)
    loss = regression_dag(TaylorNet(dim=2))
    rec = Recorder(nf)
    result = nf.train([loss], callbacks=[rec], optimizer="adam", optimization_params={"max_steps": 17, "lr": 0.01})
    assert result["skipped_steps"] == 0
    # after step s (1-based) the scale is 16 * 2 ** (s // 5): x2 every 5 clean steps, tracker back to 0
    assert rec.scales() == [16.0 * 2 ** (s // 5) for s in range(1, 18)]
    assert [rec.scaler_states[s]["_growth_tracker"] for s in (4, 5, 6, 17)] == [4, 0, 1, 2]


# ----------------------------------------------------------------------------- overflow: skip and back off
def test_fp16_gradient_overflow_skips_the_step_and_halves_the_scale():
    overflow_at = 6  # 0-based index of the step whose gradients overflow float16
    nf = fp16_factory(O1, init_scale=1024.0)
    model, amplified = NormMLP(), AmplifiedMSE()
    loss = regression_dag(model, loss=amplified)
    seen = {}

    class Overflow(nemo_core.ActionCallback):
        def on_step_start(self, state):
            if state.step == overflow_at:  # x1e6 keeps the loss finite in float32; scaled fp16 gradients overflow
                amplified.factor = 1e6
                seen["before"] = (cloned(model.state_dict()), cloned(state.optimizer.state_dict()),
                                  nf.precision.loss_scale)

        def on_step_end(self, state):
            if state.step == overflow_at + 1:
                amplified.factor = 1.0
                seen["after"] = (cloned(model.state_dict()), cloned(state.optimizer.state_dict()),
                                 nf.precision.loss_scale)
                seen["loss"] = float(state.loss)

    with LogCapture() as log:
        result = nf.train([loss], callbacks=[Overflow()], optimizer="adam",
                          optimization_params={"max_steps": 30, "lr": 0.01})
    (weights_before, opt_before, scale_before), (weights_after, opt_after, scale_after) = seen["before"], seen["after"]
    assert math.isfinite(seen["loss"]) and seen["loss"] > 1e4  # the loss itself was fine: the gradients overflowed
    skips = [m for m in log.messages if "skipped" in m]
    assert len(skips) == 1 and skips[0].startswith(f"Step {overflow_at + 1} skipped: gradient norm is ")  # inf or nan
    assert "loss scale now 512" in skips[0]
    # nothing changed: weights, BatchNorm statistics (rolled back), Adam's moments and step counts
    assert bit_identical(weights_before, weights_after)
    assert bit_identical(opt_before, opt_after)
    assert opt_after["state"]  # Adam had state (5 good steps) that could have been touched
    assert scale_before == 1024.0 and scale_after == 512.0
    assert result["skipped_steps"] == 1 and result["step"] == 30
    # training went on from there and ended finite, with weights that moved on from the skipped step
    final = model.state_dict()
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
    assert not torch.equal(final["inp.weight"], weights_after["inp.weight"])


def test_nan_loss_with_finite_gradients_backs_off_like_an_overflow():
    """The guard skips a step for a NaN loss even when its gradients are finite (in DDP: another rank's
    loss); the scaler then backs off as for an overflow: scale halved, clean-step count back to 0."""
    nan_at = 6
    nf = fp16_factory(O1, init_scale=64.0, growth_interval=4)
    amplified = AmplifiedMSE()
    loss = regression_dag(TaylorNet(dim=2), loss=amplified)
    rec = Recorder(nf)

    class NanLoss(nemo_core.ActionCallback):
        def on_step_start(self, state):
            amplified.offset = float("nan") if state.step == nan_at else 0.0

    with LogCapture() as log:
        result = nf.train([loss], callbacks=[NanLoss(), rec], optimizer="adam",
                          optimization_params={"max_steps": 14, "lr": 0.01})
    assert [m.split(";")[0] for m in log.messages if "skipped" in m] == [f"Step {nan_at + 1} skipped: loss is nan"]
    assert result["skipped_steps"] == 1
    # x2 after 4 clean steps (step 3), /2 at the NaN (step 6), then 4 more clean steps (7-10) before growing
    assert rec.scales() == [64.0] * 3 + [128.0] * 3 + [64.0] * 4 + [128.0] * 4
    assert [rec.scaler_states[s]["_growth_tracker"] for s in range(5, 12)] == [1, 2, 0, 1, 2, 3, 0]


# ----------------------------------------------------------------------------- O2 masters, O3 pure half
def test_o2_fp16_half_weights_float32_norms_and_masters():
    nf = fp16_factory(O2)
    model = NormMLP()
    loss = regression_dag(model)
    rec = Recorder(nf)
    result = nf.train([loss], callbacks=[rec], optimizer="adam", optimization_params={"max_steps": 60, "lr": 0.01})
    assert {n: p.dtype for n, p in model.named_parameters()} == {
        "inp.weight": torch.float16, "inp.bias": torch.float16, "out.weight": torch.float16,
        "out.bias": torch.float16, "norm.weight": torch.float32, "norm.bias": torch.float32}
    assert model.norm.running_mean.dtype == model.norm.running_var.dtype == torch.float32
    masters = nf.precision._masters
    half_params = [p for p in model.parameters() if p.dtype == torch.float16]
    assert [id(p) for p, _ in masters] == [id(p) for p in half_params]
    assert all(m.dtype == torch.float32 for _, m in masters)
    # the model holds the masters rounded to half, bit for bit ...
    assert all(torch.equal(p, m.detach().half()) for p, m in masters)
    # ... and the masters keep bits that half precision cannot hold (they are real float32 copies)
    assert any(not torch.equal(m, m.half().float()) for _, m in masters)
    # the optimiser updates the masters and the float32 norm weights, never a half tensor
    opt_params = [p for group in rec.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in opt_params} == {id(m) for _, m in masters} | {id(p) for p in model.norm.parameters()}
    assert len(opt_params) == 6 and all(p.dtype == torch.float32 for p in opt_params)
    assert nf.precision.scaler.is_enabled()
    losses = [float(v) for _, v in sorted(rec.losses.items())]
    assert sum(losses[-10:]) < sum(losses[:10])
    assert result["skipped_steps"] <= 3  # the scale search from 2**16 (2 skips with this seed)


def test_o3_fp16_trains_in_pure_half_without_loss_scaling():
    nf = fp16_factory(O3)
    model = NormMLP()
    loss = regression_dag(model)
    rec = Recorder(nf)
    # SGD: Adam's/Novograd's eps (1e-8) is 0 in float16, so pure-half adaptive steps divide by zero
    result = nf.train([loss], callbacks=[rec], optimizer="sgd",
                      optimization_params={"max_steps": 120, "lr": 0.1, "momentum": 0.9})
    assert not nf.precision.scaler.is_enabled() and nf.precision.loss_scale is None
    assert set(rec.scaler_states.values()) == {None}
    # everything is half, the normalisation layer included
    assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {torch.float16}
    assert result["skipped_steps"] == 0
    losses = [float(v) for _, v in sorted(rec.losses.items())]
    assert all(math.isfinite(v) for v in losses)
    # sin on [-4, 4]: a constant predicts with MSE ~0.5; the half-precision net gets well below
    assert sum(losses[-20:]) / 20 < 0.7 * sum(losses[:20]) / 20


# ----------------------------------------------------------------------------- resume
def test_resume_restores_the_loss_scaler_and_continues_like_an_unbroken_run(tmp_path):
    scaler_args = dict(init_scale=2.0 ** 12, growth_interval=3)

    def run(folder, max_steps):
        nf = fp16_factory(O1, seed=5, **scaler_args)
        loss = regression_dag(TaylorNet(dim=3), n=256, batch_size=16)
        rec = Recorder(nf)
        resumed = {}

        class ScalerAtStart(nemo_core.ActionCallback):  # runs after CheckpointCallback resumed
            def on_train_start(self, state):
                resumed["step"], resumed["scaler"] = state.step, nf.precision.scaler.state_dict()

        ckpt = nemo_core.CheckpointCallback(folder=str(folder), step_freq=100)
        result = nf.train([loss], callbacks=[ckpt, ScalerAtStart(), rec], optimizer="adam",
                          optimization_params={"max_steps": max_steps, "lr": 0.01})
        return rec, resumed, result

    full, _, full_result = run(tmp_path / "full", 24)
    # with this seed the scale search and growth give, at step 10: scale 256 (not 4096) and 2 clean steps
    # counted, so step 11 grows the scale -- only if the growth tracker came back too
    at_ckpt = full.scaler_states[10]
    assert at_ckpt["scale"] == 256.0 and at_ckpt["_growth_tracker"] == 2 and full.scaler_states[11]["scale"] == 512.0
    assert full_result["skipped_steps"] > 0

    part_dir = tmp_path / "part"
    first, _, _ = run(part_dir, 10)  # writes its last step, 10
    assert first.losses == {s: full.losses[s] for s in range(1, 11)}
    rest, resumed, result = run(part_dir, 24)  # a fresh factory and modules resume from it
    assert resumed["step"] == 10
    assert resumed["scaler"] == at_ckpt
    assert sorted(rest.losses) == list(range(11, 25))
    assert rest.losses == {s: full.losses[s] for s in range(11, 25)}  # exact float reprs
    assert rest.scaler_states == {s: full.scaler_states[s] for s in range(11, 25)}
    assert result["skipped_steps"] == full_result["skipped_steps"]


# ----------------------------------------------------------------------------- QuartzNet on real speech
class SkipSpy(nemo_core.ActionCallback):
    """The 0-based indices of the skipped steps."""

    def __init__(self):
        self.skipped, self._count = [], 0

    def on_step_end(self, state):
        if state.skipped_steps > self._count:
            self.skipped.append(state.step - 1)
        self._count = state.skipped_steps


@pytest.mark.slow
@pytest.mark.parametrize("level", [Optimization.mxprO0, O1, O2])
def test_tiny_quartznet_overfits_an4_in_fp16_as_in_fp32(level):
    # 64 filters, 200 steps (the float32 test: 128, 300) because fp16 is emulated on most CPUs: at 128
    # filters O1 took 76 s and O2 126 s for 300 steps against 20 s in float32. Measured here (2 cores,
    # idle): O0 9 s, O1 22 s, O2 24 s. All three: WER 1.0 at step 40, 0.0 from step 100 on.
    nf = NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0, optimization_level=level,
                             amp_dtype=None if level == Optimization.mxprO0 else torch.float16)
    train = nemo_asr.AudioToTextDataLayer(manifest_filepath=AN4, labels=LABELS, batch_size=10)
    check = nemo_asr.AudioToTextDataLayer(manifest_filepath=AN4, labels=LABELS, batch_size=10, shuffle=False)
    pre = nemo_asr.AudioToMelSpectrogramPreprocessor(dither=0.0)
    encoder, width = tiny_quartznet(filters=64)
    decoder = nemo_asr.JasperDecoderForCTC(feat_in=width, num_classes=len(LABELS))
    ctc = nemo_asr.CTCLossNM(num_classes=len(LABELS))

    evaluator = nemo_core.EvaluatorCallback(
        ctc_graph(check, pre, encoder, decoder, loss=ctc).monitored, functools.partial(process_evaluation_batch, labels=LABELS),
        functools.partial(process_evaluation_epoch, tag="train"))  # once, at the end
    skips = SkipSpy()
    result = nf.train([ctc_graph(train, pre, encoder, decoder, loss=ctc).loss], callbacks=[evaluator, skips], optimizer="novograd",
                      lr_policy=nemo_core.optim.CosineAnnealing(warmup_steps=30),
                      optimization_params={"max_steps": 200, "lr": 0.02, "weight_decay": 1e-3, "betas": (0.8, 0.5)})
    final = evaluator.history[-1][1]
    print(f"{level.name}: {result['seconds']:.1f} s, WER {final['Evaluation_WER_train']:.3f}, "
          f"eval loss {final['Evaluation_Loss_train']:.3g}, skipped {skips.skipped}, scale {nf.precision.loss_scale}")
    assert math.isfinite(result["loss"]) and math.isfinite(final["Evaluation_Loss_train"])
    assert all(torch.isfinite(p).all() for m in (encoder, decoder) for p in m.parameters())
    if level == Optimization.mxprO0:
        assert skips.skipped == []
    else:
        # only the initial search 2**16 -> 2**11 skips (measured: steps 0-4); the scale holds from there on
        assert skips.skipped == list(range(len(skips.skipped))) and len(skips.skipped) <= 6
        assert nf.precision.loss_scale == 2.0 ** 16 / 2 ** len(skips.skipped)
    assert final["Evaluation_WER_train"] <= 0.05  # as the float32 test: near zero on all 30 utterances
