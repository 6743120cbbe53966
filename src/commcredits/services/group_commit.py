"""Group commit: many requests, one durable commit.

A durable commit costs a disk flush, so one transaction per call request caps a hot
organization at a few thousand requests per second however fast the rest is. The
:class:`GroupCommitter` runs one writer thread: requests queue up while a batch is being
written, and the next batch takes all of them (up to ``max_batch``) into one transaction. The
``write`` function it is given applies the whole batch at once (set-based reads, in-memory
work, a few multi-row writes) and answers one outcome per request. Every caller gets its answer
only after the commit that made it durable, so an acknowledged charge survives a crash exactly
as with a transaction of its own.

Like PostgreSQL's ``commit_delay``, a batch that already has company waits a moment (a fraction
of a millisecond at a time, while more requests keep arriving, never more than ``max_linger``)
before it is written: callers just answered by the previous commit are about to ask again,
and one commit for all of them costs one disk flush instead of two. A lone request never
waits.

A caller may have many requests in flight: :meth:`GroupCommitter.submit` queues a request and
returns a :class:`~concurrent.futures.Future` at once, answered after the same durable commit
as :meth:`GroupCommitter.run` would be. A switch with hundreds of calls on one connection keeps
them all going without a thread each, and the writer gets full batches from few callers.
:meth:`GroupCommitter.send` does the same with any :class:`Reply` the caller brings: the HTTP
server's replies wake its event loop once per batch rather than once per answer.

Where writers take turns (several processes on one SQLite file, see
:class:`~commcredits.store.database.WriteLock`), the writer waits for its turn before it closes
the batch, so everything that queued while another process was writing goes into this one
commit, and it gives the turn back as soon as the batch is committed.

A transient conflict runs the batch again. Any other failure of the batch as a whole runs each
of its requests again alone, so one bad request never fails the others.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError

from commcredits.adapters.clock import Clock
from commcredits.store.database import Store, TransientConflict, UnitOfWork, is_retryable

Op = TypeVar("Op")

Outcome = tuple[bool, Any]
"""``(True, result)`` or ``(False, exception)`` for one request of a batch."""

BatchWriter = Callable[[UnitOfWork, datetime, Sequence[Op]], list[Outcome]]
"""Applies a batch inside the given transaction (not committing it): one outcome per request.
A request refused by a rule answers ``(False, error)`` and leaves no trace; an exception that
escapes means the batch as a whole could not be written."""


class Reply(Protocol):
    """Where the writer puts one request's answer once it is durable: a
    :class:`~concurrent.futures.Future`, or anything else with its two setters. Called on the
    writer thread, so they must be quick and must not wait for another request."""

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class _Request(Generic[Op]):
    """One queued request and its answer. A waiting caller waits on a plain lock the writer
    releases once the answer is durable (cheaper than a Future for one waiter); a caller that
    submitted or sent gets its answer through its reply instead."""

    __slots__ = ("_done", "error", "op", "reply", "result")

    def __init__(self, op: Op, reply: Reply | None = None):
        self.op = op
        self.result: Any = None
        self.error: BaseException | None = None
        self.reply = reply
        self._done: threading.Lock | None = None
        if reply is None:
            self._done = threading.Lock()
            self._done.acquire()

    def answer(self, ok: bool, value: Any) -> None:
        reply = self.reply
        if reply is not None:
            # Runs here, on the writer: it must be quick (see Reply).
            if ok:
                reply.set_result(value)
            else:
                reply.set_exception(value)
            return
        if ok:
            self.result = value
        else:
            self.error = value
        assert self._done is not None
        self._done.release()

    def wait(self) -> Any:
        assert self._done is not None
        self._done.acquire()
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommitter(Generic[Op]):
    def __init__(
        self,
        store: Store,
        clock: Clock,
        write: BatchWriter[Op],
        *,
        on_commit: Callable[[], None] | None = None,
        on_abandon: Callable[[], None] | None = None,
        max_batch: int = 512,
        attempts: int = 5,
        linger: float = 0.0002,
        max_linger: float = 0.002,
    ):
        self.store = store
        self.clock = clock
        self.write = write
        self.on_commit = on_commit
        self.on_abandon = on_abandon
        self.max_batch = max_batch
        self.linger = linger
        self.max_linger = max_linger
        self.attempts = attempts
        self._queue: queue.SimpleQueue[_Request[Op] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._release_turn: Callable[[], None] | None = None
        self.batches = 0
        """Batches committed so far (what the benchmark reports as the mean batch size)."""
        self.requests = 0

    def run(self, op: Op) -> Any:
        """Apply ``op`` in the next batch and return its result once it is committed."""
        request = _Request(op)
        self._put(request)
        return request.wait()

    def submit(self, op: Op) -> Future[Any]:
        """Queue ``op`` for the next batch and return at once: the future holds its result (or
        the error that refused it) once the commit that made it durable is done.

        Requests are applied in the order they were submitted, so a caller may submit the end
        of a call right after its authorization. Callbacks added to the future run on the
        writer thread: they must not block or wait for another request (do that in a thread
        of your own, or call ``result()`` there).
        """
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()  # queued requests cannot be withdrawn
        self.send(op, future)
        return future

    def send(self, op: Op, reply: Reply) -> None:
        """:meth:`submit` with the caller's own reply: the writer calls its ``set_result`` or
        ``set_exception`` once the commit that made ``op`` durable is done, in submission
        order, on the writer thread (see :class:`Reply`)."""
        self._put(_Request(op, reply))

    def _put(self, request: _Request[Op]) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()
        self._queue.put(request)

    def pending(self) -> int:
        """Requests waiting for the next batch (approximate while callers are arriving)."""
        return self._queue.qsize()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="commcredits-group-commit", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Stop the writer once the requests already queued are written."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = self._drain(batch)
            if len(batch) > 1 and not stopping and self.linger > 0:
                # Company means load: give the callers the last commit answered a moment
                # to ask again, for as long as they keep coming.
                deadline = time.monotonic() + self.max_linger
                while len(batch) < self.max_batch and time.monotonic() < deadline:
                    time.sleep(self.linger)
                    size = len(batch)
                    stopping = self._drain(batch)
                    if stopping or len(batch) == size:
                        break
            # Wait for the turn to write before the batch is closed: whatever queued while
            # another process (or thread) was writing joins this batch instead of waiting
            # for the next turn. The turn is given back as soon as the batch is committed.
            self._release_turn = self.store.write_turn()
            try:
                if not stopping:
                    stopping = self._drain(batch)
                self._write(batch)
            finally:
                self._give_back_turn()
            if stopping:
                return

    def _drain(self, batch: list[_Request[Op]]) -> bool:
        """Move what is queued into ``batch`` (up to ``max_batch``); True when asked to stop."""
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    def _write(self, requests: list[_Request[Op]]) -> None:
        outcomes = self._commit(requests)
        if outcomes is None:
            if len(requests) == 1:
                return
            # The batch as a whole failed: each request alone, so only a bad one fails.
            for request in requests:
                self._write([request])
            return
        for request, (ok, value) in zip(requests, outcomes, strict=True):
            request.answer(ok, value)

    def _commit(self, requests: list[_Request[Op]]) -> list[Outcome] | None:
        """The outcomes once committed; None when the batch failed (a lone request
        is then already answered with the error)."""
        ops = [request.op for request in requests]
        for attempt in range(1, self.attempts + 1):
            # The time is read before the transaction opens: a simulated clock reads it from the
            # database, and a second connection taken while holding the write lock can wait on
            # a pool whose connections all wait for that lock.
            now = self.clock.now()
            try:
                with self.store.unit_of_work() as uow:
                    outcomes = self.write(uow, now, ops)
                    uow.commit()
            except (DBAPIError, TransientConflict) as exc:
                self._abandon()
                if attempt < self.attempts and is_retryable(exc):
                    continue
                return self._failed(requests, exc)
            except Exception as exc:  # the batch could not be written at all
                self._abandon()
                return self._failed(requests, exc)
            self._give_back_turn()
            if self.on_commit is not None:
                self.on_commit()
            self.batches += 1
            self.requests += len(requests)
            return outcomes
        raise AssertionError("unreachable")

    def _give_back_turn(self) -> None:
        release, self._release_turn = self._release_turn, None
        if release is not None:
            release()

    def _abandon(self) -> None:
        if self.on_abandon is not None:
            self.on_abandon()

    @staticmethod
    def _failed(requests: list[_Request[Op]], exc: BaseException) -> None:
        if len(requests) == 1:
            requests[0].answer(False, exc)
        return None
