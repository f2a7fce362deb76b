"""Process-wide defaults that modules read once, when they are built.

The most recently created ``NeuralModuleFactory`` registers its placement and
local rank here, so modules created afterwards land on the same device without
the user passing ``placement`` to each one. A module resolves its device in
its constructor (``NeuralModule.device``) and keeps it: changing these
defaults later moves nothing that already exists.
"""
import torch

from .enums import DeviceType

_defaults = {"placement": None, "local_rank": None}


def set_defaults(placement, local_rank):
    _defaults["placement"] = placement
    _defaults["local_rank"] = local_rank


def default_placement():
    placement = _defaults["placement"]
    if placement is None:
        placement = DeviceType.GPU if torch.cuda.is_available() else DeviceType.CPU
    return placement


def device_for(placement, local_rank=None):
    """The torch.device a placement maps to in this process."""
    if placement is None:
        placement = default_placement()
    if placement == DeviceType.CPU:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"Placement {placement.name} requested but CUDA is not available")
    if local_rank is None:
        local_rank = _defaults["local_rank"]
    if placement == DeviceType.AllGpu and local_rank is not None:
        return torch.device("cuda", local_rank)
    return torch.device("cuda", torch.cuda.current_device())
