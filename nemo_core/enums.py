"""Enumerations shared by modules and the factory (kept apart to avoid import cycles)."""
import enum


class Backend(enum.Enum):
    PyTorch = 1


class DeviceType(enum.Enum):
    """Where modules live. ``AllGpu``: one GPU per process (distributed)."""

    CPU = 1
    GPU = 2
    AllGpu = 3


class Optimization(enum.Enum):
    """Precision levels, named after apex.amp's O0-O3 (see ``precision.py``)."""

    mxprO0 = 0
    mxprO1 = 1
    mxprO2 = 2
    mxprO3 = 3

    @classmethod
    def from_opt_level(cls, level):
        """``"O1"`` (apex/CLI spelling) -> ``Optimization.mxprO1``."""
        names = {f"O{m.value}": m for m in cls}
        if level not in names:
            raise ValueError(f"Unknown optimization level {level!r}; valid: {', '.join(names)}")
        return names[level]


class ModelMode(enum.Enum):
    train = 0
    eval = 1


class DeploymentFormat(enum.Enum):
    PYTORCH = 0
    TORCHSCRIPT = 1
    ONNX = 2
