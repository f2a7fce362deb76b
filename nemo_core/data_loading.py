"""DataLoaders for data layers: deterministic per-epoch order, sharding, resume.

One sampler serves every case so a run is reproducible and resumable:

- order depends only on ``(seed, epoch)``, never on the global RNG;
- with a process group it shards like ``DistributedSampler`` (training pads
  so every rank has the same number of batches; evaluation does not pad, so
  each sample is seen exactly once across ranks);
- ``skip`` drops the first samples of an epoch to resume mid-epoch;
- with ``lengths`` and ``window`` each run of ``window`` consecutive indices
  is sorted by length (bucketing), so batches hold similar lengths.
"""
import collections
import math
import signal

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler


class ShardedSampler(DistributedSampler):
    """A ``DistributedSampler`` that can skip ahead and can leave shards unpadded.

    Unpadded (evaluation and inference: ``pad=False``, no ``drop_last``),
    every sample is read exactly once and each rank reads one contiguous
    block, so results gathered in rank order come back in data-set order.
    Training shards are strided and padded, as ``DistributedSampler``'s.
    """

    def __init__(self, dataset, num_replicas=1, rank=0, shuffle=True, seed=0,
                 drop_last=False, pad=True, lengths=None, window=0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=drop_last)
        self.pad = pad
        self.skip = 0
        self.lengths = lengths
        self.window = int(window)
        self.contiguous = not pad and not drop_last
        if self.contiguous:
            self.total_size = len(dataset)
            self.num_samples = len(range(*self._block(self.total_size)))

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(n, generator=generator).tolist()
        else:
            indices = list(range(n))
        if self.drop_last:
            indices = indices[: self.total_size]
        elif self.pad and self.total_size > n:
            repeats = math.ceil((self.total_size - n) / max(n, 1))
            indices += (indices * repeats)[: self.total_size - n]
        if self.contiguous:  # rank r holds the r-th block: gathering in rank order restores data-set order
            shard = indices[slice(*self._block(n))]
        else:
            shard = indices[self.rank: self.total_size: self.num_replicas]
        if self.lengths is not None and self.window > 1:
            lengths = self.lengths
            shard = [i for start in range(0, len(shard), self.window)
                     for i in sorted(shard[start:start + self.window], key=lengths.__getitem__)]
        return iter(shard[self.skip:])

    def __len__(self):
        return max(self.num_samples - self.skip, 0)

    def _block(self, n):
        """``(start, stop)`` of this rank's contiguous block of ``n`` samples (sizes differ by at most one)."""
        base, extra = divmod(n, self.num_replicas)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)


class RecordingBatchSampler(BatchSampler):
    """A ``BatchSampler`` that remembers the sample indices of each batch it hands out.

    The DataLoader delivers batches in the order this sampler issues them
    (workers included), so ``take()`` after each batch gives that batch's
    indices: the train loop uses them to name the utterances of a bad step.
    """

    def __init__(self, sampler, batch_size, drop_last):
        super().__init__(sampler, batch_size, drop_last)
        self.issued = collections.deque()

    def __iter__(self):
        self.issued.clear()
        for indices in super().__iter__():
            self.issued.append(indices)
            yield indices

    def take(self):
        return self.issued.popleft() if self.issued else None


def _worker_init(worker_id):
    """Workers leave SIGINT/SIGTERM to the main process, which finishes the step and saves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_dataloader(data_layer, seed=0, training=True, distributed=None):
    """Build the DataLoader of ``data_layer`` for an action.

    ``distributed`` is a ``DistributedContext`` (or None for one process).
    ``loader.batch_sampler.take()`` gives the indices of the batch just delivered.
    """
    world = distributed.world_size if distributed is not None else 1
    rank = distributed.rank if distributed is not None else 0
    sampler = ShardedSampler(
        data_layer.dataset,
        num_replicas=world,
        rank=rank,
        shuffle=bool(data_layer.shuffle) and training,
        seed=seed,
        drop_last=bool(data_layer.drop_last) and training,
        pad=training,
        lengths=getattr(data_layer, "bucket_lengths", None),
        window=getattr(data_layer, "bucket_batches", 0) * data_layer.batch_size,
    )
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        data_layer.dataset,
        batch_sampler=RecordingBatchSampler(sampler, data_layer.batch_size, bool(data_layer.drop_last) and training),
        num_workers=data_layer.num_workers,
        collate_fn=data_layer.collate_fn,
        pin_memory=bool(data_layer.pin_memory) and torch.cuda.is_available(),
        generator=generator,
        worker_init_fn=_worker_init if data_layer.num_workers else None,
    )
