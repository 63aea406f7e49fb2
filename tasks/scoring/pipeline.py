"""A shard's work as a bounded pipeline: read ahead, predict, write behind.

One file's record batches pass through three threads, in file order:

- a reader thread (``ReadAhead``) reads and validates the next batch (Arrow decoding,
  normalization, the expectation suite) while the shard's own thread scores the one
  before; it holds at most ``READ_AHEAD_BATCHES`` batches beyond the one being scored;
- the shard's own thread predicts (TensorFlow releases the GIL while its ops run, so
  the other threads' Python and Arrow work goes on meanwhile), counts, and checks for
  a stop between batches and prediction slices, as it always did;
- a writer thread (``WriteBehind``) encodes the scored and rejected rows into the staged
  Parquet parts, at most ``WRITE_BEHIND_BATCHES`` batches behind.

Why threads and not processes: the model, the validator and the parts' writers are
objects of this process (the model loaded once per process); a process per stage would
pickle every batch across, which costs about what the overlap saves. Why bounded: a
file of millions of rows must not be read faster than it is scored (peak memory stays
one batch above the unpipelined path: ``benchmarks/sections/memory.py``).

Stops and errors: an error in the reader is raised in the shard's thread when it asks
for the next batch; an error in the writer at the next write it hands over, or at
``flush``. Leaving the ``with`` block (normally, by an error or by ``ScoringStopped``)
stops both threads, drops what they had not done, and joins them before the shard
removes its parts: no thread outlives its shard, none writes into a part once removed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

READ_AHEAD_BATCHES = 1    # batches read and validated beyond the one being scored
WRITE_BEHIND_BATCHES = 2  # scored batches waiting to be written
POLL_SECONDS = 0.05       # how often a blocked stage looks whether the pipeline stopped
THREAD_PREFIX = "reviewflow-pipeline"
_DONE = object()


class ReadAhead:
    """The items of ``items`` (a generator, run in a thread of its own), in order."""

    def __init__(self, items: Iterable, ahead: int = READ_AHEAD_BATCHES) -> None:
        self._items = items
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # One token per item alive: the one being consumed and those read ahead.
        self._tokens = threading.Semaphore(ahead + 1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}-read",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            iterator = iter(self._items)
            while self._acquire():
                item = next(iterator, _DONE)
                self._queue.put((item, None))
                if item is _DONE:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._queue.put((_DONE, exc))

    def _acquire(self) -> bool:
        while not self._stop.is_set():
            if self._tokens.acquire(timeout=POLL_SECONDS):
                return True
        return False

    def __iter__(self) -> Iterator:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
            self._tokens.release()  # the consumer is done with it: read one more

    def close(self) -> None:
        """Stop reading (the batch being read is finished first), join the thread and
        close the generator, so its file is closed."""
        self._stop.set()
        self._thread.join()
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


class WriteBehind:
    """Runs the jobs handed to ``submit`` in a thread of its own, in order."""

    def __init__(self, behind: int = WRITE_BEHIND_BATCHES) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=behind)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}-write",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is _DONE:
                    return
                if self._error is None and not self._stop.is_set():
                    job()
            except BaseException as exc:  # raised in the shard's thread at its next call
                self._error = exc
            finally:
                self._queue.task_done()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``; waits while ``WRITE_BEHIND_BATCHES`` are queued. Raises the
        error of a job run before."""
        self._raise()
        while True:
            try:
                self._queue.put(job, timeout=POLL_SECONDS)
                return
            except queue.Full:
                self._raise()

    def flush(self) -> None:
        """Wait until every job handed over is done; raise the first one's error."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Drop the jobs not started, wait for the one running, join the thread."""
        self._stop.set()
        self._queue.put(_DONE)
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


class Pipeline:
    """``ReadAhead`` over ``items`` and a ``WriteBehind``, both stopped and joined when
    the ``with`` block ends, however it ends."""

    def __init__(self, items: Iterable) -> None:
        self.items: Iterable = items
        self.writer: WriteBehind | None = None
        self._reader: ReadAhead | None = None

    def __enter__(self) -> Pipeline:
        self.writer = WriteBehind()
        try:
            self._reader = ReadAhead(self.items)
        except BaseException:
            self.writer.close()
            raise
        self.items = self._reader
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._reader.close()
        finally:
            self.writer.close()
