import pytest
import torch

import nemo_core
from nemo_core import EvaluatorCallback, NeuralModuleFactory
from nemo_core.tutorials import MSELoss, RealFunctionDataLayer, TaylorNet


def factory():
    return NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0)


def test_infer_returns_per_batch_values_and_restores_checkpoints(tmp_path):
    nf = factory()
    dl = RealFunctionDataLayer(n=10, batch_size=4, shuffle=False)
    fx = TaylorNet(dim=3)
    x, y = dl()
    pred = fx(x=x)
    xs, preds = nf.infer([x, pred])
    assert [b.shape[0] for b in xs] == [4, 4, 2]
    assert torch.equal(torch.cat(xs), dl.dataset.x)
    assert torch.allclose(torch.cat(preds), fx(x=dl.dataset.x).detach())

    trained = TaylorNet(dim=3)
    trained.save_to(str(tmp_path / "TaylorNet-STEP-10.pt"))
    newest = trained.fc1.weight.detach().clone()
    saved_outputs = trained(x=dl.dataset.x).detach()
    torch.nn.init.zeros_(trained.fc1.weight)
    trained.save_to(str(tmp_path / "TaylorNet-STEP-2.pt"))  # older step: must not be chosen
    other = TaylorNet(dim=3)
    fresh_outputs = other(x=dl.dataset.x).detach()
    assert not torch.allclose(fresh_outputs, saved_outputs)  # so the comparisons below can fail
    (restored,) = nf.infer([other(x=x)], checkpoint_dir=str(tmp_path))
    assert torch.equal(other.fc1.weight, newest)  # exactly the step-10 weights
    assert torch.allclose(torch.cat(restored), saved_outputs)  # the saved model's outputs ...
    assert not torch.allclose(torch.cat(restored), fresh_outputs)  # ... not those of the weights it replaced
    with pytest.raises(nemo_core.CheckpointError, match="No complete checkpoint set for TaylorNet"):
        nf.infer([pred], checkpoint_dir=str(tmp_path), ckpt_pattern="nothing-matches")


def test_infer_cache_reuses_data_layer_output():
    nf = factory()

    class NoisyDataset(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.rand(1), torch.rand(1)  # different on every read

    class NoisyLayer(RealFunctionDataLayer):
        @property
        def dataset(self):
            return NoisyDataset()

    dl = NoisyLayer(n=6, batch_size=3)
    x, _ = dl()
    (first,) = nf.infer([x], cache=True)
    (again,) = nf.infer([x], use_cache=True)
    (fresh,) = nf.infer([x])
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(torch.cat(first), torch.cat(fresh))
    doubled = TaylorNet(dim=1)(x=x)
    (out,) = nf.infer([doubled], use_cache=True)
    assert len(out) == 2
    nf.clear_cache()
    with pytest.raises(ValueError, match="needs an earlier infer"):
        nf.infer([x], use_cache=True)


def test_eval_runs_evaluator_callbacks_over_whole_set():
    nf = factory()
    dl = RealFunctionDataLayer(n=10, batch_size=3, shuffle=False)
    fx = TaylorNet(dim=2)
    x, y = dl()
    loss = MSELoss()(predictions=fx(x=x), target=y)
    fx.train()

    def per_batch(tensors, global_vars):
        (key,) = [k for k in tensors if k.startswith("loss")]
        global_vars.setdefault("losses", []).extend(v.item() for v in tensors[key])
        global_vars.setdefault("samples", 0)

    def done(global_vars):
        return {"eval_loss": sum(global_vars["losses"]) / len(global_vars["losses"]), "batches": len(global_vars["losses"])}

    (results,) = nf.eval([EvaluatorCallback([loss], per_batch, done)])
    assert results["batches"] == 4
    assert fx.training  # mode restored after evaluation
