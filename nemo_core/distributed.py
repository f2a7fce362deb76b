"""The only owner of torch.distributed: launcher detection, process groups,
DDP wrapping and gathering of results.

Works with ``python -m torch.distributed.launch`` (``--local-rank=N`` or
``--local_rank N`` plus env vars) and ``torchrun`` (env ``LOCAL_RANK``,
``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``, incl. c10d rendezvous).
"""
import atexit
import datetime
import gc
import os
import weakref

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def add_distributed_args(parser):
    """Make ``parser`` accept ``--local_rank`` and ``--local-rank`` (both launchers)."""
    parser.add_argument(
        "--local_rank", "--local-rank", dest="local_rank", type=int,
        default=None, help="set by torch.distributed.launch; torchrun uses env LOCAL_RANK",
    )
    return parser


def resolve_local_rank(local_rank=None):
    if local_rank is not None:
        return int(local_rank)
    env = os.environ.get("LOCAL_RANK")
    return int(env) if env is not None else None


class DistributedContext:
    """Rank/world information and collective helpers for one process."""

    def __init__(self, rank=0, world_size=1, local_rank=None, backend=None):
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.backend = backend
        self._wrapped = {}
        _CONTEXTS.add(self)

    @classmethod
    def from_environment(cls, local_rank=None, use_cuda=False, timeout_s=1800):
        """Join the process group the launcher describes (or none for one process)."""
        local_rank = resolve_local_rank(local_rank)
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend())
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1 or not dist.is_available():
            return cls(0, 1, local_rank, None)
        rank = int(os.environ.get("RANK", local_rank or 0))
        if local_rank is None:
            local_rank = rank
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(
            backend=backend, init_method="env://", rank=rank, world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
        atexit.register(_destroy_process_group)
        return cls(rank, world_size, local_rank, backend)

    @property
    def is_active(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    def wrap(self, module, multiple_calls=False, gradient_predivide=False):
        """The module's one DDP wrapper (created on first request)."""
        if not self.is_active:
            return module
        wrapper = self._wrapped.get(id(module))
        if wrapper is None:
            device_ids = [module.device.index] if module.device.type == "cuda" else None
            wrapper = DistributedDataParallel(
                module, device_ids=device_ids, static_graph=multiple_calls,
            )
            if gradient_predivide:
                wrapper.register_comm_hook(self.world_size, _predivide_allreduce_hook)
            self._wrapped[id(module)] = wrapper
        return wrapper

    def all_gather_objects(self, obj):
        """List of ``obj`` from every rank, in rank order."""
        if not self.is_active:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def any_rank(self, flags):
        """Element-wise: true on every rank where ``flags`` (bool, list or bool tensor) is true on any rank.

        One small all-reduce; the train loop uses it so that all ranks skip the
        same steps and stop at the same step (replicas never diverge).
        """
        flags = torch.as_tensor(flags)
        if not self.is_active:
            return flags.bool()
        device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")
        value = flags.to(device=device, dtype=torch.int32).reshape(-1)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return value.reshape(flags.shape).bool()

    def barrier(self):
        if self.is_active:
            dist.barrier()


_CONTEXTS = weakref.WeakSet()


def _destroy_process_group():
    """Tear down the process group this module created before the interpreter exits; left to
    interpreter teardown, gloo's threads sometimes abort the process ("terminate called without an
    active exception", SIGABRT) after a run that finished fine. The DDP wrappers (whose reducers hold
    the group) are released and collected first, so the group's threads end here, not in the
    interpreter's final teardown."""
    for context in list(_CONTEXTS):
        context._wrapped.clear()
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()


def _predivide_allreduce_hook(world_size, bucket):
    """Divide gradients by the world size *before* summing (fp16 overflow guard)."""
    tensor = bucket.buffer().div_(world_size)
    future = dist.all_reduce(tensor, async_op=True).get_future()
    return future.then(lambda fut: fut.value()[0])


def no_sync_all(wrappers):
    """Context that suspends DDP gradient sync on all ``wrappers`` (accumulation)."""
    import contextlib

    stack = contextlib.ExitStack()
    for wrapper in wrappers:
        if isinstance(wrapper, DistributedDataParallel):
            stack.enter_context(wrapper.no_sync())
    return stack
