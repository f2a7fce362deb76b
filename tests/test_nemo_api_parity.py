"""NeMo 0.x API parity: the factory's default/trainer/optimizer methods, module weight
access (get/set/tie), and the optimiser names (``adam_w``, ``lamb``, ``OPTIMIZER_NAMES``)."""
import argparse
import collections

import pytest
import torch

import nemo_core
from nemo_core import ChannelType, NeuralModuleFactory, NeuralType, TrainableNM
from nemo_core.neural_module import WeightShareTransform
from nemo_core.optim import OPTIMIZER_NAMES, Lamb, get_optimizer
from nemo_core.tutorials import MLP, MSELoss, RealFunctionDataLayer, TaylorNet


@pytest.fixture(autouse=True)
def _no_default_factory():
    NeuralModuleFactory.reset_default_factory()
    yield
    NeuralModuleFactory.reset_default_factory()


def cpu_factory(**kwargs):
    return NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, **kwargs)


class Embedding(TrainableNM):
    """Token ids -> vectors; its weight is (vocabulary, dim), like NeMo's SequenceEmbedding."""

    def __init__(self, vocabulary, dim, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        self.embedding = torch.nn.Embedding(vocabulary, dim)

    @property
    def input_ports(self):
        return collections.OrderedDict(ids=NeuralType(("B", "T"), ChannelType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(vectors=NeuralType(("B", "T", "D"), ChannelType()))

    def forward(self, ids):
        return self.embedding(ids)


class Projection(TrainableNM):
    """Vectors -> one score per word; Linear(dim, vocabulary): weight (vocabulary, dim)."""

    def __init__(self, dim, vocabulary, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        self.projection = torch.nn.Linear(dim, vocabulary, bias=False)

    @property
    def input_ports(self):
        return collections.OrderedDict(vectors=NeuralType(("B", "T", "D"), ChannelType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(scores=NeuralType(("B", "T", "D"), ChannelType()))

    def forward(self, vectors):
        return self.projection(vectors)


# ----------------------------------------------------------------- factory

def test_default_factory_is_the_latest_with_set_default():
    assert NeuralModuleFactory.get_default_factory() is None
    first = cpu_factory()
    assert NeuralModuleFactory.get_default_factory() is first
    second = cpu_factory()
    assert NeuralModuleFactory.get_default_factory() is second
    cpu_factory(set_default=False)
    assert NeuralModuleFactory.get_default_factory() is second
    NeuralModuleFactory.set_default(first)
    assert NeuralModuleFactory.get_default_factory() is first
    NeuralModuleFactory.set_default_factory(second)  # NeMo 0.x spelling
    assert NeuralModuleFactory.get_default_factory() is second
    with pytest.raises(TypeError, match="NeuralModuleFactory or None"):
        NeuralModuleFactory.set_default("cpu")


def test_work_dir_and_get_trainer(tmp_path):
    nf = cpu_factory(log_dir=str(tmp_path))
    assert nf.work_dir == str(tmp_path)
    assert cpu_factory().work_dir is None
    trainer = nf.get_trainer()
    assert trainer is nf  # the factory runs the actions itself
    x, y = RealFunctionDataLayer(n=64, batch_size=16)()
    loss = MSELoss()(predictions=TaylorNet(dim=3)(x=x), target=y)
    result = trainer.train([loss], optimizer="sgd", optimization_params={"max_steps": 3, "lr": 0.01})
    assert result["step"] == 3


def test_create_optimizer_from_modules_tensors_and_parameters():
    nf = cpu_factory()
    dl = RealFunctionDataLayer(n=64, batch_size=16)
    mlp, taylor, frozen = MLP(hidden=4), TaylorNet(dim=3), TaylorNet(dim=2)
    frozen.freeze()
    x, y = dl()
    loss = MSELoss()(predictions=taylor(x=mlp(x=x)), target=y)

    def optimised(opt):
        return {id(p) for group in opt.param_groups for p in group["params"]}

    opt = nf.create_optimizer("adam", mlp, {"lr": 0.01})
    assert isinstance(opt, torch.optim.Adam) and optimised(opt) == {id(p) for p in mlp.parameters()}
    opt = nf.create_optimizer("novograd", [loss], {"lr": 0.01, "betas": (0.9, 0.5)})  # the DAG's trainable modules
    assert optimised(opt) == {id(p) for m in (mlp, taylor) for p in m.parameters()}
    assert opt.param_groups[0]["betas"] == (0.9, 0.5)
    opt = nf.create_optimizer("sgd", [frozen, taylor.fc1.bias, taylor], {"lr": 0.1})  # frozen: no weights; each once
    assert len(opt.param_groups[0]["params"]) == 2
    given = torch.optim.SGD(mlp.parameters(), lr=0.1)
    assert nf.create_optimizer(given, mlp, None) is given
    assert nf.optimizers[-1] is given and len(nf.optimizers) == 4
    with pytest.raises(ValueError, match="Unknown optimizer 'adamx'; valid optimizers: .*adam_w.*lamb"):
        nf.create_optimizer("adamx", mlp, {"lr": 0.1})
    with pytest.raises(ValueError, match="nothing to optimise"):
        nf.create_optimizer("sgd", [frozen], {"lr": 0.1})
    with pytest.raises(TypeError, match="neither a neural module"):
        nf.create_optimizer("sgd", ["mlp"], {"lr": 0.1})
    with pytest.raises(ValueError, match="must give 'lr'"):
        nf.create_optimizer("sgd", mlp, {})
    nf.reset_trainer()
    assert nf.optimizers == []


def test_train_accepts_the_optimizer_from_create_optimizer():
    nf = cpu_factory(random_seed=0)
    x, y = RealFunctionDataLayer(n=256, batch_size=32)()
    taylor = TaylorNet(dim=4)
    loss = MSELoss()(predictions=taylor(x=x), target=y)
    opt = nf.create_optimizer("adam_w", [loss], {"lr": 0.05, "weight_decay": 0.0})
    assert isinstance(opt, torch.optim.AdamW)
    before = taylor.fc1.weight.detach().clone()
    first = nf.train([loss], optimizer=opt, optimization_params={"max_steps": 1})
    last = nf.train([loss], optimizer=opt, optimization_params={"max_steps": 60}, reset=True)
    assert not torch.equal(before, taylor.fc1.weight) and opt.state[taylor.fc1.weight]["step"] == 61
    assert last["loss"] < first["loss"]
    with pytest.raises(ValueError, match="mxprO2 keeps float32 master weights"):
        cpu_factory(optimization_level=nemo_core.Optimization.mxprO2).create_optimizer("sgd", taylor, {"lr": 0.1})


# ----------------------------------------------------------------- weights

def test_get_weights_and_is_trainable():
    cpu_factory()
    taylor = TaylorNet(dim=3)
    weights = taylor.get_weights()
    assert list(weights) == ["fc1.weight", "fc1.bias"]
    assert weights["fc1.weight"][0] is taylor.fc1.weight and weights["fc1.weight"][1] is True
    assert taylor.is_trainable()
    taylor.freeze(["fc1.bias"])
    assert taylor.get_weights()["fc1.bias"][1] is False and taylor.is_trainable()
    taylor.freeze()
    assert not taylor.is_trainable()
    assert RealFunctionDataLayer(n=4, batch_size=2).get_weights() is None
    assert not RealFunctionDataLayer(n=4, batch_size=2).is_trainable()
    assert MSELoss().get_weights() == {} and not MSELoss().is_trainable()
    import nemo_asr

    mel = nemo_asr.AudioToMelSpectrogramPreprocessor(features=16)  # a NonTrainableNM
    assert not mel.is_trainable()


def test_set_weights_copies_without_tying():
    cpu_factory()
    tn1, tn2, tn3 = TaylorNet(dim=4), TaylorNet(dim=4), TaylorNet(dim=4)
    assert not torch.equal(tn1.fc1.weight, tn2.fc1.weight)
    tn3.set_weights(tn1.get_weights())
    assert torch.equal(tn1.fc1.weight, tn3.fc1.weight) and torch.equal(tn1.fc1.bias, tn3.fc1.bias)
    assert tn1.fc1.weight is not tn3.fc1.weight
    with torch.no_grad():
        tn1.fc1.bias.fill_(0.1)
    assert not torch.equal(tn1.fc1.bias, tn3.fc1.bias)  # a copy: later changes stay apart
    tn2.set_weights({"fc1.bias": torch.tensor([0.5])})  # part of a module, bare tensors too
    assert tn2.fc1.bias.item() == 0.5
    # a different name and a transposed copy
    embd, linear = Embedding(3, 2), torch.nn.Linear(3, 2, bias=False)
    embd.set_weights({"w": linear.weight}, {"embedding.weight": ("w", WeightShareTransform.TRANSPOSE)})
    assert torch.equal(embd.embedding.weight, linear.weight.t())
    before = tn2.fc1.weight.detach().clone()
    with pytest.raises(ValueError, match=r"TaylorNet has no weight 'fc2.weight'; its weights: fc1.weight, fc1.bias"):
        tn2.set_weights({"fc1.weight": torch.zeros(1, 4), "fc2.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"TaylorNet.fc1.weight has shape \(1, 4\), the value for it .* has \(4,\)"):
        tn2.set_weights({"fc1.weight": torch.zeros(4)})
    assert torch.equal(tn2.fc1.weight, before)  # a failing call changes nothing
    with pytest.raises(ValueError, match="has no weights to set"):
        RealFunctionDataLayer(n=4, batch_size=2).set_weights({"w": torch.zeros(1)})


def test_tie_weights_with_shares_one_parameter_and_one_step_changes_both():
    nf = cpu_factory()
    embd, proj = Embedding(vocabulary=5, dim=3), Projection(dim=3, vocabulary=5)
    same = {"embedding.weight": ("projection.weight", WeightShareTransform.SAME)}
    embd.tie_weights_with(proj, weight_names=["embedding.weight"], name2name_and_transform=same)
    assert embd.embedding.weight is proj.projection.weight
    assert list(embd.state_dict()) == ["embedding.weight"] and list(proj.state_dict()) == ["projection.weight"]
    with torch.no_grad():  # NeMo's tutorial check: a change through one shows in the other
        embd.embedding.weight.mul_(2.0)
    assert torch.equal(embd.embedding.weight, proj.projection.weight)

    ids = torch.tensor([[0, 3, 4, 1]])
    opt = nf.create_optimizer("sgd", [embd, proj], {"lr": 0.5, "momentum": 0.0})
    assert len(opt.param_groups[0]["params"]) == 1  # the shared weight, once
    before = proj.projection.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(proj(vectors=embd(ids=ids))[0], ids[0])
    loss.backward()
    # the gradient is the sum of both uses: compare with an untied copy of the same computation
    table = before.clone().requires_grad_(True)
    weight = before.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(torch.nn.functional.embedding(ids, table)[0] @ weight.t(), ids[0]).backward()
    assert torch.allclose(proj.projection.weight.grad, table.grad + weight.grad, atol=1e-6)
    opt.step()
    assert not torch.equal(proj.projection.weight, before)
    assert torch.equal(embd.embedding.weight, proj.projection.weight)


def test_tied_modules_train_together_in_a_dag():
    nf = cpu_factory(random_seed=0)
    x, y = RealFunctionDataLayer(n=128, batch_size=32)()
    a, b = TaylorNet(dim=3), TaylorNet(dim=3)
    b.tie_weights_with(a, ["fc1.weight", "fc1.bias"])
    mse = MSELoss()
    loss_a, loss_b = mse(predictions=a(x=x), target=y), mse(predictions=b(x=x), target=y)
    start = a.fc1.weight.detach().clone()
    nf.train([loss_a, loss_b], optimizer="adam", optimization_params={"max_steps": 5, "lr": 0.05})
    assert b.fc1.weight is a.fc1.weight and not torch.equal(a.fc1.weight, start)


def test_tie_weights_errors():
    cpu_factory()
    embd, proj, other = Embedding(5, 3), Projection(3, 5), Embedding(4, 3)
    with pytest.raises(NotImplementedError, match="TRANSPOSE cannot be tied.*set_weights"):
        embd.tie_weights_with(proj, ["embedding.weight"], {"embedding.weight": ("projection.weight",
                                                                               WeightShareTransform.TRANSPOSE)})
    with pytest.raises(ValueError, match="Projection has no weight 'embedding.weight'.*projection.weight"):
        embd.tie_weights_with(proj, ["embedding.weight"])
    with pytest.raises(ValueError, match=r"Embedding.embedding.weight has shape \(5, 3\), Embedding.embedding.weight "
                                         r"has \(4, 3\)"):
        embd.tie_weights_with(other, ["embedding.weight"])
    with pytest.raises(ValueError, match="give the names"):
        embd.tie_weights_with(proj, [])
    assert embd.embedding.weight is not proj.projection.weight  # nothing tied by the failures


# -------------------------------------------------------------- optimisers

def test_optimizer_names_for_argparse_and_aliases():
    assert {"novograd", "sgd", "adam", "adamw", "adam_w", "lamb"} <= set(OPTIMIZER_NAMES)
    params = [torch.nn.Parameter(torch.ones(2))]
    assert type(get_optimizer("adam_w", params, {"lr": 0.1})) is type(get_optimizer("adamw", params, {"lr": 0.1}))
    assert isinstance(get_optimizer("LAMB", params, {"lr": 0.1, "weight_decay": 0.0}), Lamb)
    with pytest.raises(ValueError, match="Unknown optimizer 'lars'; valid optimizers: " + ", ".join(OPTIMIZER_NAMES)):
        get_optimizer("lars", params, {"lr": 0.1})
    parser = argparse.ArgumentParser(prog="train")
    parser.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="novograd")
    assert parser.parse_args(["--optimizer", "lamb"]).optimizer == "lamb"
    with pytest.raises(SystemExit):
        parser.parse_args(["--optimizer", "lars"])


@pytest.mark.parametrize("name", ["lamb", "adam_w"])
def test_train_by_new_names(name):
    nf = cpu_factory(random_seed=0)
    x, y = RealFunctionDataLayer(n=256, batch_size=32)()
    loss = MSELoss()(predictions=TaylorNet(dim=4)(x=x), target=y)
    first = nf.train([loss], optimizer=name, optimization_params={"max_steps": 1, "lr": 0.05})
    last = nf.train([loss], optimizer=name, optimization_params={"max_steps": 80, "lr": 0.05})
    assert last["loss"] < first["loss"]
