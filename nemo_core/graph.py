"""DAG discovery, topological order and one-step evaluation.

A ``GraphPlan`` is compiled once per action from the tensors it needs. A step
then costs one call per module plus one dict lookup per edge.
"""
from .neural_module import DataLayerNM
from .nm_tensor import NmTensor


class GraphError(RuntimeError):
    """The requested tensors do not form a DAG an action can run."""


def topological_calls(tensors):
    """All module calls the ``tensors`` depend on, producers before consumers."""
    order, state = [], {}  # state: call -> 1 (visiting) / 2 (done)
    for tensor in tensors:
        if not isinstance(tensor, NmTensor):
            raise GraphError(f"Expected NmTensors, got {tensor!r}")
        stack = [(tensor.call, False)]
        while stack:
            call, expanded = stack.pop()
            if expanded:
                state[call] = 2
                order.append(call)
                continue
            mark = state.get(call)
            if mark == 2:
                continue
            if mark == 1:
                raise GraphError(f"Cycle in the graph through {call.module.name}")
            state[call] = 1
            stack.append((call, True))
            for upstream in reversed(list(call.inputs.values())):
                upstream_mark = state.get(upstream.call)
                if upstream_mark == 1:
                    raise GraphError(
                        f"Cycle in the graph: {call.module.name} depends on itself via {upstream!r}"
                    )
                if upstream_mark is None:
                    stack.append((upstream.call, False))
    return order


class GraphPlan:
    """The compiled evaluation order for a set of output tensors."""

    def __init__(self, tensors):
        self.outputs = list(tensors)
        calls = topological_calls(self.outputs)
        data_calls = [c for c in calls if isinstance(c.module, DataLayerNM)]
        if len(data_calls) != 1:
            names = ", ".join(c.module.name for c in data_calls) or "none"
            raise GraphError(
                f"A DAG needs exactly one data layer call; the requested tensors "
                f"{[t.name for t in self.outputs]} depend on {len(data_calls)} ({names})"
            )
        self.data_call = data_calls[0]
        self.calls = [c for c in calls if c is not self.data_call]
        self.modules = list(dict.fromkeys(c.module for c in self.calls))
        self._data_keys = tuple(t.unique_name for t in self.data_call.outputs)
        self._steps = tuple(
            (
                call.module,
                tuple((port, t.unique_name) for port, t in call.inputs.items()),
                tuple(t.unique_name for t in call.outputs),
            )
            for call in self.calls
        )

    @property
    def data_layer(self):
        return self.data_call.module

    def run(self, batch, callables=None):
        """Evaluate one step. ``batch`` is the data layer's output tuple;
        ``callables`` maps a module to what to call instead (e.g. its DDP wrapper).
        Returns a dict ``unique_name -> value`` for every tensor computed.
        """
        if len(batch) != len(self._data_keys):
            raise GraphError(
                f"{self.data_layer.name} produced {len(batch)} values per batch but declares "
                f"{len(self._data_keys)} output ports"
            )
        callables = callables or {}
        values = dict(zip(self._data_keys, batch))
        for module, inputs, outputs in self._steps:
            fn = callables.get(module) or module._eager_call
            result = fn(**{port: values[key] for port, key in inputs})
            if len(outputs) == 1:
                values[outputs[0]] = result
            elif isinstance(result, (tuple, list)) and len(result) == len(outputs):
                values.update(zip(outputs, result))
            else:
                got = len(result) if isinstance(result, (tuple, list)) else 1
                raise GraphError(
                    f"{module.name}.forward returned {got} value(s) but declares "
                    f"{len(outputs)} output ports"
                )
        return values

    def evaluate(self, batch, callables=None):
        """Evaluate one step and return the requested tensors' values, in order."""
        values = self.run(batch, callables)
        return [values[t.unique_name] for t in self.outputs]
