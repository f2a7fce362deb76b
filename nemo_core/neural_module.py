"""NeuralModule and its kinds: DataLayerNM, TrainableNM, NonTrainableNM, LossNM.

A module declares typed ports (``input_ports`` / ``output_ports``). Calling it
with keyword NmTensors records an edge of a DAG and checks port types right
there; calling it with real tensors runs it eagerly. Every module records the
arguments it was constructed with, so it can be written to and rebuilt from a
YAML config.
"""
import collections
import enum
import functools
import inspect
import itertools
import logging

import torch

from . import __version__ as _version
from . import runtime
from .checkpointing import load_state_file, save_atomic
from .neural_types import (
    NeuralModuleCallError,
    NeuralPortMissingInputError,
    NeuralPortNameMismatchError,
    NeuralPortNmTensorMismatchError,
)
from .nm_tensor import ModuleCall, NmTensor
from .utils.config_io import decode_value, dump_yaml, encode_value, load_yaml, locate

_instance_counter = itertools.count()
_log = logging.getLogger(__name__)


class WeightShareTransform(enum.Enum):
    """How a weight maps onto another module's weight (``set_weights`` / ``tie_weights_with``)."""

    SAME = 0
    TRANSPOSE = 1


def _weight_value(entry):
    """A tensor from a ``get_weights`` entry ``(parameter, trainable)`` or a bare tensor."""
    if isinstance(entry, (tuple, list)):
        entry = entry[0]
    if not isinstance(entry, torch.Tensor):
        raise TypeError(f"expected a tensor or a (tensor, trainable) pair, got {type(entry).__name__}")
    return entry


def _name_and_transform(name, name2name_and_transform):
    """(source name, transform) for own weight ``name``; the same name unless mapped."""
    if not name2name_and_transform or name not in name2name_and_transform:
        return name, WeightShareTransform.SAME
    entry = name2name_and_transform[name]
    if isinstance(entry, str):
        return entry, WeightShareTransform.SAME
    source, transform = entry
    if not isinstance(transform, WeightShareTransform):
        raise ValueError(f"weight {name!r}: the transform must be a WeightShareTransform (SAME or TRANSPOSE), "
                         f"got {transform!r}")
    return source, transform


