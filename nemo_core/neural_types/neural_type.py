"""NeuralType: axes + element type, the type of a module port."""
from .axes import AxisKind, AxisType
from .comparison import NeuralTypeComparisonResult as Result
from .elements import ElementType, VoidType


class NeuralType:
    """Type of a port: ``axes`` (tuple of AxisType, short strings such as ``'B'``
    or ``(kind, size)`` pairs such as ``('D', 64)``; or None for
    a non-tensor/scalar value) and ``elements_type``.

    ``NeuralType()`` is the root type: a port declared with it accepts anything.
    """

    def __init__(self, axes=None, elements_type=None, optional=False):
        if elements_type is None:
            elements_type = VoidType()
        if isinstance(elements_type, type) and issubclass(elements_type, ElementType):
            elements_type = elements_type()
        if not isinstance(elements_type, ElementType):
            raise TypeError(f"elements_type must be an ElementType, got {elements_type!r}")
        if axes is not None:
            if isinstance(axes, (str, AxisType)):
                axes = (axes,)
            axes = tuple(_as_axis(a) for a in axes)
        self.axes = axes
        self.elements_type = elements_type
        self.optional = optional

    @property
    def is_root(self):
        return self.axes is None and isinstance(self.elements_type, VoidType)

    def compare(self, second):
        """Compare this (receiving) type with ``second`` (the offered type)."""
        if not isinstance(second, NeuralType):
            raise TypeError(f"Can only compare with a NeuralType, got {second!r}")
        if self.is_root:
            return Result.SAME
        axes_result = _compare_axes(self.axes, second.axes)
        if axes_result not in (Result.SAME, Result.TRANSPOSE_SAME):
            return axes_result
        element_result = self.elements_type.compare(second.elements_type)
        if axes_result is Result.TRANSPOSE_SAME and element_result is Result.SAME:
            return Result.TRANSPOSE_SAME
        if axes_result is Result.TRANSPOSE_SAME:
            return Result.INCOMPATIBLE
        return element_result

    def __eq__(self, other):
        return (
            isinstance(other, NeuralType)
            and self.axes == other.axes
            and self.elements_type == other.elements_type
            and self.optional == other.optional
        )

    def __hash__(self):
        return hash((self.axes, self.elements_type, self.optional))

    def __repr__(self):
        axes = "scalar" if self.axes is None else "(" + ", ".join(map(repr, self.axes)) + ")"
        opt = ", optional" if self.optional else ""
        return f"NeuralType({axes}, {self.elements_type!r}{opt})"


def _as_axis(spec):
    """An AxisType from an AxisType, a kind string, or a ``(kind, size)`` pair."""
    if isinstance(spec, AxisType):
        return spec
    if isinstance(spec, tuple):
        return AxisType(*spec)
    return AxisType(spec)


def _kinds_match(a, b):
    return a.kind == b.kind or AxisKind.Any in (a.kind, b.kind)


def _compare_axes(first, second):
    if first is None or second is None:
        return Result.SAME if first is second else Result.DIM_INCOMPATIBLE
    first_lists = sum(a.is_list for a in first)
    second_lists = sum(a.is_list for a in second)
    if first_lists != second_lists:
        return Result.CONTAINER_SIZE_MISMATCH
    if len(first) != len(second):
        return Result.DIM_INCOMPATIBLE
    if all(_kinds_match(a, b) for a, b in zip(first, second)):
        for a, b in zip(first, second):
            # An unsized axis on either side cannot be checked and is accepted.
            if a.size is not None and b.size is not None and a.size != b.size:
                return Result.DIM_INCOMPATIBLE
        return Result.SAME
    if sorted(a.kind.value for a in first) == sorted(b.kind.value for b in second):
        return Result.TRANSPOSE_SAME
    return Result.DIM_INCOMPATIBLE
