"""NeuralModuleFactory: owns the run's device, precision, process group,
seeding, logging and TensorBoard, and runs actions (train, eval, infer) on DAGs."""
import os
import random

import torch

from . import runtime
from .actions.evaluate import evaluation_pass
from .actions.guard import DEFAULT_MAX_CONSECUTIVE_SKIPS
from .actions.infer import infer as _infer
from .actions.train import train as _train
from .callbacks import EvaluatorCallback
from .distributed import DistributedContext, resolve_local_rank
from .enums import Backend, DeploymentFormat, DeviceType, ModelMode, Optimization  # noqa: F401
from .precision import Precision
from .utils.logging_setup import make_logger


def seed_everything(seed):
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


class NeuralModuleFactory:
    """Entry point of a script: create it first, then modules, then call an action.

    ``placement=None`` picks GPU when CUDA is available (``AllGpu`` under a
    multi-process launcher), else CPU. With ``random_seed`` a CPU run is
    bit-for-bit repeatable. ``amp_dtype`` is the half type of O1-O3: None
    means float16 on CUDA and bfloat16 on CPU; ``torch.float16`` (or
    ``"float16"``) on CPU runs fp16 with dynamic loss scaling exactly as a GPU does.

    With ``set_default`` (the default, as in NeMo 0.x) the new factory becomes
    the process's default factory (``NeuralModuleFactory.get_default_factory()``):
    the most recently created one, which is also the one whose placement new
    modules take.
    """

    _DEFAULT = None

    def __init__(self, backend=Backend.PyTorch, local_rank=None, optimization_level=Optimization.mxprO0,
                 placement=None, cudnn_benchmark=False, random_seed=None, log_dir=None,
                 checkpoint_dir=None, create_tb_writer=False, tensorboard_dir=None, amp_dtype=None,
                 set_default=True):
        if backend != Backend.PyTorch:
            raise ValueError(f"Only Backend.PyTorch is supported, got {backend!r}")
        local_rank = resolve_local_rank(local_rank)
        if placement is None:
            if torch.cuda.is_available():
                placement = DeviceType.AllGpu if local_rank is not None else DeviceType.GPU
            else:
                placement = DeviceType.CPU
        if placement != DeviceType.CPU and not torch.cuda.is_available():
            raise RuntimeError(f"placement={placement.name} needs CUDA, which is not available")
        self._placement = placement
        self._distributed = DistributedContext.from_environment(local_rank, use_cuda=placement != DeviceType.CPU)
        self._local_rank = self._distributed.local_rank
        runtime.set_defaults(placement, self._local_rank)
        self._device = runtime.device_for(placement, self._local_rank)
        self._random_seed = random_seed
        if random_seed is not None:
            seed_everything(random_seed)
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
        self._optim_level = optimization_level
        self.precision = Precision(optimization_level, self._device, amp_dtype=amp_dtype)
        self._log_dir = log_dir
        self._checkpoint_dir = checkpoint_dir or (os.path.join(log_dir, "checkpoints") if log_dir else None)
        self._logger = make_logger(self.global_rank, log_dir, self._local_rank)
        self._tb_writer = None
        if create_tb_writer and self.is_main:
            from tensorboardX import SummaryWriter

            tensorboard_dir = tensorboard_dir or os.path.join(log_dir or ".", "tensorboard")
            self._tb_writer = SummaryWriter(tensorboard_dir)
        self._infer_cache = None
        self._optimizers = []
        self._logger.info("NeuralModuleFactory: device %s, precision %s, world size %d",
                          self._device, optimization_level.name, self.world_size)
        if set_default:
            NeuralModuleFactory.set_default(self)

    # ------------------------------------------------------ default factory
    @staticmethod
    def set_default(factory):
        """Make ``factory`` (a NeuralModuleFactory, or None) the process's default factory."""
        if factory is not None and not isinstance(factory, NeuralModuleFactory):
            raise TypeError(f"set_default takes a NeuralModuleFactory or None, got {type(factory).__name__}")
        NeuralModuleFactory._DEFAULT = factory

    @staticmethod
    def get_default_factory():
        """The default factory (see ``set_default``), or None when none was created."""
        return NeuralModuleFactory._DEFAULT

    @staticmethod
    def reset_default_factory():
        """Forget the default factory (NeMo 0.x)."""
        NeuralModuleFactory._DEFAULT = None

    set_default_factory = set_default  # NeMo 0.x spelling

    # ------------------------------------------------------------ properties
    logger = property(lambda self: self._logger)
    tb_writer = property(lambda self: self._tb_writer)
    placement = property(lambda self: self._placement)
    device = property(lambda self: self._device)
    optim_level = property(lambda self: self._optim_level)
    checkpoint_dir = property(lambda self: self._checkpoint_dir)
    random_seed = property(lambda self: self._random_seed)
    distributed = property(lambda self: self._distributed)
    global_rank = property(lambda self: self._distributed.rank)
    local_rank = property(lambda self: self._local_rank)
    world_size = property(lambda self: self._distributed.world_size)
    is_main = property(lambda self: self._distributed.is_main)
    work_dir = property(lambda self: self._log_dir, doc="The run's log folder (``log_dir``; None when not given).")

    # --------------------------------------------------------------- trainer
    def get_trainer(self, tb_writer=None):
        """The object whose ``train`` / ``eval`` / ``infer`` / ``create_optimizer`` run actions.

        NeMo 0.x returned a separate backend trainer; here the factory runs the
        actions itself, so this returns the factory (``tb_writer`` is accepted for
        NeMo compatibility; the factory's own writer is used).
        """
        return self

    def reset_trainer(self):
        """Drop what earlier actions left behind: the inference cache and the
        optimisers made by ``create_optimizer`` (which the factory stops tracking).

        Training state (step, epoch, optimiser moments) lives in each ``train``
        call and its checkpoints, so nothing else carries over between actions.
        """
        self._infer_cache = None
        self._optimizers = []

    @property
    def optimizers(self):
        """The optimisers ``create_optimizer`` made since the last ``reset_trainer``."""
        return list(self._optimizers)

    def create_optimizer(self, optimizer, things_to_optimize, optimizer_params=None):
        """Build an optimiser over the trainable weights of ``things_to_optimize`` (NeMo 0.x).

        ``optimizer``: a name from ``nemo_core.optim.OPTIMIZER_NAMES`` or a
        ``torch.optim.Optimizer`` (returned unchanged). ``things_to_optimize``:
        modules, NmTensors (every module of the DAG they depend on) and/or
        parameters, or one of them. ``optimizer_params``: ``lr`` and the
        optimiser's own keys (``betas``, ``weight_decay``, ...). Only weights
        with ``requires_grad`` are optimised, each once (tied weights included).
        Pass the result to ``train(..., optimizer=...)``.
        """
        from .graph import topological_calls
        from .neural_module import NeuralModule
        from .nm_tensor import NmTensor
        from .optim import get_optimizer

        if isinstance(optimizer, torch.optim.Optimizer):
            if optimizer_params:
                self._logger.warning("create_optimizer: optimizer_params are ignored for a given optimizer instance")
            self._optimizers.append(optimizer)
            return optimizer
        if not isinstance(optimizer, str):
            raise TypeError(f"create_optimizer: optimizer must be a name or a torch.optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        if self.precision.level == Optimization.mxprO2:
            raise ValueError("create_optimizer: mxprO2 keeps float32 master weights that only train() builds; "
                             f"pass optimizer={optimizer!r} by name to train() instead")
        things = things_to_optimize if isinstance(things_to_optimize, (list, tuple)) else [things_to_optimize]
        params, tensors = [], []
        for thing in things:
            if isinstance(thing, NmTensor):
                tensors.append(thing)
            elif isinstance(thing, torch.nn.Parameter):
                params.append(thing)
            elif isinstance(thing, NeuralModule):
                params.extend(self._trainable_weights(thing))
            else:
                raise TypeError(f"create_optimizer: {thing!r} is neither a neural module, an NmTensor nor a "
                                "Parameter")
        for module in dict.fromkeys(call.module for call in topological_calls(tensors)):
            params.extend(self._trainable_weights(module))
        params = [p for p in dict.fromkeys(params) if p.requires_grad]
        if not params:
            raise ValueError("create_optimizer: nothing to optimise: the given modules/tensors have no trainable, "
                             "unfrozen weights")
        opt = get_optimizer(optimizer, params, dict(optimizer_params or {}))
        self._optimizers.append(opt)
        return opt

    @staticmethod
    def _trainable_weights(module):
        from .neural_module import TrainableNM

        if not isinstance(module, TrainableNM):
            return []
        return [p for p in module.parameters() if p.requires_grad]

    # --------------------------------------------------------------- actions
    def train(self, tensors_to_optimize, callbacks=None, optimizer="novograd", optimization_params=None,
              lr_policy=None, batches_per_step=1, stop_on_nan_loss=False, gradient_predivide=False,
              max_consecutive_skips=DEFAULT_MAX_CONSECUTIVE_SKIPS, reset=False):
        """Optimise the sum of ``tensors_to_optimize``; see ``actions/train.py``.

        ``optimizer`` is a name (``nemo_core.optim.OPTIMIZER_NAMES``) or an
        optimiser from ``create_optimizer``; ``reset`` calls ``reset_trainer`` first.

        A step whose loss or gradients are not finite is skipped (nothing
        changes); ``max_consecutive_skips`` in a row (0: no limit) or, with
        ``stop_on_nan_loss``, the first non-finite loss stop training with
        ``NonFiniteTrainingError``. SIGTERM/SIGINT save and raise ``TrainingInterrupted``.
        """
        if reset:
            self.reset_trainer()
        return _train(self, tensors_to_optimize, callbacks=callbacks, optimizer=optimizer,
                      optimization_params=optimization_params, lr_policy=lr_policy,
                      batches_per_step=batches_per_step, stop_on_nan_loss=stop_on_nan_loss,
                      gradient_predivide=gradient_predivide, max_consecutive_skips=max_consecutive_skips)

    def eval(self, callbacks):
        """Run each ``EvaluatorCallback`` once; returns their results (rank 0)."""
        from .actions.state import TrainingState

        state = TrainingState(self, evaluate=lambda tensors: evaluation_pass(self, tensors))
        results = []
        for cb in callbacks:
            if not isinstance(cb, EvaluatorCallback):
                raise TypeError(f"eval() takes EvaluatorCallbacks, got {cb!r}")
            results.append(cb.run(state))
        return results

    def infer(self, tensors, checkpoint_dir=None, ckpt_pattern="", verbose=True, cache=False,
              use_cache=False, offload_to_cpu=True):
        """Per tensor, the list of per-batch values over the data set."""
        return _infer(self, tensors, checkpoint_dir=checkpoint_dir, ckpt_pattern=ckpt_pattern,
                      verbose=verbose, cache=cache, use_cache=use_cache, offload_to_cpu=offload_to_cpu)

    def deployment_export(self, module, output, d_format, input_example=None, output_example=None, **kwargs):
        """Export ``module`` as ONNX / TorchScript / PyTorch; see ``nemo_core.deployment.deployment_export``."""
        from .deployment import deployment_export

        return deployment_export(module, output, d_format, input_example, output_example, **kwargs)

    def clear_cache(self):
        self._infer_cache = None

    def sync_all_processes(self):
        self._distributed.barrier()
