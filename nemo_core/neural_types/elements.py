"""Element types: what the numbers in a tensor mean.

Element types form a class hierarchy. A port typed with a base class accepts
any subclass (the port is *more general*, ``GREATER``); the reverse is refused
(``LESS``). Parameterised types (e.g. ``AudioSignal(freq)``) list their
parameters in ``type_parameters``; ``None`` there means "any value".
Users add their own types by subclassing ``ElementType``.
"""
from .comparison import NeuralTypeComparisonResult as Result


class ElementType:
    """Root of the element hierarchy."""

    @property
    def type_parameters(self):
        return {}

    def compare(self, second):
        """Compare ``self`` (the receiving port) with ``second`` (the offered type)."""
        if isinstance(self, VoidType) or isinstance(second, VoidType):
            return Result.SAME
        first_cls, second_cls = type(self), type(second)
        if first_cls is second_cls:
            return _compare_parameters(self.type_parameters, second.type_parameters)
        if issubclass(second_cls, first_cls):
            # Shared parameters must still agree, e.g. sample rate of audio.
            params = _compare_parameters(self.type_parameters, second.type_parameters)
            return Result.GREATER if params.is_compatible else Result.INCOMPATIBLE
        if issubclass(first_cls, second_cls):
            return Result.LESS
        return Result.INCOMPATIBLE

    def __eq__(self, other):
        return type(self) is type(other) and self.type_parameters == other.type_parameters

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.type_parameters.items()))))

    def __repr__(self):
        params = ", ".join(f"{k}={v}" for k, v in self.type_parameters.items() if v is not None)
        return f"{type(self).__name__}({params})" if params else type(self).__name__


def _compare_parameters(first, second):
    """Parameters of the port vs parameters offered; ``None`` on the port is a wildcard."""
    wider = False
    for key, value in first.items():
        other = second.get(key)
        if value is None:
            wider = wider or other is not None
        elif other is None:
            return Result.LESS
        elif value != other:
            return Result.INCOMPATIBLE
    return Result.GREATER if wider else Result.SAME


class VoidType(ElementType):
    """Unchecked element type: compatible with everything, in both directions."""


class ChannelType(ElementType):
    """Generic per-channel values."""


class AudioSignal(ElementType):
    """Raw waveform samples at ``freq`` Hz (``None``: any rate)."""

    def __init__(self, freq=None):
        self._freq = freq

    @property
    def type_parameters(self):
        return {"freq": self._freq}


class SpectrogramType(ChannelType):
    """Any time-frequency representation."""


class MelSpectrogramType(SpectrogramType):
    """Log/linear mel filterbank features."""


class MFCCSpectrogramType(SpectrogramType):
    """Mel-frequency cepstral coefficients."""


class EncodedRepresentation(ChannelType):
    """Hidden features produced by an encoder."""


class LogitsType(ElementType):
    """Unnormalised class scores."""


class LogprobsType(ElementType):
    """Log-probabilities over classes."""


class LabelsType(ElementType):
    """Integer class labels (e.g. transcript tokens)."""


class PredictionsType(LabelsType):
    """Labels predicted by a model."""


class LengthsType(ElementType):
    """Valid lengths of the sequences in a padded batch."""


class LossType(ElementType):
    """A loss value to optimise or report."""


class RegressionValuesType(ElementType):
    """Real-valued regression targets or outputs."""
