"""Axis kinds and (optionally sized) axes of a neural type."""
import enum


class AxisKind(enum.Enum):
    """Semantic meaning of a tensor axis. ``Any`` matches every kind."""

    Batch = "B"
    Time = "T"
    Dimension = "D"
    Channel = "C"
    Height = "H"
    Width = "W"
    Any = "ANY"

    @classmethod
    def from_str(cls, label):
        key = label.strip().upper()
        for kind in cls:
            if kind.value == key or kind.name.upper() == key:
                return kind
        valid = ", ".join(repr(k.value) for k in cls)
        raise ValueError(f"Unknown axis kind {label!r}; valid kinds are {valid}")


class AxisType:
    """One axis: a kind, an optional fixed size, and whether it is a Python list."""

    __slots__ = ("kind", "size", "is_list")

    def __init__(self, kind, size=None, is_list=False):
        if isinstance(kind, str):
            kind = AxisKind.from_str(kind)
        if not isinstance(kind, AxisKind):
            raise TypeError(f"Axis kind must be an AxisKind or a string, got {kind!r}")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise ValueError(f"Axis size must be a positive int or None, got {size!r}")
        self.kind = kind
        self.size = size
        self.is_list = is_list

    def __eq__(self, other):
        return (
            isinstance(other, AxisType)
            and self.kind == other.kind
            and self.size == other.size
            and self.is_list == other.is_list
        )

    def __hash__(self):
        return hash((self.kind, self.size, self.is_list))

    def __repr__(self):
        text = self.kind.value if self.size is None else f"{self.kind.value}={self.size}"
        return f"list[{text}]" if self.is_list else text
