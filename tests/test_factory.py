import glob
import os

import pytest
import torch

import nemo_core
from nemo_core import NeuralModuleFactory, SimpleLossLoggerCallback
from nemo_core.tutorials import MSELoss, RealFunctionDataLayer, TaylorNet


def test_logs_to_file_and_tensorboard(tmp_path):
    nf = NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, log_dir=str(tmp_path), create_tb_writer=True)
    assert nf.global_rank == 0 and nf.world_size == 1 and nf.local_rank is None
    assert nf.checkpoint_dir == os.path.join(str(tmp_path), "checkpoints")
    assert nf.optim_level is nemo_core.Optimization.mxprO0 and nf.placement is nemo_core.DeviceType.CPU
    dl = RealFunctionDataLayer(n=32, batch_size=8)
    x, y = dl()
    loss = MSELoss()(predictions=TaylorNet(dim=2)(x=x), target=y)
    nf.train([loss], callbacks=[SimpleLossLoggerCallback([loss], step_freq=2)],
             optimizer="sgd", optimization_params={"max_steps": 4, "lr": 1e-3})
    (log_file,) = glob.glob(str(tmp_path / "log_globalrank-0_*.txt"))
    text = open(log_file).read()
    assert "rank 0" in text and "Step 2: loss" in text
    assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))


def test_modules_default_to_factory_placement_and_backend_check():
    NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)
    assert TaylorNet(dim=2).placement is nemo_core.DeviceType.CPU
    with pytest.raises(ValueError, match="Backend.PyTorch"):
        NeuralModuleFactory(backend="tensorflow")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs CUDA"):
            NeuralModuleFactory(placement=nemo_core.DeviceType.GPU)


def test_a_module_keeps_the_device_it_was_built_on(monkeypatch):
    """The factory's placement is only the default for modules built later; a module's
    device is resolved once, in its constructor (here AllGpu with local ranks 1, then 0)."""
    from nemo_core import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    runtime.set_defaults(nemo_core.DeviceType.AllGpu, 1)
    layer = RealFunctionDataLayer(n=4, batch_size=2)  # a data layer: nothing is moved to the (absent) GPU
    runtime.set_defaults(nemo_core.DeviceType.AllGpu, 0)
    assert layer.device == torch.device("cuda", 1)
    assert RealFunctionDataLayer(n=4, batch_size=2).device == torch.device("cuda", 0)
    cpu = RealFunctionDataLayer(n=4, batch_size=2, placement=nemo_core.DeviceType.CPU)
    assert cpu.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fp16_mixed_precision_with_loss_scaling():
    nf = NeuralModuleFactory(placement=nemo_core.DeviceType.GPU, optimization_level=nemo_core.Optimization.mxprO1,
                             random_seed=0)
    assert nf.precision.scaler.is_enabled() and nf.precision.half_dtype is torch.float16
    dl = RealFunctionDataLayer(n=2048, batch_size=64)
    fx = TaylorNet(dim=2)
    assert fx.fc1.weight.device.type == "cuda"
    x, y = dl()
    loss = MSELoss()(predictions=fx(x=x), target=y)
    result = nf.train([loss], optimizer="novograd", optimization_params={"max_steps": 300, "lr": 0.01})
    assert result["loss"] < 0.45


def test_a_module_moved_with_to_reports_where_its_weights_are():
    fx = TaylorNet(dim=2, placement=nemo_core.DeviceType.CPU)
    assert fx.device == torch.device("cpu")
    fx.to(torch.float64)  # still on the CPU
    assert fx.device == torch.device("cpu") == fx.fc1.weight.device
    meta = TaylorNet(dim=2, placement=nemo_core.DeviceType.CPU).to("meta")  # any other device: it follows
    assert meta.device == torch.device("meta")
