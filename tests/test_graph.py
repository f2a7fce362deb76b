import collections

import pytest
import torch

from nemo_core import ChannelType, GraphError, GraphPlan, NeuralType, TrainableNM, topological_calls
from nemo_core.tutorials import MSELoss, RealFunctionDataLayer, TaylorNet


class Add(TrainableNM):
    @property
    def input_ports(self):
        return collections.OrderedDict(a=NeuralType(("B", "D"), ChannelType()), b=NeuralType(("B", "D"), ChannelType()))

    @property
    def output_ports(self):
        return {"sum": NeuralType(("B", "D"), ChannelType())}

    def forward(self, a, b):
        return a + b


def test_branching_dag_reusing_a_module():
    dl = RealFunctionDataLayer(n=6, batch_size=3, shuffle=False)
    net = TaylorNet(dim=3)
    add = Add()
    x, y = dl()
    first = net(x=x)
    second = net(x=first)  # same module, second call on the first's output
    total = add(a=first, b=second)
    loss = MSELoss()(predictions=total, target=y)

    calls = topological_calls([loss])
    assert [c.module for c in calls] == [dl, net, net, add, calls[-1].module]
    plan = GraphPlan([loss, total])
    assert plan.data_layer is dl and plan.modules[0] is net and len(plan.calls) == 4

    xb, yb = dl.dataset[0:3]
    got_loss, got_total = plan.evaluate((xb, yb))
    h = net(x=xb)
    expected_total = h + net(x=h)
    assert torch.allclose(got_total, expected_total)
    assert torch.allclose(got_loss, torch.nn.functional.mse_loss(expected_total, yb))
    got_loss.backward()  # gradients flow through both uses of the shared weights
    assert net.fc1.weight.grad is not None


def test_cycle_is_rejected():
    dl = RealFunctionDataLayer(n=4, batch_size=2)
    x, _ = dl()
    a = TaylorNet(dim=2)(x=x)
    b = TaylorNet(dim=2)(x=a)
    a.call.inputs["x"] = b  # only possible by tampering with the graph
    with pytest.raises(GraphError, match="Cycle"):
        topological_calls([b])


def test_dag_needs_exactly_one_data_layer():
    x1, _ = RealFunctionDataLayer(n=4, batch_size=2)()
    x2, _ = RealFunctionDataLayer(n=4, batch_size=2)()
    summed = Add()(a=x1, b=x2)
    with pytest.raises(GraphError, match="exactly one data layer.*2"):
        GraphPlan([summed])


def test_wrong_number_of_outputs_is_reported():
    class Liar(TaylorNet):
        @property
        def output_ports(self):
            return {"a": NeuralType(("B", "D"), ChannelType()), "b": NeuralType(("B", "D"), ChannelType())}

    dl = RealFunctionDataLayer(n=4, batch_size=2)
    x, _ = dl()
    a, _b = Liar(dim=2)(x=x)
    with pytest.raises(GraphError, match="Liar.forward returned 1 value.*2 output ports"):
        GraphPlan([a]).evaluate(dl.dataset[0:2])
