"""nemo_core: typed neural modules wired into DAGs, and the factory that runs them."""
__version__ = "0.1.0"

from . import neural_types  # noqa: E402
from .enums import Backend, DeploymentFormat, DeviceType, ModelMode, Optimization  # noqa: E402
from .graph import GraphError, GraphPlan, topological_calls  # noqa: E402
from .neural_module import (  # noqa: E402
    DataLayerNM,
    LossNM,
    NeuralModule,
    NonTrainableNM,
    StateDictMismatchError,
    TrainableNM,
    WeightShareTransform,
)
from .neural_types import *  # noqa: E402,F401,F403
from .nm_tensor import NmTensor  # noqa: E402
from .zeros_data_layer import ZerosDataLayer  # noqa: E402
from . import tutorials  # noqa: E402
from .callbacks import (  # noqa: E402
    ActionCallback,
    CheckpointCallback,
    EvaluatorCallback,
    SimpleLossLoggerCallback,
)
from .checkpointing import CheckpointError, ResumeError, restore_modules  # noqa: E402
from .actions.guard import NonFiniteTrainingError  # noqa: E402
from .actions.interrupts import TrainingInterrupted  # noqa: E402
from .distributed import add_distributed_args  # noqa: E402
from .factory import NeuralModuleFactory  # noqa: E402
from . import optim  # noqa: E402
