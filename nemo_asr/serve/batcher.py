"""Dynamic batching: concurrent requests wait a few milliseconds to share one model call.

One worker task owns the model; it runs batches in a single thread so the
event loop stays free to accept connections and stream partial results.
A batch is the oldest waiting request plus the waiting requests closest to it
in length (less padding), up to ``max_batch_size`` requests and
``max_batch_samples`` padded samples. It starts when it is full or when the
oldest request has waited ``max_wait_ms``.
"""
import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor

_logger = logging.getLogger("nemo_asr.serve")


class QueueFullError(RuntimeError):
    """More requests are waiting than ``max_queue``: the client should retry later (HTTP 503)."""


_Request = collections.namedtuple("_Request", "item length future enqueued")


class DynamicBatcher:
    """``await batcher.submit(item, length)`` -> ``run_batch([items])[i]``.

    ``run_batch`` is a plain function taking a list of items and returning a
    list of results (called in the worker thread). ``on_batch(size, seconds,
    queue_wait_s)`` is told about every batch (metrics).
    """

    def __init__(self, run_batch, max_batch_size=16, max_wait_ms=10.0, max_queue=256, max_batch_samples=None,
                 on_batch=None):
        if max_batch_size < 1 or max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be >= 1")
        self.run_batch, self.max_batch_size, self.max_wait = run_batch, max_batch_size, max_wait_ms / 1000.0
        self.max_queue, self.max_batch_samples, self.on_batch = max_queue, max_batch_samples, on_batch
        self._waiting = []
        self._wake = None
        self._worker = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nemo-serve-model")
        self.busy = False
        self._closing = False

    @property
    def depth(self):
        """Requests waiting (not yet in a running batch)."""
        return len(self._waiting)

    def start(self):
        self._wake = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="nemo-serve-batcher")

    async def close(self, timeout_s=60.0):
        """Refuse new requests, finish what is queued (up to ``timeout_s``), then stop the worker and its thread.

        Requests still waiting after that get ``QueueFullError``: each has its answer.
        """
        self._closing = True
        deadline = time.perf_counter() + timeout_s
        while (self._waiting or self.busy) and self._worker is not None and not self._worker.done() \
                and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        for request in self._waiting:
            if not request.future.done():
                request.future.set_exception(QueueFullError("the server shut down before this request ran"))
        self._waiting = []
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False)

    async def submit(self, item, length):
        """The result for ``item`` (``length``: its size, for grouping); raises ``QueueFullError``."""
        if self._worker is None:
            raise RuntimeError("DynamicBatcher.start() was not called")
        if len(self._waiting) >= self.max_queue:
            raise QueueFullError(f"{len(self._waiting)} requests are already waiting")
        if self._closing:
            raise QueueFullError("the server is shutting down")
        future = asyncio.get_running_loop().create_future()
        request = _Request(item, length, future, time.perf_counter())
        self._waiting.append(request)
        future.add_done_callback(lambda _: self._forget(request))  # a timed-out request leaves the queue at once
        self._wake.set()
        return await future

    def _forget(self, request):
        if request.future.cancelled():
            self._waiting = [r for r in self._waiting if r is not request]

    def _take_batch(self):
        self._waiting = [r for r in self._waiting if not r.future.done()]  # timed out or cancelled meanwhile
        if not self._waiting:
            return []
        oldest = self._waiting[0]
        nearest = sorted(self._waiting, key=lambda r: (abs(r.length - oldest.length), r.enqueued))
        batch, longest = [], 0
        for request in nearest:
            if len(batch) == self.max_batch_size:
                break
            padded = max(longest, request.length) * (len(batch) + 1)
            if batch and self.max_batch_samples and padded > self.max_batch_samples:
                continue
            batch.append(request)
            longest = max(longest, request.length)
        chosen = set(id(r) for r in batch)
        self._waiting = [r for r in self._waiting if id(r) not in chosen]
        return batch

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            deadline = self._waiting[0].enqueued + self.max_wait
            while len(self._waiting) < self.max_batch_size and time.perf_counter() < deadline:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.perf_counter()))
                except asyncio.TimeoutError:
                    break
            batch = self._take_batch()
            if not batch:
                continue
            self.busy = True
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [r.item for r in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            except Exception as err:  # noqa: BLE001 - every waiting request gets the failure as its answer
                _logger.exception("batch of %d failed", len(batch))
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(err)
            else:
                for request, result in zip(batch, results):
                    if not request.future.done():
                        request.future.set_result(result)
            finally:
                self.busy = False
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started,
                              started - min(r.enqueued for r in batch))
