"""ZerosDataLayer: all-zero batches of any declared shape, for tests and timing."""
import collections

import torch

from .neural_module import DataLayerNM


class _ZerosDataset(torch.utils.data.Dataset):
    def __init__(self, size, shapes, dtypes):
        self._size, self._shapes, self._dtypes = size, shapes, dtypes

    def __len__(self):
        return self._size

    def __getitem__(self, index):
        if not 0 <= index < self._size:
            raise IndexError(index)
        return tuple(torch.zeros(s, dtype=d) for s, d in zip(self._shapes, self._dtypes))


class ZerosDataLayer(DataLayerNM):
    """``size`` samples of zeros for each of ``output_ports``.

    Each sample's shape comes from its port's axes without the batch axis:
    the axis size where declared, else ``shapes`` (a dict port -> shape) must
    give it; unsized axes default to 1. ``dtype`` is one dtype or a dict per port.
    """

    def __init__(self, size, dtype, batch_size, output_ports, shapes=None, placement=None, name=None):
        super().__init__(batch_size=batch_size, shuffle=False, placement=placement, name=name)
        self._ports = collections.OrderedDict(output_ports)
        shapes = shapes or {}
        port_shapes, port_dtypes = [], []
        for port, ntype in self._ports.items():
            if port in shapes:
                shape = tuple(shapes[port])
            elif ntype.axes is None:
                shape = ()
            else:
                shape = tuple(a.size or 1 for a in ntype.axes if a.kind.value != "B")
            port_shapes.append(shape)
            port_dtypes.append(dtype[port] if isinstance(dtype, dict) else dtype)
        self._dataset = _ZerosDataset(size, port_shapes, port_dtypes)

    @property
    def output_ports(self):
        return collections.OrderedDict(self._ports)

    @property
    def dataset(self):
        return self._dataset