class StateDictMismatchError(RuntimeError):
    """A checkpoint does not fit a module: lists every offending key."""

    def __init__(self, path, module_name, missing, unexpected, mis_shaped):
        self.path, self.missing, self.unexpected, self.mis_shaped = path, missing, unexpected, mis_shaped
        lines = [f"Checkpoint {path} does not match {module_name}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        for key, got, want in mis_shaped:
            lines.append(f"  mis-shaped key {key}: checkpoint {tuple(got)} vs module {tuple(want)}")
        super().__init__("\n".join(lines))


def _bind_arguments(signature, args, kwargs):
    """Constructor arguments as a flat dict (defaults applied, **kwargs merged in)."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    config = collections.OrderedDict()
    for name, value in list(bound.arguments.items())[1:]:  # drop self
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            config.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise TypeError(f"Cannot record *{name} positional arguments in a module config")
        else:
            config[name] = value
    return config


def _recording_init(init):
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        outermost = "_init_config" not in self.__dict__
        if outermost:
            object.__setattr__(self, "_init_config", _bind_arguments(signature, (self,) + args, kwargs))
        init(self, *args, **kwargs)
        if outermost:
            self._after_init()

    wrapper._nemo_recording = True
    return wrapper


class NeuralModule:
    """Base of all modules. Subclasses define ports and ``forward``."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_nemo_recording", False):
            cls.__init__ = _recording_init(init)

    def __init__(self, placement=None, name=None):
        # the device is fixed here, once: explicit placement, else the default the latest factory set
        self._placement = placement if placement is not None else runtime.default_placement()
        self._device = runtime.device_for(self._placement)
        self._name = name or type(self).__name__
        self._instance_id = next(_instance_counter)

    def _after_init(self):
        """Runs once the outermost constructor has finished (e.g. device moves)."""

    # ----------------------------------------------------------------- ports
    @property
    def input_ports(self):
        """The input ports, an ordered dict of port name -> NeuralType."""
        return collections.OrderedDict()

    @property
    def output_ports(self):
        """The output ports, an ordered dict of port name -> NeuralType."""
        return collections.OrderedDict()

    def output_ports_for(self, inputs):
        """Output types for a call given its input NmTensors (default: ``output_ports``).

        Type-preserving modules (e.g. augmentation) override this to pass the
        exact input type (sizes included) through, so checks further down the
        DAG still see it.
        """
        return self.output_ports

    # ------------------------------------------------------------- identity
    @property
    def name(self):
        return self._name

    @property
    def instance_id(self):
        """Creation order in this process; used for stable checkpoint names."""
        return self._instance_id

    @property
    def placement(self):
        return self._placement

    @property
    def device(self):
        """The device of the module's weights (its first parameter or buffer), so a module moved with
        ``.to()`` reports where it went; a module without tensors reports the device it was built for
        (its placement when built)."""
        if isinstance(self, torch.nn.Module):
            for tensor in itertools.chain(self.parameters(), self.buffers()):
                return tensor.device
        return self._device

    @property
    def init_config(self):
        """The constructor arguments this module was built with."""
        return dict(self._init_config)

    @property
    def num_weights(self):
        return 0

    def rng_state(self):
        """The state of this module's own random generator (augmentation...), or None.

        Checkpoints store it with the trainer state so a resumed run draws
        the same random numbers as an uninterrupted one.
        """
        return None

    def load_rng_state(self, state):
        """Restore what ``rng_state`` returned."""

    # --------------------------------------------------------------- weights
    def get_weights(self):
        """NeMo 0.x: ``{name: (parameter, trainable)}``; None for a module without weights."""
        return None

    def is_trainable(self):
        """True when the module has at least one weight that training updates (NeMo 0.x)."""
        weights = self.get_weights()
        return bool(weights) and any(trainable for _, trainable in weights.values())

    def set_weights(self, name2weight, name2name_and_transform=None):
        """Copy weights in; a module without weights only accepts an empty ``name2weight``."""
        if name2weight:
            raise ValueError(f"{self.name} ({type(self).__name__}) has no weights to set; "
                             f"got {', '.join(map(str, name2weight))}")

    def tie_weights_with(self, module, weight_names, name2name_and_transform=None):
        """Share weights with ``module``; a module without weights has none to tie."""
        raise ValueError(f"{self.name} ({type(self).__name__}) has no weights to tie")

    # --------------------------------------------------------------- calling
    def __call__(self, *args, **kwargs):
        if args:
            raise NeuralModuleCallError(
                f"{self.name} must be called with keyword arguments naming its input ports "
                f"({', '.join(self.input_ports) or 'none'}); got {len(args)} positional argument(s)"
            )
        symbolic = [k for k, v in kwargs.items() if isinstance(v, NmTensor)]
        if symbolic and len(symbolic) != len(kwargs):
            eager = [k for k in kwargs if k not in symbolic]
            raise NeuralModuleCallError(
                f"{self.name} was called with NmTensors for {', '.join(symbolic)} and real "
                f"values for {', '.join(eager)}; pass either only NmTensors (to build a DAG) "
                "or only tensors (to run eagerly)"
            )
        if symbolic or not kwargs:
            return self._wire(kwargs)
        return self._eager_call(**kwargs)

    def complete_inputs(self, inputs):
        """Fill optional inputs the DAG already determines (default: none).

        Called with the NmTensors given at wiring time; returns the inputs to
        record. Modules use it to find, e.g., the lengths belonging to a tensor.
        """
        return inputs

    def _wire(self, kwargs):
        kwargs = self.complete_inputs(dict(kwargs))
        ports = self.input_ports
        for port_name, tensor in kwargs.items():
            if port_name not in ports:
                raise NeuralPortNameMismatchError(self.name, port_name, ports)
            result = ports[port_name].compare(tensor.ntype)
            if not result.is_compatible:
                raise NeuralPortNmTensorMismatchError(
                    self.name, port_name, ports[port_name], tensor.ntype, result,
                    given_from=f"{tensor.name!r} of {tensor.producer.name}",
                )
        missing = [p for p, t in ports.items() if not t.optional and p not in kwargs]
        if missing:
            raise NeuralPortMissingInputError(self.name, missing)
        call = ModuleCall(self, kwargs)
        call.outputs = tuple(NmTensor(call, port, t) for port, t in self.output_ports_for(kwargs).items())
        return call.outputs[0] if len(call.outputs) == 1 else call.outputs

    def _eager_call(self, **kwargs):
        raise NeuralModuleCallError(f"{self.name} cannot be run eagerly")

    # ---------------------------------------------------------------- config
    def export_to_config(self, path):
        """Write ``{header, init_params}`` YAML that ``import_from_config`` rebuilds."""
        cls = type(self)
        params = {k: encode_value(v, f"{cls.__name__}.{k}") for k, v in self._init_config.items()}
        dump_yaml(
            {
                "header": {"full_spec": f"{cls.__module__}:{cls.__qualname__}", "nemo_core_version": _version},
                "init_params": params,
            },
            path,
        )

    @classmethod
    def import_from_config(cls, path, overwrite_params=None):
        """Build the module described by a config written by ``export_to_config``."""
        data = load_yaml(path)
        if not isinstance(data, dict) or "header" not in data or "init_params" not in data:
            raise ValueError(f"{path} is not a module config: expected keys 'header' and 'init_params'")
        spec = data["header"].get("full_spec")
        try:
            module_cls = locate(spec)
        except (ImportError, AttributeError, ValueError) as err:
            raise ValueError(f"{path}: cannot import module class {spec!r}: {err}") from err
        if not (isinstance(module_cls, type) and issubclass(module_cls, cls)):
            raise ValueError(f"{path} describes {spec}, which is not a {cls.__name__}")
        params = decode_value(data["init_params"] or {})
        params.update(overwrite_params or {})
        return module_cls(**params)

    def __repr__(self):
        def ports(items):
            return ", ".join(f"{k}: {v!r}" for k, v in items.items()) or "-"

        return (
            f"{type(self).__name__}(name={self.name!r}, placement={self._placement.name}, "
            f"weights={self.num_weights:,}, inputs=[{ports(self.input_ports)}], "
            f"outputs=[{ports(self.output_ports)}])"
        )


