"""Exporting modules for serving: ONNX, TorchScript or a plain PyTorch file.

``deployment_export(module, output, d_format, input_example=None, output_example=None)``
is NeMo 0.x's signature; ``NeuralModuleFactory.deployment_export`` forwards to it.

``input_example`` takes three forms:

- one tensor: the module's first input port (NeMo 0.x scripts pass
  ``torch.zeros(1, 64, 256)`` for a Jasper encoder);
- a tuple or list of tensors in input-port order;
- a dict ``{port name: tensor}``.

Required ports left out that carry lengths (``LengthsType``) are filled with
full lengths: the time size of the first given tensor with a time axis, for
every batch item. They stay inputs of the exported graph. Any other port left
out, one too many, or an unknown name is a ``ValueError`` naming the module
and its ports.

``output_example`` (same three forms, over the output ports) is a check: the
module is run on ``input_example`` and each output must have the example's
dtype, number of dimensions and size on every fixed axis (the batch, time and
``ANY`` axes are dynamic in the export and are not compared). A mismatch is a
``ValueError`` naming the output port, before any file is written.

Inputs are passed positionally in input-port order; axes of kind B, T (and
ANY) become dynamic dimensions in ONNX. ``metadata`` (``{str: str}``) is
stored in the file: ONNX ``metadata_props``, a TorchScript extra file
``METADATA_FILE`` (JSON), or a ``"metadata"`` entry of the PyTorch file. The
file is written to a temporary name and renamed, so a reader never sees half
a file.
"""
import collections
import collections.abc
import json
import logging
import os
import tempfile
import warnings

import torch

from .enums import DeploymentFormat
from .neural_types import AxisKind, LabelsType, LengthsType

DYNAMIC_KINDS = (AxisKind.Batch, AxisKind.Time, AxisKind.Any)
METADATA_FILE = "metadata.json"
_logger = logging.getLogger("nemo_core")


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


def _describe_ports(ports):
    return ", ".join(f"{name} {_axes_text(ntype)}" for name, ntype in ports.items())


def _axes_text(ntype):
    if ntype.axes is None:
        return "(any)"
    return "(" + ", ".join(f"{a.kind.value}={a.size}" if a.size else a.kind.value for a in ntype.axes) + ")"


def _by_port(module, example, ports, what):
    """``example`` (tensor, tuple/list in port order, or dict by port name) -> ``OrderedDict`` by port."""
    kind = "input" if what == "input_example" else "output"
    forms = f"pass one tensor, a tuple/list in {kind}-port order or a dict keyed by {kind} port name"
    where = f"{module.name} has {kind} ports {_describe_ports(ports)}"
    if torch.is_tensor(example):
        example = (example,)
    if isinstance(example, collections.abc.Mapping):
        unknown = [str(k) for k in example if k not in ports]
        if unknown:
            raise ValueError(f"{what} has unknown port(s) {', '.join(unknown)}; {where}")
        given = collections.OrderedDict((name, example[name]) for name in ports if name in example)
    elif isinstance(example, (tuple, list)):
        if len(example) > len(ports):
            raise ValueError(f"{what} has {len(example)} tensor(s) but {where}; {forms}")
        given = collections.OrderedDict(zip(ports, example))
    else:
        raise ValueError(f"{what} for {module.name} is a {type(example).__name__}; {forms} ({where})")
    for name, value in given.items():
        if not torch.is_tensor(value):
            raise ValueError(f"{what}[{name!r}] for {module.name} is a {type(value).__name__}, not a tensor; {forms}")
        ntype = ports[name]
        if ntype.axes is None:
            continue
        if value.dim() != len(ntype.axes):
            raise ValueError(f"{what}[{name!r}] has shape {tuple(value.shape)} but port {name!r} of {module.name} "
                             f"has {len(ntype.axes)} axes {_axes_text(ntype)}")
        for i, axis in enumerate(ntype.axes):
            if axis.size is not None and value.shape[i] != axis.size:
                raise ValueError(f"{what}[{name!r}] has shape {tuple(value.shape)} but port {name!r} of "
                                 f"{module.name} needs {axis.kind.value}={axis.size} on axis {i} "
                                 f"{_axes_text(ntype)}")
    return given


