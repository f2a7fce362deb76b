"""NmTensor: a symbolic value flowing along one edge of a DAG."""
import itertools

_counter = itertools.count()


class ModuleCall:
    """One application of a module: the node of a DAG.

    The same module called twice (e.g. in a train and an eval DAG) gives two
    calls that share the module, and therefore its weights.
    """

    __slots__ = ("module", "inputs", "outputs", "call_id")

    def __init__(self, module, inputs):
        self.module = module
        self.inputs = dict(inputs)  # port name -> NmTensor
        self.outputs = ()
        self.call_id = next(_counter)

    def __repr__(self):
        return f"ModuleCall#{self.call_id}({self.module.name})"


class NmTensor:
    """Output ``name`` of one module call; carries its NeuralType, nothing computed."""

    __slots__ = ("call", "name", "ntype", "unique_name")

    def __init__(self, call, name, ntype):
        self.call = call
        self.name = name
        self.ntype = ntype
        self.unique_name = f"{name}~~~{call.module.name}~~~{call.call_id}"

    @property
    def producer(self):
        return self.call.module

    @property
    def producer_args(self):
        """The NmTensors given to the producing call, by input port name."""
        return self.call.inputs

    def find_upstream(self, predicate, max_depth=3):
        """Nearest NmTensor produced *alongside* one of this tensor's ancestors
        (breadth-first, up to ``max_depth`` calls back) that satisfies ``predicate``."""
        frontier, seen = [self], set()
        for _ in range(max_depth):
            next_frontier = []
            for tensor in frontier:
                for upstream in tensor.call.inputs.values():
                    if upstream.call in seen:
                        continue
                    seen.add(upstream.call)
                    matches = [t for t in upstream.call.outputs if t is not upstream and predicate(t)]
                    if len(matches) == 1:
                        return matches[0]
                    next_frontier.append(upstream)
            frontier = next_frontier
        return None

    def __repr__(self):
        return f"NmTensor({self.name!r} from {self.call.module.name} call #{self.call.call_id}, {self.ntype!r})"

    def __hash__(self):
        return hash(self.unique_name)

    def __eq__(self, other):
        return isinstance(other, NmTensor) and other.unique_name == self.unique_name