class _TorchNeuralModule(NeuralModule, torch.nn.Module):
    """Shared machinery of modules that are ``torch.nn.Module``s."""

    def __init__(self, placement=None, name=None):
        torch.nn.Module.__init__(self)
        NeuralModule.__init__(self, placement=placement, name=name)
        self._frozen = False

    def _after_init(self):
        # modules built under torch.device("meta") (shape inspection) stay there
        if not any(t.is_meta for t in self.state_dict().values()):
            self.to(self.device)

    def _eager_call(self, **kwargs):
        return torch.nn.Module.__call__(self, **kwargs)

    __hash__ = torch.nn.Module.__hash__

    @property
    def num_weights(self):
        """Number of trainable (requires_grad) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def is_frozen(self):
        return self._frozen

    def freeze(self, weights=None):
        """Stop gradients for all weights (or only the named ones)."""
        for name, param in self.named_parameters():
            if weights is None or name in weights:
                param.requires_grad_(False)
        self._frozen = weights is None

    def unfreeze(self, weights=None):
        for name, param in self.named_parameters():
            if weights is None or name in weights:
                param.requires_grad_(True)
        self._frozen = False

    def get_weights(self):
        """``{name: (parameter, trainable)}`` for every parameter, in ``named_parameters`` order.

        The NeMo 0.x form; the parameters are the module's own objects (not copies).
        """
        return collections.OrderedDict(
            (name, (param, param.requires_grad)) for name, param in self.named_parameters())

    def _own_parameter(self, name, action):
        params = dict(self.named_parameters(remove_duplicate=False))
        if name not in params:
            shown = ", ".join(list(params)[:12]) + (", ..." if len(params) > 12 else "")
            raise ValueError(f"{action}: {self.name} has no weight {name!r}; its weights: {shown or 'none'}")
        return params[name]

    def set_weights(self, name2weight, name2name_and_transform=None):
        """Copy values into this module's weights (no tying: later updates stay separate).

        ``name2weight`` maps names to tensors or to ``(tensor, trainable)`` pairs
        (what ``get_weights`` returns); the flags are not applied. Without
        ``name2name_and_transform`` each entry goes to the weight of the same
        name and may cover only part of the module. With it, exactly the mapped
        weights are set: ``{own_name: (name_in_name2weight, WeightShareTransform)}``;
        ``TRANSPOSE`` copies the transposed matrix.
        """
        if not name2weight:
            return
        if name2name_and_transform:
            plan = {own: _name_and_transform(own, name2name_and_transform) for own in name2name_and_transform}
        else:
            plan = {name: (name, WeightShareTransform.SAME) for name in name2weight}
        updates = []
        for own, (source, transform) in plan.items():
            if source not in name2weight:
                raise ValueError(f"set_weights: {self.name}.{own} maps to {source!r}, which name2weight lacks; "
                                 f"it has {', '.join(map(str, name2weight))}")
            value = _weight_value(name2weight[source])
            if transform is WeightShareTransform.TRANSPOSE:
                value = value.t()
            param = self._own_parameter(own, "set_weights")
            if value.shape != param.shape:
                raise ValueError(f"set_weights: {self.name}.{own} has shape {tuple(param.shape)}, the value for it "
                                 f"({source!r}, {transform.name}) has {tuple(value.shape)}")
            updates.append((param, value))
        with torch.no_grad():  # all names checked first: a failure changes nothing
            for param, value in updates:
                param.copy_(value)

    def tie_weights_with(self, module, weight_names, name2name_and_transform=None):
        """Make weights of this module the very ``Parameter`` objects of ``module``.

        After tying, both modules hold one tensor: an optimiser step (or any
        in-place change) through either shows in both, the gradients of both
        uses add up, and ``nf.train`` optimises it once. ``weight_names`` are own
        names; ``name2name_and_transform`` maps an own name to
        ``(name_in_module, WeightShareTransform.SAME)`` when the names differ.
        ``TRANSPOSE`` cannot be tied (a transposed tensor is not the same
        Parameter); copy it with ``set_weights`` instead. Shapes, dtypes and
        devices must match.
        """
        if not isinstance(module, torch.nn.Module):
            raise ValueError(f"tie_weights_with: {self.name} can only tie with a torch-based module, "
                             f"got {type(module).__name__}")
        if not weight_names:
            raise ValueError(f"tie_weights_with: give the names of {self.name}'s weights to tie (weight_names)")
        if isinstance(weight_names, str):
            weight_names = [weight_names]
        other_name = getattr(module, "name", type(module).__name__)
        other_params = dict(module.named_parameters(remove_duplicate=False))
        ties = []
        for own in weight_names:
            source, transform = _name_and_transform(own, name2name_and_transform)
            if transform is WeightShareTransform.TRANSPOSE:
                raise NotImplementedError(
                    f"tie_weights_with: {self.name}.{own} -> {other_name}.{source} with TRANSPOSE cannot be tied "
                    "(a transposed tensor is not the same Parameter); use set_weights(..., TRANSPOSE) to copy it")
            if source not in other_params:
                shown = ", ".join(list(other_params)[:12]) + (", ..." if len(other_params) > 12 else "")
                raise ValueError(f"tie_weights_with: {other_name} has no weight {source!r} (to tie {self.name}.{own}); "
                                 f"its weights: {shown or 'none'}")
            shared, mine = other_params[source], self._own_parameter(own, "tie_weights_with")
            for what, a, b in (("shape", tuple(mine.shape), tuple(shared.shape)), ("dtype", mine.dtype, shared.dtype),
                               ("device", mine.device, shared.device)):
                if a != b:
                    raise ValueError(f"tie_weights_with: {self.name}.{own} has {what} {a}, {other_name}.{source} "
                                     f"has {b}; tied weights must match")
            ties.append((own, shared))
        for own, shared in ties:
            owner_path, _, attr = own.rpartition(".")
            owner = self.get_submodule(owner_path) if owner_path else self
            setattr(owner, attr, shared)
        _log.info("%s: tied %d weight(s) with %s", self.name, len(ties), other_name)

    def save_to(self, path):
        """Plain ``torch.save(state_dict)``: the NGC NeMo 0.x checkpoint format."""
        save_atomic(self.state_dict(), path)

    def restore_from(self, path, local_rank=None):
        """Load a plain state_dict; every key and shape must match.

        ``local_rank`` is accepted for NeMo compatibility; tensors are always
        mapped to this module's own device.
        """
        self.load_state_dict(self.checked_state_dict(load_state_file(path, map_location=self.device), path))

    def checked_state_dict(self, state, path):
        """``state`` if it fits this module exactly, else a ``StateDictMismatchError``."""
        if not isinstance(state, dict):
            raise RuntimeError(f"Checkpoint {path} holds a {type(state).__name__}, not a state_dict")
        if state and all(k.startswith("module.") for k in state):  # saved from a DDP wrapper
            state = {k[len("module."):]: v for k, v in state.items()}
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mis_shaped = [
            (k, state[k].shape, own[k].shape)
            for k in own
            if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape
        ]
        if missing or unexpected or mis_shaped:
            raise StateDictMismatchError(path, self.name, missing, unexpected, mis_shaped)
        return state


class TrainableNM(_TorchNeuralModule):
    """A module with weights that actions optimise."""


class NonTrainableNM(_TorchNeuralModule):
    """A module whose weights (if any, e.g. filterbanks) are never optimised.

    Gradients still flow through it to earlier trainable modules.
    """

    def _after_init(self):
        super()._after_init()
        for param in self.parameters():
            param.requires_grad_(False)
        self._frozen = True

    def unfreeze(self, weights=None):
        raise RuntimeError(f"{self.name} is a NonTrainableNM; its weights cannot be trained")


class LossNM(_TorchNeuralModule):
    """A module that computes a loss; its output is what actions optimise."""


class DataLayerNM(NeuralModule):
    """Wraps a ``torch.utils.data.Dataset``; has output ports only.

    The DataLoader is made when an action runs (``make_dataloader``), sharded
    with a ``DistributedSampler`` when a process group is active.
    """

    def __init__(self, batch_size=1, shuffle=True, num_workers=0, drop_last=False,
                 pin_memory=False, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        if int(batch_size) < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.pin_memory = pin_memory

    @property
    def dataset(self):
        """The ``torch.utils.data.Dataset`` this layer reads."""
        raise NotImplementedError(f"{type(self).__name__} must define the 'dataset' property")

    @property
    def collate_fn(self):
        """Batching function for the DataLoader, or None for torch's default."""
        return None

    def __len__(self):
        return len(self.dataset)

    def make_dataloader(self, seed=0, training=True, distributed=None):
        """A fresh DataLoader for one action; see ``data_loading.make_dataloader``."""
        from .data_loading import make_dataloader

        return make_dataloader(self, seed=seed, training=training, distributed=distributed)

    def _eager_call(self, **kwargs):
        raise NeuralModuleCallError(
            f"{self.name} is a data layer: call it with no arguments to get its output NmTensors"
        )


__all__ = [
    "NeuralModule", "DataLayerNM", "TrainableNM", "NonTrainableNM", "LossNM",
    "StateDictMismatchError", "WeightShareTransform",
]