def _complete_inputs(module, given):
    """Fill required length ports left out of ``given`` with full lengths; others are an error."""
    ports = module.input_ports
    missing = [n for n, t in ports.items() if n not in given and not t.optional]
    if not missing:
        return given
    not_lengths = [n for n in missing if not isinstance(ports[n].elements_type, LengthsType)]
    if not_lengths:
        raise ValueError(f"input_example has no tensor for port(s) {', '.join(not_lengths)} of {module.name}; "
                         f"{module.name} has input ports {_describe_ports(ports)} (only length ports can be "
                         f"left out)")
    timed = [(name, value) for name, value in given.items() if ports[name].axes is not None
             and any(a.kind == AxisKind.Time for a in ports[name].axes)]
    if not timed:
        raise ValueError(f"input_example leaves out {', '.join(missing)} of {module.name} and no given tensor has "
                         f"a time axis to take full lengths from; pass them too ({_describe_ports(ports)})")
    source, tensor = timed[0]
    axes = ports[source].axes
    batch = tensor.shape[[a.kind for a in axes].index(AxisKind.Batch)] if any(
        a.kind == AxisKind.Batch for a in axes) else 1
    frames = tensor.shape[[a.kind for a in axes].index(AxisKind.Time)]
    complete = collections.OrderedDict()
    for name in ports:
        if name in given:
            complete[name] = given[name]
        elif name in missing:
            complete[name] = torch.full((batch,), frames, dtype=torch.long, device=tensor.device)
            _logger.info("deployment_export: %s.%s not given; using full lengths (%d) of %s", module.name, name,
                         frames, source)
    return complete


def _check_outputs(module, outputs, output_example):
    ports = module.output_ports
    expected = _by_port(module, output_example, ports, "output_example")
    if not isinstance(outputs, (tuple, list)):
        outputs = (outputs,)
    produced = collections.OrderedDict(zip(ports, outputs))
    if len(expected) != len(produced):
        raise ValueError(f"output_example has {len(expected)} tensor(s) but {module.name} returns {len(produced)} "
                         f"({', '.join(produced)})")
    for name, want in expected.items():
        got = produced[name]
        axes = ports[name].axes
        fixed = [i for i, a in enumerate(axes) if a.kind not in DYNAMIC_KINDS] if axes is not None \
            else range(min(got.dim(), want.dim()))
        if got.dtype != want.dtype or got.dim() != want.dim() or any(got.shape[i] != want.shape[i] for i in fixed):
            raise ValueError(f"output port {name!r} of {module.name} gives {got.dtype} {tuple(got.shape)} on "
                             f"input_example but output_example has {want.dtype} {tuple(want.shape)} "
                             f"(compared: dtype, number of axes and fixed axes {_axes_text(ports[name])})")


def _temporary(output):
    folder = os.path.dirname(os.path.abspath(output))
    handle, path = tempfile.mkstemp(prefix=os.path.basename(output) + ".", suffix=".tmp", dir=folder)
    os.close(handle)
    return path


def write_atomic(output, write):
    """Call ``write(temporary_path)``, then rename the temporary file to ``output``."""
    tmp = _temporary(output)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would have made it, not mkstemp's private 0600
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return output


