"""The outcome of comparing two neural types."""
import enum


class NeuralTypeComparisonResult(enum.Enum):
    """How a port's declared type (``self``) relates to the type offered to it.

    Only ``SAME`` and ``GREATER`` (the port is more general than what it
    receives) may be wired; everything else is rejected at the wiring line.
    """

    SAME = 0
    LESS = 1  # the port is more specific than the offered type
    GREATER = 2  # the port is more general than the offered type
    DIM_INCOMPATIBLE = 3  # axis count, kinds or sizes differ
    TRANSPOSE_SAME = 4  # same axes in another order
    CONTAINER_SIZE_MISMATCH = 5  # different number of list (container) axes
    INCOMPATIBLE = 6  # unrelated element types or parameters

    @property
    def is_compatible(self):
        return self in (NeuralTypeComparisonResult.SAME, NeuralTypeComparisonResult.GREATER)
