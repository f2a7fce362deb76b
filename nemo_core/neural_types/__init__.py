"""Neural types: axes, element types, their comparison and the wiring errors."""
from .axes import AxisKind, AxisType
from .comparison import NeuralTypeComparisonResult
from .elements import (
    AudioSignal,
    ChannelType,
    ElementType,
    EncodedRepresentation,
    LabelsType,
    LengthsType,
    LogitsType,
    LogprobsType,
    LossType,
    MelSpectrogramType,
    MFCCSpectrogramType,
    PredictionsType,
    RegressionValuesType,
    SpectrogramType,
    VoidType,
)
from .errors import (
    NeuralModuleCallError,
    NeuralPortMissingInputError,
    NeuralPortNameMismatchError,
    NeuralPortNmTensorMismatchError,
    NeuralTypeError,
)
from .neural_type import NeuralType

__all__ = [
    "AxisKind", "AxisType", "NeuralTypeComparisonResult", "NeuralType",
    "ElementType", "VoidType", "ChannelType", "AudioSignal", "SpectrogramType",
    "MelSpectrogramType", "MFCCSpectrogramType", "EncodedRepresentation", "LogitsType",
    "LogprobsType", "LabelsType", "PredictionsType", "LengthsType", "LossType",
    "RegressionValuesType", "NeuralTypeError", "NeuralPortNameMismatchError",
    "NeuralPortNmTensorMismatchError", "NeuralPortMissingInputError", "NeuralModuleCallError",
]