def export_onnx(model, args, output, input_names, output_names, dynamic_axes, opset=17, metadata=None):
    """``torch.onnx.export`` (TorchScript exporter, dynamic axes) + ``onnx.checker``, written atomically.

    ``metadata`` (``{str: str}``) goes into the model's ``metadata_props``.
    """
    from .utils.cli import require

    onnx = require("onnx", "deploy", "ONNX export")

    def write(tmp):
        with warnings.catch_warnings():
            # strided slices (the STFT framing) are left unfolded; harmless, and printed three times per export
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
            torch.onnx.export(model, tuple(args), tmp, input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=opset,
                              dynamo=False, do_constant_folding=True)
        proto = onnx.load(tmp)
        if metadata:
            set_onnx_metadata(proto, metadata)
            onnx.save(proto, tmp)
        onnx.checker.check_model(proto)

    return write_atomic(output, write)


def set_onnx_metadata(proto, metadata):
    """Set (replace) ``metadata`` entries in an ``onnx.ModelProto``'s ``metadata_props``."""
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    for key, value in keep + [(k, str(v)) for k, v in metadata.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto


def save_torchscript(scripted, output, metadata=None):
    """Save a ScriptModule atomically, ``metadata`` as the JSON extra file ``METADATA_FILE``."""
    extra = {METADATA_FILE: json.dumps(metadata, sort_keys=True)} if metadata else {}
    return write_atomic(output, lambda tmp: torch.jit.save(scripted, tmp, _extra_files=extra))


def read_metadata(path):
    """The ``metadata`` stored by this module in an ONNX, TorchScript or PyTorch file (``{}`` if none)."""
    from .utils.cli import require

    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK"):  # a zip archive: TorchScript or torch.save
        extra = {METADATA_FILE: ""}
        try:
            torch.jit.load(path, map_location="cpu", _extra_files=extra)
        except RuntimeError:
            saved = torch.load(path, map_location="cpu", weights_only=False)
            return dict(saved.get("metadata") or {}) if isinstance(saved, dict) else {}
        return json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
    onnx = require("onnx", "deploy", "Reading ONNX metadata")
    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


def _dynamic_axes(ports, names):
    axes = {}
    for name in names:
        ntype = ports[name]
        if ntype.axes is not None:
            axes[name] = {i: f"{name}_{a.kind.name.lower()}" for i, a in enumerate(ntype.axes) if a.kind in DYNAMIC_KINDS}
    return axes


def deployment_export(module, output, d_format, input_example=None, output_example=None, opset=17, metadata=None):
    """Write ``module`` (eval mode) to ``output`` in ``d_format``; returns ``output``.

    See the module docstring for the forms of ``input_example`` and what
    ``output_example`` checks.
    """
    if not isinstance(d_format, DeploymentFormat):
        raise ValueError(f"d_format must be a DeploymentFormat ({', '.join(f.name for f in DeploymentFormat)}), "
                         f"got {d_format!r}")
    if input_example is None:
        example = example_inputs(module)
    else:
        example = _complete_inputs(module, _by_port(module, input_example, module.input_ports, "input_example"))
    device = getattr(module, "device", torch.device("cpu"))
    args = [t.to(device) for t in example.values()]
    was_training = module.training
    module.eval()
    try:
        wrapper = _Positional(module, example.keys())
        if output_example is not None:
            with torch.no_grad():
                _check_outputs(module, wrapper(*args), output_example)
        if d_format == DeploymentFormat.PYTORCH:
            state = {"class": f"{type(module).__module__}:{type(module).__qualname__}",
                     "init_config": module.init_config, "state_dict": module.state_dict()}
            if metadata:
                state["metadata"] = dict(metadata)
            return write_atomic(output, lambda tmp: torch.save(state, tmp))
        with torch.no_grad():
            if d_format == DeploymentFormat.TORCHSCRIPT:
                return save_torchscript(torch.jit.trace(wrapper, tuple(args), check_trace=False), output, metadata)
            output_names = list(module.output_ports)
            return export_onnx(wrapper, args, output, example.keys(), output_names,
                               _dynamic_axes({**module.input_ports, **module.output_ports},
                                             list(example) + output_names), opset, metadata)
    finally:
        module.train(was_training)
