"""Errors raised while wiring modules into a DAG."""


class NeuralTypeError(TypeError):
    """Base class of all wiring and type errors."""


class NeuralPortNameMismatchError(NeuralTypeError):
    """A module was called with a port name it does not have."""

    def __init__(self, module_name, port_name, valid_ports):
        self.module_name = module_name
        self.port_name = port_name
        self.valid_ports = list(valid_ports)
        super().__init__(
            f"{module_name} has no input port {port_name!r}; "
            f"valid input ports are: {', '.join(self.valid_ports) or '(none)'}"
        )


class NeuralPortNmTensorMismatchError(NeuralTypeError):
    """The tensor wired to a port has an incompatible neural type."""

    def __init__(self, module_name, port_name, expected, given, result, given_from=None):
        self.module_name = module_name
        self.port_name = port_name
        self.expected = expected
        self.given = given
        self.result = result
        origin = f" (output {given_from})" if given_from else ""
        super().__init__(
            f"Input port {port_name!r} of {module_name} expects {expected!r} but was given "
            f"{given!r}{origin}; comparison result: {result.name}"
        )


class NeuralPortMissingInputError(NeuralTypeError):
    """A required input port was not connected."""

    def __init__(self, module_name, missing_ports):
        self.module_name = module_name
        self.missing_ports = list(missing_ports)
        super().__init__(
            f"{module_name} is missing required input(s): {', '.join(self.missing_ports)}"
        )


class NeuralModuleCallError(NeuralTypeError):
    """A module was called in a way that is neither symbolic nor eager."""
