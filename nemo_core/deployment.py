"""Exporting modules for serving: ONNX, TorchScript or a plain PyTorch file.

Inputs are passed positionally in input-port order; axes of kind B, T (and
ANY) become dynamic dimensions in ONNX.
"""
import collections

import torch

from .enums import DeploymentFormat
from .neural_types import AxisKind, LabelsType, LengthsType

DYNAMIC_KINDS = (AxisKind.Batch, AxisKind.Time, AxisKind.Any)


class _Positional(torch.nn.Module):
    """Call a NeuralModule's forward with positional tensors, for tracers."""

    def __init__(self, module, names):
        super().__init__()
        self.module, self.names = module, list(names)

    def forward(self, *args):
        return self.module.forward(**dict(zip(self.names, args)))


def example_inputs(module, batch=2, time=64):
    """Random inputs matching ``module.input_ports`` (lengths are valid, unequal)."""
    inputs = collections.OrderedDict()
    for name, ntype in module.input_ports.items():
        if ntype.optional:
            continue
        if ntype.axes is None:
            raise ValueError(f"Port {name!r} of {module.name} is not a tensor; pass input_example")
        shape = [batch if a.kind == AxisKind.Batch else a.size or (time if a.kind in DYNAMIC_KINDS else 8)
                 for a in ntype.axes]
        if isinstance(ntype.elements_type, LengthsType):
            inputs[name] = torch.linspace(time, time // 2, shape[0]).long()
        elif isinstance(ntype.elements_type, LabelsType):
            inputs[name] = torch.randint(0, 8, shape)
        else:
            inputs[name] = torch.randn(shape)
    return inputs


def _dynamic_axes(ports, names):
    axes = {}
    for name in names:
        ntype = ports[name]
        if ntype.axes is not None:
            axes[name] = {i: f"{name}_{a.kind.name.lower()}" for i, a in enumerate(ntype.axes) if a.kind in DYNAMIC_KINDS}
    return axes


def export_onnx(model, args, output, input_names, output_names, dynamic_axes, opset=17):
    """``torch.onnx.export`` (TorchScript exporter, dynamic axes) + ``onnx.checker``."""
    import onnx

    torch.onnx.export(model, tuple(args), output, input_names=list(input_names), output_names=list(output_names),
                      dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(output))
    return output


def deployment_export(module, output, d_format, input_example=None, opset=17):
    """Write ``module`` (eval mode) to ``output`` in ``d_format``; returns ``output``."""
    if not isinstance(d_format, DeploymentFormat):
        raise ValueError(f"d_format must be a DeploymentFormat, got {d_format!r}")
    example = collections.OrderedDict(input_example) if input_example is not None else example_inputs(module)
    unknown = [k for k in example if k not in module.input_ports]
    if unknown:
        raise ValueError(f"input_example has unknown port(s) {', '.join(unknown)}; "
                         f"{module.name} has {', '.join(module.input_ports)}")
    device = getattr(module, "device", torch.device("cpu"))
    args = [t.to(device) for t in example.values()]
    was_training = module.training
    module.eval()
    try:
        if d_format == DeploymentFormat.PYTORCH:
            torch.save({"class": f"{type(module).__module__}:{type(module).__qualname__}",
                        "init_config": module.init_config, "state_dict": module.state_dict()}, output)
            return output
        wrapper = _Positional(module, example.keys())
        with torch.no_grad():
            if d_format == DeploymentFormat.TORCHSCRIPT:
                torch.jit.trace(wrapper, tuple(args), check_trace=False).save(output)
                return output
            output_names = list(module.output_ports)
            return export_onnx(wrapper, args, output, example.keys(), output_names,
                               _dynamic_axes({**module.input_ports, **module.output_ports},
                                             list(example) + output_names), opset)
    finally:
        module.train(was_training)
