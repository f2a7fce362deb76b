"""Small ready modules for NeMo's "simplest example": fit a real function."""
import collections

import torch

from .neural_module import DataLayerNM, LossNM, TrainableNM
from .neural_types import ChannelType, LossType, NeuralType, RegressionValuesType


class _TensorPairs(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


class RealFunctionDataLayer(DataLayerNM):
    """``n`` points ``x`` drawn uniformly from [x_lo, x_hi] and targets ``y = f(x)``.

    The points are drawn once, at construction, from torch's global RNG, so
    seed it (e.g. ``NeuralModuleFactory(random_seed=...)``) for a repeatable set.
    """

    def __init__(self, n, batch_size, f=torch.sin, x_lo=-4.0, x_hi=4.0, shuffle=True,
                 placement=None, name=None):
        super().__init__(batch_size=batch_size, shuffle=shuffle, placement=placement, name=name)
        if n < 1:
            raise ValueError(f"RealFunctionDataLayer needs n >= 1, got {n}")
        x = torch.rand(n, 1) * (x_hi - x_lo) + x_lo
        self._dataset = _TensorPairs(x, f(x))

    @property
    def output_ports(self):
        return collections.OrderedDict(
            x=NeuralType(("B", "D"), ChannelType()),
            y=NeuralType(("B", "D"), RegressionValuesType()),
        )

    @property
    def dataset(self):
        return self._dataset


class TaylorNet(TrainableNM):
    """A polynomial of degree ``dim - 1``: one linear layer over [1, x, ..., x^(dim-1)]."""

    def __init__(self, dim, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        self.dim = dim
        self.fc1 = torch.nn.Linear(dim, 1)
        torch.nn.init.xavier_uniform_(self.fc1.weight)

    @property
    def input_ports(self):
        return collections.OrderedDict(x=NeuralType(("B", "D"), ChannelType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(y_pred=NeuralType(("B", "D"), ChannelType()))

    def forward(self, x):
        powers = torch.cat([x ** i for i in range(self.dim)], dim=-1)
        return self.fc1(powers)


class MLP(TrainableNM):
    """x -> Linear -> [BatchNorm] -> tanh -> [Dropout] -> Linear -> y, both ``(B, D)`` channels.

    A small net with the parts that make training state interesting: BatchNorm
    running statistics and dropout's use of the RNG.
    """

    def __init__(self, dim_in=1, hidden=16, dim_out=1, dropout=0.0, batch_norm=False, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        layers = [torch.nn.Linear(dim_in, hidden)]
        layers += [torch.nn.BatchNorm1d(hidden)] if batch_norm else []
        layers += [torch.nn.Tanh()]
        layers += [torch.nn.Dropout(dropout)] if dropout else []
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(hidden, dim_out))

    @property
    def input_ports(self):
        return collections.OrderedDict(x=NeuralType(("B", "D"), ChannelType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(y=NeuralType(("B", "D"), ChannelType()))

    def forward(self, x):
        return self.net(x)


class _RegressionLoss(LossNM):
    _fn = None

    @property
    def input_ports(self):
        return collections.OrderedDict(
            predictions=NeuralType(("B", "D"), ChannelType()),
            target=NeuralType(("B", "D"), RegressionValuesType()),
        )

    @property
    def output_ports(self):
        return collections.OrderedDict(loss=NeuralType(None, LossType()))

    def forward(self, predictions, target):
        return type(self)._fn(predictions, target)


class MSELoss(_RegressionLoss):
    """Mean squared error."""

    _fn = staticmethod(torch.nn.functional.mse_loss)


class L1Loss(_RegressionLoss):
    """Mean absolute error."""

    _fn = staticmethod(torch.nn.functional.l1_loss)
