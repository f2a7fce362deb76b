"""YAML (ruamel.yaml) I/O for module configs, with tagged encodings for values
YAML cannot hold natively: callables/classes by import path, torch dtypes,
enums and NeuralTypes.
"""
import enum
import importlib

import torch
from ruamel.yaml import YAML

from ..neural_types import AxisType, NeuralType

_CALLABLE = "__callable__"
_DTYPE = "__torch_dtype__"
_ENUM = "__enum__"
_NTYPE = "__neural_type__"
_TUPLE = "__tuple__"


class ConfigSerializationError(ValueError):
    """A constructor argument cannot be written to a config file."""


def _import_path(obj):
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if module is None or qualname is None or "<" in qualname:
        return None
    if module == "torch" and qualname.startswith("_VariableFunctionsClass."):
        qualname = qualname.split(".", 1)[1]  # torch.cos and friends
    try:
        if locate(f"{module}:{qualname}") is obj:
            return f"{module}:{qualname}"
    except (ImportError, AttributeError):
        return None
    return None


def locate(path):
    """Import ``package.module:Qual.name`` (or ``package.module.name``)."""
    if ":" in path:
        module_name, qualname = path.split(":", 1)
    else:
        module_name, _, qualname = path.rpartition(".")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def encode_value(value, where="value"):
    """Turn a constructor argument into plain YAML data; ``where`` names it in errors."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return {_ENUM: f"{_import_path(type(value))}.{value.name}"}
    if isinstance(value, torch.dtype):
        return {_DTYPE: str(value).replace("torch.", "")}
    if isinstance(value, NeuralType):
        return {
            _NTYPE: {
                "axes": None if value.axes is None else [
                    [a.kind.value, a.size, a.is_list] for a in value.axes
                ],
                "elements_type": _import_path(type(value.elements_type)),
                "parameters": dict(value.elements_type.type_parameters),
                "optional": value.optional,
            }
        }
    if isinstance(value, tuple):
        return {_TUPLE: [encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): encode_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    if callable(value):
        path = _import_path(value)
        if path is not None:
            return {_CALLABLE: path}
    raise ConfigSerializationError(
        f"Cannot export {where}={value!r} ({type(value).__name__}) to a config: "
        "only YAML scalars, lists, dicts, enums, torch dtypes, NeuralTypes and "
        "importable functions/classes are supported"
    )


def decode_value(value):
    """Inverse of :func:`encode_value`."""
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, payload), = value.items()
        if tag == _CALLABLE:
            return locate(payload)
        if tag == _DTYPE:
            return getattr(torch, payload)
        if tag == _ENUM:
            cls_path, _, member = payload.rpartition(".")
            return locate(cls_path)[member]
        if tag == _TUPLE:
            return tuple(decode_value(v) for v in payload)
        if tag == _NTYPE:
            element_cls = locate(payload["elements_type"])
            element = element_cls(**payload.get("parameters", {}))
            axes = payload["axes"]
            if axes is not None:
                axes = tuple(AxisType(kind, size, is_list) for kind, size, is_list in axes)
            return NeuralType(axes, element, optional=payload.get("optional", False))
    return {k: decode_value(v) for k, v in value.items()}


def _yaml():
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # port and argument order matter
    return yaml


def dump_yaml(data, path):
    with open(path, "w", encoding="utf-8") as handle:
        _yaml().dump(data, handle)


def load_yaml(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return _yaml().load(handle)
    except OSError as err:
        raise FileNotFoundError(f"Cannot read config file {path}: {err}") from err
    except Exception as err:  # ruamel raises several parser error types
        raise ValueError(f"Config file {path} is not valid YAML: {err}") from err
